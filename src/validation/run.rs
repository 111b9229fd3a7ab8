//! Running the configured gates on a candidate: one after another, in configuration
//! order, each on the deployment's supervised gate worker with its deadline.

use std::panic::{AssertUnwindSafe, catch_unwind};
// Contexts and gates are std `Arc`s (a context is registered as hung work through a
// `Weak`, which loom lacks); the slots they hold are the `sync` shim's.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::context::{Context, ShadowStatus};
use super::report::{Check, CheckStatus, ValidationReport};
use super::validate::Validator;
use super::worker::{GateWorker, Supervised};
use crate::model::{Model, panic_message};
use crate::slot::{Hung, HungWork, Slot};

/// Runs every validator, in order, each on the gate worker with its deadline.
pub(crate) fn run_all<M: Model>(
    validators: &[Arc<dyn Validator<M>>],
    candidate: &crate::sync::Arc<Slot<M>>,
    live: &crate::sync::Arc<Slot<M>>,
    shadow: Option<ShadowStatus>,
    default_deadline: Duration,
    hung: &Hung,
    worker: &GateWorker,
) -> ValidationReport {
    let started = Instant::now();
    let cx = Arc::new(Context::new(
        crate::sync::Arc::clone(candidate),
        crate::sync::Arc::clone(live),
        shadow,
    ));
    let checks: Vec<Check> = validators
        .iter()
        .map(|v| run_one(v, &cx, default_deadline, worker))
        .collect();
    let overran: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == CheckStatus::TimedOut)
        .map(|c| c.name.as_str())
        .collect();
    // Gates that overran still run, holding the context and through it one reference to
    // each model: register them, so retiring those models does not wait on them.
    if !overran.is_empty() && Arc::strong_count(&cx) > 1 {
        let what = format!(
            "gate {} on candidate {}",
            overran.join(", "),
            candidate.version
        );
        hung.abandon(
            HungWork {
                what,
                versions: vec![candidate.version, live.version],
                generations: vec![candidate.generation, live.generation],
                since: SystemTime::now(),
            },
            &cx,
        );
    }
    ValidationReport {
        candidate: candidate.version.to_string(),
        live: live.version.to_string(),
        checks,
        elapsed: started.elapsed(),
        finished_at: SystemTime::now(),
    }
}

fn run_one<M: Model>(
    validator: &Arc<dyn Validator<M>>,
    cx: &Arc<Context<M>>,
    default_deadline: Duration,
    worker: &GateWorker,
) -> Check {
    let started = Instant::now();
    // Gate code, on the admin thread: guarded like the rest of it.
    let asked = catch_unwind(AssertUnwindSafe(|| {
        (validator.name().to_owned(), validator.deadline())
    }));
    let (name, deadline) = match asked {
        Ok((name, deadline)) => (name, deadline.unwrap_or(default_deadline)),
        Err(payload) => {
            return Check {
                name: "(unnamed gate)".to_owned(),
                status: CheckStatus::Panicked,
                measured: None,
                bound: None,
                interval: None,
                detail: format!(
                    "panicked in name() or deadline(): {}",
                    panic_message(payload.as_ref())
                        .unwrap_or_else(|| "non-string panic payload".to_owned())
                ),
                elapsed: started.elapsed(),
            };
        }
    };
    let (v, c) = (Arc::clone(validator), Arc::clone(cx));
    let what = format!("gate {name} on candidate {}", cx.candidate_version());
    let outcome = worker.run(deadline, what, move || v.validate(&c));
    let elapsed = started.elapsed();
    let (status, measured, bound, interval, detail) = match outcome {
        Supervised::Done(v) => {
            let status = if v.passed {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            };
            (status, v.measured, v.bound, v.interval, v.detail)
        }
        Supervised::Panicked(msg) => (
            CheckStatus::Panicked,
            None,
            None,
            None,
            format!("panicked: {msg}"),
        ),
        Supervised::TimedOut => (
            CheckStatus::TimedOut,
            None,
            None,
            None,
            format!("exceeded its deadline of {deadline:?}"),
        ),
        Supervised::NotStarted(e) => (
            CheckStatus::Failed,
            None,
            None,
            None,
            format!("could not start: {e}"),
        ),
    };
    tracing::debug!(target: "bluegreen", gate = %name, candidate = %cx.candidate_version(),
        %status, ?elapsed, "gate finished");
    Check {
        name,
        status,
        measured,
        bound,
        interval,
        detail,
        elapsed,
    }
}
