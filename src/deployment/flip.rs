//! Moving traffic: swap and rollback, and the steps they share with the canary
//! operations — qualifying a candidate (gates, warm-up), making room for the previous
//! model, recording the move, the flip itself, the rollback flip. The flips happen under
//! the state lock, so the bake monitor's automatic rollback (which takes only that lock)
//! never waits for a slow admin operation.

use crate::sync::Arc;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::actor::Actor;
use super::audit::{named, record};
use super::bluegreen::Inner;
use super::error::{Error, Result};
use super::faults::{FaultKind, panic_text};
use super::metrics::Event;
use super::report::{RollbackReport, SwapReport};
use super::state::{BakeRun, Standby, State, not_a_candidate};
use super::status::SlotState;
use crate::journal::{EventKind, Value};
use crate::model::Model;
use crate::slot::{ContentHash, Slot};
use crate::traffic::shadow::ShadowRuntime;
use crate::validation::validate::{CheckStatus, ValidationReport};
use crate::validation::{Supervised, Task};

use super::warmup;

/// How long a rollback waits for an automatic one being recorded (which itself waits at
/// most a second for the disk).
const CLAIM_WAIT: Duration = Duration::from_secs(10);

impl<M: Model> Inner<M> {
    pub(super) fn swap(&self, actor: &Actor) -> Result<SwapReport> {
        let started = Instant::now();
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let (candidate, report, warm_up, warm_up_calls) = self.qualify_candidate(actor)?;
        self.make_room_for_previous(&candidate, actor)?;
        self.commit_move(EventKind::Swap, &candidate, &report, actor)
            .inspect_err(|_| self.untake_candidate(&candidate))?;
        Ok(self.flip_to(candidate, report, warm_up, warm_up_calls, started, actor))
    }

    pub(super) fn rollback(&self, actor: &Actor) -> Result<RollbackReport> {
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let mut st = self.state.lock();
        // An automatic rollback being recorded right now: let it finish, then look again.
        let deadline = Instant::now() + CLAIM_WAIT;
        while st.bake.is_some_and(|b| b.claimed) {
            if self
                .claim_released
                .wait_until(&mut st, deadline)
                .timed_out()
                && st.bake.is_some_and(|b| b.claimed)
            {
                let version = self.active.load().version.to_string();
                return Err(Error::BakeInProgress { version });
            }
        }
        let Some(target) = st.rollback_target().cloned() else {
            return Err(nothing_to_roll_back(&st));
        };
        let from = self.active.load_full();
        let claimed = self.claim(&mut st, from.generation);
        drop(st);
        let committed = self.audit.commit(|| {
            record(EventKind::Rollback, &target, actor)
                .subject(named(&from))
                .from(named(&from))
                .ban(actor.bans_what_it_leaves())
                .reason(format!("rolled back by {actor}"))
        });
        let mut st = self.state.lock();
        let result = match committed {
            Ok(()) => self.roll_back_in(&mut st, |_, _| {}),
            Err(e) => {
                if claimed && let Some(b) = st.bake.as_mut() {
                    b.claimed = false;
                }
                Err(e)
            }
        };
        drop(st);
        self.claim_released.notify_all();
        result
    }

    /// Claims the running bake on `generation` for a rollback being recorded; whether
    /// there was one.
    pub(super) fn claim(&self, st: &mut State<M>, generation: u64) -> bool {
        match st.bake.as_mut() {
            Some(b) if b.generation == generation => {
                b.claimed = true;
                true
            }
            _ => false,
        }
    }

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
    pub(super) fn new_slot(
        &self,
        model: M,
        version: &str,
        content: Option<ContentHash>,
    ) -> Result<Slot<M>> {
        Slot::new(model, version, content, self.config.timed).map_err(|(model, message)| {
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
        actor: &Actor,
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
        let qualified = self.qualify(&candidate, actor);
        std::mem::forget(guard);
        let (report, warm_up, warm_up_calls) = qualified?;
        Ok((candidate, report, warm_up, warm_up_calls))
    }

    /// Warms a candidate taken with `take_candidate` and runs the gates on it, in one
    /// hand-off to the gate worker (the gates judge a warm model). On failure the
    /// candidate is marked failed, the refusal recorded (a gate refusal bans it), and
    /// traffic is untouched. A failed gate is the refusal's reason before a failed
    /// warm-up — unless the warm-up overran its deadline, which ends the hand-off before
    /// the gates (a model hung there would hang each gate in turn).
    pub(super) fn qualify(
        &self,
        candidate: &Arc<Slot<M>>,
        actor: &Actor,
    ) -> Result<(ValidationReport, Duration, usize)> {
        let warming = warmup::warming(&self.config, &self.faults, candidate);
        let (report, warmed) =
            self.run_gates_with(candidate, actor, Some(warming.task(&self.config)));
        let warmed = warmed.unwrap_or_else(Supervised::missing);
        let ran = warmed.1;
        // An overrun warm-up ended the hand-off: the gates did not run, and the refusal
        // is the warm-up's.
        let overran = matches!(warmed.0, Supervised::TimedOut);
        let abandoned = |what: &str| self.note_abandoned(candidate, actor, what);
        let warmed = warming.finish(&self.config, &self.hung, &self.faults, warmed, &abandoned);
        if overran && let Err(e) = warmed {
            self.reject(&report);
            self.record_refusal(candidate, actor, &report, false, e.to_string());
            return Err(e);
        }
        if !report.passed() {
            self.reject(&report);
            self.record_refusal(candidate, actor, &report, true, report.failure_summary());
            return Err(Error::ValidationFailed(Box::new(report)));
        }
        match warmed {
            Ok(calls) => Ok((report, ran, calls)),
            Err(e) => {
                self.reject(&report);
                self.record_refusal(candidate, actor, &report, false, e.to_string());
                Err(e)
            }
        }
    }

    /// A refusal already happened (the candidate is marked failed): recorded after the
    /// fact; a row that cannot be written stays pending and the refusal stands.
    fn record_refusal(
        &self,
        candidate: &Slot<M>,
        actor: &Actor,
        report: &ValidationReport,
        ban: bool,
        reason: String,
    ) {
        let active = self.active.load_full();
        let _ = self.audit.fact(|| {
            record(EventKind::Refusal, &active, actor)
                .subject(named(candidate))
                .ban(ban)
                .reason(reason)
                .detail("report", Value::Report(Box::new(report.clone())))
        });
    }

    /// Before a qualified candidate becomes active, the model that was previous until now
    /// is retired (the old active takes its place). On failure the candidate is staged
    /// again, unharmed.
    pub(super) fn make_room_for_previous(
        &self,
        candidate: &Arc<Slot<M>>,
        actor: &Actor,
    ) -> Result<()> {
        self.retire_previous(actor).inspect_err(|_| {
            self.untake_candidate(candidate);
        })
    }

    /// Records that traffic is about to move to `candidate` (a swap or a canary
    /// promotion); on `Err` it must not move.
    pub(super) fn commit_move(
        &self,
        kind: EventKind,
        candidate: &Slot<M>,
        report: &ValidationReport,
        actor: &Actor,
    ) -> Result<()> {
        let active = self.active.load_full();
        self.audit.commit(|| {
            record(kind, candidate, actor)
                .subject(named(candidate))
                .from(named(&active))
                .detail("bake", Value::Bool(self.config.bake.is_some()))
                .detail("report", Value::Report(Box::new(report.clone())))
        })
    }

    /// The flip: `candidate` becomes active, the old active becomes the previous model.
    pub(super) fn flip_to(
        &self,
        candidate: Arc<Slot<M>>,
        report: ValidationReport,
        warm_up: Duration,
        warm_up_calls: usize,
        started: Instant,
        actor: &Actor,
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
            st.bake = Some(BakeRun::new(candidate.generation));
        }
        self.publish(&st);
        let old_holders = st.previous.as_ref().map_or(0, |s| self.holders(&s.slot));
        drop(st);
        drop(candidate);

        self.count(Event::Swapped);
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
            flip = ?flip, old_holders, baking = self.config.bake.is_some(), %actor, "swapped");
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
            return Err(nothing_to_roll_back(st));
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
        self.count(Event::RolledBack);
        tracing::warn!(target: "bluegreen", from = %report.from, to = %report.to,
            flip = ?report.flip, old_holders, "rolled back");
        Ok(report)
    }

    pub(super) fn run_gates(&self, candidate: &Arc<Slot<M>>, actor: &Actor) -> ValidationReport {
        self.run_gates_with::<()>(candidate, actor, None).0
    }

    /// [`run_gates`](Self::run_gates) after `first` (a warm-up) in the same hand-off to
    /// the gate worker; returns `first`'s outcome too.
    pub(super) fn run_gates_with<W: Send + 'static>(
        &self,
        candidate: &Arc<Slot<M>>,
        actor: &Actor,
        first: Option<Task<W>>,
    ) -> (ValidationReport, Option<(Supervised<W>, Duration)>) {
        let live = self.active.load_full();
        let shadow = self
            .shadow
            .as_ref()
            .and_then(ShadowRuntime::status)
            .filter(|s| s.version == *candidate.version);
        let (report, first) = crate::validation::run_all(
            &self.config.validators,
            candidate,
            &live,
            shadow,
            self.config.validation_deadline,
            &self.hung,
            &self.gate_worker,
            first,
        );
        self.count(Event::Validated(&report));
        for check in report.checks.iter() {
            match check.status {
                CheckStatus::Panicked => self.faults.record(
                    FaultKind::GatePanicked,
                    Some(&report.candidate),
                    format!("gate {}: {}", check.name, check.detail),
                ),
                CheckStatus::TimedOut => {
                    let what = format!("gate {}: {}", check.name, check.detail);
                    self.faults
                        .record(FaultKind::Abandoned, Some(&report.candidate), what.clone());
                    self.audit.note(|| {
                        record(EventKind::Abandon, &live, actor)
                            .subject(named(candidate))
                            .reason(what)
                    });
                }
                _ => {}
            }
        }
        drop(live);
        if report.passed() {
            tracing::info!(target: "bluegreen", candidate = %report.candidate,
                live = %report.live, gates = report.checks.len(), elapsed = ?report.elapsed,
                "validation passed");
        } else {
            tracing::warn!(target: "bluegreen", candidate = %report.candidate,
                live = %report.live, failed = %report.failure_summary(),
                elapsed = ?report.elapsed, "validation failed");
        }
        (report, first)
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
        drop(st);
        self.count(Event::Rejected);
    }
}

/// Why there is no candidate to validate or swap: nothing staged, or only the previous
/// model in standby.
pub(super) fn no_candidate<M: Model>(st: &State<M>) -> Error {
    match &st.previous {
        Some(p) => not_a_candidate(p),
        None => Error::NothingStaged,
    }
}

fn nothing_to_roll_back<M: Model>(st: &State<M>) -> Error {
    Error::NothingToRollBack {
        standby: st
            .previous
            .as_ref()
            .or(st.candidate.as_ref())
            .map(|s| s.state),
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
