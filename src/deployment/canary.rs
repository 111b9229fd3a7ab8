//! Canary operations: start a validated candidate on a share of keyed traffic, change the
//! share, promote it, abort it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::actor::Actor;
use super::audit::{named, record};
use super::bluegreen::{BlueGreen, Inner};
use super::error::{Error, Result};
use super::report::{CanaryReport, SwapReport};
use super::state::{CanaryRun, Standby, State};
use super::status::SlotState;
use crate::journal::{EventKind, Value};
use crate::model::Model;
use crate::slot::Slot;
use crate::traffic::routing::{self};

impl<M: Model> BlueGreen<M> {
    /// Validates and warms the staged candidate like [`swap`](Self::swap), then sends it
    /// `percent` (0..=100) of keyed traffic ([`predict_keyed`](Self::predict_keyed)) instead
    /// of all traffic. Raise the share with [`set_canary_percent`](Self::set_canary_percent),
    /// finish with [`promote_canary`](Self::promote_canary) or
    /// [`abort_canary`](Self::abort_canary).
    pub fn start_canary(&self, percent: f64) -> Result<CanaryReport> {
        self.inner.start_canary(&Actor::Application, percent)
    }

    /// Changes the running canary's share of keyed traffic, at once.
    pub fn set_canary_percent(&self, percent: f64) -> Result<()> {
        self.inner.set_canary_percent(&Actor::Application, percent)
    }

    /// Moves all traffic to the running canary (it already passed its gates), like the
    /// flip of [`swap`](Self::swap): the old active becomes the previous model and the
    /// model previous until now is retired first. If that retirement is refused (a drain
    /// timeout), the canary keeps running unchanged.
    pub fn promote_canary(&self) -> Result<SwapReport> {
        self.inner.promote_canary(&Actor::Application)
    }

    /// Stops the canary at once: its share drops to 0 and it is marked failed, so it is not
    /// promoted without a new stage (with a journal it is banned, unless the watcher asked:
    /// see [`unban`](Self::unban)).
    pub fn abort_canary(&self) -> Result<()> {
        self.inner.abort_canary(&Actor::Application)
    }
}

impl<M: Model> Inner<M> {
    pub(super) fn start_canary(&self, actor: &Actor, percent: f64) -> Result<CanaryReport> {
        let basis_points =
            routing::basis_points(percent).ok_or(Error::InvalidPercent { percent })?;
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let (candidate, report, warm_up, warm_up_calls) = self.qualify_candidate(actor)?;
        let active = self.active.load_full();
        self.audit
            .commit(|| {
                record(EventKind::CanaryStart, &active, actor)
                    .subject(named(&candidate))
                    .detail("percent", Value::Num(percent))
                    .detail("report", Value::Report(Box::new(report.clone())))
            })
            .inspect_err(|_| self.untake_candidate(&candidate))?;
        drop(active);
        let mut st = self.state.lock();
        if let Some(s) = st.candidate.as_mut() {
            s.state = SlotState::Canary;
            s.canary = Some(CanaryRun {
                basis_points,
                validation: report.clone(),
            });
        }
        st.last_validation = Some(report.clone());
        st.changed();
        self.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %candidate.version, percent, %actor, "canary started");
        Ok(CanaryReport {
            version: candidate.version.to_string(),
            percent,
            validation: report,
            warm_up,
            warm_up_calls,
        })
    }

    pub(super) fn set_canary_percent(&self, actor: &Actor, percent: f64) -> Result<()> {
        let basis_points =
            routing::basis_points(percent).ok_or(Error::InvalidPercent { percent })?;
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let canary = self.canary_slot()?;
        let active = self.active.load_full();
        self.audit.commit(|| {
            record(EventKind::CanaryStep, &active, actor)
                .subject(named(&canary))
                .detail("percent", Value::Num(percent))
        })?;
        let mut st = self.state.lock();
        match st.candidate.as_mut() {
            Some(Standby {
                canary: Some(c), ..
            }) => c.basis_points = basis_points,
            _ => return Err(no_canary(&st)),
        }
        st.changed();
        self.publish(&st);
        tracing::info!(target: "bluegreen", percent, %actor, "canary share changed");
        Ok(())
    }

    pub(super) fn promote_canary(&self, actor: &Actor) -> Result<SwapReport> {
        let started = Instant::now();
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let (candidate, report) = {
            let st = self.state.lock();
            match &st.candidate {
                Some(Standby {
                    slot,
                    canary: Some(c),
                    ..
                }) => (Arc::clone(slot), c.validation.clone()),
                _ => return Err(no_canary(&st)),
            }
        };
        self.retire_previous(actor)?;
        self.commit_move(EventKind::CanaryPromote, &candidate, &report, actor)?;
        Ok(self.flip_to(candidate, report, Duration::ZERO, 0, started, actor))
    }

    pub(super) fn abort_canary(&self, actor: &Actor) -> Result<()> {
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let canary = self.canary_slot()?;
        let active = self.active.load_full();
        self.audit.commit(|| {
            record(EventKind::CanaryAbort, &active, actor)
                .subject(named(&canary))
                .ban(actor.bans_what_it_leaves())
                .reason(format!("canary aborted by {actor}"))
        })?;
        let mut st = self.state.lock();
        let version = match st.candidate.as_mut() {
            Some(s) if s.canary.is_some() => {
                s.state = SlotState::Failed;
                s.canary = None;
                s.slot.version.to_string()
            }
            _ => return Err(no_canary(&st)),
        };
        st.changed();
        self.publish(&st);
        drop(st);
        tracing::warn!(target: "bluegreen", %version, %actor, "canary aborted");
        Ok(())
    }

    /// The running canary's slot, or why there is none.
    fn canary_slot(&self) -> Result<Arc<Slot<M>>> {
        let st = self.state.lock();
        match &st.candidate {
            Some(Standby {
                slot,
                canary: Some(_),
                ..
            }) => Ok(Arc::clone(slot)),
            _ => Err(no_canary(&st)),
        }
    }
}

/// Why there is no canary: what the standby holds instead.
fn no_canary<M: Model>(st: &State<M>) -> Error {
    Error::NoCanary {
        standby: st.standby().map(|s| s.state),
    }
}
