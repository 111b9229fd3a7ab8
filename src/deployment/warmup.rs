//! Warm-up before a model takes traffic: always, on the gate worker with a deadline.
//!
//! It runs on the gate worker, like the gates. A freshly loaded model's first calls are often far slower than steady state (111 µs vs
//! 2.4 µs on a small ONNX model), so no model becomes active cold. The samples come from,
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

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::actor::Actor;
use super::audit::{named, record};
use super::builder::Config;
use super::error::{Error, Result};
use super::faults::{FaultKind, FaultLog, panic_text};
use crate::journal::EventKind;
use crate::model::Model;
use crate::slot::{Hung, HungWork, Slot};
use crate::validation::{GateWorker, Supervised};

/// Warms `slot`; returns how many calls the model made. `abandoned` hears of a warm-up
/// that overran its deadline (what hung).
pub(super) fn warm<M: Model>(
    config: &Config<M>,
    hung: &Hung,
    faults: &FaultLog,
    worker: &GateWorker,
    slot: &Arc<Slot<M>>,
    abandoned: &dyn Fn(&str),
) -> Result<usize> {
    let (samples, source) = if config.warmup.is_empty() {
        // Gate code, on the admin thread: a gate that panics offering inputs offers none.
        let offered = |v: &Arc<dyn crate::validation::validate::Validator<M>>| {
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
    // The thread holds the slot through this handle, so that an abandoned warm-up can be
    // told apart from calls still running.
    let held = Arc::new(Arc::clone(slot));
    let (h, s) = (Arc::clone(&held), Arc::clone(&samples));
    let started = Instant::now();
    let what = format!("warm-up of {}", slot.version);
    let outcome = worker.run(config.warmup_deadline, what, move || {
        h.model.warm_up(&s).map_err(|e| e.to_string())
    });
    let reason = match outcome {
        Supervised::Done(Ok(calls)) => {
            if calls == 0 {
                tracing::warn!(target: "bluegreen", version = %slot.version,
                    "warm-up made no calls: configure warmup_samples, a gate with inputs, \
                     or a Model::warm_up that warms itself");
            } else {
                tracing::info!(target: "bluegreen", version = %slot.version, source, calls,
                    elapsed = ?started.elapsed(), "warmed up");
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
            if Arc::strong_count(&held) > 1 {
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

impl<M: Model> super::bluegreen::Inner<M> {
    /// Warms a candidate (see the module docs); a warm-up abandoned is journaled.
    pub(super) fn warm(&self, slot: &Arc<Slot<M>>, actor: &Actor) -> Result<usize> {
        let abandoned = |what: &str| {
            let live = self.active.load_full();
            self.audit.note(|| {
                record(EventKind::Abandon, &live, actor)
                    .subject(named(slot))
                    .reason(what)
            });
        };
        warm(
            &self.config,
            &self.hung,
            &self.faults,
            &self.gate_worker,
            slot,
            &abandoned,
        )
    }
}
