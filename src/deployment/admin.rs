//! Admin operations, their public face: stage, unstage, validate, swap, rollback, unban,
//! content checks — and the bodies of those that only touch the standby (stage, unstage,
//! dry runs, unban). Serialized by the admin lock, which request threads never touch. The
//! plain methods act as [`Actor::Application`]; [`BlueGreen::acting_as`] names someone
//! else. Each records its decision in the journal, when there is one, before taking it.

use crate::sync::Arc;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime};

use super::actor::Actor;
use super::audit::{named, record};
use super::bluegreen::{BlueGreen, Inner, checked_identity};
use super::error::{Error, Result};
use super::faults::{FaultKind, FaultLog, panic_text};
use super::report::{RollbackReport, StageReport, SwapReport};
use super::state::{Standby, Which, not_a_candidate};
use super::status::{ContentChange, SlotState};
use crate::journal::{EventKind, Named, Value};
use crate::model::Model;
use crate::slot::Identity;
use crate::validation::validate::ValidationReport;

impl<M: Model> BlueGreen<M> {
    /// Puts `model` in the candidate slot as the candidate `identity` — a version label
    /// (`"v2"`), or an [`Identity`] with the hash of the bytes it was loaded from.
    ///
    /// An earlier candidate is retired first: bluegreen waits up to the drain timeout for
    /// its in-flight calls, then has the retirer thread drop it. The previous model — the
    /// rollback target — stays loaded, so a candidate that is later refused costs nothing
    /// (a model rolled back from is retired: it is no rollback target). In a
    /// [memory-tight](crate::Builder::memory_tight) deployment the standby is one slot and
    /// is retired whatever it holds. On [`Error::DrainTimeout`] or
    /// [`Error::RetireBacklog`] nothing changes and `model` is dropped.
    ///
    /// Refused while a canary runs ([`Error::CanaryInProgress`]), in a memory-tight
    /// deployment while a bake window runs ([`Error::BakeInProgress`]), and with a journal
    /// for a [banned](Self::unban) identity ([`Error::Banned`]).
    ///
    /// `model` already exists when this is called, so for a moment it coexists with the
    /// model it replaces; use [`stage_with`](Self::stage_with) to load only after that one
    /// is gone.
    pub fn stage(&self, identity: impl Into<Identity>, model: M) -> Result<StageReport> {
        self.inner
            .stage(&Actor::Application, identity.into(), model)
    }

    /// Like [`stage`](Self::stage), but calls `load` only after the model it replaces has
    /// been retired and dropped — and any model retired earlier that the retirer was still
    /// dropping (waiting at most the drain timeout for those): with it, a deployment holds
    /// at most three models (active, previous, candidate; two when memory-tight). A loader
    /// error — or a loader panic, caught — is returned as [`Error::Load`]; the candidate
    /// slot is then empty and the rollback target is still loaded (in a memory-tight
    /// deployment it was retired before the load).
    pub fn stage_with<F, E>(&self, identity: impl Into<Identity>, load: F) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner
            .stage_with(&Actor::Application, identity.into(), load)
    }

    /// Retires the candidate, or — when there is none — the previous model (freeing its
    /// memory; rollback is then impossible). Returns the retired version, or `None` when
    /// both slots were empty. Refused while a canary runs, and retiring the rollback
    /// target is refused while a bake window runs.
    pub fn unstage(&self) -> Result<Option<String>> {
        self.inner.unstage(&Actor::Application)
    }

    /// Runs every gate on the staged candidate without swapping (a dry run).
    ///
    /// Works on a staged or failed candidate and changes neither; the report is recorded
    /// as the status's last validation (and in the journal).
    pub fn validate(&self) -> Result<ValidationReport> {
        self.inner.validate(&Actor::Application)
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
        let report = inner.run_gates(&active, &Actor::Application);
        inner.state.lock().last_validation = Some(report.clone());
        let _ = inner.audit.fact(|| {
            record(EventKind::Validation, &active, &Actor::Application)
                .subject(named(&active))
                .detail("report", Value::Report(Box::new(report.clone())))
        });
        report
    }

    /// Warms and validates the staged candidate, then moves all new traffic to it with one
    /// atomic pointer store.
    ///
    /// The warm-up and the gates run one after another on the deployment's supervised gate
    /// worker, handed over once: the gates judge a warm model, and on a machine whose
    /// cores are busy serving the swap waits for the scheduler twice, not once per gate.
    /// If both a gate and the warm-up fail, the error is the gates' refusal.
    ///
    /// Calls already running on the old model finish on it; the old model becomes the
    /// previous model (state [`SlotState::Previous`]) so [`rollback`](Self::rollback) is
    /// instant, and the model that was previous before is retired. If a gate fails, panics
    /// or overruns, or warm-up fails, nothing changes for traffic or for the rollback
    /// target: the candidate stays staged, marked [`SlotState::Failed`], and the error
    /// carries the report (with a journal, a candidate its gates refused is banned). With
    /// a [`Bake`](crate::Bake) configured, the new model then bakes. Refused while a
    /// canary runs (promote or abort it) or a bake window runs.
    pub fn swap(&self) -> Result<SwapReport> {
        self.inner.swap(&Actor::Application)
    }

    /// Moves traffic back to the previous model at once, without re-validating it.
    ///
    /// The model rolled back from becomes [`SlotState::RolledBack`]; it is not promoted
    /// again unless staged anew (with a journal it is banned: see [`unban`](Self::unban)).
    /// A staged candidate (or a running canary) is not touched. Fails with
    /// [`Error::NothingToRollBack`] when no previous model is loaded. Ends a running bake
    /// window.
    pub fn rollback(&self) -> Result<RollbackReport> {
        self.inner.rollback(&Actor::Application)
    }

    /// Lifts every ban on `version` (whatever its content), recorded in the journal with
    /// who asked; returns how many bans were lifted (0 without a journal, which keeps no
    /// bans).
    ///
    /// A version is banned, with a journal, when it was rolled back (by the bake monitor,
    /// an operator or the application — not by the watcher following its manifest), when
    /// its gates refused it, or when it was aborted as a canary. A banned version cannot
    /// be staged again with the same content, by anyone, across restarts: this is the
    /// explicit override.
    pub fn unban(&self, version: &str) -> Result<usize> {
        self.inner.unban(&Actor::Application, version)
    }

    /// Compares `identity` — what a version's files hash to now — with the model serving
    /// under that label. When the active model has that label and was loaded from other
    /// bytes, the version was **replaced in place**: this is reported in
    /// [`Status::content_changed`](crate::Status::content_changed), logged, recorded in the
    /// journal (once per new hash), and returned as [`Error::ContentChanged`]. The model
    /// keeps serving, and the new bytes are never loaded under the old label (staging it
    /// is refused as [`Error::VersionInUse`]). `Ok` for any other label, or when either
    /// side has no hash.
    ///
    /// The repository watcher calls this on every look.
    pub fn check_content(&self, identity: &Identity) -> Result<()> {
        self.inner.check_content(&Actor::Application, identity)
    }
}

impl<M: Model> Inner<M> {
    pub(super) fn stage(&self, actor: &Actor, identity: Identity, model: M) -> Result<StageReport> {
        self.stage_inner(
            actor,
            identity,
            move || Ok::<M, std::convert::Infallible>(model),
            false,
        )
        .map(|report| StageReport {
            load: None,
            ..report
        })
    }

    pub(super) fn stage_with<F, E>(
        &self,
        actor: &Actor,
        identity: Identity,
        load: F,
    ) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.stage_inner(actor, identity, load, true)
    }

    fn stage_inner<F, E>(
        &self,
        actor: &Actor,
        identity: Identity,
        load: F,
        wait_for_drop: bool,
    ) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Until it is used, the loader (and the model `stage` was given) is disposed of
        // inside `catch_unwind` whatever refuses the stage: its `Drop` is untrusted.
        let mut load = Unused::new(load, &self.faults, identity.version());
        let identity = checked_identity(identity)?;
        let version = identity.version().to_owned();
        let _admin = self.admin.lock();
        let deadline = Instant::now() + self.config.drain_timeout;
        self.audit.ready()?;
        if let Err(banned) = self.audit.check_ban(&identity) {
            let active = self.active.load_full();
            let _ = self.audit.fact(|| {
                record(EventKind::Refusal, &active, actor)
                    .subject(unloaded(&identity))
                    .reason(banned.to_string())
            });
            tracing::warn!(target: "bluegreen", %identity, %actor, "banned version refused");
            return Err(banned);
        }
        let mut retire_previous = self.config.memory_tight;
        {
            let st = self.state.lock();
            self.refuse_during_canary(&st)?;
            if self.config.memory_tight {
                self.refuse_during_bake(&st)?;
            }
            if self.active.load().version == version {
                return Err(Error::VersionInUse {
                    version,
                    slot: "active",
                });
            }
            match &st.previous {
                Some(p) if p.state == SlotState::RolledBack => retire_previous = true,
                Some(p) if !retire_previous && p.slot.version == version => {
                    return Err(Error::VersionInUse {
                        version,
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
        let drained = self.retire_recorded(slots, wait_for_drop, deadline, actor)?;
        let drain_wait = drained.last().map_or(Duration::ZERO, |(_, wait)| *wait);
        let retired = drained.into_iter().map(|(v, _)| v).collect();
        // `stage_with` loads only once the models it replaces are gone — and any model an
        // earlier operation retired that the retirer is still dropping — waiting for them
        // until the same deadline; past it, it loads all the same (at most `max_retiring`
        // models are still in their `Drop` then).
        if wait_for_drop && !self.retirer.wait_until_empty(deadline) {
            tracing::warn!(target: "bluegreen", %version, still = ?self.retirer.backlog(),
                "loading while retired models are still being dropped");
        }
        let load_started = Instant::now();
        let model = match catch_unwind(AssertUnwindSafe(load.take())) {
            Ok(Ok(model)) => model,
            Ok(Err(e)) => {
                tracing::warn!(target: "bluegreen", %version, "candidate failed to load");
                let error = Error::Load {
                    version,
                    source: e.into(),
                };
                self.record_load_failure(actor, &identity, &error);
                return Err(error);
            }
            Err(payload) => {
                let message = panic_text(payload.as_ref());
                self.faults
                    .record(FaultKind::LoaderPanicked, Some(&version), message.clone());
                let error = Error::Load {
                    version,
                    source: format!("the loader panicked: {message}").into(),
                };
                self.record_load_failure(actor, &identity, &error);
                return Err(error);
            }
        };
        let load_time = load_started.elapsed();
        let slot = Arc::new(self.new_slot(model, &version, identity.content())?);
        let active = self.active.load_full();
        let committed = self.audit.commit(|| {
            record(EventKind::Stage, &active, actor)
                .subject(named(&slot))
                .detail("load_secs", Value::Num(load_time.as_secs_f64()))
        });
        drop(active);
        if let Err(e) = committed {
            // Not staged after all: the loaded model goes to the retirer, off this thread.
            self.discard(slot);
            return Err(e);
        }
        let report = StageReport {
            version: slot.version.to_string(),
            generation: slot.generation,
            retired,
            drain_wait,
            load: Some(load_time),
            #[cfg(feature = "quarantine")]
            quarantine: None,
        };
        let mut st = self.state.lock();
        st.candidate = Some(Standby::new(slot, SlotState::Staged));
        st.changed();
        self.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %report.version, generation = report.generation,
            retired = ?report.retired, %actor, "candidate staged");
        Ok(report)
    }

    fn record_load_failure(&self, actor: &Actor, identity: &Identity, error: &Error) {
        let active = self.active.load_full();
        let _ = self.audit.fact(|| {
            record(EventKind::LoadFailed, &active, actor)
                .subject(unloaded(identity))
                .reason(error.to_string())
        });
    }

    /// Retires the models in `slots` and records each; a record that cannot be written
    /// stops the operation (the journal is then degraded and refuses what follows).
    pub(super) fn retire_recorded(
        &self,
        slots: &[Which],
        wait_for_drop: bool,
        deadline: Instant,
        actor: &Actor,
    ) -> Result<Vec<(String, Duration)>> {
        // Their names only: holding the slots would keep them from draining.
        let subjects: Vec<Named> = {
            let st = self.state.lock();
            slots
                .iter()
                .filter_map(|&w| st.slot(w).map(|s| named(&s.slot)))
                .collect()
        };
        let retired = self.retire(slots, wait_for_drop, deadline)?;
        let active = self.active.load_full();
        for ((_, drained), subject) in retired.iter().zip(subjects) {
            self.audit.fact(|| {
                record(EventKind::Retire, &active, actor)
                    .subject(subject)
                    .detail("drain_secs", Value::Num(drained.as_secs_f64()))
            })?;
        }
        Ok(retired)
    }

    /// Retires the previous model (before the active one takes its place).
    pub(super) fn retire_previous(&self, actor: &Actor) -> Result<()> {
        let deadline = Instant::now() + self.config.drain_timeout;
        self.retire_recorded(&[Which::Previous], false, deadline, actor)
            .map(drop)
    }

    pub(super) fn unstage(&self, actor: &Actor) -> Result<Option<String>> {
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let which = {
            let st = self.state.lock();
            self.refuse_during_canary(&st)?;
            if st.candidate.is_some() {
                Which::Candidate
            } else {
                self.refuse_during_bake(&st)?;
                Which::Previous
            }
        };
        let deadline = Instant::now() + self.config.drain_timeout;
        let retired = self.retire_recorded(&[which], true, deadline, actor)?;
        Ok(retired.into_iter().next().map(|(v, _)| v))
    }

    pub(super) fn validate(&self, actor: &Actor) -> Result<ValidationReport> {
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let candidate = {
            let st = self.state.lock();
            match &st.candidate {
                Some(s) if matches!(s.state, SlotState::Staged | SlotState::Failed) => {
                    Arc::clone(&s.slot)
                }
                Some(s) => return Err(not_a_candidate(s)),
                None => return Err(super::flip::no_candidate(&st)),
            }
        };
        let report = self.run_gates(&candidate, actor);
        self.state.lock().last_validation = Some(report.clone());
        let active = self.active.load_full();
        // A dry run decides nothing: if its row cannot be written now it stays pending.
        let _ = self.audit.fact(|| {
            record(EventKind::Validation, &active, actor)
                .subject(named(&candidate))
                .detail("report", Value::Report(Box::new(report.clone())))
        });
        Ok(report)
    }

    pub(super) fn unban(&self, actor: &Actor, version: &str) -> Result<usize> {
        let _admin = self.admin.lock();
        self.audit.ready()?;
        let lifted = self.audit.bans_on(version);
        if lifted == 0 {
            return Ok(0);
        }
        let active = self.active.load_full();
        self.audit.commit(|| {
            record(EventKind::Unban, &active, actor).subject(Named {
                version: version.to_owned(),
                content: None,
                generation: 0,
            })
        })?;
        tracing::warn!(target: "bluegreen", %version, %actor, bans = lifted, "version unbanned");
        Ok(lifted)
    }

    pub(super) fn check_content(&self, actor: &Actor, identity: &Identity) -> Result<()> {
        let active = self.active.load_full();
        let (Some(loaded), Some(found)) = (active.content, identity.content()) else {
            return Ok(());
        };
        if active.version != identity.version() || loaded == found {
            return Ok(());
        }
        let error = Error::ContentChanged {
            version: identity.version().to_owned(),
            expected: loaded,
            found,
            at_start: false,
        };
        let mut st = self.state.lock();
        let known = st
            .content_changed
            .as_ref()
            .is_some_and(|(g, c)| *g == active.generation && c.found == found);
        if !known {
            st.content_changed = Some((
                active.generation,
                ContentChange {
                    version: active.version.to_owned(),
                    loaded,
                    found,
                    since: SystemTime::now(),
                },
            ));
            drop(st);
            tracing::error!(target: "bluegreen", version = %active.version,
                loaded = %loaded, found = %found,
                "the live version's files were replaced in place; the model loaded before keeps serving");
            let _ = self.audit.fact(|| {
                record(EventKind::ContentChanged, &active, actor)
                    .subject(named(&active))
                    .reason(error.to_string())
                    .detail("found", Value::Text(found.to_string()))
            });
        }
        Err(error)
    }
}

/// A row's view of a model that is not loaded (refused before or while loading).
pub(super) fn unloaded(identity: &Identity) -> Named {
    Named {
        version: identity.version().to_owned(),
        content: identity.content(),
        generation: 0,
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
