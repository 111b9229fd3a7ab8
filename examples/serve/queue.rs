//! The inference queue: a fixed rayon pool behind a bounded admission count.
//!
//! Inference is CPU-bound, so it never runs on the async runtime's threads: each job goes to
//! a fixed pool with one thread per ONNX session (`--workers`) and its answer comes back on a
//! oneshot channel. At most `--max-queue` jobs are admitted at once (queued or running;
//! a tokio semaphore counts them); a request arriving when all are taken is **shed** at once
//! with 503 and `Retry-After` rather than queued without bound. A job whose client has gone —
//! the request future was dropped because the connection closed or the request timed out —
//! is **skipped** before it runs: the worker checks the oneshot sender first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Why a job did not produce an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Every admission is taken: shed (HTTP 503 + `Retry-After`).
    #[error("the inference queue is full ({0} requests queued or running); retry shortly")]
    Full(usize),
    /// The worker ended without an answer (the job panicked; logged by the pool).
    #[error("the inference worker ended without an answer")]
    Lost,
}

/// What the queue has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Requests refused because the queue was full.
    pub shed: AtomicU64,
    /// Admitted jobs skipped (before running, or between parsing and inference) because
    /// their client had gone.
    pub skipped: AtomicU64,
    /// Jobs that ran to an answer (sent, whether or not the client still waited for it).
    pub completed: AtomicU64,
}

/// The pool and its admission bound.
pub struct InferenceQueue {
    pool: rayon::ThreadPool,
    admissions: Arc<Semaphore>,
    capacity: usize,
    counters: Arc<QueueCounters>,
}

impl InferenceQueue {
    /// A pool of `workers` threads admitting at most `capacity` jobs at once.
    pub fn new(workers: usize, capacity: usize) -> Result<Self, String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(|i| format!("inference-{i}"))
            .panic_handler(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %msg, "an inference job panicked");
            })
            .build()
            .map_err(|e| format!("cannot start the inference pool: {e}"))?;
        Ok(InferenceQueue {
            pool,
            admissions: Arc::new(Semaphore::new(capacity)),
            capacity,
            counters: Arc::new(QueueCounters::default()),
        })
    }

    /// The counters (shed, skipped).
    pub fn counters(&self) -> &QueueCounters {
        &self.counters
    }

    /// Jobs admitted now (queued or running).
    pub fn depth(&self) -> usize {
        self.capacity
            .saturating_sub(self.admissions.available_permits())
    }

    /// The admission bound.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Runs `job` on the pool and waits for its answer, or refuses at once when full.
    /// Dropping the returned future (the client went away) makes the job a no-op if it has
    /// not started yet. A started job is handed a "client gone?" check to call between its
    /// steps; returning `None` says it stopped early because of it.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&dyn Fn() -> bool) -> Option<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let permit = match Arc::clone(&self.admissions).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.counters.shed.fetch_add(1, Ordering::Relaxed);
                return Err(QueueError::Full(self.capacity));
            }
        };
        let (tx, rx) = oneshot::channel();
        let counters = Arc::clone(&self.counters);
        self.pool
            .spawn(move || run_admitted(permit, tx, &counters, job));
        rx.await.map_err(|_| QueueError::Lost)
    }
}

/// On a worker: skip the job if nobody waits for it any more, else run it and answer. The
/// admission is held until the answer is sent.
fn run_admitted<T>(
    _permit: OwnedSemaphorePermit,
    tx: oneshot::Sender<T>,
    counters: &QueueCounters,
    job: impl FnOnce(&dyn Fn() -> bool) -> Option<T>,
) {
    let answer = if tx.is_closed() {
        None
    } else {
        job(&|| tx.is_closed())
    };
    match answer {
        Some(answer) => {
            counters.completed.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(answer);
        }
        None => {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
