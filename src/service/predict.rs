//! [`PredictService`]: the `tower::Service`; [`Predict`], the plain request; [`Job`], any
//! request that runs on a worker; [`ResponseFuture`].

use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::sync::futures::OwnedNotified;
use tokio::sync::oneshot;

use super::ServiceError;
use super::pool::{Admission, InferencePool};
use crate::model::{Model, panic_message};
use crate::{BlueGreen, Versioned};

/// A request that runs on an [`InferencePool`] worker with the deployment at hand.
///
/// [`Predict`] is the plain one. Implement it for requests with CPU work around the model
/// call, so that work stays off the async executor too — e.g. decoding a request body
/// against the active model's declared inputs, then predicting, then encoding the answer.
pub trait Job<M: Model>: Send + 'static {
    /// What the caller gets.
    type Output: Send + 'static;

    /// Runs on a worker. `caller` says whether the caller still waits; return `None` to
    /// stop early because it does not (counted as skipped).
    fn run(self, deployment: &BlueGreen<M>, caller: &Caller<'_>) -> Option<Self::Output>;
}

/// Whether the caller of a running [`Job`] still waits for its answer.
pub struct Caller<'a> {
    gone: &'a dyn Fn() -> bool,
}

impl Caller<'_> {
    /// The response future was dropped: nobody will read the answer.
    pub fn is_gone(&self) -> bool {
        (self.gone)()
    }
}

/// One call of the deployment: [`predict_versioned`](BlueGreen::predict_versioned), or with a
/// key [`predict_keyed_versioned`](BlueGreen::predict_keyed_versioned) (canary split, session
/// affinity). Answers [`Versioned`]`<Result<M::Output, M::Error>>`.
#[derive(Debug, Clone)]
pub struct Predict<I> {
    input: I,
    key: Option<Box<[u8]>>,
}

impl<I> Predict<I> {
    /// A call on the active model.
    pub fn new(input: I) -> Self {
        Self { input, key: None }
    }

    /// A call routed by `key` (a user or session id).
    pub fn keyed(key: impl AsRef<[u8]>, input: I) -> Self {
        Self {
            input,
            key: Some(key.as_ref().into()),
        }
    }
}

impl<M: Model> Job<M> for Predict<M::Input> {
    type Output = Versioned<Result<M::Output, M::Error>>;

    fn run(self, deployment: &BlueGreen<M>, _: &Caller<'_>) -> Option<Self::Output> {
        Some(match &self.key {
            Some(key) => deployment.predict_keyed_versioned(key, &self.input),
            None => deployment.predict_versioned(&self.input),
        })
    }
}

/// A `tower::Service` over a [`BlueGreen`] deployment: requests ([`Predict`], or any
/// [`Job`]) run on an [`InferencePool`]'s workers; `poll_ready` is `Pending` while the pool's
/// admissions are all taken. See the [module docs](super) for how it composes with tower's
/// layers and what happens to callers that go away.
///
/// The request type is a parameter, `R` ([`Predict`] by default, from [`new`](Self::new);
/// any [`Job`] with [`for_jobs`](Self::for_jobs)), so that `ready()` needs no annotation.
///
/// Clones share the deployment and the pool; each clone reserves its own admission in
/// `poll_ready` (tower's convention, as `ConcurrencyLimit` does).
pub struct PredictService<M: Model, R = Predict<<M as Model>::Input>> {
    deployment: Arc<BlueGreen<M>>,
    pool: InferencePool,
    /// Reserved by `poll_ready`, spent by `call`.
    admission: Option<Admission>,
    /// Registered for a wake-up while the pool is full.
    waiting: Option<Pin<Box<OwnedNotified>>>,
    requests: PhantomData<fn(R)>,
}

impl<M: Model> PredictService<M> {
    /// A service answering [`Predict`] requests with `deployment`, on `pool`.
    pub fn new(deployment: Arc<BlueGreen<M>>, pool: &InferencePool) -> Self {
        Self::for_jobs(deployment, pool)
    }
}

impl<M: Model, R: Job<M>> PredictService<M, R> {
    /// A service running requests of your own [`Job`] type `R` with `deployment`, on `pool`.
    pub fn for_jobs(deployment: Arc<BlueGreen<M>>, pool: &InferencePool) -> Self {
        Self {
            deployment,
            pool: pool.clone(),
            admission: None,
            waiting: None,
            requests: PhantomData,
        }
    }

    /// The deployment it serves.
    pub fn deployment(&self) -> &Arc<BlueGreen<M>> {
        &self.deployment
    }

    /// The pool it runs on.
    pub fn pool(&self) -> &InferencePool {
        &self.pool
    }
}

impl<M: Model, R: Job<M>> Clone for PredictService<M, R> {
    fn clone(&self) -> Self {
        Self::for_jobs(Arc::clone(&self.deployment), &self.pool)
    }
}

impl<M: Model, R> std::fmt::Debug for PredictService<M, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PredictService")
            .field("deployment", &self.deployment)
            .field("pool", &self.pool.stats())
            .field("ready", &self.admission.is_some())
            .finish()
    }
}

impl<M: Model, R: Job<M>> tower_service::Service<R> for PredictService<M, R> {
    type Response = R::Output;
    type Error = ServiceError;
    type Future = ResponseFuture<R::Output>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ServiceError>> {
        if self.admission.is_some() {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Some(admission) = self.pool.try_admit() {
                self.admission = Some(admission);
                self.waiting = None;
                return Poll::Ready(Ok(()));
            }
            // Full. Register for the next release (a registration, not a reservation:
            // giving up costs the pool nothing), then look again, so a release between
            // the two looks is not missed.
            let pool = &self.pool;
            let waiting = self
                .waiting
                .get_or_insert_with(|| Box::pin(pool.freed().notified_owned()));
            waiting.as_mut().enable();
            if let Some(admission) = self.pool.try_admit() {
                self.admission = Some(admission);
                self.waiting = None;
                return Poll::Ready(Ok(()));
            }
            match waiting.as_mut().poll(cx) {
                Poll::Ready(()) => self.waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn call(&mut self, job: R) -> Self::Future {
        let Some(admission) = self.admission.take() else {
            return ResponseFuture {
                state: State::Failed(Some(ServiceError::NotReady)),
            };
        };
        let (tx, rx) = oneshot::channel();
        let deployment = Arc::clone(&self.deployment);
        let pool = self.pool.clone();
        self.pool.spawn(move || {
            // Held while the job waits and runs: the bound counts work, not waiting callers.
            // Released just before the answer is sent, so a caller holding its answer can
            // be admitted again at once.
            let admission = admission;
            let counters = pool.counters();
            if tx.is_closed() {
                counters.skipped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let gone = || tx.is_closed();
            let caller = Caller { gone: &gone };
            let answer = catch_unwind(AssertUnwindSafe(|| job.run(&deployment, &caller)));
            let answer = match answer {
                Ok(Some(output)) => {
                    counters.completed.fetch_add(1, Ordering::Relaxed);
                    Ok(output)
                }
                Ok(None) => {
                    counters.skipped.fetch_add(1, Ordering::Relaxed);
                    Err(ServiceError::Abandoned)
                }
                Err(payload) => {
                    counters.panicked.fetch_add(1, Ordering::Relaxed);
                    let message = panic_message(payload.as_ref())
                        .unwrap_or_else(|| "non-string panic payload".to_owned());
                    tracing::error!(target: "bluegreen::service", %message,
                        "an inference job panicked; answered with an error");
                    Err(ServiceError::Panicked { message })
                }
            };
            drop(admission);
            let _ = tx.send(answer);
        });
        ResponseFuture {
            state: State::Waiting(rx),
        }
    }
}

/// The answer of one request, from `PredictService::call`. Dropping it tells the worker
/// that nobody waits any more.
pub struct ResponseFuture<T> {
    state: State<T>,
}

enum State<T> {
    Waiting(oneshot::Receiver<Result<T, ServiceError>>),
    Failed(Option<ServiceError>),
}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, ServiceError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            State::Waiting(rx) => Pin::new(rx).poll(cx).map(|answer| match answer {
                Ok(answer) => answer,
                // The worker dropped the sender without answering: only when the pool
                // itself went away mid-job.
                Err(_) => Err(ServiceError::Abandoned),
            }),
            State::Failed(e) => Poll::Ready(Err(e.take().unwrap_or(ServiceError::NotReady))),
        }
    }
}

impl<T> std::fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}
