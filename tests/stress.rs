//! Concurrency stress: reader threads call `predict` non-stop while an admin thread runs
//! over a thousand stage/swap/rollback cycles. Every single response is checked.
//!
//! What it proves:
//! * zero failed calls;
//! * each answer comes from a model that was active at some moment during that call;
//! * never more than three models alive at once — active, previous, candidate; two in a
//!   memory-tight deployment (counted by the models' constructors and `Drop`);
//! * every retired model is dropped exactly once, never while a call runs on it, and never
//!   on a reader thread (checked inside the test model's `Drop`).
//!
//! How "active during the call" is checked: the admin thread keeps a timeline of the
//! models that were active, in order, and a sequence number that is odd while a flip is
//! in progress (a seqlock). It appends the next model to the timeline *before* flipping.
//! A reader notes the sequence before (`s`) and after (`e`) its call; the model that
//! answered must be one of `timeline[s / 2 ..= ceil(e / 2)]`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bluegreen::{BlueGreen, Error};
use common::{Tracker, tag_is_good};
use parking_lot::Mutex;

const CYCLES: u64 = 1200;
const READERS: usize = 3;

struct Timeline {
    seq: AtomicU64,
    tags: Mutex<Vec<u64>>,
}

impl Timeline {
    /// Runs `flip`, which must make `next` the active model, bracketed by the seqlock.
    fn flip<T>(&self, next: u64, flip: impl FnOnce() -> T) -> T {
        self.tags.lock().push(next);
        self.seq.fetch_add(1, Ordering::SeqCst);
        let out = flip();
        self.seq.fetch_add(1, Ordering::SeqCst);
        out
    }
}

#[test]
fn readers_see_only_live_versions_through_a_thousand_swaps_and_rollbacks() {
    stress(false);
}

#[test]
fn memory_tight_readers_see_only_live_versions_through_a_thousand_swaps_and_rollbacks() {
    stress(true);
}

/// The whole stress run; `tight` for a memory-tight deployment.
fn stress(tight: bool) {
    let tracker = Tracker::new();
    let bg = Arc::new(
        BlueGreen::builder()
            .validator(tag_is_good())
            .warmup_samples(vec![0])
            .drain_timeout(Duration::from_secs(10))
            .memory_tight(tight)
            .build("m1", tracker.model(1))
            .unwrap(),
    );
    let timeline = Arc::new(Timeline {
        seq: AtomicU64::new(0),
        tags: Mutex::new(vec![1]),
    });
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (bg, timeline, stop) = (Arc::clone(&bg), Arc::clone(&timeline), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("reader-{r}"))
                .spawn(move || {
                    let (mut calls, mut bad) = (0u64, Vec::new());
                    let mut input = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        input += 1;
                        let s = timeline.seq.load(Ordering::SeqCst);
                        let answer = bg.predict(&input);
                        let e = timeline.seq.load(Ordering::SeqCst);
                        calls += 1;
                        match answer {
                            Ok((tag, echoed)) => {
                                let tags = timeline.tags.lock();
                                let window = &tags[(s / 2) as usize..=e.div_ceil(2) as usize];
                                if echoed != input || !window.contains(&tag) {
                                    bad.push(format!(
                                        "call {input}: answered by {tag} (echo {echoed}), active during call: {window:?}"
                                    ));
                                }
                            }
                            Err(err) => bad.push(format!("call {input} failed: {err}")),
                        }
                    }
                    (calls, bad)
                })
                .unwrap()
        })
        .collect();

    // Admin: stage a fresh model, swap to it; every third cycle roll back; every
    // seventh candidate is bad and must be refused without a flip.
    let mut active = 1u64;
    let (mut swaps, mut rollbacks, mut refused) = (0u64, 0u64, 0u64);
    for cycle in 0..CYCLES {
        let tag = cycle + 2;
        let bad = cycle % 7 == 6;
        bg.stage_with(format!("m{tag}"), || {
            let m = tracker.model(tag);
            Ok::<_, Error>(if bad { m.bad() } else { m })
        })
        .unwrap();
        if bad {
            assert!(matches!(bg.swap(), Err(Error::ValidationFailed(_))));
            refused += 1;
            continue;
        }
        let previous = active;
        let r = timeline.flip(tag, || bg.swap()).unwrap();
        assert_eq!(r.to, format!("m{tag}"));
        active = tag;
        swaps += 1;
        if cycle % 3 == 0 {
            timeline.flip(previous, || bg.rollback()).unwrap();
            active = previous;
            rollbacks += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);

    let mut total_calls = 0;
    for r in readers {
        let (calls, bad) = r.join().unwrap();
        assert!(
            bad.is_empty(),
            "{} bad responses, first: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        total_calls += calls;
    }
    assert!(
        total_calls > 10_000,
        "readers made only {total_calls} calls"
    );

    let status = bg.status();
    assert_eq!(status.active.version, format!("m{active}"));
    assert_eq!(
        (status.swaps, status.rollbacks, status.rejections),
        (swaps, rollbacks, refused)
    );
    assert!(
        swaps + rollbacks >= 1000,
        "{swaps} swaps + {rollbacks} rollbacks"
    );
    // Active, previous and a candidate (one standby slot when memory-tight): `stage_with`
    // loads only after everything retired before it is gone.
    let most = if tight { 2 } else { 3 };
    assert_eq!(
        tracker.max_alive(),
        most,
        "never more than {most} models alive"
    );

    drop(bg);
    let created = tracker.created();
    assert_eq!(created, CYCLES + 1);
    for tag in 1..=created {
        assert_eq!(tracker.drops_of(tag), 1, "model {tag} dropped once");
    }
    assert_eq!(tracker.alive(), 0);
    let violations = tracker.violations.lock();
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn pinned_readers_keep_their_version_across_swaps() {
    let tracker = Tracker::new();
    let bg = Arc::new(
        BlueGreen::builder()
            .drain_timeout(Duration::from_secs(10))
            .build("m1", tracker.model(1))
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (bg, stop) = (Arc::clone(&bg), Arc::clone(&stop));
            std::thread::Builder::new()
                .name(format!("reader-pin-{r}"))
                .spawn(move || {
                    let mut sessions = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let pin = bg.active();
                        let tag = pin.predict(&0).unwrap().0;
                        for i in 1..20 {
                            assert_eq!(
                                pin.predict(&i).unwrap(),
                                (tag, i),
                                "a pinned session changed model"
                            );
                        }
                        assert_eq!(pin.version(), format!("m{tag}"));
                        sessions += 1;
                    }
                    sessions
                })
                .unwrap()
        })
        .collect();
    for tag in 2..300u64 {
        bg.stage_with(format!("m{tag}"), || Ok::<_, Error>(tracker.model(tag)))
            .unwrap();
        bg.swap().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert_eq!(tracker.max_alive(), 3, "active, previous and a candidate");
    drop(bg);
    assert_eq!(tracker.alive(), 0);
    assert!(
        tracker.violations.lock().is_empty(),
        "{:?}",
        tracker.violations.lock()
    );
}
