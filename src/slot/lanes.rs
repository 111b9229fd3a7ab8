//! Per-thread lanes: one cache-padded value per thread, written only by that thread and
//! read by anyone.
//!
//! This is what keeps request counters off shared cache lines (see [`super::stats`]). It
//! does what the `thread_local` crate's `ThreadLocal` does, shaped for the one lookup per
//! `predict`: the calling thread's index is a plain `Cell<usize>` in a `thread_local!`
//! without a destructor, which compiles to one `%fs`-relative load inlined into the caller,
//! and the first 64 threads' lanes are one array allocated with the slot, so the lookup is
//! a bounds check and an offset. Measured in `predict` (trivial model, one thread, paired
//! runs), this took bluegreen's cost over a raw `ArcSwap::load()` from ~1.5× to ~1.3×:
//! `ThreadLocal` reaches its thread id through an out-of-line accessor call, and a
//! thread-local *with* a destructor (which the index needs, to be given back) costs a
//! state check per access — so that one lives beside the index and is touched only when a
//! thread first asks and when it exits.
//!
//! Thread indices are small and dense: a thread takes the lowest free index on its first
//! lookup and gives it back when it exits, so a pool that replaces its threads reuses
//! lanes instead of growing. A lane keeps its values when its thread exits and the next
//! thread with that index carries on from them (the exit happens-before the reuse, through
//! the index allocator's lock), so sums over all lanes stay cumulative. Threads beyond the
//! first 64 get lanes in buckets of doubling size, each allocated the first time a thread
//! whose index falls in it asks, so lanes never move. (A lane of request counters is one
//! 128-byte cache line: the first 64 cost 8 KiB per loaded model.)

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use crate::sync::Mutex;
use crossbeam_utils::CachePadded;

/// Lanes allocated with the structure, for thread indices `0..FIRST`. (Under loom, which
/// runs at most five threads and explores every access, a few; the buckets behave the same.)
#[cfg(not(bluegreen_loom))]
const FIRST: usize = 64;
#[cfg(bluegreen_loom)]
const FIRST: usize = 4;
/// Further buckets; bucket `b` holds the `FIRST << b` lanes from index `FIRST << b` on, so
/// indices below `FIRST << BUCKETS` (2^32) have a lane.
const BUCKETS: usize = 26;

/// One value per thread, created on that thread's first [`get`](Self::get).
pub(crate) struct Lanes<T> {
    first: Box<[CachePadded<T>]>,
    more: [OnceLock<Box<[CachePadded<T>]>>; BUCKETS],
}

impl<T: Default> Default for Lanes<T> {
    fn default() -> Self {
        Self {
            first: new_lanes(FIRST),
            more: [const { OnceLock::new() }; BUCKETS],
        }
    }
}

fn new_lanes<T: Default>(n: usize) -> Box<[CachePadded<T>]> {
    (0..n).map(|_| CachePadded::default()).collect()
}

impl<T: Default> Lanes<T> {
    /// The calling thread's lane. `None` only while the thread is being torn down (its
    /// index is already given back), e.g. from another thread-local's destructor.
    #[inline]
    pub(crate) fn get(&self) -> Option<&T> {
        let index = thread_index()?;
        match self.first.get(index) {
            Some(lane) => Some(lane),
            None => self.get_more(index),
        }
    }

    #[cold]
    #[inline(never)]
    fn get_more(&self, index: usize) -> Option<&T> {
        let (bucket, offset) = locate(index)?;
        let lanes = self.more[bucket].get_or_init(|| new_lanes(FIRST << bucket));
        Some(&lanes[offset])
    }
}

impl<T> Lanes<T> {
    /// Every lane that exists (including lanes no thread has written yet: they hold
    /// `T::default()`).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        let more = self.more.iter().filter_map(OnceLock::get);
        std::iter::once(&self.first)
            .chain(more)
            .flat_map(|lanes| lanes.iter().map(|lane| &**lane))
    }
}

/// Bucket and offset of thread index `index` (at least `FIRST`) among the further buckets.
fn locate(index: usize) -> Option<(usize, usize)> {
    let bucket = (index / FIRST).checked_ilog2()? as usize;
    (bucket < BUCKETS).then(|| (bucket, index - (FIRST << bucket)))
}

/// Not assigned (yet, or any more).
const NONE: usize = usize::MAX;

#[cfg(not(bluegreen_loom))]
thread_local! {
    /// The calling thread's index, for the hot path: no destructor, so reading it is one
    /// load (a thread-local with a destructor is state-checked on every access).
    static INDEX: Cell<usize> = const { Cell::new(NONE) };
    /// Owns the index: gives it back when the thread exits.
    static OWNER: IndexOwner = const { IndexOwner { index: Cell::new(NONE) } };
}

// Loom runs its threads on one OS thread: `std` thread-locals would be shared by all of
// them, so the model checker gets its own (destroyed when each loom thread ends).
#[cfg(bluegreen_loom)]
loom::thread_local! {
    static INDEX: Cell<usize> = Cell::new(NONE);
    static OWNER: IndexOwner = IndexOwner {
        index: Cell::new(NONE),
        from: std::cell::RefCell::new(None),
    };
}

struct IndexOwner {
    index: Cell<usize>,
    /// Loom only: the allocator the index came from. Loom drops its lazy statics before
    /// the test thread's thread-locals, so the index is given back through this handle.
    #[cfg(bluegreen_loom)]
    from: std::cell::RefCell<Option<crate::sync::Arc<Mutex<Allocator>>>>,
}

impl Drop for IndexOwner {
    fn drop(&mut self) {
        let index = self.index.get();
        if index != NONE {
            // Later lookups on this thread (from other thread-locals' destructors) must
            // not keep using an index another thread may take next.
            // `try_with`: on targets without native thread-locals even this one may be
            // gone already (then nothing can read it either).
            let _ = INDEX.try_with(|i| i.set(NONE));
            #[cfg(not(bluegreen_loom))]
            INDEX_ALLOCATOR.lock().release(index);
            #[cfg(bluegreen_loom)]
            if let Some(allocator) = self.from.borrow_mut().take() {
                allocator.lock().release(index);
            }
        }
    }
}

/// The lowest free index goes to the next thread that asks.
struct Allocator {
    next: usize,
    free: BinaryHeap<Reverse<usize>>,
}

impl Allocator {
    fn take(&mut self) -> usize {
        match self.free.pop() {
            Some(Reverse(index)) => index,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    fn release(&mut self, index: usize) {
        self.free.push(Reverse(index));
    }
}

#[cfg(not(bluegreen_loom))]
static INDEX_ALLOCATOR: Mutex<Allocator> = Mutex::new(Allocator {
    next: 0,
    free: BinaryHeap::new(),
});

// A loom object cannot outlive one execution: a fresh allocator per execution.
#[cfg(bluegreen_loom)]
loom::lazy_static! {
    static ref INDEX_ALLOCATOR: crate::sync::Arc<Mutex<Allocator>> =
        crate::sync::Arc::new(Mutex::new(Allocator {
            next: 0,
            free: BinaryHeap::new(),
        }));
}

/// This thread's index.
#[inline]
fn thread_index() -> Option<usize> {
    match INDEX.try_with(Cell::get).ok()? {
        NONE => assign(),
        index => Some(index),
    }
}

/// First lookup on this thread: take an index and register its release at thread exit.
/// `None` once the thread's destructors have started on `OWNER`.
#[cold]
#[inline(never)]
fn assign() -> Option<usize> {
    OWNER
        .try_with(|owner| {
            let index = match owner.index.get() {
                NONE => {
                    #[cfg(bluegreen_loom)]
                    {
                        *owner.from.borrow_mut() = Some(crate::sync::Arc::clone(&INDEX_ALLOCATOR));
                    }
                    INDEX_ALLOCATOR.lock().take()
                }
                // `INDEX` could not keep it (see below): keep using the one already owned.
                index => index,
            };
            owner.index.set(index);
            // Fails only on targets without native thread-locals, during teardown; then
            // every lookup comes back here and finds the owned index.
            let _ = INDEX.try_with(|i| i.set(index));
            index
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn indices_past_the_first_lanes_map_to_distinct_lanes_in_doubling_buckets() {
        assert_eq!(locate(64), Some((0, 0)));
        assert_eq!(locate(127), Some((0, 63)));
        assert_eq!(locate(128), Some((1, 0)));
        assert_eq!(locate(255), Some((1, 127)));
        assert_eq!(locate(256), Some((2, 0)));
        assert_eq!(locate((1 << 32) - 1), Some((25, (1 << 31) - 1)));
        assert_eq!(locate(1 << 32), None);
        assert_eq!(locate(usize::MAX), None);
        let mut seen = std::collections::HashSet::new();
        for i in FIRST..100_000 {
            let (bucket, offset) = locate(i).unwrap();
            assert!(offset < FIRST << bucket, "index {i} outside its bucket");
            assert!(seen.insert((bucket, offset)), "index {i} shares a lane");
        }
    }

    #[test]
    fn each_thread_writes_its_own_lane_and_the_sum_sees_all() {
        let lanes: Arc<Lanes<AtomicU64>> = Arc::default();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let lanes = Arc::clone(&lanes);
                std::thread::spawn(move || {
                    let mine = lanes.get().unwrap();
                    for _ in 0..1000 {
                        // Plain load + store: a lost update here means two threads share.
                        mine.store(mine.load(Ordering::Relaxed) + 1, Ordering::Release);
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let sum: u64 = lanes.iter().map(|l| l.load(Ordering::Acquire)).sum();
        assert_eq!(sum, 8000);
    }

    #[test]
    fn threads_past_the_first_lanes_get_lanes_of_their_own() {
        // 100 threads alive at once need 100 distinct indices, so at least 36 of them land
        // in the buckets past the first 64 lanes.
        const THREADS: usize = 100;
        let lanes: Arc<Lanes<AtomicU64>> = Arc::default();
        let all_alive = Arc::new(std::sync::Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (lanes, all_alive) = (Arc::clone(&lanes), Arc::clone(&all_alive));
                std::thread::spawn(move || {
                    all_alive.wait();
                    let mine = lanes.get().unwrap();
                    for _ in 0..100 {
                        mine.store(mine.load(Ordering::Relaxed) + 1, Ordering::Release);
                    }
                    all_alive.wait(); // nobody exits (and frees its index) before all counted
                    std::ptr::from_ref(mine) as usize
                })
            })
            .collect();
        let distinct: std::collections::HashSet<usize> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            distinct.len(),
            THREADS,
            "two live threads were given one lane"
        );
        assert!(
            lanes.iter().count() > FIRST,
            "no bucket past the first lanes"
        );
        let sum: u64 = lanes.iter().map(|l| l.load(Ordering::Acquire)).sum();
        assert_eq!(sum, (THREADS * 100) as u64, "two threads shared a lane");
    }

    #[test]
    fn an_exited_threads_index_and_lane_go_to_the_next_thread() {
        let lanes: Arc<Lanes<AtomicU64>> = Arc::default();
        // Sequential threads: each exits before the next starts, so each finds the index
        // its predecessor gave back (unless a thread of a concurrently running test took
        // it meanwhile). Without reuse, all 50 would hold different indices.
        let indices: std::collections::HashSet<usize> = (0..50)
            .map(|_| {
                let lanes = Arc::clone(&lanes);
                std::thread::spawn(move || {
                    lanes.get().unwrap().fetch_add(1, Ordering::Relaxed);
                    thread_index().unwrap()
                })
                .join()
                .unwrap()
            })
            .collect();
        assert!(indices.len() < 25, "indices not reused: {indices:?}");
        let total: u64 = lanes.iter().map(|l| l.load(Ordering::Acquire)).sum();
        assert_eq!(total, 50, "counts survive their thread");
    }

    // Relies on Linux running thread-local destructors last-registered first (the code
    // does not; the test needs it to place a lookup after the index is given back).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_lookup_after_the_thread_gave_its_index_back_gets_no_lane() {
        use std::sync::mpsc;
        struct LateCaller(mpsc::Sender<Option<usize>>);
        impl Drop for LateCaller {
            fn drop(&mut self) {
                let _ = self.0.send(thread_index());
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<LateCaller>> =
                const { std::cell::RefCell::new(None) };
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Registered before `OWNER`, so its destructor runs after `OWNER`'s (Linux
            // runs thread-local destructors last-registered first).
            LATE.with(|late| *late.borrow_mut() = Some(LateCaller(tx)));
            assert!(thread_index().is_some());
        })
        .join()
        .unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            None,
            "a destructor running after the index was given back must not reuse it"
        );
    }
}
