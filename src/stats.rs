//! Per-slot request counters that never make request threads share a cache line.
//!
//! A single shared in-flight counter would cost every call a contended read-modify-write
//! (~200 ns at two threads on our test machines, against ~15 ns for the whole arc-swap
//! load). Instead every thread owns a cache-padded lane of counters per slot; only that
//! thread ever writes it, with plain load + store (no locked instruction). Readers of the
//! numbers ([`status`](crate::BlueGreen::status)) sum the lanes. The sum is a snapshot, not
//! a linearizable count, which is what a status page needs.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use thread_local::ThreadLocal;

/// One thread's counters for one slot. Written only by the owning thread.
#[derive(Default)]
struct Lane {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
}

/// Single-writer increment: the owning thread is the only writer, so a load and a store
/// are enough, and they compile to plain moves instead of a locked `xadd`.
#[inline]
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
}

/// Counters of one slot, striped per thread.
#[derive(Default)]
pub(crate) struct SlotStats {
    lanes: ThreadLocal<CachePadded<Lane>>,
}

/// Totals over all threads at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) started: u64,
    pub(crate) finished: u64,
    pub(crate) failed: u64,
}

impl Totals {
    pub(crate) fn in_flight(&self) -> u64 {
        self.started - self.finished
    }
}

impl SlotStats {
    /// Records the start of a call; the returned guard records its end when dropped
    /// (also when the model panics).
    #[inline]
    pub(crate) fn enter(&self) -> CallGuard<'_> {
        let lane = self.lanes.get_or_default();
        bump(&lane.started);
        CallGuard { lane }
    }

    /// Sums every thread's lane.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for lane in self.lanes.iter() {
            // `finished` first: its Acquire load makes the matching `started` visible, so
            // started >= finished holds per lane and in-flight never underflows.
            let finished = lane.finished.load(Ordering::Acquire);
            let failed = lane.failed.load(Ordering::Acquire);
            let started = lane.started.load(Ordering::Acquire);
            t.finished += finished;
            t.failed += failed;
            t.started += started.max(finished);
        }
        t
    }
}

/// Marks one running call; records its end on drop.
pub(crate) struct CallGuard<'a> {
    lane: &'a Lane,
}

impl CallGuard<'_> {
    /// Counts the call as failed (it still counts as finished when dropped).
    #[inline]
    pub(crate) fn failed(&self) {
        bump(&self.lane.failed);
    }
}

impl Drop for CallGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        bump(&self.lane.finished);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn totals_sum_every_threads_lane_and_track_in_flight() {
        let stats = Arc::new(SlotStats::default());
        let held = stats.enter();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let call = stats.enter();
                        if i % 10 == 0 {
                            call.failed();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = stats.totals();
        assert_eq!(t.started, 4001);
        assert_eq!(t.finished, 4000);
        assert_eq!(t.failed, 400);
        assert_eq!(t.in_flight(), 1);
        drop(held);
        assert_eq!(stats.totals().in_flight(), 0);
    }
}
