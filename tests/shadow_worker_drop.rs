//! A shadow worker left behind at shutdown releases the candidate's last
//! reference itself, outside any `catch_unwind`: a panicking `Drop` unwinds out of the
//! `bluegreen-shadow` thread (and was counted nowhere) — it must be caught. Its own test binary: it installs a panic hook.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bluegreen::BlueGreen;
use common::{Behavior, OnDrop, Tracker, wait_until};
use parking_lot::Mutex;

#[test]
fn a_left_behind_shadow_worker_does_not_let_a_drop_panic_unwind_out_of_it() {
    // (thread name, whether a catch_unwind sat between the panic and the thread's root)
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let s = Arc::clone(&seen);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        let root = bt.find("__rust_begin_short_backtrace").unwrap_or(bt.len());
        let guarded = bt[..root].contains("catch_unwind");
        s.lock().push((name, guarded));
    }));
    // Control: the retirer's drop is guarded, and the detector says so.
    {
        let t = Tracker::new();
        let bg = BlueGreen::new("v1", t.model(1)).unwrap();
        bg.stage("v2", t.model(2).dropping(OnDrop::Panics)).unwrap();
        bg.stage("v3", t.model(3)).unwrap();
        assert!(wait_until(Duration::from_secs(20), || seen.lock().len() == 1));
        let control = seen.lock().clone();
        assert_eq!(control, [("bluegreen-retirer".to_owned(), true)]);
        seen.lock().clear();
    }
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .shadow(
            bluegreen::Shadow::new(1.0, |_: &(u64, u64), _: &(u64, u64)| {
                bluegreen::Comparison {
                    agree: true,
                    abs_diff: 0.0,
                }
            })
            .call_deadline(Duration::from_secs(60)),
        )
        .shutdown_timeout(Duration::from_millis(50))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage(
        "v2",
        t.model_with(2, Behavior::HangsUntilReleased)
            .dropping(OnDrop::Panics),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        let _ = bg.predict(&1);
        t.hanging() == 1
    }));
    drop(bg); // the worker is left behind inside v2; the retirer lets go of v2
    // The shadow worker used up the shutdown deadline, so `drop` may return before the
    // retirer has released its reference: wait for that thread to end, or a release
    // now could let the retirer's reference be the last (a race, not the case tested).
    assert!(wait_until(Duration::from_secs(20), || !thread_alive(
        "bluegreen-retir"
    )));
    t.release();
    assert!(wait_until(Duration::from_secs(20), || !seen
        .lock()
        .is_empty()));
    std::thread::sleep(Duration::from_millis(100));
    let _ = std::panic::take_hook();
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0],
        ("bluegreen-shadow".to_owned(), true),
        "v2's Drop panicked on the shadow worker outside any catch_unwind"
    );
}

/// Whether a thread of this process has a name starting with `prefix` (Linux keeps the
/// first 15 bytes of a thread's name in `/proc/self/task/*/comm`).
fn thread_alive(prefix: &str) -> bool {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task (this test runs on Linux)")
        .flatten()
        .any(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
}
