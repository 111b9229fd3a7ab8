//! Canary operations: start a validated candidate on a share of keyed traffic, change the
//! share, promote it, abort it.

use crate::sync::Arc;
use std::time::{Duration, Instant};

use super::bluegreen::BlueGreen;
use super::error::{Error, Result};
use super::report::{CanaryReport, SwapReport};
use super::state::{CanaryRun, Standby, State};
use super::status::SlotState;
use crate::model::Model;
use crate::traffic::routing::{self};

impl<M: Model> BlueGreen<M> {
    /// Validates and warms the staged candidate like [`swap`](Self::swap), then sends it
    /// `percent` (0..=100) of keyed traffic ([`predict_keyed`](Self::predict_keyed)) instead
    /// of all traffic. Raise the share with [`set_canary_percent`](Self::set_canary_percent),
    /// finish with [`promote_canary`](Self::promote_canary) or
    /// [`abort_canary`](Self::abort_canary).
    pub fn start_canary(&self, percent: f64) -> Result<CanaryReport> {
        let inner = &*self.inner;
        let basis_points =
            routing::basis_points(percent).ok_or(Error::InvalidPercent { percent })?;
        let _admin = inner.admin.lock();
        let (candidate, report, warm_up, warm_up_calls) = inner.qualify_candidate()?;
        let mut st = inner.state.lock();
        if let Some(s) = st.candidate.as_mut() {
            s.state = SlotState::Canary;
            s.canary = Some(CanaryRun {
                basis_points,
                validation: report.clone(),
            });
        }
        st.last_validation = Some(report.clone());
        st.changed();
        inner.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %candidate.version, percent, "canary started");
        Ok(CanaryReport {
            version: candidate.version.to_string(),
            percent,
            validation: report,
            warm_up,
            warm_up_calls,
        })
    }

    /// Changes the running canary's share of keyed traffic, at once.
    pub fn set_canary_percent(&self, percent: f64) -> Result<()> {
        let inner = &*self.inner;
        let basis_points =
            routing::basis_points(percent).ok_or(Error::InvalidPercent { percent })?;
        let _admin = inner.admin.lock();
        let mut st = inner.state.lock();
        match st.candidate.as_mut() {
            Some(Standby {
                canary: Some(c), ..
            }) => c.basis_points = basis_points,
            _ => return Err(no_canary(&st)),
        }
        st.changed();
        inner.publish(&st);
        tracing::info!(target: "bluegreen", percent, "canary share changed");
        Ok(())
    }

    /// Moves all traffic to the running canary (it already passed its gates), like the
    /// flip of [`swap`](Self::swap): the old active becomes the previous model and the
    /// model previous until now is retired first. If that retirement is refused (a drain
    /// timeout), the canary keeps running unchanged.
    pub fn promote_canary(&self) -> Result<SwapReport> {
        let inner = &*self.inner;
        let started = Instant::now();
        let _admin = inner.admin.lock();
        let (candidate, report) = {
            let st = inner.state.lock();
            match &st.candidate {
                Some(Standby {
                    slot,
                    canary: Some(c),
                    ..
                }) => (Arc::clone(slot), c.validation.clone()),
                _ => return Err(no_canary(&st)),
            }
        };
        inner.retire_previous()?;
        Ok(inner.flip_to(candidate, report, Duration::ZERO, 0, started))
    }

    /// Stops the canary at once: its share drops to 0 and it is marked failed, so it is not
    /// promoted without a new stage.
    pub fn abort_canary(&self) -> Result<()> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let mut st = inner.state.lock();
        let version = match st.candidate.as_mut() {
            Some(s) if s.canary.is_some() => {
                s.state = SlotState::Failed;
                s.canary = None;
                s.slot.version.to_string()
            }
            _ => return Err(no_canary(&st)),
        };
        st.changed();
        inner.publish(&st);
        drop(st);
        tracing::warn!(target: "bluegreen", %version, "canary aborted");
        Ok(())
    }
}

/// Why there is no canary: what the standby holds instead.
fn no_canary<M: Model>(st: &State<M>) -> Error {
    Error::NoCanary {
        standby: st.standby().map(|s| s.state),
    }
}
