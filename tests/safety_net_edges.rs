//! The safety net's edges (issue #12): holes a concurrency review found after the first
//! round, each reproduced here before it was fixed — a refusal that panicked, a stage
//! that was not all-or-nothing, gate code on the admin thread, late panics on abandoned
//! threads that were never counted, a mirrored call counted twice, a retiring model
//! missing from the status.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bluegreen::{BlueGreen, Error, FaultKind, Model, validate};
use common::{Behavior, OnDrop, Tracker, wait_until};

const PATIENCE: Duration = Duration::from_secs(20);

// A refused `stage()` drops the caller's model on the caller's thread, outside any
// Guard: a panicking `Drop` turns the typed refusal into a panic in the admin caller.
#[test]
fn a_refused_stage_returns_its_error_even_when_the_models_drop_panics() {
    let t = Tracker::new();
    let bg = BlueGreen::new("v1", t.model(1)).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        bg.stage("v1", t.model(2).dropping(OnDrop::Panics))
    }));
    match outcome {
        Ok(Err(Error::VersionInUse { .. })) => {}
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => panic!(
            "stage() panicked: the refused model was dropped on the caller's thread, unguarded"
        ),
    }
    assert_eq!(bg.predict(&1).unwrap(), (1, 1));
}

// `stage` documents "On DrainTimeout or RetireBacklog nothing changes", but when it
// Retires two slots (candidate, then a rolled-back previous model) and the second one
// Times out, the candidate is already gone.
#[test]
fn a_stage_refused_by_a_drain_timeout_leaves_the_candidate_in_place() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .drain_timeout(Duration::from_millis(100))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    let pin = bg.active(); // pins v2
    bg.stage("v3", t.model(3)).unwrap();
    bg.rollback().unwrap(); // v2 -> RolledBack, still pinned; v3 stays the candidate
    let err = bg.stage("v4", t.model(4)).unwrap_err();
    assert!(
        matches!(&err, Error::DrainTimeout { version, .. } if version == "v2"),
        "{err}"
    );
    let s = bg.status();
    drop(pin);
    assert_eq!(
        s.candidate.as_ref().map(|c| c.version.as_str()),
        Some("v3"),
        "a refused stage changed the candidate slot: {s}"
    );
}

// A gate's name becomes a thread name; one with an interior NUL makes
// `std::thread::Builder::spawn` panic on the admin caller's thread.
#[test]
fn a_gate_named_with_a_nul_byte_does_not_panic_the_swap() {
    let t = Tracker::new();
    let gate = validate::from_fn("bad\0name", |_: &validate::Context<common::Tracked>| {
        Ok::<(), String>(())
    });
    let bg = BlueGreen::builder()
        .validator(gate)
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| bg.swap()));
    assert!(
        outcome.is_ok(),
        "swap() panicked on a gate name with a NUL byte"
    );
}

// A hung gate's thread ends up dropping the candidate's last reference; a panicking
// `Drop` there is caught (inside supervise::run) but never counted as a fault.
#[test]
fn a_panicking_drop_on_an_abandoned_gate_thread_is_counted() {
    let t = Tracker::new();
    let probe = validate::from_fn("probe", |cx: &validate::Context<common::Tracked>| {
        cx.candidate()
            .predict(&1)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let bg = BlueGreen::builder()
        .validator(probe)
        .validation_deadline(Duration::from_millis(50))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage(
        "v2",
        t.model_with(2, Behavior::HangsUntilReleased)
            .dropping(OnDrop::Panics),
    )
    .unwrap();
    assert!(bg.swap().is_err());
    bg.stage("v3", t.model(3)).unwrap(); // retires v2; the hung gate holds the last ref
    // Once the retirer has let go of v2, the hung gate's is its last reference.
    assert!(wait_until(PATIENCE, || bg.status().retiring.is_empty()));
    t.release();
    assert!(wait_until(PATIENCE, || t.drops_of(2) == 1));
    assert!(wait_until(PATIENCE, || bg.status().abandoned.is_empty()));
    // Counted as the abandoned work's late panic, naming the gate and the candidate.
    assert!(wait_until(PATIENCE, || {
        bg.status().faults.count(FaultKind::AbandonedWorkPanicked) == 1
    }));
    let faults = bg.status().faults;
    let late = faults.recent.last().unwrap();
    assert_eq!(late.kind, FaultKind::AbandonedWorkPanicked, "{faults:?}");
    assert_eq!(
        late.message,
        "gate probe on candidate v2: drop of model 2 panicked on purpose"
    );
}

/// A trivially fast model with a call counter, for the shadow race below.
struct Counting {
    tag: u64,
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl bluegreen::Model for Counting {
    type Input = u64;
    type Output = u64;
    type Error = std::convert::Infallible;
    fn predict(&self, _: &u64) -> Result<u64, Self::Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(self.tag)
    }
}

// `abandon_if_hung` took `busy`, released the lock, and only then bumped the epoch: a
// worker whose call returned in between saw `busy == None`, was not yet replaced, and
// tallied its own result — and the abandonment counted the same call again as an error.
// Invariant: every mirrored call is counted at most once, so once the abandoned call has
// returned, compared + errors <= calls the candidate received.
#[test]
fn a_mirrored_call_is_counted_once_even_when_abandoned_as_it_returns() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let bg = Arc::new(
        BlueGreen::builder()
            .shadow(
                bluegreen::Shadow::new(1.0, |_: &u64, _: &u64| bluegreen::Comparison {
                    agree: true,
                    abs_diff: 0.0,
                })
                .call_deadline(Duration::ZERO),
            )
            .drain_timeout(Duration::from_secs(5))
            .build(
                "v0",
                Counting {
                    tag: 0,
                    calls: Arc::default(),
                },
            )
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (bg, stop) = (Arc::clone(&bg), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = bg.predict(&1);
            }
        })
    };
    let watcher = {
        let (bg, stop) = (Arc::clone(&bg), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = bg.status();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut trials = 0u64;
    let mut violation = None;
    while Instant::now() < deadline && violation.is_none() {
        trials += 1;
        let calls = Arc::new(AtomicU64::new(0));
        bg.stage(
            format!("c{trials}"),
            Counting {
                tag: trials,
                calls: Arc::clone(&calls),
            },
        )
        .unwrap();
        let version = format!("c{trials}");
        // Until this candidate has been abandoned once (then it gets no more calls).
        let abandoned = wait_until(Duration::from_secs(2), || {
            bg.status()
                .shadow
                .is_some_and(|s| s.version == version && s.errors >= 1)
        });
        if !abandoned {
            continue;
        }
        // Until the abandoned call has returned and let go (a loaded machine can hold it
        // off its core between being abandoned and reaching the model): only then has the
        // candidate seen every call it will see.
        let let_go = wait_until(Duration::from_secs(5), || {
            bg.status()
                .abandoned
                .iter()
                .all(|a| a.versions != [version.as_str()])
        });
        assert!(let_go, "the abandoned mirrored call never returned");
        let s = bg.status().shadow.unwrap();
        let n = calls.load(Ordering::SeqCst);
        if s.version == version && s.compared + s.errors > n {
            violation = Some(format!(
                "trial {trials}: {} compared + {} errors > {n} calls made",
                s.compared, s.errors
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    watcher.join().unwrap();
    eprintln!("{trials} trials");
    assert!(violation.is_none(), "{}", violation.unwrap());
}

/// A gate whose application code that runs on the admin caller's thread panics:
/// `warm_up_inputs` (asked by warm-up when no samples are configured) or `name`.
struct Panicky {
    in_name: bool,
}

impl bluegreen::Validator<common::Tracked> for Panicky {
    fn name(&self) -> &str {
        if self.in_name {
            panic!("name exploded")
        }
        "panicky"
    }
    fn validate(&self, _: &validate::Context<common::Tracked>) -> bluegreen::validate::Verdict {
        Ok::<(), String>(()).into()
    }
    fn warm_up_inputs(&self) -> Vec<u64> {
        if self.in_name {
            return Vec::new();
        }
        panic!("warm_up_inputs exploded")
    }
}

// Gate code that runs on the admin thread (`Validator::warm_up_inputs`, `name`,
// `deadline`) is not caught: the panic unwinds out of `build()` / `swap()`, and a swap
// Leaves the candidate marked `Validating` for good (later swaps: NotACandidate).
#[test]
fn a_gate_panicking_while_offering_warm_up_inputs_does_not_panic_build() {
    let t = Tracker::new();
    let built = catch_unwind(AssertUnwindSafe(|| {
        BlueGreen::builder()
            .validator(Panicky { in_name: false })
            .build("v1", t.model(1))
    }));
    assert!(
        built.is_ok(),
        "build() panicked in Validator::warm_up_inputs"
    );
}

#[test]
fn a_gate_whose_name_panics_refuses_the_candidate_instead_of_wedging_it() {
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .validator(Panicky { in_name: true })
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| bg.swap()));
    let state = bg.status().candidate.map(|c| c.state);
    let again = bg.swap().map(drop);
    assert!(
        outcome.is_ok(),
        "swap() panicked; the candidate is left {state:?}; the next swap: {again:?}"
    );
}

// `retire` cleared the draining entry before the backlog entry existed: a status snapshot
// in between showed the model being retired nowhere, although it was not dropped yet.
#[test]
fn a_retired_model_is_in_status_until_it_is_dropped() {
    let t = Tracker::new();
    let bg = Arc::new(BlueGreen::builder().build("v1", t.model(1)).unwrap());
    let slow = || OnDrop::Slowly(Duration::from_millis(2));
    bg.stage("v2", t.model(2).dropping(slow())).unwrap();
    // The tag of the candidate staged last; every older one is on its way out.
    let latest = Arc::new(AtomicU64::new(2));
    let stop = Arc::new(AtomicBool::new(false));
    let (torn, looks) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poller = {
        let (bg, t, stop) = (Arc::clone(&bg), Arc::clone(&t), Arc::clone(&stop));
        let (latest, torn, looks) = (Arc::clone(&latest), Arc::clone(&torn), Arc::clone(&looks));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let before = latest.load(Ordering::SeqCst);
                let s = bg.status();
                looks.fetch_add(1, Ordering::Relaxed);
                let shown = |tag: u64| {
                    let v = format!("v{tag}");
                    s.candidate.as_ref().is_some_and(|c| c.version == v)
                        || s.retiring.iter().any(|r| r.version == v)
                };
                // A candidate staged by the time of the snapshot and missing from it must
                // have been dropped already (the backlog forgets a model after its drop).
                for tag in before.saturating_sub(3).max(2)..=before {
                    if !shown(tag) && t.drops_of(tag) == 0 {
                        torn.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut tag = 3;
    while Instant::now() < deadline && torn.load(Ordering::Relaxed) == 0 {
        bg.stage(format!("v{tag}"), t.model(tag).dropping(slow()))
            .unwrap();
        latest.store(tag, Ordering::SeqCst);
        tag += 1;
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    eprintln!(
        "{} stages, {} looks",
        tag - 3,
        looks.load(Ordering::Relaxed)
    );
    assert_eq!(
        torn.load(Ordering::Relaxed),
        0,
        "a snapshot showed a model being retired nowhere before it was dropped"
    );
}
