//! Admin operations: stage, unstage, validate, swap, rollback — and the steps they share
//! (qualifying a candidate, the flip, the rollback flip). Serialized by the admin lock,
//! which request threads never touch.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::bluegreen::{BlueGreen, Inner, checked_version};
use super::builder::Config;
use super::error::{Error, Result};
use super::report::{RollbackReport, StageReport, SwapReport};
use super::state::{BakeRun, Standby, not_a_candidate};
use super::status::SlotState;
use crate::model::Model;
use crate::slot::Slot;
use crate::traffic::shadow::ShadowRuntime;
use crate::validation::supervise::{self, Supervised};
use crate::validation::validate::ValidationReport;

impl<M: Model> BlueGreen<M> {
    /// Puts `model` in the standby slot as the candidate `version`.
    ///
    /// If the standby slot is occupied (a previous model or an earlier candidate), that
    /// model is retired first: bluegreen waits up to the drain timeout for its in-flight
    /// calls, then has the retirer thread drop it. On [`Error::DrainTimeout`] nothing
    /// changes and `model` is dropped. Staging replaces the rollback target: roll back
    /// before staging if you need to. Refused while a bake window or a canary runs.
    ///
    /// `model` already exists when this is called, so for a moment three models are in
    /// memory; use [`stage_with`](Self::stage_with) to load only after the old one is gone.
    pub fn stage(&self, version: impl Into<String>, model: M) -> Result<StageReport> {
        self.stage_inner(
            version.into(),
            move || Ok::<M, std::convert::Infallible>(model),
            false,
        )
        .map(|report| StageReport {
            load: None,
            ..report
        })
    }

    /// Like [`stage`](Self::stage), but calls `load` only after the standby slot has been
    /// retired and dropped, so at most two models are ever in memory. A loader error is
    /// returned as [`Error::Load`]; the standby slot is then empty.
    pub fn stage_with<F, E>(&self, version: impl Into<String>, load: F) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.stage_inner(version.into(), load, true)
    }

    fn stage_inner<F, E>(
        &self,
        version: String,
        load: F,
        wait_for_drop: bool,
    ) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &*self.inner;
        let version = checked_version(version)?;
        let _admin = inner.admin.lock();
        inner.refuse_if_busy()?;
        if inner.active.load().version == &*version {
            return Err(Error::VersionInUse {
                version: version.into(),
                slot: "active",
            });
        }
        let (retired, drain_wait) = match inner.retire_standby(wait_for_drop)? {
            Some((v, wait)) => (Some(v), wait),
            None => (None, Duration::ZERO),
        };
        let load_started = Instant::now();
        let model = load().map_err(|e| {
            tracing::warn!(target: "bluegreen", %version, "candidate failed to load");
            Error::Load {
                version: version.to_string(),
                source: e.into(),
            }
        })?;
        let load_time = load_started.elapsed();
        let slot = Arc::new(Slot::new(model, &version, inner.config.timed));
        let report = StageReport {
            version: slot.version.to_string(),
            generation: slot.generation,
            retired,
            drain_wait,
            load: Some(load_time),
        };
        let mut st = inner.state.lock();
        st.standby = Some(Standby::new(slot, SlotState::Staged));
        st.last_change = SystemTime::now();
        inner.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %report.version, generation = report.generation,
            retired = ?report.retired, "candidate staged");
        Ok(report)
    }

    /// Retires whatever the standby slot holds (freeing its memory; rollback is then
    /// impossible). Returns the retired version, or `None` if the slot was empty.
    /// Refused while a bake window or a canary runs.
    pub fn unstage(&self) -> Result<Option<String>> {
        let _admin = self.inner.admin.lock();
        self.inner.refuse_if_busy()?;
        Ok(self.inner.retire_standby(true)?.map(|(v, _)| v))
    }

    /// Runs every gate on the staged candidate without swapping (a dry run).
    ///
    /// Works on a staged or failed candidate and changes neither; the report is recorded
    /// as the status's last validation.
    pub fn validate(&self) -> Result<ValidationReport> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let candidate = {
            let st = inner.state.lock();
            match &st.standby {
                None => return Err(Error::NothingStaged),
                Some(s) if matches!(s.state, SlotState::Staged | SlotState::Failed) => {
                    Arc::clone(&s.slot)
                }
                Some(s) => return Err(not_a_candidate(s)),
            }
        };
        let report = inner.run_gates(&candidate);
        inner.state.lock().last_validation = Some(report.clone());
        Ok(report)
    }

    /// Runs every gate on the active model itself (it is both candidate and live model, so
    /// comparisons with the live model hold trivially): for readiness checks, since the
    /// model given to [`Builder::build`](crate::Builder::build) was never a candidate. Changes nothing.
    ///
    /// ```
    /// # use bluegreen::{validate, BlueGreen, Model};
    /// # struct Id(i32); impl Model for Id { type Input = i32; type Output = i32;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, x: &i32) -> Result<i32, Self::Error> { Ok(self.0 * x) } }
    /// let gate = validate::from_fn("keeps sign", |cx: &validate::Context<Id>| {
    ///     if cx.candidate().predict(&1).unwrap() > 0 { Ok(()) } else { Err("flips sign") }
    /// });
    /// let bg = BlueGreen::builder().validator(gate).build("v1", Id(-1))?;
    /// assert!(!bg.validate_active().passed()); // serving, but not ready
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    pub fn validate_active(&self) -> ValidationReport {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let active = inner.active.load_full();
        let report = inner.run_gates(&active);
        inner.state.lock().last_validation = Some(report.clone());
        report
    }

    /// Validates and warms the staged candidate, then moves all new traffic to it with one
    /// atomic pointer store.
    ///
    /// Calls already running on the old model finish on it; the old model becomes the
    /// standby (state [`SlotState::Previous`]) so [`rollback`](Self::rollback) is instant.
    /// If a gate fails, panics or overruns, or warm-up fails, nothing changes for traffic:
    /// the candidate stays staged, marked [`SlotState::Failed`], and the error carries the
    /// report. With a [`Bake`](crate::Bake) configured, the new model then bakes.
    pub fn swap(&self) -> Result<SwapReport> {
        let inner = &*self.inner;
        let started = Instant::now();
        let _admin = inner.admin.lock();
        let candidate = inner.take_candidate()?;
        let (report, warm_up) = inner.qualify(&candidate)?;
        Ok(inner.flip_to(candidate, report, warm_up, started))
    }

    /// Moves traffic back to the previous model at once, without re-validating it.
    ///
    /// The model rolled back from stays in standby as [`SlotState::RolledBack`]; it is not
    /// promoted again unless staged anew. Fails with [`Error::NothingToRollBack`] unless
    /// the standby slot holds the previous model. Ends a running bake window.
    pub fn rollback(&self) -> Result<RollbackReport> {
        let _admin = self.inner.admin.lock();
        self.inner.rollback_locked()
    }
}

impl<M: Model> Inner<M> {
    /// Refuses operations that would retire the standby while it is a rollback target
    /// under a bake, or a running canary.
    pub(super) fn refuse_if_busy(&self) -> Result<()> {
        let st = self.state.lock();
        if let Some(b) = st.bake {
            let active = self.active.load();
            if active.generation == b.generation {
                return Err(Error::BakeInProgress {
                    version: active.version.to_string(),
                });
            }
        }
        match &st.standby {
            Some(s) if s.state == SlotState::Canary => Err(Error::CanaryInProgress {
                version: s.slot.version.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The staged candidate, marked validating; or why there is none.
    pub(super) fn take_candidate(&self) -> Result<Arc<Slot<M>>> {
        let mut st = self.state.lock();
        match &mut st.standby {
            None => Err(Error::NothingStaged),
            Some(s) if s.state == SlotState::Staged => {
                s.state = SlotState::Validating;
                Ok(Arc::clone(&s.slot))
            }
            Some(s) if s.state == SlotState::Failed => Err(Error::CandidateFailed {
                version: s.slot.version.to_string(),
            }),
            Some(s) => Err(not_a_candidate(s)),
        }
    }

    /// Runs the gates and warm-up on a candidate taken with `take_candidate`. On failure
    /// the candidate is marked failed and traffic is untouched.
    pub(super) fn qualify(&self, candidate: &Arc<Slot<M>>) -> Result<(ValidationReport, Duration)> {
        let report = self.run_gates(candidate);
        if !report.passed() {
            self.reject(&report);
            return Err(Error::ValidationFailed(Box::new(report)));
        }
        let warm_started = Instant::now();
        if let Err(e) = warm(&self.config, candidate) {
            self.reject(&report);
            return Err(e);
        }
        Ok((report, warm_started.elapsed()))
    }

    /// The flip: `candidate` becomes active, the old active becomes the previous model.
    pub(super) fn flip_to(
        &self,
        candidate: Arc<Slot<M>>,
        report: ValidationReport,
        warm_up: Duration,
        started: Instant,
    ) -> SwapReport {
        let flip_started = Instant::now();
        let old = self.active.swap(Arc::clone(&candidate));
        let flip = flip_started.elapsed();

        let mut st = self.state.lock();
        let from = old.version.to_string();
        st.standby = Some(Standby::new(old, SlotState::Previous));
        st.swaps += 1;
        st.last_validation = Some(report.clone());
        st.last_change = SystemTime::now();
        if self.config.bake.is_some() {
            st.bake = Some(BakeRun {
                generation: candidate.generation,
                started: Instant::now(),
            });
        }
        self.publish(&st);
        let old_holders = st.standby.as_ref().map_or(0, |s| self.holders(&s.slot));
        drop(st);
        drop(candidate);

        let report = SwapReport {
            from,
            to: report.candidate.clone(),
            validation: report,
            warm_up,
            flip,
            total: started.elapsed(),
            old_holders,
        };
        tracing::info!(target: "bluegreen", from = %report.from, to = %report.to,
            validation = ?report.validation.elapsed, warm_up = ?warm_up, flip = ?flip,
            old_holders, baking = self.config.bake.is_some(), "swapped");
        report
    }

    /// Rollback with the admin lock held.
    pub(super) fn rollback_locked(&self) -> Result<RollbackReport> {
        let previous = {
            let st = self.state.lock();
            match &st.standby {
                Some(s) if s.state == SlotState::Previous => Arc::clone(&s.slot),
                other => {
                    return Err(Error::NothingToRollBack {
                        standby: other.as_ref().map(|s| s.state),
                    });
                }
            }
        };
        let flip_started = Instant::now();
        let old = self.active.swap(previous);
        let flip = flip_started.elapsed();

        let mut st = self.state.lock();
        let from = old.version.to_string();
        let to = st
            .standby
            .as_ref()
            .map(|s| s.slot.version.to_string())
            .unwrap_or_default();
        st.standby = Some(Standby::new(old, SlotState::RolledBack));
        st.rollbacks += 1;
        st.bake = None;
        st.last_change = SystemTime::now();
        self.publish(&st);
        let old_holders = st.standby.as_ref().map_or(0, |s| self.holders(&s.slot));
        drop(st);

        tracing::warn!(target: "bluegreen", %from, %to, ?flip, old_holders, "rolled back");
        Ok(RollbackReport {
            from,
            to,
            flip,
            old_holders,
        })
    }

    pub(super) fn run_gates(&self, candidate: &Arc<Slot<M>>) -> ValidationReport {
        let live = self.active.load_full();
        let shadow = self
            .shadow
            .as_ref()
            .and_then(ShadowRuntime::status)
            .filter(|s| s.version == *candidate.version);
        let report = crate::validation::run_all(
            &self.config.validators,
            candidate,
            &live,
            shadow,
            self.config.validation_deadline,
        );
        if report.passed() {
            tracing::info!(target: "bluegreen", candidate = %report.candidate,
                live = %report.live, gates = report.checks.len(), elapsed = ?report.elapsed,
                "validation passed");
        } else {
            tracing::warn!(target: "bluegreen", candidate = %report.candidate,
                live = %report.live, failed = %report.failure_summary(),
                elapsed = ?report.elapsed, "validation failed");
        }
        report
    }

    /// Marks the standby candidate failed after a refused swap.
    pub(super) fn reject(&self, report: &ValidationReport) {
        let mut st = self.state.lock();
        if let Some(s) = st.standby.as_mut() {
            s.state = SlotState::Failed;
        }
        st.rejections += 1;
        st.last_validation = Some(report.clone());
        st.last_change = SystemTime::now();
        self.publish(&st);
    }
}

/// Warms `slot` with the configured samples on a supervised thread.
pub(super) fn warm<M: Model>(config: &Config<M>, slot: &Arc<Slot<M>>) -> Result<()> {
    if config.warmup.is_empty() {
        return Ok(());
    }
    let (s, samples) = (Arc::clone(slot), Arc::clone(&config.warmup));
    let started = Instant::now();
    let outcome = supervise::run("bluegreen-warmup", config.warmup_deadline, move || {
        s.model.warm_up(&samples).map_err(|e| e.to_string())
    });
    let reason = match outcome {
        Supervised::Done(Ok(())) => {
            tracing::info!(target: "bluegreen", version = %slot.version,
                samples = config.warmup.len(), elapsed = ?started.elapsed(), "warmed up");
            return Ok(());
        }
        Supervised::Done(Err(e)) => format!("error: {e}"),
        Supervised::Panicked(msg) => format!("panicked: {msg}"),
        Supervised::TimedOut => format!("exceeded its deadline of {:?}", config.warmup_deadline),
        Supervised::NotStarted(e) => format!("could not start: {e}"),
    };
    tracing::warn!(target: "bluegreen", version = %slot.version, %reason, "warm-up failed");
    Err(Error::WarmupFailed {
        version: slot.version.to_string(),
        reason,
    })
}
