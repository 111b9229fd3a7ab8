//! Admin operations: stage, unstage, validate, swap, rollback — and the steps they share
//! (qualifying a candidate, the flip, the rollback flip). Serialized by the admin lock,
//! which request threads never touch; the flips themselves happen under the state lock,
//! so the bake monitor's automatic rollback (which takes only that lock) never waits for
//! a slow admin operation.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bluegreen::{BlueGreen, Inner, checked_version};
use super::error::{Error, Result};
use super::faults::{FaultKind, FaultLog, panic_text};
use super::report::{RollbackReport, StageReport, SwapReport};
use super::state::{BakeRun, Standby, State, Which, not_a_candidate};
use super::status::SlotState;
use crate::model::Model;
use crate::slot::Slot;
use crate::traffic::shadow::ShadowRuntime;
use crate::validation::validate::ValidationReport;

impl<M: Model> BlueGreen<M> {
    /// Puts `model` in the candidate slot as the candidate `version`.
    ///
    /// An earlier candidate is retired first: bluegreen waits up to the drain timeout for
    /// its in-flight calls, then has the retirer thread drop it. The previous model — the
    /// rollback target — stays loaded, so a candidate that is later refused costs nothing
    /// (a model rolled back from is retired: it is no rollback target). In a
    /// [memory-tight](crate::Builder::memory_tight) deployment the standby is one slot and
    /// is retired whatever it holds. On [`Error::DrainTimeout`] or
    /// [`Error::RetireBacklog`] nothing changes and `model` is dropped.
    ///
    /// Refused while a canary runs ([`Error::CanaryInProgress`]), and in a memory-tight
    /// deployment while a bake window runs ([`Error::BakeInProgress`]).
    ///
    /// `model` already exists when this is called, so for a moment it coexists with the
    /// model it replaces; use [`stage_with`](Self::stage_with) to load only after that one
    /// is gone.
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

    /// Like [`stage`](Self::stage), but calls `load` only after the model it replaces has
    /// been retired and dropped — and any model retired earlier that the retirer was still
    /// dropping (waiting at most the drain timeout for those): with it, a deployment holds
    /// at most three models (active, previous, candidate; two when memory-tight). A loader error — or a loader panic, caught — is returned
    /// as [`Error::Load`]; the candidate slot is then empty and the rollback target is
    /// still loaded (in a memory-tight deployment it was retired before the load).
    pub fn stage_with<F, E>(&self, version: impl Into<String>, load: F) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.stage_inner(version.into(), load, true)
    }

    pub(super) fn stage_inner<F, E>(
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
        // Until it is used, the loader (and the model `stage` was given) is disposed of
        // inside `catch_unwind` whatever refuses the stage: its `Drop` is untrusted.
        let mut load = Unused::new(load, &inner.faults, &version);
        let version = checked_version(version)?;
        let _admin = inner.admin.lock();
        let deadline = Instant::now() + inner.config.drain_timeout;
        let mut retire_previous = inner.config.memory_tight;
        {
            let st = inner.state.lock();
            inner.refuse_during_canary(&st)?;
            if inner.config.memory_tight {
                inner.refuse_during_bake(&st)?;
            }
            if inner.active.load().version == &*version {
                return Err(Error::VersionInUse {
                    version: version.into(),
                    slot: "active",
                });
            }
            match &st.previous {
                Some(p) if p.state == SlotState::RolledBack => retire_previous = true,
                Some(p) if !retire_previous && p.slot.version == &*version => {
                    return Err(Error::VersionInUse {
                        version: version.into(),
                        slot: "previous",
                    });
                }
                _ => {}
            }
        }
        let slots: &[Which] = if retire_previous {
            &[Which::Candidate, Which::Previous]
        } else {
            &[Which::Candidate]
        };
        let drained = inner.retire(slots, wait_for_drop, deadline)?;
        let drain_wait = drained.last().map_or(Duration::ZERO, |(_, wait)| *wait);
        let retired = drained.into_iter().map(|(v, _)| v).collect();
        // `stage_with` loads only once the models it replaces are gone — and any model an
        // earlier operation retired that the retirer is still dropping — waiting for them
        // until the same deadline; past it, it loads all the same (at most `max_retiring`
        // models are still in their `Drop` then).
        if wait_for_drop && !inner.retirer.wait_until_empty(deadline) {
            tracing::warn!(target: "bluegreen", %version, still = ?inner.retirer.backlog(),
                "loading while retired models are still being dropped");
        }
        let load_started = Instant::now();
        let model = match catch_unwind(AssertUnwindSafe(load.take())) {
            Ok(Ok(model)) => model,
            Ok(Err(e)) => {
                tracing::warn!(target: "bluegreen", %version, "candidate failed to load");
                return Err(Error::Load {
                    version: version.into(),
                    source: e.into(),
                });
            }
            Err(payload) => {
                let message = panic_text(payload.as_ref());
                inner
                    .faults
                    .record(FaultKind::LoaderPanicked, Some(&version), message.clone());
                return Err(Error::Load {
                    version: version.into(),
                    source: format!("the loader panicked: {message}").into(),
                });
            }
        };
        let load_time = load_started.elapsed();
        let slot = Arc::new(inner.new_slot(model, &version)?);
        let report = StageReport {
            version: slot.version.to_string(),
            generation: slot.generation,
            retired,
            drain_wait,
            load: Some(load_time),
            #[cfg(feature = "quarantine")]
            quarantine: None,
        };
        let mut st = inner.state.lock();
        st.candidate = Some(Standby::new(slot, SlotState::Staged));
        st.changed();
        inner.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %report.version, generation = report.generation,
            retired = ?report.retired, "candidate staged");
        Ok(report)
    }

    /// Retires the candidate, or — when there is none — the previous model (freeing its
    /// memory; rollback is then impossible). Returns the retired version, or `None` when
    /// both slots were empty. Refused while a canary runs, and retiring the rollback
    /// target is refused while a bake window runs.
    pub fn unstage(&self) -> Result<Option<String>> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let which = {
            let st = inner.state.lock();
            inner.refuse_during_canary(&st)?;
            if st.candidate.is_some() {
                Which::Candidate
            } else {
                inner.refuse_during_bake(&st)?;
                Which::Previous
            }
        };
        let deadline = Instant::now() + inner.config.drain_timeout;
        let retired = inner.retire(&[which], true, deadline)?;
        Ok(retired.into_iter().next().map(|(v, _)| v))
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
            match &st.candidate {
                Some(s) if matches!(s.state, SlotState::Staged | SlotState::Failed) => {
                    Arc::clone(&s.slot)
                }
                Some(s) => return Err(not_a_candidate(s)),
                None => return Err(no_candidate(&st)),
            }
        };
        let report = inner.run_gates(&candidate);
        inner.state.lock().last_validation = Some(report.clone());
        Ok(report)
    }

    /// Runs every gate on the active model itself (it is both candidate and live model, so
    /// comparisons with the live model hold trivially): for readiness checks, since the
    /// model given to [`Builder::build`](crate::Builder::build) was never a candidate.
    /// Changes nothing.
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
    /// previous model (state [`SlotState::Previous`]) so [`rollback`](Self::rollback) is
    /// instant, and the model that was previous before is retired. If a gate fails, panics
    /// or overruns, or warm-up fails, nothing changes for traffic or for the rollback
    /// target: the candidate stays staged, marked [`SlotState::Failed`], and the error
    /// carries the report. With a [`Bake`](crate::Bake) configured, the new model then
    /// bakes. Refused while a canary runs (promote or abort it) or a bake window runs.
    pub fn swap(&self) -> Result<SwapReport> {
        let inner = &*self.inner;
        let started = Instant::now();
        let _admin = inner.admin.lock();
        let (candidate, report, warm_up, warm_up_calls) = inner.qualify_candidate()?;
        inner.make_room_for_previous(&candidate)?;
        Ok(inner.flip_to(candidate, report, warm_up, warm_up_calls, started))
    }

    /// Moves traffic back to the previous model at once, without re-validating it.
    ///
    /// The model rolled back from becomes [`SlotState::RolledBack`]; it is not promoted
    /// again unless staged anew. A staged candidate (or a running canary) is not touched.
    /// Fails with [`Error::NothingToRollBack`] when no previous model is loaded. Ends a
    /// running bake window.
    pub fn rollback(&self) -> Result<RollbackReport> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let mut st = inner.state.lock();
        inner.roll_back_in(&mut st, |_, _| {})
    }
}

impl<M: Model> Inner<M> {
    pub(super) fn refuse_during_canary(&self, st: &State<M>) -> Result<()> {
        match &st.candidate {
            Some(s) if s.state == SlotState::Canary => Err(Error::CanaryInProgress {
                version: s.slot.version.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuses operations that would retire the rollback target of a model baking now.
    pub(super) fn refuse_during_bake(&self, st: &State<M>) -> Result<()> {
        let active = self.active.load();
        match st.baking(active.generation) {
            Some(_) => Err(Error::BakeInProgress {
                version: active.version.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// A slot for a freshly loaded `model`; a panic in its `info` refuses it.
    pub(super) fn new_slot(&self, model: M, version: &str) -> Result<Slot<M>> {
        Slot::new(model, version, self.config.timed).map_err(|(model, message)| {
            self.faults
                .record(FaultKind::InfoPanicked, Some(version), message.clone());
            // Its `Drop` may panic too: it is untrusted.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(model))) {
                self.faults.record(
                    FaultKind::DropPanicked,
                    Some(version),
                    panic_text(payload.as_ref()),
                );
            }
            Error::ModelPanicked {
                version: version.to_owned(),
                during: "info",
                message,
            }
        })
    }

    /// The staged candidate, marked validating; or why there is none.
    pub(super) fn take_candidate(&self) -> Result<Arc<Slot<M>>> {
        let mut st = self.state.lock();
        let why = match &mut st.candidate {
            Some(s) if s.state == SlotState::Staged => {
                s.state = SlotState::Validating;
                return Ok(Arc::clone(&s.slot));
            }
            Some(s) if s.state == SlotState::Failed => Error::CandidateFailed {
                version: s.slot.version.to_string(),
            },
            Some(s) => not_a_candidate(s),
            None => no_candidate(&st),
        };
        Err(why)
    }

    /// Puts a candidate taken with `take_candidate` back (an operation gave up on it for
    /// a reason that is not its fault).
    pub(super) fn untake_candidate(&self, candidate: &Arc<Slot<M>>) {
        let mut st = self.state.lock();
        if let Some(s) = st.candidate.as_mut()
            && Arc::ptr_eq(&s.slot, candidate)
        {
            s.state = SlotState::Staged;
        }
        self.publish(&st);
    }

    /// What `swap` and `start_canary` share: refused during a canary or a bake, then the
    /// staged candidate taken (marked validating) and qualified. Admin lock held.
    pub(super) fn qualify_candidate(
        &self,
    ) -> Result<(Arc<Slot<M>>, ValidationReport, Duration, usize)> {
        {
            let st = self.state.lock();
            self.refuse_during_canary(&st)?;
            self.refuse_during_bake(&st)?;
        }
        let candidate = self.take_candidate()?;
        // Should anything unwind from here (gate or model code bluegreen did not catch),
        // the candidate goes back to staged instead of being left validating for good.
        let guard = StagedAgainOnUnwind {
            inner: self,
            candidate: Some(&candidate),
        };
        let qualified = self.qualify(&candidate);
        std::mem::forget(guard);
        let (report, warm_up, warm_up_calls) = qualified?;
        Ok((candidate, report, warm_up, warm_up_calls))
    }

    /// Runs the gates and warm-up on a candidate taken with `take_candidate`. On failure
    /// the candidate is marked failed and traffic is untouched.
    pub(super) fn qualify(
        &self,
        candidate: &Arc<Slot<M>>,
    ) -> Result<(ValidationReport, Duration, usize)> {
        let report = self.run_gates(candidate);
        if !report.passed() {
            self.reject(&report);
            return Err(Error::ValidationFailed(Box::new(report)));
        }
        let warm_started = Instant::now();
        match self.warm(candidate) {
            Ok(calls) => Ok((report, warm_started.elapsed(), calls)),
            Err(e) => {
                self.reject(&report);
                Err(e)
            }
        }
    }

    /// Before a qualified candidate becomes active, the model that was previous until now
    /// is retired (the old active takes its place). On failure the candidate is staged
    /// again, unharmed.
    pub(super) fn make_room_for_previous(&self, candidate: &Arc<Slot<M>>) -> Result<()> {
        self.retire_previous().inspect_err(|_| {
            self.untake_candidate(candidate);
        })
    }

    /// Retires the previous model (before the active one takes its place).
    pub(super) fn retire_previous(&self) -> Result<()> {
        let deadline = Instant::now() + self.config.drain_timeout;
        self.retire(&[Which::Previous], false, deadline).map(drop)
    }

    /// The flip: `candidate` becomes active, the old active becomes the previous model.
    pub(super) fn flip_to(
        &self,
        candidate: Arc<Slot<M>>,
        report: ValidationReport,
        warm_up: Duration,
        warm_up_calls: usize,
        started: Instant,
    ) -> SwapReport {
        let mut st = self.state.lock();
        let flip_started = Instant::now();
        let old = self.active.swap(Arc::clone(&candidate));
        let flip = flip_started.elapsed();
        let from = old.version.to_string();
        st.candidate = None;
        debug_assert!(
            st.previous.is_none(),
            "the previous model was retired first"
        );
        st.previous = Some(Standby::new(old, SlotState::Previous));
        st.swaps += 1;
        st.last_validation = Some(report.clone());
        st.changed();
        if self.config.bake.is_some() {
            st.bake = Some(BakeRun {
                generation: candidate.generation,
                started: Instant::now(),
            });
        }
        self.publish(&st);
        let old_holders = st.previous.as_ref().map_or(0, |s| self.holders(&s.slot));
        drop(st);
        drop(candidate);

        let report = SwapReport {
            from,
            to: report.candidate.clone(),
            validation: report,
            warm_up,
            warm_up_calls,
            flip,
            total: started.elapsed(),
            old_holders,
        };
        tracing::info!(target: "bluegreen", from = %report.from, to = %report.to,
            validation = ?report.validation.elapsed, warm_up = ?warm_up, warm_up_calls,
            flip = ?flip, old_holders, baking = self.config.bake.is_some(), "swapped");
        report
    }

    /// The rollback flip, under the state lock alone (`st` is its guard). `then` runs
    /// under the same lock, so what it records is never seen apart from the rollback.
    pub(super) fn roll_back_in(
        &self,
        st: &mut State<M>,
        then: impl FnOnce(&mut State<M>, &RollbackReport),
    ) -> Result<RollbackReport> {
        let Some(previous) = st.rollback_target().cloned() else {
            return Err(Error::NothingToRollBack {
                standby: st
                    .previous
                    .as_ref()
                    .or(st.candidate.as_ref())
                    .map(|s| s.state),
            });
        };
        let flip_started = Instant::now();
        let old = self.active.swap(Arc::clone(&previous));
        let flip = flip_started.elapsed();
        let (from, to) = (old.version.to_string(), previous.version.to_string());
        drop(previous);
        st.previous = Some(Standby::new(old, SlotState::RolledBack));
        st.rollbacks += 1;
        st.bake = None;
        st.changed();
        self.publish(st);
        let old_holders = st.previous.as_ref().map_or(0, |s| self.holders(&s.slot));
        let report = RollbackReport {
            from,
            to,
            flip,
            old_holders,
        };
        then(st, &report);
        tracing::warn!(target: "bluegreen", from = %report.from, to = %report.to,
            flip = ?report.flip, old_holders, "rolled back");
        Ok(report)
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
            &self.hung,
            &self.gate_worker,
        );
        drop(live);
        for check in report.checks.iter() {
            match check.status {
                crate::validation::validate::CheckStatus::Panicked => self.faults.record(
                    FaultKind::GatePanicked,
                    Some(&report.candidate),
                    format!("gate {}: {}", check.name, check.detail),
                ),
                crate::validation::validate::CheckStatus::TimedOut => self.faults.record(
                    FaultKind::Abandoned,
                    Some(&report.candidate),
                    format!("gate {}: {}", check.name, check.detail),
                ),
                _ => {}
            }
        }
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

    /// Marks the candidate failed after a refused swap.
    pub(super) fn reject(&self, report: &ValidationReport) {
        let mut st = self.state.lock();
        if let Some(s) = st.candidate.as_mut() {
            s.state = SlotState::Failed;
        }
        st.rejections += 1;
        st.last_validation = Some(report.clone());
        st.changed();
        self.publish(&st);
    }
}

/// Why there is no candidate to validate or swap: nothing staged, or only the previous
/// model in standby.
fn no_candidate<M: Model>(st: &State<M>) -> Error {
    match &st.previous {
        Some(p) => not_a_candidate(p),
        None => Error::NothingStaged,
    }
}

/// Puts a candidate taken for qualification back to staged if qualification unwinds.
struct StagedAgainOnUnwind<'a, M: Model> {
    inner: &'a Inner<M>,
    candidate: Option<&'a Arc<Slot<M>>>,
}

impl<M: Model> Drop for StagedAgainOnUnwind<'_, M> {
    fn drop(&mut self) {
        if let Some(candidate) = self.candidate.take() {
            self.inner.untake_candidate(candidate);
        }
    }
}

/// What `stage` was given (a loader, which may own the model), until it is used. Dropped
/// unused — the stage was refused — it is released inside `catch_unwind`, a panicking
/// `Drop` counted as a fault: a refusal never becomes a panic in the caller.
struct Unused<'a, F> {
    load: Option<F>,
    faults: &'a FaultLog,
    version: String,
}

impl<'a, F> Unused<'a, F> {
    fn new(load: F, faults: &'a FaultLog, version: &str) -> Self {
        Self {
            load: Some(load),
            faults,
            version: version.to_owned(),
        }
    }

    /// The loader, to be called now (once).
    fn take(&mut self) -> F {
        match self.load.take() {
            Some(load) => load,
            None => unreachable!("stage_inner takes its loader once"),
        }
    }
}

impl<F> Drop for Unused<'_, F> {
    fn drop(&mut self) {
        if let Some(load) = self.load.take()
            && let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(load)))
        {
            self.faults.record(
                FaultKind::DropPanicked,
                Some(&self.version),
                panic_text(payload.as_ref()),
            );
        }
    }
}
