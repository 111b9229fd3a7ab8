//! Sections `journal` (feature `journal`) and `watch_lock` (feature `watch`).
//!
//! `journal`: what recording every decision costs the admin path — a stage + swap +
//! rollback cycle with a journal (three fsynced commits, `synchronous = FULL`) against the
//! same cycle without, interleaved rounds; the read path never touches the journal.
//!
//! `watch_lock`: the share of time the repository watcher holds the operation lock (the
//! one an admin API shares with it) while a held model keeps it from rolling out a new
//! version: a pinned previous model, a drain timeout of 1 s, polling every 50 ms, sampled
//! with `try_lock` every millisecond for 3 s.

#[cfg(feature = "watch")]
use std::time::{Duration, Instant};

#[cfg(feature = "journal")]
use crate::common::{self, nanos};
use crate::{Opts, Out};

/// Admin cycle with and without a journal.
#[cfg(feature = "journal")]
pub fn journal(opts: &Opts, out: &mut Out) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cycles = 20u64;
    let plain = common::trivial_deployment();
    let journaled = bluegreen::BlueGreen::builder()
        .name("quickbench")
        .journal(dir.path().join("journal.db"))
        .build("v0", common::Trivial { tag: 0 })
        .expect("deployment with a journal");
    // Per round: the median cycle of each configuration (order alternating); the ratio is
    // the median of the per-round ratios.
    let (mut plain_ns, mut journal_ns, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = 1u64;
    for round in 0..opts.rounds {
        let mut times = [0.0f64; 2];
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for slot in order {
            let bg = if slot == 0 { &plain } else { &journaled };
            let xs: Vec<f64> = (0..cycles)
                .map(|_| {
                    seq += 1;
                    let t = common::admin_cycle(bg, seq, true);
                    nanos(t.stage + t.swap + t.rollback)
                })
                .collect();
            times[slot] = common::median(&xs);
        }
        plain_ns.push(times[0]);
        journal_ns.push(times[1]);
        ratios.push(times[1] / times[0]);
    }
    out.ns("admin_cycle_p50_plain", common::median(&plain_ns));
    out.ns("admin_cycle_p50_journal", common::median(&journal_ns));
    out.ratio("admin_cycle_journal_vs_plain", common::median(&ratios));
    let rows = journaled
        .history(bluegreen::journal::MAX_HISTORY)
        .map_or(0, |h| h.len());
    out.count("journal_rows_written", rows as u64);
}

/// Share of time the watcher holds the operation lock while a held model blocks it.
#[cfg(feature = "watch")]
pub fn watch_lock(_: &Opts, out: &mut Out) {
    use std::sync::{Arc, Mutex};

    use bluegreen::repository::{Repository, VersionDir};
    use bluegreen::watch::Watcher;

    let dir = tempfile::tempdir().expect("temp dir");
    let repo = Repository::new(dir.path());
    let publish = |v: &str| {
        std::fs::create_dir_all(dir.path().join(v)).expect("version dir");
        std::fs::write(dir.path().join(v).join("model.txt"), v).expect("model file");
        repo.mark_complete(v).expect("marker");
    };
    publish("1");
    let bg = Arc::new(
        bluegreen::BlueGreen::builder()
            .drain_timeout(Duration::from_secs(1))
            .build("1", crate::common::Trivial { tag: 1 })
            .expect("deployment"),
    );
    let lock = Arc::new(Mutex::new(()));
    let _w = Watcher::builder(repo.clone())
        .poll_interval(Duration::from_millis(50))
        .operation_lock(Arc::clone(&lock))
        .spawn(Arc::clone(&bg), |v: &VersionDir| {
            let tag = v.version.parse().unwrap_or(0);
            Ok::<_, std::io::Error>(crate::common::Trivial { tag })
        })
        .expect("watcher");
    let pin = bg.active(); // version 1, soon the previous model, held
    publish("2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while bg.active().version() != "2" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    publish("3"); // promoting 3 must retire 1, which cannot drain
    let (mut held, mut samples) = (0u64, 0u64);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        samples += 1;
        if lock.try_lock().is_err() {
            held += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(pin);
    out.ratio(
        "watch_op_lock_held_share",
        held as f64 / samples.max(1) as f64,
    );
    out.count("watch_op_lock_samples", samples);
}
