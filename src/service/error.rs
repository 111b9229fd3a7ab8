//! [`ServiceError`]: why the service gave no answer.

/// Why a request through [`PredictService`](super::PredictService) got no answer. (A model
/// *error* is an answer: it is in the response's `output`.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The job panicked on the worker (the model, or the job's own code). The panic was
    /// caught; a model panic is also counted on its slot (`SlotStatus::panics`).
    #[error("the inference job panicked: {message}")]
    Panicked {
        /// The panic message.
        message: String,
    },
    /// The job stopped without an answer although its caller still waited (a [`Job`]
    /// returned `None`).
    ///
    /// [`Job`]: super::Job
    #[error("the inference job stopped without an answer")]
    Abandoned,
    /// `call` came without a `poll_ready` that returned `Ready` (a caller bug; tower's
    /// contract). Answered with this error rather than a panic.
    #[error("call without a successful poll_ready: no admission was reserved")]
    NotReady,
    /// The pool could not be built.
    #[error("cannot build the inference pool: {0}")]
    Pool(String),
}
