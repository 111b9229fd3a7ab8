//! The safety net never fails silently (issue #12): each test reproduces one hole a new user
//! found — with real panics, real hangs released by the test, real slow drops — and proves
//! that the deployment counts it, reports it with the version, keeps the live model serving
//! and stays operable.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use bluegreen::{Bake, BlueGreen, SlotState};
use common::{Behavior, Tracked, Tracker, wait_until};

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
