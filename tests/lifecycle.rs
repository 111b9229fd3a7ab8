//! Every state transition and every misuse case of a deployment, each asserting the exact
//! outcome and that `predict` still answers from the right version.

mod common;

use std::time::Duration;

use bluegreen::{BlueGreen, Error, SlotState};
use common::{Behavior, Tracked, Tracker, tag_is_good};

fn deployment(t: &std::sync::Arc<Tracker>) -> BlueGreen<Tracked> {
    BlueGreen::builder()
        .validator(tag_is_good())
        .warmup_samples(vec![1, 2, 3])
        .drain_timeout(Duration::from_millis(200))
        .build("v1", t.model(1))
        .unwrap()
}

/// [`deployment`], with one standby slot: at most two models resident.
fn tight_deployment(t: &std::sync::Arc<Tracker>) -> BlueGreen<Tracked> {
    BlueGreen::builder()
        .validator(tag_is_good())
        .warmup_samples(vec![1, 2, 3])
        .drain_timeout(Duration::from_millis(200))
        .memory_tight(true)
        .build("v1", t.model(1))
        .unwrap()
}

/// Which model answers right now.
fn answering(bg: &BlueGreen<Tracked>) -> u64 {
    bg.predict(&0).unwrap().0
}

#[test]
fn new_deployment_serves_its_model_with_empty_standby() {
    let t = Tracker::new();
    let bg = deployment(&t);
    assert_eq!(bg.predict(&42).unwrap(), (1, 42));
    let s = bg.status();
    assert_eq!(s.active.version, "v1");
    assert_eq!(s.active.state, SlotState::Active);
    assert!(s.standby.is_none());
    assert_eq!((s.swaps, s.rollbacks, s.rejections), (0, 0, 0));
    assert!(bg.active().model().was_warmed(), "initial model is warmed");
}

#[test]
fn stage_puts_candidate_in_standby_without_touching_traffic() {
    let t = Tracker::new();
    let bg = deployment(&t);
    let r = bg.stage("v2", t.model(2)).unwrap();
    assert_eq!(r.version, "v2");
    assert!(r.retired.is_empty());
    let s = bg.status();
    let standby = s.standby.unwrap();
    assert_eq!(
        (standby.version.as_str(), standby.state),
        ("v2", SlotState::Staged)
    );
    assert_eq!(answering(&bg), 1);
}

#[test]
fn swap_flips_traffic_and_keeps_old_model_as_previous() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    let r = bg.swap().unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), ("v1", "v2"));
    assert!(r.validation.passed());
    assert_eq!(r.validation.checks.len(), 1);
    assert!(r.drained(), "no call was running on v1");
    assert_eq!(answering(&bg), 2);
    assert!(
        bg.active().model().was_warmed(),
        "candidate warmed before the flip"
    );
    let s = bg.status();
    assert_eq!(s.active.version, "v2");
    let standby = s.standby.unwrap();
    assert_eq!(
        (standby.version.as_str(), standby.state),
        ("v1", SlotState::Previous)
    );
    assert_eq!(s.swaps, 1);
    assert!(s.last_validation.unwrap().passed());
    assert_eq!(t.alive(), 2);
}

#[test]
fn rollback_restores_previous_instantly_and_marks_rolled_back() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let r = bg.rollback().unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), ("v2", "v1"));
    assert_eq!(answering(&bg), 1);
    let s = bg.status();
    assert_eq!(s.rollbacks, 1);
    let standby = s.standby.unwrap();
    assert_eq!(
        (standby.version.as_str(), standby.state),
        ("v2", SlotState::RolledBack)
    );
}

#[test]
fn rollback_twice_is_refused_and_keeps_serving_the_restored_model() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.rollback().unwrap();
    let err = bg.rollback().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NothingToRollBack {
                standby: Some(SlotState::RolledBack)
            }
        ),
        "{err}"
    );
    assert_eq!(answering(&bg), 1);
}

#[test]
fn swap_after_rollback_is_refused_until_a_new_stage() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.rollback().unwrap();
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::NotACandidate { version, state: SlotState::RolledBack } if version == "v2"),
        "{err}"
    );
    assert_eq!(answering(&bg), 1);
    bg.stage("v3", t.model(3)).unwrap();
    bg.swap().unwrap();
    assert_eq!(answering(&bg), 3);
}

#[test]
fn rollback_with_empty_standby_is_refused() {
    let t = Tracker::new();
    let bg = deployment(&t);
    let err = bg.rollback().unwrap_err();
    assert!(
        matches!(err, Error::NothingToRollBack { standby: None }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "nothing to roll back to: the standby slot is empty"
    );
    assert_eq!(answering(&bg), 1);
}

#[test]
fn rollback_with_a_staged_candidate_is_refused() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    let err = bg.rollback().unwrap_err();
    assert!(
        matches!(
            err,
            Error::NothingToRollBack {
                standby: Some(SlotState::Staged)
            }
        ),
        "{err}"
    );
    assert_eq!(answering(&bg), 1);
}

#[test]
fn swap_with_nothing_staged_is_refused() {
    let t = Tracker::new();
    let bg = deployment(&t);
    let err = bg.swap().unwrap_err();
    assert!(matches!(err, Error::NothingStaged), "{err}");
    assert_eq!(answering(&bg), 1);
}

#[test]
fn swap_twice_is_refused_because_standby_is_the_previous_model() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::NotACandidate { version, state: SlotState::Previous } if version == "v1"),
        "{err}"
    );
    assert_eq!(answering(&bg), 2);
}

#[test]
fn failed_validation_leaves_live_model_and_marks_candidate_failed() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2).bad()).unwrap();
    let err = bg.swap().unwrap_err();
    let Error::ValidationFailed(report) = &err else {
        panic!("expected ValidationFailed, got {err}");
    };
    assert_eq!(report.candidate, "v2");
    assert_eq!(report.live, "v1");
    let failed: Vec<_> = report.failures().map(|c| c.name.as_str()).collect();
    assert_eq!(failed, ["tag_is_good"]);
    assert_eq!(
        err.to_string(),
        "candidate v2 failed validation: tag_is_good (FAIL: model 2 is marked bad)"
    );
    assert_eq!(answering(&bg), 1);
    let s = bg.status();
    assert_eq!(s.standby.unwrap().state, SlotState::Failed);
    assert_eq!((s.swaps, s.rejections), (0, 1));
    assert!(!s.last_validation.unwrap().passed());
}

#[test]
fn failed_candidate_cannot_be_swapped_again_but_can_be_replaced() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2).bad()).unwrap();
    bg.swap().unwrap_err();
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::CandidateFailed { version } if version == "v2"),
        "{err}"
    );
    assert_eq!(answering(&bg), 1);
    let r = bg.stage("v2-fixed", t.model(22)).unwrap();
    assert_eq!(r.retired, ["v2"]);
    bg.swap().unwrap();
    assert_eq!(answering(&bg), 22);
    assert!(common::wait_until(Duration::from_secs(10), || t
        .drops_of(2)
        == 1));
}

#[test]
fn staging_keeps_the_rollback_target_through_a_refused_candidate() {
    // Issue #12 item 6: staging used to retire the previous model, so a broken or refused
    // version left nothing to roll back to.
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let r = bg.stage("v3", t.model(3).bad()).unwrap();
    assert!(r.retired.is_empty(), "{:?}", r.retired);
    assert!(matches!(bg.swap(), Err(Error::ValidationFailed(_))));
    let err = bg
        .stage_with("v4", || Err::<Tracked, _>("truncated file"))
        .unwrap_err();
    assert!(matches!(err, Error::Load { .. }), "{err}");
    let s = bg.status();
    assert_eq!(
        s.candidate, None,
        "the failed candidate was retired by the next stage"
    );
    let previous = s.previous.unwrap();
    assert_eq!(
        (previous.version.as_str(), previous.state),
        ("v1", SlotState::Previous)
    );
    assert_eq!(t.drops_of(1), 0);
    let back = bg.rollback().unwrap();
    assert_eq!((back.from.as_str(), back.to.as_str()), ("v2", "v1"));
    assert_eq!(answering(&bg), 1);
}

#[test]
fn a_rollback_leaves_a_staged_candidate_staged() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.stage("v3", t.model(3)).unwrap();
    bg.rollback().unwrap();
    let s = bg.status();
    assert_eq!(s.active.version, "v1");
    assert_eq!(s.candidate.unwrap().state, SlotState::Staged);
    assert_eq!(s.previous.unwrap().state, SlotState::RolledBack);
    // The candidate can still be swapped in; the model rolled back from is retired then.
    let r = bg.swap().unwrap();
    assert_eq!((r.from.as_str(), r.to.as_str()), ("v1", "v3"));
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(2) == 1));
    assert_eq!(bg.status().previous.unwrap().version, "v1");
}

#[test]
fn memory_tight_staging_replaces_the_rollback_target() {
    // Opt-in: one standby slot, so staging a candidate retires the previous model and
    // there is no rollback target until the next swap.
    let t = Tracker::new();
    let bg = tight_deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let r = bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(r.retired, ["v1"]);
    assert!(
        common::wait_until(Duration::from_secs(5), || t.drops_of(1) == 1),
        "retired model is dropped by the retirer"
    );
    assert!(matches!(
        bg.rollback().unwrap_err(),
        Error::NothingToRollBack {
            standby: Some(SlotState::Staged)
        }
    ));
    assert_eq!(answering(&bg), 2);
}

#[test]
fn staging_the_active_version_label_is_refused() {
    let t = Tracker::new();
    let bg = deployment(&t);
    let err = bg.stage("v1", t.model(9)).unwrap_err();
    assert!(
        matches!(&err, Error::VersionInUse { version, slot: "active" } if version == "v1"),
        "{err}"
    );
    assert!(bg.status().standby.is_none());
    assert_eq!(answering(&bg), 1);
    assert_eq!(t.drops_of(9), 1, "refused candidate is dropped, not leaked");
}

#[test]
fn invalid_version_labels_are_refused() {
    let t = Tracker::new();
    let bg = deployment(&t);
    for (label, reason) in [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("v\n2", "must not contain control characters"),
    ] {
        let err = bg.stage(label, t.model(5)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidVersion { reason: r, .. } if *r == reason),
            "{label:?}: {err}"
        );
    }
    let long = "x".repeat(257);
    assert!(matches!(
        bg.stage(long, t.model(5)).unwrap_err(),
        Error::InvalidVersion {
            reason: "must be at most 256 bytes",
            ..
        }
    ));
    assert!(matches!(
        BlueGreen::new("", t.model(6)).unwrap_err(),
        Error::InvalidVersion { .. }
    ));
    assert_eq!(answering(&bg), 1);
}

#[test]
fn restaging_replaces_an_unswapped_candidate() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    let r = bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(r.retired, ["v2"]);
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(2) == 1));
    bg.swap().unwrap();
    assert_eq!(answering(&bg), 3);
}

#[test]
fn unstage_retires_the_standby_model() {
    let t = Tracker::new();
    let bg = deployment(&t);
    assert_eq!(bg.unstage().unwrap(), None);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.unstage().unwrap().as_deref(), Some("v1"));
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(1) == 1));
    assert_eq!(t.alive(), 1);
    assert!(bg.status().standby.is_none());
    assert!(matches!(
        bg.rollback(),
        Err(Error::NothingToRollBack { standby: None })
    ));
    assert_eq!(answering(&bg), 2);
}

#[test]
fn dry_run_validation_reports_without_swapping() {
    let t = Tracker::new();
    let bg = deployment(&t);
    assert!(matches!(bg.validate(), Err(Error::NothingStaged)));
    bg.stage("v2", t.model(2).bad()).unwrap();
    let report = bg.validate().unwrap();
    assert!(!report.passed());
    assert_eq!(
        report.check("tag_is_good").unwrap().status,
        bluegreen::CheckStatus::Failed
    );
    // A dry run changes nothing: the candidate is still merely staged.
    let s = bg.status();
    assert_eq!(s.standby.unwrap().state, SlotState::Staged);
    assert_eq!((s.swaps, s.rejections), (0, 0));
    assert_eq!(answering(&bg), 1);
}

#[test]
fn a_swap_waits_for_a_pinned_previous_model_and_times_out_cleanly() {
    let t = Tracker::new();
    let bg = deployment(&t);
    let pin = bg.active(); // pins v1
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.stage("v3", t.model(3)).unwrap();
    // Promoting v3 retires v1, which the pin holds.
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::DrainTimeout { version, holders: 1, .. } if version == "v1"),
        "{err}"
    );
    // Nothing changed: v2 serves, v1 is still the rollback target, v3 is staged again.
    let s = bg.status();
    assert_eq!(s.active.version, "v2");
    assert_eq!(s.previous.unwrap().state, SlotState::Previous);
    assert_eq!(s.candidate.unwrap().state, SlotState::Staged);
    assert_eq!(pin.predict(&5).unwrap(), (1, 5));
    drop(pin);
    bg.swap().unwrap();
    assert_eq!(answering(&bg), 3);
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(1) == 1));
}

#[test]
fn memory_tight_stage_waits_for_a_pinned_previous_model_and_times_out_cleanly() {
    let t = Tracker::new();
    let bg = tight_deployment(&t);
    let pin = bg.active(); // pins v1
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    assert_eq!(pin.version(), "v1");
    assert_eq!(bg.status().standby.unwrap().holders, Some(1));

    let err = bg.stage("v3", t.model(3)).unwrap_err();
    match &err {
        Error::DrainTimeout {
            version,
            holders,
            waited,
        } => {
            assert_eq!((version.as_str(), *holders), ("v1", 1));
            assert!(*waited >= Duration::from_millis(200));
        }
        other => panic!("expected DrainTimeout, got {other}"),
    }
    // Nothing changed: v1 is still the rollback target, v2 still serves, v3 was dropped.
    assert_eq!(bg.status().standby.unwrap().state, SlotState::Previous);
    assert_eq!(t.drops_of(1), 0);
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(3) == 1));
    assert_eq!(answering(&bg), 2);
    assert_eq!(pin.predict(&5).unwrap(), (1, 5));

    drop(pin);
    let r = bg.stage("v3", t.model(33)).unwrap();
    assert_eq!(r.retired, ["v1"]);
    assert!(common::wait_until(Duration::from_secs(5), || t.drops_of(1) == 1));
}

#[test]
fn stage_with_loads_only_after_the_candidate_it_replaces_is_dropped() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.stage("v3", t.model(3)).unwrap();
    assert_eq!(t.alive(), 3);
    let seen_alive = std::cell::Cell::new(usize::MAX);
    bg.stage_with("v4", || {
        seen_alive.set(t.alive());
        Ok::<_, std::io::Error>(t.model(4))
    })
    .unwrap();
    assert_eq!(
        seen_alive.get(),
        2,
        "v3 was dropped before the loader ran; v1 stays"
    );
    assert_eq!(t.max_alive(), 3, "active, previous and one candidate");
}

#[test]
fn memory_tight_stage_with_loads_only_after_the_old_standby_is_dropped() {
    let t = Tracker::new();
    let bg = tight_deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    assert_eq!(t.alive(), 2);
    let seen_alive = std::cell::Cell::new(usize::MAX);
    bg.stage_with("v3", || {
        seen_alive.set(t.alive());
        Ok::<_, std::io::Error>(t.model(3))
    })
    .unwrap();
    assert_eq!(seen_alive.get(), 1, "v1 was dropped before the loader ran");
    assert_eq!(t.max_alive(), 2);
}

#[test]
fn loader_failure_is_a_typed_error_and_traffic_is_untouched() {
    let t = Tracker::new();
    let bg = deployment(&t);
    let err = bg
        .stage_with("v2", || {
            Err::<Tracked, _>(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::Load { version, .. } if version == "v2"),
        "{err}"
    );
    assert_eq!(err.to_string(), "loading candidate v2 failed: no such file");
    assert!(bg.status().standby.is_none());
    assert_eq!(answering(&bg), 1);
}

#[test]
fn model_errors_reach_the_caller_unchanged_and_are_counted() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model_with(1, Behavior::Failing)).unwrap();
    let err = bg.predict(&7).unwrap_err();
    assert_eq!(err, common::ModelError { tag: 1, input: 7 });
    let s = bg.status();
    assert_eq!(
        (s.active.requests, s.active.errors, s.active.in_flight),
        (1, 1, 0)
    );
}

#[test]
fn status_counts_requests_per_slot() {
    let t = Tracker::new();
    let bg = deployment(&t);
    for i in 0..10 {
        bg.predict(&i).unwrap();
    }
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    for i in 0..4 {
        bg.predict(&i).unwrap();
    }
    let s = bg.status();
    assert_eq!(s.active.requests, 4);
    let standby = s.standby.unwrap();
    // v1 served 10 calls, plus the 3 warm-up samples it ran at construction through
    // `Model::warm_up`, which are not routed through the deployment (uncounted).
    assert_eq!(standby.requests, 10);
    assert_eq!(standby.holders, Some(0));
}

#[test]
fn dropping_the_deployment_drops_both_models_once_off_the_caller_thread() {
    let t = Tracker::new();
    let bg = deployment(&t);
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    std::thread::Builder::new()
        .name("reader-owner".into())
        .spawn(move || drop(bg))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!((t.drops_of(1), t.drops_of(2), t.alive()), (1, 1, 0));
    assert!(t.violations.lock().is_empty(), "{:?}", t.violations.lock());
}

#[test]
fn initial_model_whose_warm_up_fails_is_refused() {
    let t = Tracker::new();
    let err = BlueGreen::builder()
        .warmup_samples(vec![1])
        .build("v1", t.model_with(1, Behavior::Failing))
        .unwrap_err();
    assert!(
        matches!(&err, Error::WarmupFailed { version, reason } if version == "v1" && reason == "error: model 1 refused input 1"),
        "{err}"
    );
}
