//! Warm-up before a model takes traffic: always, on the gate worker with a deadline.
//!
//! It runs on the gate worker, like the gates; in `swap` (and a canary's start) it is the
//! first task of the same hand-off as the gates ([`Warming::task`], run before them, so
//! they judge a warm model), and [`warm`] runs it alone for the initial model. A freshly
//! loaded model's first calls are often far slower than steady state (111 µs vs 2.4 µs on
//! a small ONNX model), so no model becomes active cold. The samples come from,
//! in order: the [configured samples](crate::Builder::warmup_samples); else the first gate
//! that offers inputs ([`Validator::warm_up_inputs`](crate::Validator::warm_up_inputs) —
//! the golden-set gates offer golden rows); else none, and [`Model::warm_up`] is called
//! with no samples so that a model able to make its own inputs warms itself (`OnnxModel`
//! does, from its declared input schema). The number of warm-up calls is reported
//! ([`SwapReport::warm_up_calls`](crate::SwapReport::warm_up_calls)); a warm-up that made
//! none is logged as a warning.
//!
//! A warm-up that errs, panics or overruns its deadline refuses the candidate. One that
//! overruns is abandoned (threads cannot be killed) and registered as hung work, so
//! retiring the candidate later does not wait for it.

use crate::sync::Arc;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, SystemTime};

use super::actor::Actor;
use super::audit::{named, record};
use super::builder::Config;
use super::error::{Error, Result};
use super::faults::{FaultKind, FaultLog, panic_text};
use crate::journal::EventKind;
use crate::model::Model;
use crate::slot::{Hung, HungWork, Slot};
use crate::validation::{GateWorker, Supervised, Task};

/// Warms `slot` on the gate worker; returns how many calls the model made. `abandoned`
/// hears of a warm-up that overran its deadline (what hung).
pub(super) fn warm<M: Model>(
    config: &Config<M>,
    hung: &Hung,
    faults: &FaultLog,
    worker: &GateWorker,
    slot: &Arc<Slot<M>>,
    abandoned: &dyn Fn(&str),
) -> Result<usize> {
    let warming = warming(config, faults, slot);
    let outcome = worker
        .run_each(vec![warming.task(config)])
        .pop()
        .unwrap_or_else(Supervised::missing);
    warming.finish(config, hung, faults, outcome, abandoned)
}

/// A warm-up made ready to run: its samples, where they came from, and the handle
/// through which it holds the slot.
pub(super) struct Warming<'a, M: Model> {
    slot: &'a Arc<Slot<M>>,
    samples: Arc<Vec<M::Input>>,
    source: &'static str,
    /// The handle through which the warm-up holds the slot, so that an abandoned warm-up
    /// can be told apart from calls still running: a std `Arc` around the `sync` one,
    /// because hung work is registered through a std `Weak`, which loom lacks.
    #[allow(clippy::redundant_allocation)]
    held: std::sync::Arc<Arc<Slot<M>>>,
}

/// The warm-up of `slot` (see the module docs for where its samples come from).
pub(super) fn warming<'a, M: Model>(
    config: &Config<M>,
    faults: &FaultLog,
    slot: &'a Arc<Slot<M>>,
) -> Warming<'a, M> {
    let (samples, source) = if config.warmup.is_empty() {
        // Gate code, on the admin thread: a gate that panics offering inputs offers none.
        let offered = |v: &std::sync::Arc<dyn crate::validation::validate::Validator<M>>| {
            catch_unwind(AssertUnwindSafe(|| v.warm_up_inputs())).unwrap_or_else(|payload| {
                faults.record(
                    FaultKind::GatePanicked,
                    Some(slot.version),
                    format!("warm_up_inputs(): {}", panic_text(payload.as_ref())),
                );
                Vec::new()
            })
        };
        match config
            .validators
            .iter()
            .map(offered)
            .find(|inputs| !inputs.is_empty())
        {
            Some(inputs) => (Arc::new(inputs), "gates"),
            None => (Arc::new(Vec::new()), "the model itself"),
        }
    } else {
        (Arc::clone(&config.warmup), "configured samples")
    };
    Warming {
        slot,
        samples,
        source,
        held: std::sync::Arc::new(Arc::clone(slot)),
    }
}

impl<'a, M: Model> Warming<'a, M> {
    /// The warm-up as a task for the gate worker.
    pub(super) fn task(&self, config: &Config<M>) -> Task<WarmOutcome> {
        let (h, s) = (std::sync::Arc::clone(&self.held), Arc::clone(&self.samples));
        Task {
            deadline: config.warmup_deadline,
            what: format!("warm-up of {}", self.slot.version),
            work: Box::new(move || h.model.warm_up(&s).map_err(|e| e.to_string())),
            // A model hung in its warm-up would hang every gate after it.
            ends_on_overrun: true,
        }
    }

    /// What the warm-up's `outcome` means: the calls it made, or why the candidate is
    /// refused (faults recorded; an overrun registered as hung work and told to
    /// `abandoned`).
    pub(super) fn finish(
        self,
        config: &Config<M>,
        hung: &Hung,
        faults: &FaultLog,
        (outcome, ran): (Supervised<WarmOutcome>, Duration),
        abandoned: &dyn Fn(&str),
    ) -> Result<usize> {
        let Warming {
            slot, source, held, ..
        } = self;
        let reason = match outcome {
            Supervised::Done(Ok(calls)) => {
                if calls == 0 {
                    tracing::warn!(target: "bluegreen", version = %slot.version,
                    "warm-up made no calls: configure warmup_samples, a gate with inputs, \
                     or a Model::warm_up that warms itself");
                } else {
                    tracing::info!(target: "bluegreen", version = %slot.version, source, calls,
                    elapsed = ?ran, "warmed up");
                }
                return Ok(calls);
            }
            Supervised::Done(Err(e)) => format!("error: {e}"),
            Supervised::Panicked(msg) => {
                faults.record(FaultKind::WarmupPanicked, Some(slot.version), msg.clone());
                format!("panicked: {msg}")
            }
            Supervised::TimedOut => {
                let what = format!("warm-up of {}", slot.version);
                if std::sync::Arc::strong_count(&held) > 1 {
                    hung.abandon(
                        HungWork {
                            what: what.clone(),
                            versions: vec![slot.version],
                            generations: vec![slot.generation],
                            since: SystemTime::now(),
                        },
                        &held,
                    );
                }
                let message = format!(
                    "{what} overran its deadline of {:?}",
                    config.warmup_deadline
                );
                faults.record(FaultKind::Abandoned, Some(slot.version), message.clone());
                abandoned(&message);
                format!("exceeded its deadline of {:?}", config.warmup_deadline)
            }
            Supervised::NotStarted(e) => format!("could not start: {e}"),
        };
        tracing::warn!(target: "bluegreen", version = %slot.version, %reason, "warm-up failed");
        Err(Error::WarmupFailed {
            version: slot.version.to_string(),
            reason,
        })
    }
}

/// What a warm-up returns: the calls it made, or the model's error.
pub(super) type WarmOutcome = std::result::Result<usize, String>;

impl<M: Model> super::bluegreen::Inner<M> {
    /// Journals that the warm-up of `slot` was abandoned (`what` hung).
    pub(super) fn note_abandoned(&self, slot: &Slot<M>, actor: &Actor, what: &str) {
        let live = self.active.load_full();
        self.audit.note(|| {
            record(EventKind::Abandon, &live, actor)
                .subject(named(slot))
                .reason(what)
        });
    }
}
