//! After the switch: the bake window rolls back a model that goes bad in production and
//! promotes a healthy one; shadow traffic mirrors and compares without blocking callers;
//! the canary split is deterministic per key and within two points of its share; sessions
//! stay on their version across a swap for their grace period.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bluegreen::{
    Affinity, AutoRollback, Bake, BlueGreen, Comparison, Error, Shadow, ShadowGate, SlotState,
};
use common::{Behavior, Tracked, Tracker, wait_until};
use parking_lot::Mutex;

const PATIENCE: Duration = Duration::from_secs(20);

/// Calls `predict` until `done` holds (bounded); returns how many calls it made.
fn drive(bg: &BlueGreen<Tracked>, mut done: impl FnMut(&BlueGreen<Tracked>) -> bool) -> u64 {
    let mut calls = 0;
    let ok = wait_until(PATIENCE, || {
        for i in 0..10 {
            let _ = bg.predict(&i);
            calls += 1;
        }
        done(bg)
    });
    assert!(
        ok,
        "condition not reached after {calls} calls: {}",
        bg.status()
    );
    calls
}

fn baking(
    bake: Bake,
) -> (
    Arc<Tracker>,
    BlueGreen<Tracked>,
    Arc<Mutex<Vec<AutoRollback>>>,
) {
    let t = Tracker::new();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&alerts);
    let bg = BlueGreen::builder()
        .bake(bake.check_every(Duration::from_millis(2)))
        .on_auto_rollback(move |r| sink.lock().push(r.clone()))
        .build("v1", t.model(1))
        .unwrap();
    (t, bg, alerts)
}

#[test]
fn bake_rolls_back_a_model_that_starts_failing_after_the_swap() {
    let (t, bg, alerts) = baking(Bake::for_duration(Duration::from_secs(60)).max_error_rate(0.05));
    bg.stage("v2", t.model_with(2, Behavior::FailingAfter(10)))
        .unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.status().active.state, SlotState::Baking);

    drive(&bg, |bg| bg.status().auto_rollbacks == 1);

    assert_eq!(bg.predict(&7).unwrap(), (1, 7), "v1 serves again");
    let s = bg.status();
    assert_eq!(s.active.version, "v1");
    assert_eq!(s.active.state, SlotState::Active);
    assert!(s.bake.is_none());
    let standby = s.standby.unwrap();
    assert_eq!(
        (standby.version.as_str(), standby.state),
        ("v2", SlotState::RolledBack)
    );
    let record = s.last_auto_rollback.unwrap();
    assert_eq!((record.from.as_str(), record.to.as_str()), ("v2", "v1"));
    assert!(record.reason.starts_with("error rate"), "{}", record.reason);
    assert!(
        record.reason.ends_with("exceeds the limit of 5.00%"),
        "{}",
        record.reason
    );
    // The hook runs on its own thread, just after the rollback.
    assert!(wait_until(PATIENCE, || !alerts.lock().is_empty()));
    assert_eq!(*alerts.lock(), [record], "the hook saw the same record");
    assert_eq!((s.rollbacks, s.auto_rollbacks), (1, 1));

    // The rolled-back model is not promoted again without a new stage.
    assert!(matches!(
        bg.swap(),
        Err(Error::NotACandidate {
            state: SlotState::RolledBack,
            ..
        })
    ));
    bg.stage("v3", t.model(3)).unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.predict(&1).unwrap().0, 3);
}

#[test]
fn bake_rolls_back_a_model_much_slower_than_the_previous_one() {
    let (t, bg, _) = baking(Bake::for_duration(Duration::from_secs(60)).max_p99_ratio(5.0));
    for i in 0..200 {
        bg.predict(&i).unwrap(); // v1's latency record, the baseline
    }
    assert!(
        bg.status().active.p99.is_some(),
        "latency limits turn on timing"
    );
    bg.stage(
        "v2",
        t.model_with(2, Behavior::SlowAfter(0, Duration::from_millis(3))),
    )
    .unwrap();
    bg.swap().unwrap();
    drive(&bg, |bg| bg.status().auto_rollbacks == 1);
    let reason = bg.status().last_auto_rollback.unwrap().reason;
    assert!(
        reason.starts_with("p99 latency") && reason.contains("exceeds 5x the previous model's"),
        "{reason}"
    );
    assert_eq!(bg.predict(&1).unwrap().0, 1);
}

#[test]
fn bake_rolls_back_on_bad_reported_outcomes() {
    let (t, bg, _) = baking(Bake::for_duration(Duration::from_secs(60)).min_outcome_success(0.8));
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    for i in 0..30 {
        // Delayed labels say v2 is wrong one time in two.
        bg.record_outcome("v2", i % 2 == 0).unwrap();
    }
    assert!(wait_until(PATIENCE, || bg.status().auto_rollbacks == 1));
    let s = bg.status();
    assert!(
        s.last_auto_rollback
            .unwrap()
            .reason
            .starts_with("good outcomes 50.00% (15 of 30 reported)")
    );
    assert_eq!(s.standby.unwrap().outcomes, (15, 30));
    assert_eq!(bg.predict(&1).unwrap().0, 1);
}

#[test]
fn a_healthy_model_bakes_to_stable_and_keeps_the_previous_for_manual_rollback() {
    let (t, bg, alerts) = baking(Bake::for_requests(100).max_error_rate(0.01));
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let calls = drive(&bg, |bg| bg.status().active.state == SlotState::Active);
    assert!(calls >= 100, "the bake lasted until 100 requests ({calls})");
    let s = bg.status();
    assert!(s.bake.is_none());
    assert_eq!((s.auto_rollbacks, s.active.errors), (0, 0));
    assert!(alerts.lock().is_empty());
    assert_eq!(s.standby.unwrap().state, SlotState::Previous);
    bg.rollback().unwrap();
    assert_eq!(bg.predict(&1).unwrap().0, 1);
}

#[test]
fn during_a_bake_a_candidate_may_be_staged_but_not_swapped_and_a_manual_rollback_ends_it() {
    let (t, bg, _) = baking(Bake::for_duration(Duration::from_secs(60)).max_error_rate(0.5));
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    // Staging keeps the rollback target, so it is allowed while v2 bakes…
    bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(bg.status().previous.unwrap().version, "v1");
    // …but a swap, or unstaging the rollback target, would retire v1: refused.
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::BakeInProgress { version } if version == "v2"),
        "{err}"
    );
    assert_eq!(
        bg.unstage().unwrap().as_deref(),
        Some("v3"),
        "the candidate may go"
    );
    assert!(matches!(bg.unstage(), Err(Error::BakeInProgress { .. })));
    assert_eq!(bg.status().bake.unwrap().version, "v2");
    bg.rollback().unwrap();
    let s = bg.status();
    assert!(s.bake.is_none());
    assert_eq!(
        s.auto_rollbacks, 0,
        "a manual rollback is not counted as automatic"
    );
    bg.stage("v3", t.model(3)).unwrap();
}

#[test]
fn memory_tight_staging_during_a_bake_is_refused() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .memory_tight(true)
        .bake(Bake::for_duration(Duration::from_secs(60)).check_every(Duration::from_millis(2)))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let err = bg.stage("v3", t.model(3)).unwrap_err();
    assert!(
        matches!(&err, Error::BakeInProgress { version } if version == "v2"),
        "{err}"
    );
    assert!(matches!(bg.unstage(), Err(Error::BakeInProgress { .. })));
    bg.rollback().unwrap();
    bg.stage("v3", t.model(3)).unwrap();
}

#[test]
fn outcomes_for_versions_not_loaded_are_refused() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    bg.record_outcome("v1", true).unwrap();
    let err = bg.record_outcome("v9", true).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownVersion { version } if version == "v9"),
        "{err}"
    );
    assert_eq!(bg.status().active.outcomes, (1, 1));
}

/// Agree when both answers echo the same input; distance = how far apart the tags are.
fn echo_comparison() -> Shadow<Tracked> {
    Shadow::new(1.0, |cand: &(u64, u64), live: &(u64, u64)| Comparison {
        agree: cand.1 == live.1,
        abs_diff: cand.0.abs_diff(live.0) as f64,
    })
}

#[test]
fn shadow_mirrors_live_calls_to_the_staged_candidate_and_gates_the_swap() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(echo_comparison())
        .validator(ShadowGate::new(0.99, 100))
        .build("v1", t.model(1))
        .unwrap();
    for i in 0..50 {
        bg.predict(&i).unwrap();
    }
    assert!(
        bg.status().shadow.is_none(),
        "nothing staged, nothing mirrored"
    );

    bg.stage("v2", t.model(2)).unwrap();
    let err = bg.validate().unwrap();
    assert!(!err.passed(), "too few mirrored requests yet");
    assert!(
        err.check("shadow")
            .unwrap()
            .detail
            .starts_with("only 0 mirrored requests compared")
    );

    for i in 0..200 {
        assert_eq!(
            bg.predict(&i).unwrap(),
            (1, i),
            "callers get the live answer"
        );
    }
    assert!(wait_until(PATIENCE, || bg
        .status()
        .shadow
        .unwrap()
        .compared
        == 200));
    let s = bg.status().shadow.unwrap();
    assert_eq!(
        (s.version.as_str(), s.mirrored, s.dropped, s.errors),
        ("v2", 200, 0, 0)
    );
    assert_eq!((s.agreement, s.mean_abs_diff), (1.0, 1.0));
    assert!(s.p99.is_some());

    let r = bg.swap().unwrap();
    assert_eq!(r.validation.check("shadow").unwrap().measured, Some(1.0));
    assert_eq!(bg.predict(&1).unwrap().0, 2);
}

#[test]
fn shadow_gate_refuses_a_candidate_that_disagrees_or_fails() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(Shadow::new(1.0, |cand: &(u64, u64), live: &(u64, u64)| {
            Comparison {
                agree: cand.0 == live.0, // different models never agree
                abs_diff: 0.0,
            }
        }))
        .validator(ShadowGate::new(0.9, 20))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    for i in 0..40 {
        bg.predict(&i).unwrap();
    }
    assert!(wait_until(PATIENCE, || bg
        .status()
        .shadow
        .unwrap()
        .compared
        == 40));
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("expected a refusal");
    };
    assert_eq!(report.check("shadow").unwrap().measured, Some(0.0));

    bg.stage("v3", t.model_with(3, Behavior::Failing)).unwrap();
    for i in 0..40 {
        bg.predict(&i).unwrap();
    }
    assert!(wait_until(PATIENCE, || bg.status().shadow.unwrap().errors == 40));
    let Err(Error::ValidationFailed(report)) = bg.swap() else {
        panic!("expected a refusal");
    };
    assert_eq!(
        report.check("shadow").unwrap().detail,
        "only 0 mirrored requests compared (40 mirrored, 0 dropped); 20 needed"
    );
    assert_eq!(bg.predict(&1).unwrap().0, 1);
}

#[test]
fn a_saturated_shadow_queue_drops_and_counts_instead_of_blocking() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(echo_comparison().queue_capacity(2))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage(
        "v2",
        t.model_with(2, Behavior::Slow(Duration::from_millis(30))),
    )
    .unwrap();
    for i in 0..100 {
        assert_eq!(bg.predict(&i).unwrap(), (1, i));
    }
    let s = bg.status().shadow.unwrap();
    assert_eq!(s.mirrored + s.dropped, 100, "every call was offered once");
    assert!(s.dropped >= 90, "the worker can take at most a few: {s:?}");
}

#[test]
fn canary_share_is_within_two_points_and_every_key_sticks_to_one_version() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let r = bg.start_canary(10.0).unwrap();
    assert_eq!((r.version.as_str(), r.percent), ("v2", 10.0));
    assert_eq!(bg.status().standby.unwrap().state, SlotState::Canary);
    assert_eq!(bg.status().canary_percent, Some(10.0));

    let route = |u: usize| bg.predict_keyed(format!("user-{u}"), &0).unwrap().0;
    let at_10: Vec<u64> = (0..10_000).map(route).collect();
    let share = at_10.iter().filter(|&&m| m == 2).count() as f64 / 100.0;
    assert!((8.0..=12.0).contains(&share), "share {share}%");
    for (u, &m) in at_10.iter().enumerate().step_by(7) {
        assert_eq!(route(u), m, "user-{u} changed version");
    }
    assert_eq!(
        bg.predict(&0).unwrap().0,
        1,
        "unkeyed calls stay on the active model"
    );

    bg.set_canary_percent(50.0).unwrap();
    let at_50: Vec<u64> = (0..10_000).map(route).collect();
    let share = at_50.iter().filter(|&&m| m == 2).count() as f64 / 100.0;
    assert!((48.0..=52.0).contains(&share), "share {share}%");
    assert!(
        at_10.iter().zip(&at_50).all(|(a, b)| *a == 1 || *b == 2),
        "raising the share keeps canary users on the canary"
    );

    bg.abort_canary().unwrap();
    assert!((0..2_000).all(|u| route(u) == 1), "abort is instant");
    assert_eq!(bg.status().standby.unwrap().state, SlotState::Failed);
    assert!(matches!(
        bg.promote_canary(),
        Err(Error::NoCanary {
            standby: Some(SlotState::Failed)
        })
    ));
}

#[test]
fn promoting_a_canary_moves_all_traffic_and_keeps_the_previous_for_rollback() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    bg.start_canary(5.0).unwrap();
    // Issue #12 item 12: a swap during a canary says to promote or abort it.
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::CanaryInProgress { version } if version == "v2"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "canary v2 is running: promote_canary() or abort_canary() first"
    );
    assert!(matches!(
        bg.stage("v3", t.model(3)),
        Err(Error::CanaryInProgress { .. })
    ));
    let r = bg.promote_canary().unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), ("v1", "v2"));
    assert!((0..1_000).all(|u| bg.predict_keyed(u.to_string(), &0).unwrap().0 == 2));
    assert_eq!(bg.status().canary_percent, None);
    bg.rollback().unwrap();
    assert_eq!(bg.predict(&0).unwrap().0, 1);
}

#[test]
fn canary_refuses_bad_candidates_and_bad_shares() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(common::tag_is_good())
        .build("v1", t.model(1))
        .unwrap();
    assert!(matches!(bg.start_canary(10.0), Err(Error::NothingStaged)));
    bg.stage("v2", t.model(2).bad()).unwrap();
    assert!(matches!(
        bg.start_canary(10.0),
        Err(Error::ValidationFailed(_))
    ));
    for p in [-1.0, 100.5, f64::NAN] {
        assert!(matches!(
            bg.start_canary(p),
            Err(Error::InvalidPercent { .. })
        ));
    }
    assert!(matches!(
        bg.set_canary_percent(5.0),
        Err(Error::NoCanary { .. })
    ));
    assert!((0..1_000).all(|u| bg.predict_keyed(u.to_string(), &0).unwrap().0 == 1));
}

#[test]
fn sessions_keep_their_first_version_across_a_swap_until_the_grace_period_ends() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .affinity(Affinity::new(Duration::from_millis(1500)))
        .build("v1", t.model(1))
        .unwrap();
    let session = |s: &str| bg.predict_keyed(s, &0).unwrap().0;
    assert_eq!(session("alice"), 1);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    assert_eq!(session("alice"), 1, "alice stays on v1 after the swap");
    assert_eq!(session("bob"), 2, "a new session starts on v2");
    assert_eq!(
        bg.predict(&0).unwrap().0,
        2,
        "unkeyed calls go to the active model"
    );
    assert_eq!(bg.status().sessions, Some(2));
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(session("alice"), 2, "after the grace period alice moves");
}

#[test]
fn sessions_leave_a_rolled_back_or_retired_version_at_once() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .affinity(Affinity::new(Duration::from_secs(600)))
        .build("v1", t.model(1))
        .unwrap();
    let session = |s: &str| bg.predict_keyed(s, &0).unwrap().0;
    assert_eq!(session("old"), 1);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    assert_eq!(session("new"), 2);
    assert_eq!(session("old"), 1);
    bg.rollback().unwrap();
    assert_eq!(
        session("new"),
        1,
        "v2 was rolled back: its sessions move to v1"
    );
    assert_eq!(session("old"), 1);

    bg.stage("v3", t.model(3)).unwrap();
    bg.swap().unwrap();
    assert_eq!(
        session("old"),
        1,
        "v1 is still loaded as the previous model"
    );
    bg.unstage().unwrap(); // retires v1
    assert_eq!(
        session("old"),
        3,
        "v1 is retired: the session moves to the active model"
    );
}

#[test]
fn keyed_calls_without_canary_or_affinity_are_plain_predictions() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    let hits = AtomicUsize::new(0);
    for u in 0..100 {
        if bg.predict_keyed(u.to_string(), &u).unwrap() == (1, u) {
            hits.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(hits.load(Ordering::Relaxed), 100);
    assert_eq!(bg.status().active.requests, 100);
}

#[test]
fn the_rollback_hook_may_call_back_into_the_deployment() {
    use std::sync::{OnceLock, Weak};
    let t = Tracker::new();
    let me: Arc<OnceLock<Weak<BlueGreen<Tracked>>>> = Arc::new(OnceLock::new());
    let (hook_me, hook_t) = (Arc::clone(&me), Arc::clone(&t));
    let bg = Arc::new(
        BlueGreen::builder()
            .bake(
                Bake::for_duration(Duration::from_secs(60))
                    .max_error_rate(0.05)
                    .check_every(Duration::from_millis(2)),
            )
            .on_auto_rollback(move |_| {
                // An operator's hook that immediately stages a fix: must not deadlock.
                let bg = hook_me.get().and_then(Weak::upgrade).unwrap();
                bg.stage("v3-fix", hook_t.model(3)).unwrap();
            })
            .build("v1", t.model(1))
            .unwrap(),
    );
    me.set(Arc::downgrade(&bg)).unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Failing)).unwrap();
    bg.swap().unwrap();
    drive(&bg, |bg| {
        bg.status().standby.is_some_and(|s| s.version == "v3-fix")
    });
    assert_eq!(bg.predict(&0).unwrap().0, 1);
    assert_eq!(bg.status().auto_rollbacks, 1);
}

#[test]
fn a_candidate_panicking_on_mirrored_requests_counts_errors_and_shadowing_goes_on() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(echo_comparison())
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Panicking))
        .unwrap();
    for i in 0..20 {
        bg.predict(&i).unwrap();
    }
    assert!(wait_until(PATIENCE, || bg.status().shadow.unwrap().errors == 20));
    bg.stage("v3", t.model(3)).unwrap();
    for i in 0..20 {
        bg.predict(&i).unwrap();
    }
    assert!(
        wait_until(PATIENCE, || bg.status().shadow.unwrap().compared == 20),
        "the worker survived the panics: {:?}",
        bg.status().shadow
    );
}

#[test]
fn a_refused_retirement_keeps_the_candidates_shadow_results() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(echo_comparison())
        .drain_timeout(Duration::from_millis(50))
        .build("v1", t.model(1))
        .unwrap();
    // The candidate hangs on its first mirrored request, so the worker holds it.
    bg.stage("v2", t.model_with(2, Behavior::HangsUntilReleased))
        .unwrap();
    for i in 0..5 {
        bg.predict(&i).unwrap();
    }
    assert!(
        wait_until(PATIENCE, || t.hanging() == 1),
        "the worker is inside v2"
    );
    let before = bg.status().shadow.unwrap();
    assert_eq!(before.mirrored + before.dropped, 5);
    let err = bg.stage("v3", t.model(3)).unwrap_err();
    assert!(matches!(err, Error::DrainTimeout { .. }), "{err}");
    let after = bg.status().shadow.unwrap();
    assert_eq!(
        (after.version.as_str(), after.mirrored),
        ("v2", before.mirrored)
    );
    t.release();
    assert!(wait_until(PATIENCE, || bg
        .status()
        .shadow
        .unwrap()
        .compared
        == before.mirrored));
}
