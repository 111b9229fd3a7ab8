//! Per-slot request counters that never make request threads share a cache line.
//!
//! A single shared in-flight counter would cost every call a contended read-modify-write
//! (~40 ns at two threads on our 2-core test machine, ~200 ns on others, against ~4.5 ns
//! for the whole arc-swap load). Instead every thread owns a cache-padded lane of counters
//! per slot ([`Lanes`]); only that thread ever writes it, with plain load +
//! store (no locked instruction). Readers of the numbers
//! ([`status`](crate::BlueGreen::status)) sum the lanes. The sum is a snapshot, not a
//! linearizable count, which is what a status page needs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::lanes::Lanes;

/// Latency buckets: 16 exact nanosecond buckets, then 8 per power of two up to 2^40 ns
/// (~18 minutes). A bucket's upper bound overstates a value by at most 1/8 (12.5 %).
///
/// Hand-written rather than `hdrhistogram`: each thread's lane needs a fixed, flat array of
/// single-writer counters that the hot path bumps with a plain load + store and readers sum
/// without a lock; an `hdrhistogram::Histogram` per lane would need `&mut` to record (so a
/// lock or a cell per lane) and allocates ~10× the memory for a precision the bake and
/// the metrics do not use. What leaves the lanes is merged here ([`Histogram`]) and handed
/// on bucket by bucket (to the `metrics` facade with the feature on).
const LINEAR: usize = 16;
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const MAX_EXP: u32 = 40;
pub(crate) const BUCKETS: usize = LINEAR + (MAX_EXP as usize - 3) * SUB;

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR as u64 {
        return ns as usize;
    }
    let exp = (63 - ns.leading_zeros()).min(MAX_EXP);
    let ns = ns.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    LINEAR + (exp as usize - 4) * SUB + sub
}

/// The largest value that falls in `bucket`.
fn bucket_upper(bucket: usize) -> u64 {
    if bucket < LINEAR {
        return bucket as u64;
    }
    let exp = ((bucket - LINEAR) / SUB) as u32 + 4;
    let sub = ((bucket - LINEAR) % SUB) as u64;
    ((SUB as u64 + sub + 1) << (exp - SUB_BITS)) - 1
}

/// One thread's counters for one slot. Written only by the owning thread.
#[derive(Default)]
struct Lane {
    started: AtomicU64,
    finished: AtomicU64,
    failed: AtomicU64,
    /// Calls that unwound out of the model (also counted in `failed`).
    panicked: AtomicU64,
    outcomes_ok: AtomicU64,
    outcomes_bad: AtomicU64,
    /// Allocated on the first timed call (2.5 KiB; most slots never time their calls).
    latency: OnceLock<Box<[AtomicU64; BUCKETS]>>,
}

impl Lane {
    fn latency(&self) -> &[AtomicU64; BUCKETS] {
        self.latency
            .get_or_init(|| Box::new([const { AtomicU64::new(0) }; BUCKETS]))
    }

    fn took(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        bump(&self.latency()[bucket_of(ns)]);
    }
}

/// Single-writer increment: the owning thread is the only writer, so a load and a store
/// are enough, and they compile to plain moves instead of a locked `xadd`.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
}

/// Counters of one slot, striped per thread.
#[derive(Default)]
pub(crate) struct SlotStats {
    lanes: Lanes<Lane>,
}

/// Totals over all threads at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) started: u64,
    pub(crate) finished: u64,
    /// Calls that returned an error or panicked.
    pub(crate) failed: u64,
    /// Calls that panicked.
    pub(crate) panicked: u64,
    pub(crate) outcomes_ok: u64,
    pub(crate) outcomes_bad: u64,
}

impl Totals {
    pub(crate) fn in_flight(&self) -> u64 {
        self.started - self.finished
    }

    /// Reported outcomes.
    pub(crate) fn outcomes(&self) -> u64 {
        self.outcomes_ok + self.outcomes_bad
    }
}

/// A latency distribution summed over all threads.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    /// Number of recorded calls.
    #[cfg(test)]
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// Every non-empty bucket: the largest value it holds, and how many calls fell in it.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(b, n)| (Duration::from_nanos(bucket_upper(b)), *n))
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket; `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_nanos(bucket_upper(bucket)));
            }
        }
        None
    }
}

impl SlotStats {
    /// Records the start of a call; the returned guard records its end when it is
    /// [finished](CallGuard::finish) — or, if it is dropped unfinished because the model
    /// panicked, records the call as failed and panicked. A call made while its thread is
    /// being torn down (from a thread-local destructor, after this crate's own) is not
    /// counted.
    #[inline]
    pub(crate) fn enter(&self) -> CallGuard<'_> {
        let lane = self.lanes.get();
        if let Some(lane) = lane {
            bump(&lane.started);
        }
        CallGuard {
            lane,
            returned: false,
            failed: false,
        }
    }

    /// Records how long a finished call took (only slots that time their calls do).
    #[inline]
    pub(crate) fn record_latency(&self, elapsed: Duration) {
        if let Some(lane) = self.lanes.get() {
            lane.took(elapsed);
        }
    }

    /// Records an application-reported outcome (e.g. a delayed label matched or not).
    pub(crate) fn record_outcome(&self, ok: bool) {
        if let Some(lane) = self.lanes.get() {
            bump(if ok {
                &lane.outcomes_ok
            } else {
                &lane.outcomes_bad
            });
        }
    }

    /// The latency distribution over all threads.
    pub(crate) fn latency(&self) -> Histogram {
        let mut counts = vec![0u64; BUCKETS];
        for latency in self.lanes.iter().filter_map(|lane| lane.latency.get()) {
            for (c, b) in counts.iter_mut().zip(latency.iter()) {
                *c += b.load(Ordering::Acquire);
            }
        }
        let total = counts.iter().sum();
        Histogram { counts, total }
    }

    /// Sums every thread's lane.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for lane in self.lanes.iter() {
            // Read in the opposite order of the writes (started, finished, then failed and
            // panicked): each Acquire load makes the earlier writes visible, so per lane
            // panicked <= failed <= finished <= started holds in every snapshot and
            // in-flight never underflows.
            let panicked = lane.panicked.load(Ordering::Acquire);
            let failed = lane.failed.load(Ordering::Acquire);
            let finished = lane.finished.load(Ordering::Acquire);
            let started = lane.started.load(Ordering::Acquire);
            t.finished += finished;
            t.failed += failed;
            t.panicked += panicked;
            t.started += started.max(finished);
            t.outcomes_ok += lane.outcomes_ok.load(Ordering::Acquire);
            t.outcomes_bad += lane.outcomes_bad.load(Ordering::Acquire);
        }
        t
    }
}

/// Marks one running call; records its end on drop.
///
/// A call that returns is ended with [`finish`](Self::finish). One that never gets there —
/// the model panicked and the guard is dropped while unwinding — counts as failed *and*
/// panicked, so a model that panics shows in the error rate (and the bake window) like one
/// that returns errors. No `thread::panicking()` query: a flag on the caller's stack is
/// cheaper and right even for calls made from a `Drop` during someone else's unwinding.
pub(crate) struct CallGuard<'a> {
    /// `None`: the call is not counted (thread teardown, see [`SlotStats::enter`]).
    lane: Option<&'a Lane>,
    /// Set by `finish`: the model returned.
    returned: bool,
    /// Set by `finish`: it returned an error.
    failed: bool,
}

impl CallGuard<'_> {
    /// The model returned; `failed` when it returned an error.
    #[inline]
    pub(crate) fn finish(mut self, failed: bool) {
        self.returned = true;
        self.failed = failed;
    }

    /// Records how long the call took.
    #[inline]
    pub(crate) fn took(&self, elapsed: Duration) {
        if let Some(lane) = self.lane {
            lane.took(elapsed);
        }
    }
}

impl Drop for CallGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(lane) = self.lane {
            // `finished` before `failed`/`panicked` (and `totals` reads them the other
            // way round), so a snapshot never shows more failures than finished calls.
            bump(&lane.finished);
            if !self.returned {
                bump(&lane.failed);
                bump(&lane.panicked);
            } else if self.failed {
                bump(&lane.failed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_value_lands_in_a_bucket_whose_upper_bound_is_within_an_eighth() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([1 << 20, 123_456_789, 1 << 39, u64::MAX]) {
            let b = bucket_of(ns);
            assert!(b < BUCKETS);
            assert!(b >= last || ns > 100_000, "buckets are monotonic");
            last = b;
            let upper = bucket_upper(b);
            if ns < 1 << 41 {
                assert!(upper >= ns, "{ns} -> bucket {b} upper {upper}");
                assert!(upper - ns <= ns / 8 + 1, "{ns} -> {upper}");
            }
        }
    }

    #[test]
    fn quantiles_come_from_the_merged_lanes() {
        let stats = Arc::new(SlotStats::default());
        for us in 1..=100 {
            stats.record_latency(Duration::from_micros(us));
        }
        let s2 = Arc::clone(&stats);
        std::thread::spawn(move || s2.record_latency(Duration::from_millis(50)))
            .join()
            .unwrap();
        let h = stats.latency();
        assert_eq!(h.count(), 101);
        let p50 = h.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_micros(51) && p50 <= Duration::from_micros(58),
            "{p50:?}"
        );
        let max = h.quantile(1.0).unwrap();
        assert!(max >= Duration::from_millis(50) && max <= Duration::from_micros(56_250));
    }

    #[test]
    fn totals_sum_every_threads_lane_and_track_in_flight() {
        let stats = Arc::new(SlotStats::default());
        let held = stats.enter();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        stats.enter().finish(i % 10 == 0);
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
        assert_eq!(t.panicked, 0);
        assert_eq!(t.in_flight(), 1);
        held.finish(false);
        assert_eq!(stats.totals().in_flight(), 0);
    }

    #[test]
    fn a_call_that_unwinds_counts_as_failed_and_panicked() {
        let stats = SlotStats::default();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _call = stats.enter();
            panic!("model exploded");
        }));
        assert!(unwound.is_err());
        stats.enter().finish(false);
        stats.enter().finish(true);
        let t = stats.totals();
        assert_eq!((t.started, t.finished), (3, 3));
        assert_eq!(t.failed, 2, "the panic and the returned error");
        assert_eq!(t.panicked, 1);
    }
}
