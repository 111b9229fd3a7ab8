//! The inference queue: bluegreen's tower service (feature `tower`) over each model's
//! deployment, on one shared worker pool, behind tower's `load_shed`.
//!
//! Inference is CPU-bound, so it never runs on the async runtime's threads: every model's
//! [`PredictService`] hands its jobs to one [`InferencePool`] — a fixed pool with one thread
//! per ONNX session (`--workers`) — and the answer comes back on a oneshot channel. The
//! pool admits at most `--max-queue` jobs at once (queued or running), across all models;
//! when all admissions are taken the service is not ready, and `load_shed` turns that into
//! an immediate refusal, which the handler answers with 503 and `Retry-After` rather than
//! queuing without bound. A job whose client has gone — the request future was dropped
//! because the connection closed or the request timed out — is **skipped** by the worker
//! before it starts, and checked again between parsing and inference.
//!
//! The job ([`HttpPredict`]) is a [`Job`]: parsing the body against the active model's
//! declared inputs, the model call and the JSON answer all run on the worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bluegreen::service::{Caller, InferencePool, Job, PredictService};
use bluegreen::{BlueGreen, OnnxModel};
use tower::ServiceExt;
use tower::load_shed::LoadShed;

use super::api::{Answer, infer};
use super::models::Served;

/// One model's service: its deployment on the shared pool, shedding when the pool is full.
pub type ModelService = LoadShed<PredictService<OnnxModel, HttpPredict>>;

/// Why a job did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Every admission is taken: shed (HTTP 503 + `Retry-After`).
    #[error("the inference queue is full ({0} requests queued or running); retry shortly")]
    Full(usize),
    /// The job panicked, or ended without an answer.
    #[error("the inference worker ended without an answer: {0}")]
    Lost(String),
}

/// The shared pool and what the handlers count about it.
pub struct InferenceQueue {
    pool: InferencePool,
    shed: AtomicU64,
}

impl InferenceQueue {
    /// A pool of `workers` threads admitting at most `capacity` jobs at once.
    pub fn new(workers: usize, capacity: usize) -> Result<Self, String> {
        let pool = InferencePool::builder()
            .workers(workers)
            .max_in_flight(capacity)
            .thread_name("inference")
            .build()
            .map_err(|e| e.to_string())?;
        Ok(InferenceQueue {
            pool,
            shed: AtomicU64::new(0),
        })
    }

    /// The service for one model's deployment.
    pub fn service(&self, bg: Arc<BlueGreen<OnnxModel>>) -> ModelService {
        LoadShed::new(PredictService::for_jobs(bg, &self.pool))
    }

    /// The pool's figures, for `/metrics`.
    pub fn stats(&self) -> bluegreen::service::PoolStats {
        self.pool.stats()
    }

    /// Requests refused because the queue was full.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Runs `job` through `service` and waits for its answer, or refuses at once when full.
    pub async fn run(
        &self,
        service: &ModelService,
        job: HttpPredict,
    ) -> Result<Answer, QueueError> {
        match service.clone().oneshot(job).await {
            Ok(answer) => Ok(answer),
            Err(e) if e.is::<tower::load_shed::error::Overloaded>() => {
                self.shed.fetch_add(1, Ordering::Relaxed);
                Err(QueueError::Full(self.pool.stats().capacity))
            }
            Err(e) => Err(QueueError::Lost(e.to_string())),
        }
    }
}

/// A predict request as the service runs it on a worker: the raw body in, the HTTP answer
/// out.
pub struct HttpPredict {
    pub model: Arc<Served>,
    pub body: axum::body::Bytes,
    pub max_batch: usize,
}

impl Job<OnnxModel> for HttpPredict {
    type Output = Answer;

    fn run(self, bg: &BlueGreen<OnnxModel>, caller: &Caller<'_>) -> Option<Answer> {
        infer(&self.model, bg, &self.body, self.max_batch, &|| {
            caller.is_gone()
        })
    }
}
