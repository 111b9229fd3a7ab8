//! The safety net never fails silently (issue #12): each test reproduces one hole a new user
//! found — with real panics, real hangs released by the test, real slow drops — and proves
//! that the deployment counts it, reports it with the version, keeps the live model serving
//! and stays operable.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use bluegreen::{Bake, BlueGreen, Error, FaultKind, Model, SlotState, Validator, validate};
use common::{Behavior, OnDrop, Tracked, Tracker, wait_until};

const PATIENCE: Duration = Duration::from_secs(20);

/// Calls `predict` (catching the model's panics) until `done` holds, bounded by PATIENCE.
fn drive(bg: &BlueGreen<Tracked>, mut done: impl FnMut(&BlueGreen<Tracked>) -> bool) {
    let ok = wait_until(PATIENCE, || {
        for i in 0..10 {
            let _ = catch_unwind(AssertUnwindSafe(|| bg.predict(&i)));
        }
        done(bg)
    });
    assert!(ok, "condition not reached: {}", bg.status());
}

// Item 1: a call whose model panics counted as finished and not failed, so a model that
// panics on every call showed `errors = 0` and the bake window never rolled it back.
#[test]
fn a_model_panicking_on_every_call_counts_as_failing_and_the_bake_rolls_it_back() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .bake(
            Bake::for_duration(Duration::from_secs(60))
                .max_error_rate(0.05)
                .min_samples(10)
                .check_every(Duration::from_millis(2)),
        )
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Panicking))
        .unwrap();
    bg.swap().unwrap();

    for i in 0..5 {
        let unwound = catch_unwind(AssertUnwindSafe(|| bg.predict(&i)));
        assert!(unwound.is_err(), "the model's panic reaches the caller");
    }
    let s = bg.status();
    if s.active.version == "v2" {
        assert_eq!((s.active.errors, s.active.panics), (5, 5), "{s}");
    }

    drive(&bg, |bg| bg.status().auto_rollbacks == 1);
    let s = bg.status();
    assert_eq!(s.active.version, "v1");
    let record = s.last_auto_rollback.unwrap();
    assert_eq!((record.from.as_str(), record.to.as_str()), ("v2", "v1"));
    assert!(
        record.reason.starts_with("error rate 100.00%"),
        "{}",
        record.reason
    );
    let standby = s.standby.unwrap();
    assert_eq!(standby.state, SlotState::RolledBack);
    assert_eq!(standby.errors, standby.panics, "every failure was a panic");
    assert!(standby.panics >= 10, "{standby:?}");
    assert_eq!(bg.predict(&7).unwrap(), (1, 7), "v1 serves again");
}

#[test]
fn a_panic_inside_a_pinned_call_is_counted_on_the_pinned_model() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model_with(1, Behavior::Panicking)).unwrap();
    let pinned = bg.active();
    assert!(catch_unwind(AssertUnwindSafe(|| pinned.predict(&1))).is_err());
    drop(pinned);
    let s = bg.status();
    assert_eq!(
        (s.active.requests, s.active.errors, s.active.panics),
        (1, 1, 1)
    );
    assert!(s.to_string().contains("1 errors (1 panicked)"), "{s}");
}

// Item 8: answers did not say which version computed them.
#[test]
fn versioned_answers_name_the_model_that_computed_them_through_swaps_and_canaries() {
    let t = Tracker::new();
    let bg = Arc::new(BlueGreen::new("v1", t.model(1)).unwrap());
    let first = bg.predict_versioned(&5);
    assert_eq!(first.output, Ok((1, 5)));
    assert_eq!(first.version, "v1");
    assert_eq!(first.generation, bg.active().generation());

    bg.stage("v2", t.model(2)).unwrap();
    bg.start_canary(50.0).unwrap();
    let mut seen = [0u32; 2];
    for user in 0..400u64 {
        let answer = bg.predict_keyed_versioned(format!("user-{user}"), &user);
        let (tag, input) = answer.output.unwrap();
        assert_eq!(input, user);
        let expected = match answer.version {
            "v1" => 1,
            "v2" => 2,
            other => panic!("unknown version {other}"),
        };
        assert_eq!(tag, expected, "answer attributed to the wrong version");
        seen[expected as usize - 1] += 1;
    }
    assert!(
        seen[0] > 100 && seen[1] > 100,
        "both versions answered: {seen:?}"
    );

    bg.promote_canary().unwrap();
    let errored = {
        bg.stage("v3", t.model_with(3, Behavior::Failing)).unwrap();
        bg.swap().unwrap();
        bg.predict_versioned(&9)
    };
    assert_eq!(errored.version, "v3", "an error is attributed too");
    assert!(errored.output.is_err());
    assert!(errored.map(|r| r.is_err()).output);
}

fn failing_bake() -> Bake {
    Bake::for_duration(Duration::from_secs(60))
        .max_error_rate(0.05)
        .min_samples(10)
        .check_every(Duration::from_millis(2))
}

/// Stages a model that fails every call, swaps to it and drives traffic until the bake
/// has rolled back `n` times in all.
fn bad_release(bg: &BlueGreen<Tracked>, t: &Arc<Tracker>, tag: u64, n: u64) {
    bg.stage(format!("v{tag}"), t.model_with(tag, Behavior::Failing))
        .unwrap();
    bg.swap().unwrap();
    drive(bg, |bg| bg.status().auto_rollbacks == n);
}

// Item 2: a panicking auto-rollback hook killed the bake monitor: no bad model was ever
// rolled back again, and every later stage was refused with BakeInProgress.
#[test]
fn a_panicking_rollback_hook_is_counted_and_the_monitor_keeps_rolling_back() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .bake(failing_bake())
        .on_auto_rollback(|r| panic!("pager exploded while reporting {}", r.from))
        .build("v1", t.model(1))
        .unwrap();
    bad_release(&bg, &t, 2, 1);
    assert!(
        wait_until(PATIENCE, || bg
            .status()
            .faults
            .count(FaultKind::HookPanicked)
            == 1),
        "{}",
        bg.status()
    );
    let fault = bg.status().faults.recent.last().cloned().unwrap();
    assert_eq!(fault.kind, FaultKind::HookPanicked);
    assert_eq!(fault.version.as_deref(), Some("v2"));
    assert_eq!(fault.message, "pager exploded while reporting v2");

    // The monitor is alive: the next bad release is rolled back too, and staging works.
    bad_release(&bg, &t, 3, 2);
    assert!(wait_until(PATIENCE, || {
        bg.status().faults.count(FaultKind::HookPanicked) == 2
    }));
    bg.stage("v4", t.model(4)).unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.predict(&1).unwrap(), (4, 1));
}

#[test]
fn a_hung_rollback_hook_neither_stops_the_monitor_nor_blocks_shutdown() {
    let t = Tracker::new();
    let (entered_tx, entered) = crossbeam_channel::unbounded::<String>();
    let (release_tx, release) = crossbeam_channel::bounded::<()>(0);
    let bg = BlueGreen::builder()
        .bake(failing_bake())
        .shutdown_timeout(Duration::from_millis(100))
        .on_auto_rollback(move |r| {
            let _ = entered_tx.send(r.from.clone());
            let _ = release.recv(); // hangs until the test lets go
        })
        .build("v1", t.model(1))
        .unwrap();
    bad_release(&bg, &t, 2, 1);
    assert_eq!(entered.recv_timeout(PATIENCE).unwrap(), "v2");
    // The hook is stuck on v2's rollback; v3 and v4 are rolled back all the same.
    bad_release(&bg, &t, 3, 2);
    bad_release(&bg, &t, 4, 3);
    assert_eq!(bg.status().active.version, "v1");
    // Dropping the deployment does not wait forever for the hook.
    drop(bg);
    assert!(wait_until(PATIENCE, || t.alive() == 0), "models released");
    drop(release_tx); // lets the hook thread finish
}

// Item 3: a panicking Drop killed the retirer thread; the next panicking drop panicked in
// the admin caller's stage_with; two panicking drops at shutdown aborted the process.
#[test]
fn panicking_drops_are_counted_and_neither_the_retirer_nor_the_caller_sees_them() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1).dropping(OnDrop::Panics)).unwrap();
    bg.stage("v2", t.model(2).dropping(OnDrop::Panics)).unwrap();
    bg.stage("v3", t.model(3).dropping(OnDrop::Panics)).unwrap(); // retires v2
    bg.stage_with("v4", || Ok::<_, Error>(t.model(4).dropping(OnDrop::Panics)))
        .unwrap(); // retires v3 and waits for its drop
    // A drop is counted as it starts and its fault once it has unwound: wait for both.
    assert!(wait_until(PATIENCE, || t.drops_of(2) == 1
        && t.drops_of(3) == 1
        && bg.status().faults.count(FaultKind::DropPanicked) == 2));
    let faults = bg.status().faults;
    assert_eq!(faults.count(FaultKind::DropPanicked), 2, "{faults:?}");
    let versions: Vec<_> = faults.recent.iter().map(|f| f.version.clone()).collect();
    assert_eq!(versions, [Some("v2".to_owned()), Some("v3".to_owned())]);
    assert_eq!(
        faults.recent[0].message,
        "drop of model 2 panicked on purpose"
    );
    // The retirer still works.
    bg.swap().unwrap();
    bg.stage("v5", t.model(5)).unwrap();
    bg.swap().unwrap(); // retires v1
    assert!(wait_until(PATIENCE, || t.drops_of(1) == 1));
    assert!(
        wait_until(PATIENCE, || bg
            .status()
            .faults
            .count(FaultKind::DropPanicked)
            == 3),
        "{:?}",
        bg.status().faults
    );
    // Shutdown drops v4 (previous) and v5 (active): one of them panics, no abort.
    bg.stage("v6", t.model(6).dropping(OnDrop::Panics)).unwrap();
    drop(bg);
    assert!(
        wait_until(PATIENCE, || t.alive() == 0),
        "every model dropped"
    );
    assert_eq!(t.total_drops(), t.created());
}

// Item 4: with a slow Drop, 14 plain stage() calls left 12 models alive at once and
// dropping the deployment blocked for 36 s.
#[test]
fn a_slow_drop_slows_staging_down_instead_of_letting_models_pile_up() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    for tag in 2..12 {
        let model = t
            .model(tag)
            .dropping(OnDrop::Slowly(Duration::from_millis(30)));
        bg.stage(format!("v{tag}"), model).unwrap();
    }
    // Active, the candidate, the one being dropped, and the model just handed to stage().
    assert!(
        t.max_alive() <= 4,
        "{} models were alive at once",
        t.max_alive()
    );
    drop(bg);
    assert!(wait_until(PATIENCE, || t.alive() == 0));
}

#[test]
fn a_hung_drop_makes_the_next_retirement_refuse_instead_of_queueing_forever() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .drain_timeout(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_millis(100))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2).dropping(OnDrop::HangsUntilReleased))
        .unwrap();
    bg.stage("v3", t.model(3)).unwrap(); // hands v2 to the retirer, which hangs in its drop
    assert!(wait_until(PATIENCE, || t.drops_started() == 1));
    let s = bg.status();
    assert_eq!(s.retiring.len(), 1, "{s}");
    assert_eq!(
        (s.retiring[0].version.as_str(), s.retiring[0].dropping),
        ("v2", true)
    );

    let err = bg.stage("v4", t.model(4)).unwrap_err();
    match &err {
        Error::RetireBacklog {
            version, dropping, ..
        } => assert_eq!((version.as_str(), dropping.as_str()), ("v3", "v2")),
        other => panic!("expected RetireBacklog, got {other}"),
    }
    // Nothing changed: v3 is still the candidate, v1 serves; v4 was dropped.
    assert_eq!(bg.status().candidate.unwrap().version, "v3");
    assert_eq!(bg.predict(&1).unwrap(), (1, 1));
    assert!(wait_until(PATIENCE, || t.drops_of(4) == 1));

    // Dropping the deployment does not wait for v2's drop forever either.
    drop(bg);
    assert!(t.alive() >= 1, "v2 is still inside its drop");
    t.release();
    assert!(wait_until(PATIENCE, || t.alive() == 0));
}

// Item 7: without warmup_samples, Model::warm_up was never called.
#[test]
fn warm_up_always_runs_before_a_flip_even_without_samples() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    assert!(
        bg.active().model().was_warmed(),
        "the initial model is warmed"
    );
    bg.stage("v2", t.model(2)).unwrap();
    let r = bg.swap().unwrap();
    assert!(bg.active().model().was_warmed());
    assert_eq!(
        r.warm_up_calls, 0,
        "no samples and the test model cannot make any"
    );
}

#[test]
fn without_samples_warm_up_uses_the_inputs_a_gate_offers() {
    struct Offers(Vec<u64>);
    impl Validator<Tracked> for Offers {
        fn name(&self) -> &str {
            "offers-inputs"
        }
        fn validate(&self, _: &validate::Context<Tracked>) -> validate::Verdict {
            validate::Verdict::pass("")
        }
        fn warm_up_inputs(&self) -> Vec<u64> {
            self.0.clone()
        }
    }
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(Offers(Vec::new()))
        .validator(Offers(vec![7, 8, 9]))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let r = bg.swap().unwrap();
    assert_eq!(r.warm_up_calls, 3, "the first gate offering inputs is used");
    // Configured samples win over gates.
    let bg = BlueGreen::builder()
        .validator(Offers(vec![7, 8, 9]))
        .warmup_samples(vec![1])
        .build("v1", t.model(10))
        .unwrap();
    bg.stage("v2", t.model(11)).unwrap();
    assert_eq!(bg.swap().unwrap().warm_up_calls, 1);
}

/// A gate that calls the candidate once.
fn probe() -> impl Validator<Tracked> {
    validate::from_fn("probe", |cx: &validate::Context<Tracked>| {
        cx.candidate()
            .predict(&1)
            .map(drop)
            .map_err(|e| e.to_string())
    })
}

// Item 5: a gate, warm-up or shadow call that never returned kept the candidate
// referenced, and every later stage/unstage failed with DrainTimeout until it ended.
#[test]
fn a_hung_gate_is_abandoned_and_the_deployment_is_operable_at_once() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(probe())
        .validation_deadline(Duration::from_millis(100))
        .drain_timeout(Duration::from_secs(2))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::HangsUntilReleased))
        .unwrap();
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("the hung gate must refuse the candidate")
    };
    assert_eq!(report.checks[0].status, bluegreen::CheckStatus::TimedOut);
    let s = bg.status();
    assert_eq!(s.abandoned.len(), 1, "{s}");
    assert_eq!(s.abandoned[0].what, "gate probe on candidate v2");
    assert_eq!(s.abandoned[0].versions, ["v2", "v1"]);
    assert_eq!(s.faults.count(FaultKind::Abandoned), 1);
    assert_eq!(t.hanging(), 1);

    // Operable at once: v2 is retired although the hung gate still holds it.
    let r = bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(r.retired, ["v2"]);
    bg.swap().unwrap();
    // And the live model it also holds (v1, now previous) can be retired too.
    bg.stage("v4", t.model(4)).unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.status().previous.unwrap().version, "v3");
    assert_eq!(bg.predict(&9).unwrap(), (4, 9));
    assert_eq!(
        t.drops_of(1) + t.drops_of(2),
        0,
        "the hung gate still holds v1 and v2"
    );

    t.release();
    assert!(wait_until(PATIENCE, || bg.status().abandoned.is_empty()));
    assert!(wait_until(PATIENCE, || t.drops_of(1) == 1 && t.drops_of(2) == 1));
}

#[test]
fn a_hung_warm_up_is_abandoned_and_the_candidate_refused() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .warmup_samples(vec![1])
        .warmup_deadline(Duration::from_millis(100))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::HangsUntilReleased))
        .unwrap();
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::WarmupFailed { version, reason }
            if version == "v2" && reason == "exceeded its deadline of 100ms"),
        "{err}"
    );
    let s = bg.status();
    assert_eq!(s.abandoned[0].what, "warm-up of v2");
    assert_eq!(s.abandoned[0].versions, ["v2"]);
    assert_eq!(
        bg.unstage().unwrap().as_deref(),
        Some("v2"),
        "retired at once"
    );
    bg.stage("v3", t.model(3)).unwrap();
    bg.swap().unwrap();
    t.release();
    assert!(wait_until(PATIENCE, || t.drops_of(2) == 1));
}

#[test]
fn a_candidate_hanging_on_a_mirrored_request_is_abandoned_and_shadowing_goes_on() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(
            bluegreen::Shadow::new(1.0, |c: &(u64, u64), l: &(u64, u64)| {
                bluegreen::Comparison {
                    agree: c.1 == l.1,
                    abs_diff: 0.0,
                }
            })
            .call_deadline(Duration::from_millis(50)),
        )
        .drain_timeout(Duration::from_secs(5))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::HangsUntilReleased))
        .unwrap();
    assert!(wait_until(PATIENCE, || {
        let _ = bg.predict(&1);
        t.hanging() == 1
    }));
    // Staging over the hung candidate works: the mirrored call is abandoned past its
    // deadline and retiring v2 does not wait for it.
    let r = bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(r.retired, ["v2"]);
    let s = bg.status();
    assert_eq!(s.abandoned.len(), 1, "{s}");
    assert_eq!(s.abandoned[0].what, "mirrored call on candidate v2");
    // A fresh worker shadows v3.
    assert!(wait_until(PATIENCE, || {
        for i in 0..10 {
            let _ = bg.predict(&i);
        }
        bg.status()
            .shadow
            .is_some_and(|s| s.version == "v3" && s.compared >= 10)
    }));
    let shadow = bg.status().shadow.unwrap();
    assert_eq!((shadow.errors, shadow.agreement), (0, 1.0));
    t.release();
    assert!(wait_until(PATIENCE, || bg.status().abandoned.is_empty()
        && t.drops_of(2) == 1));
}

// Issue #17: `swap` hands the warm-up and the gates to the gate worker at once, the
// warm-up first, so the gates judge a warm candidate.
#[test]
fn swap_warms_the_candidate_before_its_gates_run_on_the_gate_worker() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let gate = validate::from_fn("sees-warm", move |cx: &validate::Context<Tracked>| {
        let thread = std::thread::current().name().map(str::to_owned);
        s.lock()
            .unwrap()
            .push((cx.candidate().was_warmed(), thread));
        Ok::<(), String>(())
    });
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(gate)
        .warmup_samples(vec![5])
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let r = bg.swap().unwrap();
    assert_eq!(r.warm_up_calls, 1);
    assert_eq!(
        *seen.lock().unwrap(),
        [(true, Some("bluegreen-gates".to_owned()))],
        "the gate ran once, on the gate worker, on a warmed candidate"
    );
    assert_eq!(bg.predict(&3).unwrap(), (2, 3));
}

// A candidate whose warm-up and gate both fail (the warm-up now runs first) is refused
// for its gate, as before.
#[test]
fn when_warm_up_and_a_gate_both_fail_the_refusal_is_the_gates() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(probe())
        .warmup_samples(vec![1])
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::FailingAfter(0)))
        .unwrap();
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("the failing gate must be the refusal")
    };
    assert_eq!(report.candidate, "v2");
    assert_eq!(report.checks[0].status, bluegreen::CheckStatus::Failed);
    let s = bg.status();
    assert_eq!(s.active.version, "v1");
    assert_eq!(s.candidate.unwrap().state, bluegreen::SlotState::Failed);
    assert_eq!(
        bg.predict(&4).unwrap(),
        (1, 4),
        "the live model kept serving"
    );
}

// A model that hangs in its warm-up would hang each gate after it, deadline after
// deadline: an overrun warm-up ends the hand-off, and the gates are never started.
#[test]
fn a_hung_warm_up_refuses_the_candidate_without_starting_its_gates() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(probe())
        .warmup_samples(vec![1])
        .warmup_deadline(Duration::from_millis(100))
        // A gate calling the hung model would hold the test for this long.
        .validation_deadline(Duration::from_secs(600))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::HangsUntilReleased))
        .unwrap();
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::WarmupFailed { version, reason }
            if version == "v2" && reason == "exceeded its deadline of 100ms"),
        "{err}"
    );
    assert_eq!(
        t.hanging(),
        1,
        "only the warm-up's call hangs: the gate never ran"
    );
    let s = bg.status();
    assert_eq!(s.candidate.unwrap().state, SlotState::Failed);
    let checks = &s.last_validation.expect("the report of the refusal").checks;
    assert_eq!(checks[0].status, bluegreen::CheckStatus::Failed);
    assert_eq!(
        checks[0].detail,
        "could not start: skipped: warm-up of v2 overran its deadline"
    );
    assert_eq!(
        bg.predict(&5).unwrap(),
        (1, 5),
        "the live model kept serving"
    );
    t.release();
}
