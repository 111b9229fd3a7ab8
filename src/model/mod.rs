//! The floor every other layer stands on: what bluegreen needs from a loaded model.
//!
//! | file | holds |
//! |---|---|
//! | `contract.rs` | [`Model`]: the trait a model implements — `predict`, `warm_up`, `info` — and what bluegreen promises in return |
//! | `panic.rs` | the message of a caught panic payload |
//! | `schema.rs` | [`ModelInfo`], [`TensorSpec`], [`ElementType`], [`Dim`]: what a model declares about its inputs, outputs and metadata |
//!
//! This layer imports nothing from the rest of the crate. Validation, the gates, the
//! traffic features, the deployment and the backends (`onnx/`) all import it.

mod contract;
mod panic;
mod schema;

pub use contract::Model;
pub(crate) use panic::panic_message;
pub use schema::{Dim, ElementType, ModelInfo, TensorSpec};
