//! A [`tower::Service`](tower_service::Service) over a deployment (feature `tower`): a
//! request in, the versioned answer out, inference on a fixed worker pool, backpressure
//! through `poll_ready`.
//!
//! ```
//! use std::sync::Arc;
//! use bluegreen::service::{InferencePool, Predict, PredictService};
//! use bluegreen::{BlueGreen, Model};
//! use tower::ServiceExt;
//! # struct Double; impl Model for Double { type Input = u32; type Output = u32;
//! #   type Error = std::convert::Infallible;
//! #   fn predict(&self, x: &u32) -> Result<u32, Self::Error> { Ok(2 * x) } }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let bg = Arc::new(BlueGreen::new("v1", Double)?);
//! let pool = InferencePool::builder().workers(2).max_in_flight(64).build()?;
//! let service = tower::ServiceBuilder::new()
//!     .load_shed()                                   // full: fail at once, don't queue
//!     .timeout(std::time::Duration::from_secs(1))   // a late answer is dropped (and skipped)
//!     .service(PredictService::new(Arc::clone(&bg), &pool));
//! let answer = service.oneshot(Predict::new(21)).await?;
//! assert_eq!((answer.output, answer.version), (Ok(42), "v1"));
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```
//!
//! # Where inference runs
//!
//! Never on the async executor's threads: a model call is CPU-bound (microseconds to
//! seconds), and running it inside `call`'s future would stall every other task on that
//! executor thread. `PredictService::call` hands the request to an [`InferencePool`] — a
//! fixed pool of worker threads (rayon) — and its future only waits for the answer on a
//! oneshot channel. Why a fixed pool rather than `tokio::task::spawn_blocking`: the
//! blocking pool is shared with file I/O and grows to hundreds of threads under load, all
//! of which would queue on the model's few sessions; a pool sized to the model (one worker
//! per `OnnxModel` session) bounds concurrent inference, keeps each worker on its own
//! session (`OnnxModel` gives every thread a "home" session), and works without any async
//! runtime at all. One pool can serve many deployments.
//!
//! # Backpressure
//!
//! The pool admits at most [`max_in_flight`](PoolBuilder::max_in_flight) requests at once,
//! queued or running, across every service that shares it. [`poll_ready`] is `Ready` when
//! a request may be admitted and `Pending` when all admissions are taken (woken when one
//! is freed), so the service composes with tower's layers:
//!
//! * `load_shed` turns a full pool into an immediate `Overloaded` error — an HTTP server
//!   answers 503 with `Retry-After` instead of queuing without bound;
//! * `timeout` bounds the wait; `concurrency_limit` (or `buffer`) adds a per-caller limit
//!   in front.
//!
//! Readiness does not reserve capacity while a caller waits: a `Pending` service holds no
//! admission (only a wake-up registration), so callers that poll and then give up —
//! `load_shed`, an idle connection — cannot starve the pool. An admission is taken when
//! `poll_ready` returns `Ready` and released when the job has computed its answer (or was
//! skipped), not when the caller stops waiting: the bound counts real work.
//!
//! # Callers that go away
//!
//! Dropping the response future (a closed connection, a `timeout`) makes a job that has not
//! started a no-op: the worker sees that nobody waits and skips it
//! ([`PoolStats::skipped`]). A job already running is told through
//! [`Caller::is_gone`] and can stop between its steps (a request that parses its body
//! before predicting checks in between); a model call itself is never interrupted.
//!
//! # Requests
//!
//! [`Predict`] (an input, optionally with a routing key for canary and affinity) answers
//! [`Versioned`](crate::Versioned)`<Result<Output, Error>>`. For requests that need CPU
//! work around the model call — decoding a body against the active model's schema,
//! encoding the answer — implement [`Job`]: the whole job runs on the worker. A panic
//! inside a job (the model's included) is caught on the worker, counted on the model's
//! slot as usual, and answered as [`ServiceError::Panicked`]; the worker keeps serving.
//!
//! [`poll_ready`]: tower_service::Service::poll_ready
//!
//! | file | holds |
//! |---|---|
//! | `pool.rs` | [`InferencePool`], [`PoolBuilder`], [`PoolStats`]: the worker threads and the admission bound |
//! | `predict.rs` | [`PredictService`], [`Predict`], [`Job`], [`Caller`], [`ResponseFuture`] |
//! | `error.rs` | [`ServiceError`] |
//!
//! Stands on the deployment ([`BlueGreen`](crate::BlueGreen) and its versioned predict
//! methods) and the model contract; nothing in the crate imports it.

mod error;
mod pool;
mod predict;

pub use error::ServiceError;
pub use pool::{InferencePool, PoolBuilder, PoolStats};
pub use predict::{Caller, Job, Predict, PredictService, ResponseFuture};
