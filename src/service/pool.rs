//! [`InferencePool`]: the fixed worker threads inference runs on, and the admission bound
//! that gives [`PredictService`](super::PredictService) its backpressure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::ServiceError;

/// A fixed pool of worker threads and the bound on requests admitted to it (queued or
/// running). Cheap to clone (a handle); share one between the services of several
/// deployments to bound their inference together.
///
/// ```
/// use bluegreen::service::InferencePool;
/// let pool = InferencePool::builder().workers(4).max_in_flight(128).build()?;
/// assert_eq!((pool.stats().workers, pool.stats().capacity), (4, 128));
/// # Ok::<(), bluegreen::service::ServiceError>(())
/// ```
#[derive(Clone)]
pub struct InferencePool {
    inner: Arc<Shared>,
}

struct Shared {
    threads: rayon::ThreadPool,
    admissions: Arc<Semaphore>,
    capacity: usize,
    /// Notified whenever an admission is freed (wakes `Pending` services).
    freed: Arc<Notify>,
    counters: Counters,
}

/// What the pool has done. Updated on the service path (one atomic add per finished job,
/// beside the admission semaphore's own), never inside `predict`.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) completed: AtomicU64,
    pub(super) skipped: AtomicU64,
    pub(super) panicked: AtomicU64,
}

/// A snapshot of an [`InferencePool`], from [`InferencePool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads.
    pub workers: usize,
    /// The admission bound ([`PoolBuilder::max_in_flight`]).
    pub capacity: usize,
    /// Requests admitted now: queued or running.
    pub in_flight: usize,
    /// Jobs that ran to an answer (sent, whether or not the caller still waited).
    pub completed: u64,
    /// Admitted jobs not computed because their caller had gone (before they started, or
    /// a [`Job`](super::Job) that stopped early).
    pub skipped: u64,
    /// Jobs that panicked (answered with [`ServiceError::Panicked`]).
    pub panicked: u64,
}

/// Configures an [`InferencePool`]; from [`InferencePool::builder`].
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    workers: Option<usize>,
    max_in_flight: Option<usize>,
    thread_name: String,
}

impl InferencePool {
    /// A pool with default settings: one worker per available CPU, 32 admissions per
    /// worker.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            max_in_flight: None,
            thread_name: "bluegreen-inference".to_owned(),
        }
    }

    /// What the pool holds and has done.
    pub fn stats(&self) -> PoolStats {
        let s = &self.inner;
        PoolStats {
            workers: s.threads.current_num_threads(),
            capacity: s.capacity,
            in_flight: s.capacity.saturating_sub(s.admissions.available_permits()),
            completed: s.counters.completed.load(Ordering::Relaxed),
            skipped: s.counters.skipped.load(Ordering::Relaxed),
            panicked: s.counters.panicked.load(Ordering::Relaxed),
        }
    }

    /// An admission, if one is free now.
    pub(super) fn try_admit(&self) -> Option<Admission> {
        let permit = Arc::clone(&self.inner.admissions)
            .try_acquire_owned()
            .ok()?;
        Some(Admission {
            permit: Some(permit),
            freed: Arc::clone(&self.inner.freed),
        })
    }

    /// The notification a waiting service registers for.
    pub(super) fn freed(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.freed)
    }

    pub(super) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Runs `job` on a worker.
    pub(super) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.inner.threads.spawn(job);
    }
}

impl PoolBuilder {
    /// Worker threads (default: available CPUs). For an `OnnxModel`, one per session of its
    /// pool ([`OnnxConfig::pool_size`](crate::onnx::OnnxConfig::pool_size)).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Requests admitted at once, queued or running (default 32 per worker). Past it,
    /// `poll_ready` is `Pending` (and `load_shed` refuses).
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = Some(requests);
        self
    }

    /// Worker thread names: `<prefix>-<index>` (default `bluegreen-inference`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Starts the workers.
    ///
    /// # Errors
    /// [`ServiceError::Pool`] for zero workers or admissions, or when the threads cannot
    /// be started.
    pub fn build(self) -> Result<InferencePool, ServiceError> {
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let capacity = self
            .max_in_flight
            .unwrap_or_else(|| workers.saturating_mul(32));
        if workers == 0 || capacity == 0 {
            return Err(ServiceError::Pool(
                "workers and max_in_flight must be at least 1".to_owned(),
            ));
        }
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        let prefix = self.thread_name;
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(move |i| format!("{prefix}-{i}"))
            .build()
            .map_err(|e| ServiceError::Pool(e.to_string()))?;
        Ok(InferencePool {
            inner: Arc::new(Shared {
                threads,
                admissions: Arc::new(Semaphore::new(capacity)),
                capacity,
                freed: Arc::new(Notify::new()),
                counters: Counters::default(),
            }),
        })
    }
}

/// One admitted request. Released (and waiting services woken) when dropped: once the
/// job has its answer, or when it is skipped.
pub(super) struct Admission {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.freed.notify_waiters();
    }
}
