//! Untimed background load: reader threads kept busy (calling `predict`, or any read)
//! while something else is measured — admin cycles, memory cycles, raw `ArcSwap::swap`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
/// calls); `f` starts once every reader has made its first call.
pub fn with_readers_running<R>(readers: usize, read: impl Fn() + Sync, f: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    let reading = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..readers {
            let (stop, read, reading) = (&stop, &read, &reading);
            s.spawn(move || {
                read();
                reading.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    read();
                }
            });
        }
        while reading.load(Ordering::Relaxed) < readers {
            std::thread::yield_now();
        }
        let r = f();
        stop.store(true, Ordering::Relaxed);
        r
    })
}
