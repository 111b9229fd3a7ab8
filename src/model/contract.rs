//! The [`Model`] trait: what bluegreen needs from a loaded model.

use super::ModelInfo;

/// A loaded, ready-to-serve model.
///
/// `bluegreen` never looks inside a model: it calls [`predict`](Model::predict) from many
/// threads at once, [`warm_up`](Model::warm_up) once before the model takes traffic, and
/// [`info`](Model::info) to learn what the model accepts and produces.
///
/// A model is shared between request threads through `&self`, so it must be `Send + Sync`.
/// bluegreen drops it off the request threads — on its background retirer thread, or, for
/// a model still held by work abandoned past its deadline, on that work's thread when it
/// lets go — so an expensive `Drop` (freeing gigabytes of weights, closing a GPU context)
/// does not show up in anyone's request latency. (A model `stage` refuses before it was
/// ever staged is dropped on the caller's thread.)
///
/// # Panics, hangs and slow drops
///
/// bluegreen treats a model as untrusted until it has passed its gates, and keeps
/// distrusting it after:
///
/// * **`predict` on a request thread**: a panic propagates to the caller, and the call is
///   counted as failed (and as a panic) in the slot's statistics, so a bake window rolls
///   back a model that panics as it would one that returns errors.
/// * **`predict` inside a gate or a shadow call, `warm_up`, `info`**: run where bluegreen
///   can catch them; a panic refuses the candidate (or counts as a shadow error) and is
///   recorded as a [fault](crate::Faults) with the version. A call that never returns is
///   abandoned at its deadline — listed in [`Status::abandoned`](crate::Status::abandoned)
///   until it does — and does not stop the deployment from retiring the model.
/// * **`Drop`**: runs inside `catch_unwind` wherever bluegreen drops a model; a panic is
///   a fault, and a slow drop delays the next retirement rather than letting models pile
///   up (see [`Builder::max_retiring`](crate::Builder::max_retiring)).
///
/// # Example
///
/// ```
/// use bluegreen::{Model, ModelInfo};
///
/// /// y = a·x + b
/// struct Linear { a: f32, b: f32 }
///
/// impl Model for Linear {
///     type Input = Vec<f32>;
///     type Output = Vec<f32>;
///     type Error = std::convert::Infallible;
///
///     fn predict(&self, x: &Vec<f32>) -> Result<Vec<f32>, Self::Error> {
///         Ok(x.iter().map(|x| self.a * x + self.b).collect())
///     }
/// }
///
/// let m = Linear { a: 2.0, b: 1.0 };
/// assert_eq!(m.predict(&vec![1.0, 2.0]).unwrap(), vec![3.0, 5.0]);
/// assert_eq!(m.info(), ModelInfo::default());
/// ```
pub trait Model: Send + Sync + 'static {
    /// What one call takes (a feature vector, a batch tensor, named tensors, …).
    type Input: Send + Sync + 'static;
    /// What one call returns.
    type Output: Send + 'static;
    /// Why a call failed (bad shape, backend error, …). Returned to the caller unchanged.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs the model on one input. Called concurrently from many threads.
    fn predict(&self, input: &Self::Input) -> Result<Self::Output, Self::Error>;

    /// Prepares the model for traffic, before it becomes active; returns how many calls it
    /// made.
    ///
    /// The first calls on a freshly loaded model are often far slower than steady state
    /// (lazy allocation, kernel selection, page faults: 111 µs vs 2.4 µs on a small ONNX
    /// model). bluegreen calls this once on every model before it takes traffic — the
    /// initial one and each candidate, after validation and before the flip — with the
    /// configured warm-up samples, else inputs offered by a gate, else **no samples**: a
    /// model that can make inputs of its own (from its declared schema) should then warm
    /// itself, as `OnnxModel` does. The default runs [`predict`](Model::predict) once per
    /// sample; backends that keep several execution contexts (a session pool) should
    /// override it to warm every one of them.
    fn warm_up(&self, samples: &[Self::Input]) -> Result<usize, Self::Error> {
        for sample in samples {
            self.predict(sample)?;
        }
        Ok(samples.len())
    }

    /// Describes the model: input/output schema and metadata, where the backend knows them.
    ///
    /// Used by schema gates and shown in [`Status`](crate::Status). The default knows nothing.
    fn info(&self) -> ModelInfo {
        ModelInfo::default()
    }
}
