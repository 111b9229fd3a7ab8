//! The floor under the floor: the synchronization primitives bluegreen's core is built
//! from, in one place, so that a model checker can replace them.
//!
//! In a normal build these are exactly the crates the code used directly before: `std`'s
//! `Arc` and atomics, `parking_lot`'s `Mutex`/`Condvar`, `arc-swap`'s swap cell,
//! `crossbeam-channel` and `std::thread` — re-exported, so the compiled code is the same.
//! Under `--cfg bluegreen_loom` (see `tests/loom.rs`) they are loom's instrumented
//! versions, or thin stand-ins built on them where loom has none:
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the switch, and [`pause`], the one real-time wait of the core (a drain poll) |
//! | `loom_lock.rs` | loom build: a `parking_lot`-shaped `Mutex`/`Condvar` on loom's, and the swap cell |
//! | `loom_channel.rs` | loom build: a `crossbeam-channel`-shaped channel on a loom mutex and condvar |
//!
//! The swap cell under loom is a loom `Mutex<Arc<T>>` (arc-swap is not loom-instrumented).
//! It keeps the one semantic the drain protocol relies on: a loaded guard is a real
//! reference once the cell is stored to — arc-swap converts outstanding guards into
//! references on `store`, the stand-in's guards are references from the start — so the
//! old model's reference count is its number of unfinished calls either way. Loom has no
//! time: under it a bounded wait is an unbounded one (a protocol that needs its timeout to
//! make progress shows up as a deadlock), and a poll yields instead of sleeping.
//!
//! Not switched, on purpose: process-wide statics that outlive one loom execution (version
//! interning, the generation counter) and `Weak`-based bookkeeping of abandoned work (loom
//! has no `Weak`), which the loom tests do not exercise.

#[cfg(bluegreen_loom)]
pub(crate) mod loom_channel;
#[cfg(bluegreen_loom)]
mod loom_lock;

#[cfg(not(bluegreen_loom))]
mod imp {
    pub(crate) use arc_swap::{ArcSwap, ArcSwapOption, Guard};
    pub(crate) use crossbeam_channel as channel;
    pub(crate) use parking_lot::{Condvar, Mutex};
    pub(crate) use std::sync::Arc;
    pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
    pub(crate) use std::thread;
}

#[cfg(bluegreen_loom)]
mod imp {
    pub(crate) use super::loom_channel as channel;
    pub(crate) use super::loom_lock::{ArcSwap, ArcSwapOption, Condvar, Guard, Mutex};
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
    pub(crate) use loom::thread;
}

#[allow(unused_imports)] // not every primitive is used by every build
pub(crate) use imp::*;

/// Waits `d` before polling again: a sleep normally; under loom, a yield (loom has no time,
/// and a yield tells it that this thread waits for another one to make progress).
#[inline]
pub(crate) fn pause(d: std::time::Duration) {
    #[cfg(not(bluegreen_loom))]
    std::thread::sleep(d);
    #[cfg(bluegreen_loom)]
    {
        let _ = d;
        loom::thread::yield_now();
    }
}
