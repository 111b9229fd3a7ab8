//! Model-checked: loom runs bluegreen's real read path, swap, rollback, drain, retirer and
//! bake monitor through every interleaving (up to a preemption bound) of the threads
//! involved, and checks after each one what the stress tests can only sample.
//!
//! Run with `bash scripts/loom.sh` (what `.ci/run` does), which is
//!
//! ```text
//! RUSTFLAGS="--cfg bluegreen_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test --no-default-features --locked --profile loom --test loom
//! ```
//!
//! Each test is bounded by loom's preemption bound: 2 by default, 1 for the three-way
//! rollback race (at 2 it is 347 163 interleavings, ~210 s on a shared 2-core machine;
//! at 1 it is 4 568 and still reaches every outcome of the race, which the test asserts).
//! `LOOM_MAX_PREEMPTIONS` overrides the bound for all of them: at 3 the four other tests
//! pass too, 1.3 million interleavings in ~8 minutes. Each test prints its count.
//!
//! Under `--cfg bluegreen_loom` the crate's `sync` shim hands out loom's `Arc`, atomics,
//! `Mutex`, `Condvar` and threads, a loom `Mutex<Arc<T>>` for the arc-swap cell and a
//! channel built on them (see `src/sync/mod.rs`). The cfg is bluegreen's own, not the
//! customary `loom`, because a global `--cfg loom` also turns on the loom code of
//! dependencies that have some (tokio, sharded-slab, …) and they then need loom as well;
//! the dev-dependencies are left out under it (this file needs none), and the ONNX backend
//! with `--no-default-features`, so the build compiles the library's own dependencies and
//! loom only. Loom has no time: the drain poll yields instead of sleeping, waits with a
//! deadline wait for their event (a protocol that needs its timeout to progress would be a
//! deadlock here, which loom reports), and the bake monitor takes one look, which loom
//! places at every point of the other threads' work. Loom allows five threads per
//! execution, counting every thread started and the test's own; a deployment uses two
//! (retirer, gate worker), three with a bake (the monitor).
//!
//! # Broken variants are caught
//!
//! With the drain wait in `Inner::retire` (src/deployment/retire.rs) skipped — the old
//! model handed to the retirer as soon as it leaves its slot, before its reference count
//! comes down to the retirer's own (`if holders == 0 || true { break }`) — the retirer's
//! reference is no longer the last: a reader still running on the old model drops it when
//! its call ends, on the reader's thread.
//! `a_retired_model_is_dropped_once_on_the_retirer_after_its_last_call` then fails:
//!
//! ```text
//! panicked at tests/loom.rs (all_dropped_once_on_the_retirer):
//! assertion `left == right` failed: v1 dropped on thread "reader", not on the retirer
//!   left: "reader"
//!  right: "bluegreen-retirer"
//! ```
//!
//! With every thread given lane index 0 (`thread_index` in src/slot/lanes.rs returning
//! `Some(0)`), two live threads write one lane, and
//! `no_call_is_lost_from_the_counts_when_threads_share_and_reuse_lanes` fails:
//!
//! ```text
//! assertion `left == right` failed: requests counted 2 of 4: two live threads wrote one lane
//! ```

#![cfg(bluegreen_loom)]

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool as StdBool, Ordering::Relaxed};

use bluegreen::{Bake, BlueGreen, Error, Model, SlotState};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

/// Every interleaving with at most `LOOM_MAX_PREEMPTIONS` preemptions (default `bound`);
/// prints how many there were.
fn check(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(bound);
    }
    // An execution of a whole deployment takes a few thousand steps.
    builder.max_branches = builder.max_branches.max(100_000);
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    let started = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Relaxed);
        f();
    });
    eprintln!(
        "{name}: {} interleavings in {:.1?} (preemption bound {:?})",
        runs.load(Relaxed),
        started.elapsed(),
        builder.preemption_bound
    );
}

/// What the test knows about every model it made: what happened to it, checked at the end.
#[derive(Default)]
struct Tracker {
    /// Models alive now (made and not dropped).
    resident: AtomicUsize,
    /// The most models ever alive at once.
    peak: StdMutex<usize>,
    /// (version, the thread that dropped it, calls running on it when it was dropped).
    drops: StdMutex<Vec<(&'static str, String, usize)>>,
}

/// A new model, counted as resident.
fn probe(tracker: &Arc<Tracker>, version: &'static str, fails: bool) -> Probe {
    let now = tracker.resident.fetch_add(1, SeqCst) + 1;
    let mut peak = tracker.peak.lock().unwrap();
    *peak = (*peak).max(now);
    Probe {
        version,
        fails,
        in_call: AtomicUsize::new(0),
        tracker: Arc::clone(tracker),
    }
}

impl Tracker {
    /// Every model made was dropped exactly once, on the retirer, with no call running.
    fn all_dropped_once_on_the_retirer(&self, made: &[&str]) {
        let drops = self.drops.lock().unwrap();
        for (version, thread, in_call) in drops.iter() {
            assert_eq!(
                thread, "bluegreen-retirer",
                "{version} dropped on thread {thread:?}, not on the retirer"
            );
            assert_eq!(
                *in_call, 0,
                "{version} dropped with {in_call} calls running"
            );
        }
        let mut dropped: Vec<&str> = drops.iter().map(|d| d.0).collect();
        dropped.sort_unstable();
        let mut made = made.to_vec();
        made.sort_unstable();
        assert_eq!(dropped, made, "every model dropped exactly once");
        assert_eq!(self.resident.load(SeqCst), 0);
    }
}

/// A model that says which version it is, counts the calls running on it (a loom atomic,
/// so loom can switch threads in the middle of a call), and reports its drop.
struct Probe {
    version: &'static str,
    fails: bool,
    in_call: AtomicUsize,
    tracker: Arc<Tracker>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0} fails every call")]
struct Fails(&'static str);

impl Model for Probe {
    type Input = ();
    type Output = &'static str;
    type Error = Fails;

    fn predict(&self, _: &()) -> Result<&'static str, Fails> {
        self.in_call.fetch_add(1, SeqCst);
        let out = if self.fails {
            Err(Fails(self.version))
        } else {
            Ok(self.version)
        };
        self.in_call.fetch_sub(1, SeqCst);
        out
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let thread = thread::current().name().unwrap_or("unnamed").to_owned();
        let in_call = self.in_call.load(SeqCst);
        self.tracker
            .drops
            .lock()
            .unwrap()
            .push((self.version, thread, in_call));
        self.tracker.resident.fetch_sub(1, SeqCst);
    }
}

fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .unwrap()
}

/// A reader's answer comes from a version that was active at some point during its call,
/// while the old model is swapped out and retired (`unstage` drains it, the retirer drops
/// it).
#[test]
fn a_readers_answer_comes_from_a_version_active_during_its_call() {
    check(
        "a_readers_answer_comes_from_a_version_active_during_its_call",
        2,
        || {
            let tracker = Arc::new(Tracker::default());
            let bg = Arc::new(
                BlueGreen::builder()
                    .build("v1", probe(&tracker, "v1", false))
                    .unwrap(),
            );
            bg.stage("v2", probe(&tracker, "v2", false)).unwrap();
            // Active before, during and after the swap: v1, then v2. `began`/`ended` count the
            // swap's start and end as the test thread sees them.
            let (began, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let reader = {
                let (bg, began, ended) = (Arc::clone(&bg), Arc::clone(&began), Arc::clone(&ended));
                spawn_named("reader", move || {
                    let before = ended.load(SeqCst);
                    let answer = bg.predict_versioned(&());
                    let after = began.load(SeqCst);
                    (before, answer, after)
                })
            };
            began.store(1, SeqCst);
            bg.swap().unwrap();
            ended.store(1, SeqCst);
            let (before, answer, after) = reader.join().unwrap();
            let active = ["v1", "v2"];
            let possible = &active[before..=after];
            assert_eq!(answer.output.unwrap(), answer.version);
            assert!(
                possible.contains(&answer.version),
                "answered by {} but only {possible:?} were active during the call",
                answer.version
            );
            drop(bg);
            tracker.all_dropped_once_on_the_retirer(&["v1", "v2"]);
        },
    );
}

/// The old model is retired while a reader may still be running on it: it is dropped
/// exactly once, on the retirer thread (never the reader's), after its last call ended.
#[test]
fn a_retired_model_is_dropped_once_on_the_retirer_after_its_last_call() {
    check(
        "a_retired_model_is_dropped_once_on_the_retirer_after_its_last_call",
        2,
        || {
            let tracker = Arc::new(Tracker::default());
            let bg = Arc::new(
                BlueGreen::builder()
                    .build("v1", probe(&tracker, "v1", false))
                    .unwrap(),
            );
            bg.stage("v2", probe(&tracker, "v2", false)).unwrap();
            let reader = {
                let bg = Arc::clone(&bg);
                spawn_named("reader", move || bg.predict(&()).unwrap())
            };
            bg.swap().unwrap();
            // Retires v1 (the previous model): waits for the reader's call on it, if any.
            assert_eq!(bg.unstage().unwrap().as_deref(), Some("v1"));
            let answered = reader.join().unwrap();
            assert!(["v1", "v2"].contains(&answered));
            {
                let drops = tracker.drops.lock().unwrap();
                assert_eq!(drops.len(), 1, "v1 alone retired so far");
            }
            drop(bg);
            tracker.all_dropped_once_on_the_retirer(&["v1", "v2"]);
        },
    );
}

/// A memory-tight deployment that stages with a loader never holds more than two models,
/// with a reader pinning the old one while it is retired: `stage_with` loads only after
/// the model it replaces was drained and dropped.
#[test]
fn a_memory_tight_deployment_never_holds_more_than_two_models() {
    check(
        "a_memory_tight_deployment_never_holds_more_than_two_models",
        2,
        || {
            let tracker = Arc::new(Tracker::default());
            let bg = Arc::new(
                BlueGreen::builder()
                    .memory_tight(true)
                    .build("v1", probe(&tracker, "v1", false))
                    .unwrap(),
            );
            bg.stage("v2", probe(&tracker, "v2", false)).unwrap();
            bg.swap().unwrap();
            let reader = {
                let bg = Arc::clone(&bg);
                spawn_named("reader", move || bg.predict(&()).unwrap())
            };
            let t = Arc::clone(&tracker);
            bg.stage_with("v3", move || Ok::<_, Fails>(probe(&t, "v3", false)))
                .unwrap();
            assert_eq!(reader.join().unwrap(), "v2");
            assert_eq!(
                *tracker.peak.lock().unwrap(),
                2,
                "more than two models resident"
            );
            drop(bg);
            tracker.all_dropped_once_on_the_retirer(&["v1", "v2", "v3"]);
        },
    );
}

/// Which outcomes of the three-way race some interleaving reached (across executions).
static ROLLED_BACK_BEFORE_SWAP: StdBool = StdBool::new(false);
static MANUAL_WON: StdBool = StdBool::new(false);
static MONITOR_WON: StdBool = StdBool::new(false);
static NOBODY_ROLLED_BACK: StdBool = StdBool::new(false);

/// A swap to a failing model, a manual rollback on another thread and the bake monitor's
/// automatic rollback race: whatever the order, one consistent state results, with the
/// counts, slot states and bake `status()` reports matching what happened.
#[test]
fn swap_rollback_and_automatic_rollback_leave_one_consistent_state() {
    check(
        "swap_rollback_and_automatic_rollback_leave_one_consistent_state",
        1,
        || {
            let tracker = Arc::new(Tracker::default());
            let bake = Bake::for_duration(std::time::Duration::from_secs(3600))
                .min_samples(1)
                .max_error_rate(0.0);
            let bg = Arc::new(
                BlueGreen::builder()
                    .bake(bake)
                    .build("v1", probe(&tracker, "v1", false))
                    .unwrap(),
            );
            bg.stage("v2", probe(&tracker, "v2", true)).unwrap();
            let manual = {
                let bg = Arc::clone(&bg);
                spawn_named("admin", move || bg.rollback())
            };
            bg.swap().unwrap();
            // One failing call on v2 (or a good one on v1, if a rollback came first): what
            // the monitor's look judges.
            let answered = bg.predict_versioned(&()).version;
            let manual = manual.join().unwrap();
            let st = bg.status();
            let auto = st.auto_rollbacks;
            let manual_ok = u64::from(manual.is_ok());
            assert!(manual_ok + auto <= 1, "rolled back twice: {st:?}");
            assert_eq!(st.rollbacks, manual_ok + auto);
            assert_eq!(st.swaps, 1);
            assert_eq!(st.last_auto_rollback.is_some(), auto == 1);
            let previous = st.previous.as_ref().expect("a previous model");
            if manual_ok + auto == 1 {
                assert_eq!(st.active.version, "v1");
                assert_eq!(
                    (previous.version.as_str(), previous.state),
                    ("v2", SlotState::RolledBack)
                );
                assert!(st.bake.is_none(), "a rollback ends the bake");
                if let Some(a) = &st.last_auto_rollback {
                    assert_eq!((a.from.as_str(), a.to.as_str()), ("v2", "v1"));
                }
            } else {
                assert_eq!(
                    (st.active.version.as_str(), st.active.state),
                    ("v2", SlotState::Baking)
                );
                assert_eq!(
                    (previous.version.as_str(), previous.state),
                    ("v1", SlotState::Previous)
                );
                assert!(st.bake.is_some(), "still baking");
                assert_eq!(answered, "v2");
            }
            match &manual {
                Ok(report) => {
                    assert_eq!((report.from.as_str(), report.to.as_str()), ("v2", "v1"));
                    MANUAL_WON.store(true, Relaxed);
                }
                // Before the swap's flip: only the staged (or validating) candidate.
                Err(Error::NothingToRollBack {
                    standby: Some(SlotState::Staged | SlotState::Validating),
                }) => ROLLED_BACK_BEFORE_SWAP.store(true, Relaxed),
                // After the monitor's: v2 is rolled back from, no target left.
                Err(Error::NothingToRollBack {
                    standby: Some(SlotState::RolledBack),
                }) if auto == 1 => {}
                Err(e) => panic!("unexpected rollback error: {e:?}"),
            }
            if auto == 1 {
                MONITOR_WON.store(true, Relaxed);
            }
            if manual_ok + auto == 0 {
                NOBODY_ROLLED_BACK.store(true, Relaxed);
            }
            assert!(st.faults.by_kind.is_empty(), "{:?}", st.faults);
            drop(st);
            drop(bg);
            tracker.all_dropped_once_on_the_retirer(&["v1", "v2"]);
        },
    );
    // The race was really explored: every way it can go was reached.
    assert!(
        ROLLED_BACK_BEFORE_SWAP.load(Relaxed),
        "never rolled back before the swap"
    );
    assert!(MANUAL_WON.load(Relaxed), "the manual rollback never won");
    assert!(MONITOR_WON.load(Relaxed), "the monitor never rolled back");
    assert!(NOBODY_ROLLED_BACK.load(Relaxed), "never left baking");
}

/// Lanes: two live threads never share a lane, and a thread that starts after one exited
/// carries on from its lane. Request counters are written load-then-store by their lane's
/// only thread, so two live threads on one lane would lose a count in some interleaving.
/// (Loom counts every thread an execution starts against its five: the test thread reads
/// beside two readers, the second started after the first exited.)
#[test]
fn no_call_is_lost_from_the_counts_when_threads_share_and_reuse_lanes() {
    check(
        "no_call_is_lost_from_the_counts_when_threads_share_and_reuse_lanes",
        2,
        || {
            let tracker = Arc::new(Tracker::default());
            let bg = Arc::new(
                BlueGreen::builder()
                    .build("v1", probe(&tracker, "v1", false))
                    .unwrap(),
            );
            let read = |bg: &Arc<BlueGreen<Probe>>| {
                let bg = Arc::clone(bg);
                spawn_named("reader", move || bg.predict(&()).unwrap())
            };
            let first = read(&bg);
            assert_eq!(bg.predict(&()).unwrap(), "v1");
            first.join().unwrap();
            // Starts after `first` exited and takes the index it gave back, while the test
            // thread reads on.
            let second = read(&bg);
            assert_eq!(bg.predict(&()).unwrap(), "v1");
            second.join().unwrap();
            let requests = bg.status().active.requests;
            assert_eq!(
                requests, 4,
                "requests counted {requests} of 4: two live threads wrote one lane"
            );
            drop(bg);
            tracker.all_dropped_once_on_the_retirer(&["v1"]);
        },
    );
}
