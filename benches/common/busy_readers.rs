//! Untimed background load: reader threads kept busy (calling `predict`, or any read)
//! while something else is measured — admin cycles, memory cycles, raw `ArcSwap::swap`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

use bluegreen::{BlueGreen, Model};

/// Runs `f` while `readers` threads call `bg.predict` in a tight loop.
pub fn with_busy_readers<M, R>(
    bg: &BlueGreen<M>,
    readers: usize,
    input: &M::Input,
    f: impl FnOnce() -> R,
) -> R
where
    M: Model,
{
    with_readers_running(
        readers,
        || {
            for _ in 0..64 {
                let _ = black_box(bg.predict(black_box(input)));
            }
        },
        f,
    )
}

/// Runs `f` while `readers` threads call `read` in a loop (checking for the end between
/// calls).
pub fn with_readers_running<R>(readers: usize, read: impl Fn() + Sync, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..readers {
            let (stop, read) = (&stop, &read);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    read();
                }
            });
        }
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}
