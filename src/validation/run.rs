//! Running the configured gates on a candidate: one after another, in configuration
//! order, in one hand-off to the deployment's supervised gate worker, each with its
//! deadline.

use std::panic::{AssertUnwindSafe, catch_unwind};
// Contexts and gates are std `Arc`s (a context is registered as hung work through a
// `Weak`, which loom lacks); the slots they hold are the `sync` shim's.
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::context::{Context, ShadowStatus};
use super::report::{Check, CheckStatus, ValidationReport};
use super::validate::{Validator, Verdict};
use super::worker::{GateWorker, Supervised, Task};
use crate::model::{Model, panic_message};
use crate::slot::{Hung, HungWork, Slot};

/// Runs every validator, in order, on the gate worker, each with its deadline — after
/// `first` (the candidate's warm-up), if given, in the same hand-off: the gates then
/// judge a warm model, and a loaded machine wakes the worker once for both. Returns the
/// report (its `elapsed` without `first`) and `first`'s outcome.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_all<M: Model, W: Send + 'static>(
    validators: &[Arc<dyn Validator<M>>],
    candidate: &crate::sync::Arc<Slot<M>>,
    live: &crate::sync::Arc<Slot<M>>,
    shadow: Option<ShadowStatus>,
    default_deadline: Duration,
    hung: &Hung,
    worker: &GateWorker,
    first: Option<Task<W>>,
) -> (ValidationReport, Option<(Supervised<W>, Duration)>) {
    let started = Instant::now();
    let cx = Arc::new(Context::new(
        crate::sync::Arc::clone(candidate),
        crate::sync::Arc::clone(live),
        shadow,
    ));
    let (checks, first) = run_gates(validators, &cx, default_deadline, worker, first);
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
    let first_ran = first.as_ref().map_or(Duration::ZERO, |(_, ran)| *ran);
    let report = ValidationReport {
        candidate: candidate.version.to_string(),
        live: live.version.to_string(),
        checks,
        elapsed: started.elapsed().saturating_sub(first_ran),
        finished_at: SystemTime::now(),
    };
    (report, first)
}

/// What a task of one validation returns: the first task's value, or a gate's verdict.
enum Step<W> {
    First(W),
    Gate(Verdict),
}

/// A gate's name and deadline, asked on the admin thread; a panic there is its check.
fn ask<M: Model>(
    validator: &Arc<dyn Validator<M>>,
    default_deadline: Duration,
) -> Result<(String, Duration), Box<Check>> {
    let asked = catch_unwind(AssertUnwindSafe(|| {
        (validator.name().to_owned(), validator.deadline())
    }));
    asked
        .map(|(name, deadline)| (name, deadline.unwrap_or(default_deadline)))
        .map_err(|payload| {
            Box::new(Check {
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
                elapsed: Duration::ZERO,
            })
        })
}

/// Every gate's check, in order, and `first`'s outcome: all in one hand-off to the
/// worker, one after another, each with its own deadline.
fn run_gates<M: Model, W: Send + 'static>(
    validators: &[Arc<dyn Validator<M>>],
    cx: &Arc<Context<M>>,
    default_deadline: Duration,
    worker: &GateWorker,
    first: Option<Task<W>>,
) -> (Vec<Check>, Option<(Supervised<W>, Duration)>) {
    let asked: Vec<Result<(String, Duration), Box<Check>>> = validators
        .iter()
        .map(|v| ask(v, default_deadline))
        .collect();
    let has_first = first.is_some();
    let first = first.into_iter().map(|t| Task {
        deadline: t.deadline,
        what: t.what,
        work: Box::new(move || Step::First((t.work)())) as Box<dyn FnOnce() -> Step<W> + Send>,
        ends_on_overrun: t.ends_on_overrun,
    });
    let tasks: Vec<Task<Step<W>>> = first
        .chain(
            validators
                .iter()
                .zip(&asked)
                .filter_map(|(v, a)| a.as_ref().ok().map(|(name, deadline)| (v, name, *deadline)))
                .map(|(v, name, deadline)| {
                    let (v, c) = (Arc::clone(v), Arc::clone(cx));
                    Task {
                        deadline,
                        what: format!("gate {name} on candidate {}", cx.candidate_version()),
                        work: Box::new(move || Step::Gate(v.validate(&c))),
                        ends_on_overrun: false,
                    }
                }),
        )
        .collect();
    let mut outcomes = worker.run_each(tasks).into_iter();
    let first = has_first.then(|| {
        let (outcome, ran) = outcomes.next().unwrap_or_else(Supervised::missing);
        let outcome = outcome.then(|step| match step {
            Step::First(w) => Supervised::Done(w),
            Step::Gate(_) => out_of_order(),
        });
        (outcome, ran)
    });
    let checks = asked
        .into_iter()
        .map(|a| match a {
            Err(check) => *check,
            Ok((name, deadline)) => {
                let (outcome, elapsed) = outcomes.next().unwrap_or_else(Supervised::missing);
                let outcome = outcome.then(|step| match step {
                    Step::Gate(verdict) => Supervised::Done(verdict),
                    Step::First(_) => out_of_order(),
                });
                check(name, deadline, outcome, elapsed, cx)
            }
        })
        .collect();
    (checks, first)
}

/// An outcome where the other kind was due (outcomes come back in task order, so never).
fn out_of_order<T>() -> Supervised<T> {
    Supervised::NotStarted("out of order".to_owned())
}

fn check<M: Model>(
    name: String,
    deadline: Duration,
    outcome: Supervised<Verdict>,
    elapsed: Duration,
    cx: &Context<M>,
) -> Check {
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
