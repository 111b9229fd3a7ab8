//! Shadow traffic: mirroring a share of live requests to the staged candidate.
//!
//! While a candidate is staged, a configured fraction of [`predict`](crate::BlueGreen::predict)
//! calls is copied — input and the live answer — onto a bounded queue. One background
//! worker runs the candidate on each copy and compares its answer with the live one
//! (agreement, mean absolute difference, the candidate's latency and errors). Callers
//! never wait for the candidate: when the queue is full the copy is dropped and counted.
//! The caller pays only for the sampling decision and, for sampled calls, the copies and
//! a non-blocking enqueue. Shadow results show in [`Status::shadow`](crate::Status::shadow)
//! and can gate [`swap`](crate::BlueGreen::swap) through [`ShadowGate`].

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;

use super::shadow_worker::{Abandoned, Worker};
pub(crate) use super::shadow_worker::{OnPanic, ShadowPanic};
use crate::model::Model;
use crate::slot::{Hung, Lanes, Slot, SlotStats, bump};

pub use crate::validation::ShadowStatus;
pub use crate::validation::gates::shadow::ShadowGate;

/// How a candidate's answer compares with the live answer to the same request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Whether the two answers agree (e.g. same top label).
    pub agree: bool,
    /// A numeric distance between them (e.g. max abs difference of scores); 0 if unused.
    pub abs_diff: f64,
}

/// What a mirrored request keeps of the live answer (the output itself, or a summary).
type Kept = Box<dyn Any + Send>;

type Summarize<M> = dyn Fn(&<M as Model>::Output) -> Kept + Send + Sync + 'static;
pub(super) type Compare<M> =
    dyn Fn(&<M as Model>::Output, &Kept) -> Comparison + Send + Sync + 'static;

/// Shadow-traffic settings; see the [module docs](self). Mirrored inputs are copied, so
/// the model's `Input` must be `Clone`; the live answer is kept whole ([`Shadow::new`],
/// `Output: Clone`) or as a summary ([`Shadow::summarized`], any output).
///
/// The copy of the input and the summary are made on the request thread, after the live
/// model answered: keep them cheap, and know that a panic in them reaches the caller of
/// `predict` (whose call was already counted as a success). The comparison runs on the
/// shadow worker, where a panic counts as an error on that request.
///
/// ```
/// use bluegreen::{shadow::{Comparison, Shadow}, BlueGreen, Model};
/// # struct Sign(f32);
/// # impl Model for Sign { type Input = f32; type Output = f32; type Error = std::convert::Infallible;
/// #   fn predict(&self, x: &f32) -> Result<f32, Self::Error> { Ok((self.0 * x).signum()) } }
/// let shadow = Shadow::new(0.1, |cand: &f32, live: &f32| Comparison {
///     agree: cand == live,
///     abs_diff: f64::from((cand - live).abs()),
/// });
/// let bg = BlueGreen::builder().shadow(shadow).build("v1", Sign(1.0)).unwrap();
/// # let _ = bg;
/// ```
pub struct Shadow<M: Model> {
    pub(crate) fraction: f64,
    pub(crate) capacity: usize,
    pub(crate) call_deadline: Duration,
    pub(crate) copy_input: fn(&M::Input) -> M::Input,
    pub(crate) summarize: Arc<Summarize<M>>,
    pub(crate) compare: Arc<Compare<M>>,
}

fn clamp_fraction(fraction: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    }
}

impl<M: Model> Shadow<M>
where
    M::Input: Clone,
{
    /// Mirror `fraction` (0..=1) of live calls, judging each candidate answer with
    /// `compare(candidate, live)`. The queue holds 1024 copies by default.
    pub fn new(
        fraction: f64,
        compare: impl Fn(&M::Output, &M::Output) -> Comparison + Send + Sync + 'static,
    ) -> Self
    where
        M::Output: Clone,
    {
        Self::summarized(fraction, M::Output::clone, compare)
    }

    /// Like [`new`](Self::new) for outputs that are not `Clone` (or are large): keep only
    /// `summarize(live)` — e.g. the top label — and judge with
    /// `compare(candidate, &summary)`.
    pub fn summarized<S: Send + 'static>(
        fraction: f64,
        summarize: impl Fn(&M::Output) -> S + Send + Sync + 'static,
        compare: impl Fn(&M::Output, &S) -> Comparison + Send + Sync + 'static,
    ) -> Self {
        Self {
            fraction: clamp_fraction(fraction),
            capacity: 1024,
            call_deadline: Duration::from_secs(1),
            copy_input: M::Input::clone,
            summarize: Arc::new(move |out| Box::new(summarize(out)) as Kept),
            compare: Arc::new(move |cand, kept| match kept.downcast_ref::<S>() {
                Some(live) => compare(cand, live),
                // Unreachable: every kept value comes from `summarize` above.
                None => Comparison {
                    agree: false,
                    abs_diff: f64::NAN,
                },
            }),
        }
    }
}

impl<M: Model> Shadow<M> {
    /// How many mirrored requests may wait for the worker; beyond it copies are dropped.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// How long the candidate may take to answer one mirrored request (default 1 s). A
    /// call past it is abandoned the next time the deployment looks — at every
    /// [`status`](crate::BlueGreen::status), and while it waits to retire the candidate —
    /// counted as an error, listed in [`Status::abandoned`](crate::Status::abandoned)
    /// until it returns, and the candidate gets no more mirrored requests. So a candidate
    /// that hangs cannot keep the deployment from retiring it, as long as this deadline is
    /// shorter than the [drain timeout](crate::Builder::drain_timeout).
    pub fn call_deadline(mut self, deadline: Duration) -> Self {
        self.call_deadline = deadline;
        self
    }
}

/// Per-thread counters of the request side (single writer each).
#[derive(Default)]
struct Lane {
    mirrored: AtomicU64,
    dropped: AtomicU64,
}

/// Results for one candidate, written by the worker only.
pub(super) struct Tally {
    pub(super) generation: u64,
    pub(super) version: String,
    /// Request-side counters when this candidate was staged (they are cumulative).
    pub(super) base_mirrored: u64,
    pub(super) base_dropped: u64,
    pub(super) compared: u64,
    pub(super) agreed: u64,
    pub(super) errors: u64,
    pub(super) sum_abs_diff: f64,
    pub(super) latency: Arc<SlotStats>,
}

pub(super) struct Job<M: Model> {
    pub(super) generation: u64,
    pub(super) input: M::Input,
    pub(super) live: Kept,
}

/// The running shadow machinery of one deployment.
pub(crate) struct ShadowRuntime<M: Model> {
    threshold: u64,
    always: bool,
    copy_input: fn(&M::Input) -> M::Input,
    summarize: Arc<Summarize<M>>,
    tx: Option<Sender<Job<M>>>,
    target: Arc<ArcSwapOption<Slot<M>>>,
    lanes: Lanes<Lane>,
    tally: Arc<Mutex<Option<Tally>>>,
    worker: Worker<M>,
}

thread_local! {
    /// Per-thread xorshift state for the sampling decision (never shared). Not `fastrand`:
    /// this runs on the request path of every successful call while a shadow is configured,
    /// and fastrand's thread-local generator is lazily seeded (a state check per access)
    /// where this `const` cell is one load; the decision needs no better randomness.
    static RNG: Cell<u64> = const { Cell::new(0) };
}

fn next_random() -> u64 {
    RNG.with(|state| {
        let mut x = state.get();
        if x == 0 {
            // Seed from this thread's stack address: distinct per thread, no shared state.
            x = (&raw const x as u64) | 1;
            x ^= x.rotate_left(31).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

impl<M: Model> ShadowRuntime<M> {
    /// Starts the worker thread; the error is the OS's refusal to start it.
    pub(crate) fn start(config: Shadow<M>, on_panic: OnPanic) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::bounded::<Job<M>>(config.capacity);
        let target: Arc<ArcSwapOption<Slot<M>>> = Arc::new(ArcSwapOption::empty());
        let tally: Arc<Mutex<Option<Tally>>> = Arc::new(Mutex::new(None));
        let worker = Worker::start(
            rx,
            Arc::clone(&target),
            Arc::clone(&tally),
            Arc::clone(&config.compare),
            config.call_deadline,
            on_panic,
        )?;
        let fraction = config.fraction;
        Ok(Self {
            threshold: (fraction * u64::MAX as f64) as u64,
            always: fraction >= 1.0,
            copy_input: config.copy_input,
            summarize: config.summarize,
            tx: Some(tx),
            target,
            lanes: Lanes::default(),
            tally,
            worker,
        })
    }

    /// Maybe mirrors one live call. Never blocks. Kept out of line so that the plain
    /// `predict` path, which only checks whether shadowing is on, stays small.
    #[inline(never)]
    pub(crate) fn offer(&self, input: &M::Input, live: &M::Output) {
        if !self.always && next_random() >= self.threshold {
            return;
        }
        let generation = match &*self.target.load() {
            Some(candidate) => candidate.generation,
            None => return,
        };
        let Some(tx) = &self.tx else { return };
        // Not even counted while this thread is being torn down (see `Lanes::get`).
        let Some(lane) = self.lanes.get() else { return };
        // Don't copy a request the queue cannot take (the `Full` arm below still covers a
        // worker that falls behind between this check and the send).
        if tx.is_full() {
            bump(&lane.dropped);
            return;
        }
        let (input, live) = ((self.copy_input)(input), (self.summarize)(live));
        match tx.try_send(Job {
            generation,
            input,
            live,
        }) {
            Ok(()) => bump(&lane.mirrored),
            Err(TrySendError::Full(_)) => bump(&lane.dropped),
            // Only during shutdown: nothing will run it.
            Err(TrySendError::Disconnected(_)) => bump(&lane.dropped),
        }
    }

    fn request_side(&self) -> (u64, u64) {
        self.lanes.iter().fold((0, 0), |(m, d), l| {
            (
                m + l.mirrored.load(Ordering::Acquire),
                d + l.dropped.load(Ordering::Acquire),
            )
        })
    }

    /// Starts shadowing `candidate` (or stops, with `None`), resetting the results.
    pub(crate) fn target(&self, candidate: Option<&Arc<Slot<M>>>) {
        let current = self.target.load().as_ref().map(|s| s.generation);
        if current == candidate.map(|c| c.generation) {
            return;
        }
        self.target.store(candidate.cloned());
        let same = |c: &Arc<Slot<M>>| {
            self.tally
                .lock()
                .as_ref()
                .is_some_and(|t| t.generation == c.generation)
        };
        // Re-targeting the candidate already tallied (after a refused retirement put it
        // back) keeps what it has shown so far.
        if let Some(c) = candidate.filter(|c| !same(c)) {
            let (base_mirrored, base_dropped) = self.request_side();
            *self.tally.lock() = Some(Tally {
                generation: c.generation,
                version: c.version.to_string(),
                base_mirrored,
                base_dropped,
                compared: 0,
                agreed: 0,
                errors: 0,
                sum_abs_diff: 0.0,
                latency: Arc::new(SlotStats::default()),
            });
        }
    }

    /// Whether `slot` is the current shadow target (holding a reference to it).
    pub(crate) fn holds(&self, slot: &Arc<Slot<M>>) -> bool {
        self.target
            .load()
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Results for the candidate last shadowed.
    pub(crate) fn status(&self) -> Option<ShadowStatus> {
        let (mirrored, dropped) = self.request_side();
        let guard = self.tally.lock();
        let t = guard.as_ref()?;
        let latency = t.latency.latency();
        Some(ShadowStatus {
            version: t.version.clone(),
            mirrored: mirrored - t.base_mirrored,
            dropped: dropped - t.base_dropped,
            compared: t.compared,
            errors: t.errors,
            agreement: if t.compared == 0 {
                1.0
            } else {
                t.agreed as f64 / t.compared as f64
            },
            mean_abs_diff: if t.compared == 0 {
                0.0
            } else {
                t.sum_abs_diff / t.compared as f64
            },
            p50: latency.quantile(0.5),
            p99: latency.quantile(0.99),
        })
    }

    /// Abandons a mirrored call that overran its deadline (see `shadow_worker.rs`).
    pub(crate) fn abandon_if_hung(&self, hung: &Hung) -> Option<Abandoned> {
        self.worker.abandon_if_hung(hung)
    }

    /// Stops the worker (used when the deployment shuts down), waiting for it until
    /// `deadline`. A worker stuck inside a hanging candidate is left behind rather than
    /// hanging the drop.
    pub(crate) fn shutdown(&mut self, deadline: Instant) {
        self.target.store(None);
        drop(self.tx.take());
        self.worker
            .stop(deadline.saturating_duration_since(Instant::now()));
    }
}

impl<M: Model> Drop for ShadowRuntime<M> {
    fn drop(&mut self) {
        self.shutdown(Instant::now());
    }
}
