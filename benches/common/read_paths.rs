//! The read paths bluegreen is compared against: one way each of reaching the current
//! [`Trivial`] model from a request thread (a direct call, raw `ArcSwap`, std and
//! parking_lot `RwLock`, `Mutex` + clone, `ArcSwap` plus a shared counter,
//! `BlueGreen::predict`) and how a writer replaces it; [`PathKind`] names and builds them,
//! [`AnyPath`] runs them through the chunked runner.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bluegreen::BlueGreen;
use crossbeam_utils::CachePadded;

use super::models::call;
use super::{
    DEFAULT_CHUNK_CALLS, Load, RunResult, Trivial, charged_with, run_chunks, trivial_deployment,
};

/// One way of reaching the current model from a request thread, plus how a writer
/// replaces that model.
pub trait ReadPath: Sync {
    /// One request: find the current model and call it.
    fn call(&self, x: u64) -> u64;
    /// Replace the current model with a new one (writer side).
    fn replace(&self);
}

/// The limit: the model called directly, nothing shared.
pub struct Direct(Trivial);

impl ReadPath for Direct {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        call(&self.0, x)
    }
    fn replace(&self) {}
}

/// `ArcSwap<M>` read with `load()`: a debt-slot guard, no refcount write.
pub struct ArcSwapLoad {
    cell: ArcSwap<Trivial>,
    seq: AtomicU64,
}

impl ReadPath for ArcSwapLoad {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        call(&self.cell.load(), x)
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        self.cell.store(Arc::new(Trivial { tag }));
    }
}

/// `ArcSwap<M>` read with `load_full()`: a shared refcount increment and decrement.
pub struct ArcSwapLoadFull {
    cell: ArcSwap<Trivial>,
    seq: AtomicU64,
}

impl ReadPath for ArcSwapLoadFull {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        call(&self.cell.load_full(), x)
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        self.cell.store(Arc::new(Trivial { tag }));
    }
}

/// std `RwLock<Arc<M>>`, the model called under the read lock (its cheapest form: no
/// refcount traffic, only the lock's reader count).
pub struct StdRwLock {
    cell: std::sync::RwLock<Arc<Trivial>>,
    seq: AtomicU64,
}

impl ReadPath for StdRwLock {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        call(&self.cell.read().unwrap(), x)
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        let new = Arc::new(Trivial { tag });
        let old = std::mem::replace(&mut *self.cell.write().unwrap(), new);
        drop(old); // outside the lock
    }
}

/// parking_lot `RwLock<Arc<M>>`, the model called under the read lock.
pub struct ParkingLotRwLock {
    cell: parking_lot::RwLock<Arc<Trivial>>,
    seq: AtomicU64,
}

impl ReadPath for ParkingLotRwLock {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        call(&self.cell.read(), x)
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        let new = Arc::new(Trivial { tag });
        let old = std::mem::replace(&mut *self.cell.write(), new);
        drop(old);
    }
}

/// std `Mutex<Arc<M>>`: lock, clone the `Arc`, unlock, call (the usual hand-rolled form).
pub struct StdMutexClone {
    cell: std::sync::Mutex<Arc<Trivial>>,
    seq: AtomicU64,
}

impl ReadPath for StdMutexClone {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        let m = Arc::clone(&self.cell.lock().unwrap());
        call(&m, x)
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        let new = Arc::new(Trivial { tag });
        let old = std::mem::replace(&mut *self.cell.lock().unwrap(), new);
        drop(old);
    }
}

/// `BlueGreen::predict`. The writer runs a full admin cycle, `stage` + `swap` (no gates, no
/// warm-up): staging retires the previous standby (drain check, then a hand-off to the
/// retirer thread that drops it, waiting for its acknowledgement), swap flips the pointer.
/// Readers see one pointer replacement per cycle, like with the raw paths' single `store`.
/// But when both cores are busy with readers, each hand-off waits for the retirer thread
/// and then the writer to be scheduled again (about a scheduler tick), so this writer
/// manages one cycle every few milliseconds rather than every 100 µs: fewer flips than the
/// raw paths' writers. Quickbench prints the achieved interval (`writer_interval_*`).
pub struct BlueGreenPredict {
    bg: BlueGreen<Trivial>,
    seq: AtomicU64,
}

impl ReadPath for BlueGreenPredict {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        let Ok(y) = self.bg.predict(&x);
        y
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        self.bg
            .stage(format!("v{tag}"), Trivial { tag })
            .expect("stage");
        self.bg.swap().expect("swap");
    }
}

/// `ArcSwap::load()` plus a shared in-flight counter (`fetch_add` on entry, `fetch_sub` on
/// exit): the design bluegreen's per-thread stat lanes avoid. Not a real alternative,
/// a yardstick for what one shared read-modify-write costs on this machine.
pub struct ArcSwapSharedCounter {
    cell: ArcSwap<Trivial>,
    in_flight: CachePadded<AtomicU64>,
    seq: AtomicU64,
}

impl ReadPath for ArcSwapSharedCounter {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let y = call(&self.cell.load(), x);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        y
    }
    fn replace(&self) {
        let tag = self.seq.fetch_add(1, Ordering::Relaxed);
        self.cell.store(Arc::new(Trivial { tag }));
    }
}

/// Which read path to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    Direct,
    ArcSwapLoad,
    ArcSwapLoadFull,
    StdRwLock,
    ParkingLotRwLock,
    StdMutexClone,
    ArcSwapSharedCounter,
    BlueGreen,
}

impl PathKind {
    pub const ALL: [PathKind; 8] = [
        PathKind::Direct,
        PathKind::ArcSwapLoad,
        PathKind::ArcSwapLoadFull,
        PathKind::StdRwLock,
        PathKind::ParkingLotRwLock,
        PathKind::StdMutexClone,
        PathKind::ArcSwapSharedCounter,
        PathKind::BlueGreen,
    ];

    /// Short identifier used in bench ids and quickbench lines.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::ArcSwapLoad => "arcswap",
            PathKind::ArcSwapLoadFull => "arcswap_full",
            PathKind::StdRwLock => "rwlock",
            PathKind::ParkingLotRwLock => "pl_rwlock",
            PathKind::StdMutexClone => "mutex_clone",
            PathKind::ArcSwapSharedCounter => "arcswap_counter",
            PathKind::BlueGreen => "bluegreen",
        }
    }

    /// A direct call has nothing to replace, so it has no writer variant.
    pub fn supports_writer(self) -> bool {
        self != PathKind::Direct
    }

    pub fn build(self) -> AnyPath {
        let first = || Arc::new(Trivial { tag: 0 });
        let seq = || AtomicU64::new(1);
        match self {
            PathKind::Direct => AnyPath::Direct(Direct(Trivial { tag: 0 })),
            PathKind::ArcSwapLoad => AnyPath::ArcSwapLoad(ArcSwapLoad {
                cell: ArcSwap::new(first()),
                seq: seq(),
            }),
            PathKind::ArcSwapLoadFull => AnyPath::ArcSwapLoadFull(ArcSwapLoadFull {
                cell: ArcSwap::new(first()),
                seq: seq(),
            }),
            PathKind::StdRwLock => AnyPath::StdRwLock(StdRwLock {
                cell: std::sync::RwLock::new(first()),
                seq: seq(),
            }),
            PathKind::ParkingLotRwLock => AnyPath::ParkingLotRwLock(ParkingLotRwLock {
                cell: parking_lot::RwLock::new(first()),
                seq: seq(),
            }),
            PathKind::StdMutexClone => AnyPath::StdMutexClone(StdMutexClone {
                cell: std::sync::Mutex::new(first()),
                seq: seq(),
            }),
            PathKind::ArcSwapSharedCounter => AnyPath::ArcSwapSharedCounter(ArcSwapSharedCounter {
                cell: ArcSwap::new(first()),
                in_flight: Default::default(),
                seq: seq(),
            }),
            PathKind::BlueGreen => AnyPath::BlueGreen(BlueGreenPredict {
                bg: trivial_deployment(),
                seq: seq(),
            }),
        }
    }
}

/// A built read path. An enum rather than `dyn ReadPath` so each reader loop is
/// monomorphized: the path under test is inlined, only the model call stays out of line.
pub enum AnyPath {
    Direct(Direct),
    ArcSwapLoad(ArcSwapLoad),
    ArcSwapLoadFull(ArcSwapLoadFull),
    StdRwLock(StdRwLock),
    ParkingLotRwLock(ParkingLotRwLock),
    StdMutexClone(StdMutexClone),
    ArcSwapSharedCounter(ArcSwapSharedCounter),
    BlueGreen(BlueGreenPredict),
}

impl AnyPath {
    /// Time charged for `iters` calls per reader under `load`, for criterion's
    /// `iter_custom`: the median ns/call over concurrent chunks (see
    /// [`Chunk::concurrent`]), scaled to `iters`. Reruns (a bounded number of times) while
    /// no chunk was concurrent, so a sample taken while another process held a core is not
    /// silently an uncontended one; falls back to all chunks if that never succeeds.
    pub fn charged(&self, load: Load, iters: u64) -> Duration {
        charged_with(iters, DEFAULT_CHUNK_CALLS, |chunks, calls| {
            self.run_chunks(load, chunks, calls)
        })
    }

    /// Runs `load` in `chunks` chunks of `chunk_calls` calls per reader; see [`run_chunks`].
    pub fn run_chunks(&self, load: Load, chunks: usize, chunk_calls: u64) -> RunResult {
        match self {
            AnyPath::Direct(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::ArcSwapLoad(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::ArcSwapLoadFull(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::StdRwLock(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::ParkingLotRwLock(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::StdMutexClone(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::ArcSwapSharedCounter(p) => run_chunks(p, load, chunks, chunk_calls),
            AnyPath::BlueGreen(p) => run_chunks(p, load, chunks, chunk_calls),
        }
    }
}
