//! A candidate fails validation by error, by panic and by deadline; in every case the live
//! model keeps serving, the candidate is marked failed, and the report says which gate and
//! why.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bluegreen::{BlueGreen, CheckStatus, Error, Model, SlotState, validate};
use common::{Behavior, Tracked, Tracker};

/// A gate that runs the candidate on one input and requires an answer.
fn candidate_answers() -> impl bluegreen::Validator<Tracked> {
    validate::from_fn("candidate_answers", |cx: &validate::Context<Tracked>| {
        cx.candidate().predict(&1).map(|_| ())
    })
}

fn assert_refused_with(
    bg: &BlueGreen<Tracked>,
    gate: &str,
    status: CheckStatus,
    detail_starts: &str,
) {
    let err = bg.swap().unwrap_err();
    let Error::ValidationFailed(report) = err else {
        panic!("expected ValidationFailed, got {err}");
    };
    let check = report.check(gate).expect("gate is in the report");
    assert_eq!(check.status, status, "{report}");
    assert!(
        check.detail.starts_with(detail_starts),
        "detail {:?} should start with {detail_starts:?}",
        check.detail
    );
    assert_eq!(bg.predict(&9).unwrap(), (1, 9), "live model keeps serving");
    assert_eq!(bg.status().standby.unwrap().state, SlotState::Failed);
}

#[test]
fn candidate_returning_errors_fails_the_gate() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(candidate_answers())
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Failing)).unwrap();
    assert_refused_with(
        &bg,
        "candidate_answers",
        CheckStatus::Failed,
        "model 2 refused input 1",
    );
}

#[test]
fn candidate_panicking_inside_a_gate_fails_the_gate() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(candidate_answers())
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Panicking))
        .unwrap();
    assert_refused_with(
        &bg,
        "candidate_answers",
        CheckStatus::Panicked,
        "panicked: model 2 panicked on purpose",
    );
}

#[test]
fn candidate_overrunning_the_deadline_fails_the_gate() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(candidate_answers())
        .validation_deadline(Duration::from_millis(50))
        .drain_timeout(Duration::from_secs(5))
        .build("v1", t.model(1))
        .unwrap();
    // The candidate hangs until released: the swap can only return by giving up on it.
    bg.stage("v2", t.model_with(2, Behavior::HangsUntilReleased))
        .unwrap();
    assert_refused_with(
        &bg,
        "candidate_answers",
        CheckStatus::TimedOut,
        "exceeded its deadline of 50ms",
    );
    t.release();
    // The abandoned gate still holds the candidate; replacing it waits for that (drain),
    // then drops it on the retirer, never while the gate's call is running.
    let r = bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(r.retired, ["v2"]);
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(2) == 1));
    assert!(t.violations.lock().is_empty(), "{:?}", t.violations.lock());
}

#[test]
fn a_gate_that_panics_by_itself_fails_and_later_gates_still_run() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(validate::from_fn(
            "buggy_gate",
            |_: &validate::Context<Tracked>| -> Result<(), String> { panic!("index out of range") },
        ))
        .validator(candidate_answers())
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("expected ValidationFailed");
    };
    assert_eq!(report.checks.len(), 2);
    assert_eq!(report.checks[0].status, CheckStatus::Panicked);
    assert_eq!(report.checks[0].detail, "panicked: index out of range");
    assert_eq!(report.checks[1].status, CheckStatus::Passed);
    assert_eq!(bg.predict(&1).unwrap().0, 1);
}

#[test]
fn a_gate_can_override_the_default_deadline() {
    struct Patient;
    impl bluegreen::Validator<Tracked> for Patient {
        fn name(&self) -> &str {
            "patient"
        }
        fn validate(&self, cx: &validate::Context<Tracked>) -> validate::Verdict {
            cx.candidate().predict(&1).map(|_| ()).into()
        }
        fn deadline(&self) -> Option<Duration> {
            Some(Duration::from_secs(5))
        }
    }
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(Patient)
        .validation_deadline(Duration::from_millis(10))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage(
        "v2",
        t.model_with(2, Behavior::Slow(Duration::from_millis(100))),
    )
    .unwrap();
    let r = bg.swap().unwrap();
    assert_eq!(
        r.validation.check("patient").unwrap().status,
        CheckStatus::Passed
    );
    assert_eq!(bg.active().version(), "v2");
}

#[test]
fn measured_gates_report_value_and_bound() {
    use validate::{Bound, Verdict};
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(validate::from_fn(
            "tag_at_least_3",
            |cx: &validate::Context<Tracked>| {
                Verdict::measure(cx.candidate().tag as f64, Bound::AtLeast(3.0))
            },
        ))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("expected ValidationFailed");
    };
    let c = report.check("tag_at_least_3").unwrap();
    assert_eq!(
        (c.measured, c.bound),
        (Some(2.0), Some(Bound::AtLeast(3.0)))
    );
    let text = report.to_string();
    assert!(
        text.contains("[FAIL] tag_at_least_3: 2.000000 (required >= 3)"),
        "{text}"
    );
}

#[test]
fn warm_up_failure_by_error_panic_and_deadline_refuses_the_candidate() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .warmup_samples(vec![1, 2])
        .warmup_deadline(Duration::from_millis(50))
        .drain_timeout(Duration::from_secs(5))
        .build("v1", t.model(1))
        .unwrap();
    let cases = [
        (Behavior::Failing, "error: model 2 refused input 1"),
        (Behavior::Panicking, "panicked: model 3 panicked on purpose"),
        (
            Behavior::Slow(Duration::from_millis(300)),
            "exceeded its deadline of 50ms",
        ),
    ];
    for (i, (behavior, reason)) in cases.into_iter().enumerate() {
        let tag = i as u64 + 2;
        bg.stage(format!("v{tag}"), t.model_with(tag, behavior))
            .unwrap();
        let err = bg.swap().unwrap_err();
        assert!(
            matches!(&err, Error::WarmupFailed { reason: r, .. } if r == reason),
            "{behavior:?}: {err}"
        );
        assert_eq!(bg.predict(&9).unwrap(), (1, 9));
        assert_eq!(bg.status().standby.unwrap().state, SlotState::Failed);
    }
    assert_eq!(bg.status().rejections, 3);
}

#[test]
fn shared_validators_serve_several_deployments() {
    let t = Tracker::new();
    let gate: Arc<dyn bluegreen::Validator<Tracked>> = Arc::new(common::tag_is_good());
    let a = BlueGreen::builder()
        .shared_validator(Arc::clone(&gate))
        .build("a1", t.model(1))
        .unwrap();
    let b = BlueGreen::builder()
        .shared_validator(gate)
        .build("b1", t.model(10))
        .unwrap();
    a.stage("a2", t.model(2).bad()).unwrap();
    b.stage("b2", t.model(11)).unwrap();
    assert!(a.swap().is_err());
    assert!(b.swap().is_ok());
}

#[test]
fn validate_active_judges_the_initial_model_without_changing_anything() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(common::tag_is_good())
        .build("v1", t.model(1).bad())
        .unwrap();
    let r = bg.validate_active();
    assert_eq!((r.candidate.as_str(), r.live.as_str()), ("v1", "v1"));
    assert_eq!(
        r.failures().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["tag_is_good"]
    );
    assert_eq!(bg.predict(&3).unwrap(), (1, 3), "it keeps serving");
    let s = bg.status();
    assert_eq!((s.swaps, s.rejections), (0, 0));
    assert!(!s.last_validation.unwrap().passed());
}
