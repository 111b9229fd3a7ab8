//! Qualifying a candidate before it takes traffic: the gate contract, how gates run, what
//! they report, the golden data they judge on, and the built-in gates.
//!
//! | file | holds |
//! |---|---|
//! | `validate.rs` | the public `bluegreen::validate` module: [`Validator`](validate::Validator), [`from_fn`](validate::from_fn), [`Verdict`](validate::Verdict), [`Bound`](validate::Bound) |
//! | `context.rs` | [`Context`](validate::Context), what a gate sees (candidate, live model, their schemas); [`ShadowStatus`], the shadow evidence it may read |
//! | `report.rs` | [`ValidationReport`](validate::ValidationReport), [`Check`](validate::Check), [`CheckStatus`](validate::CheckStatus) |
//! | `run.rs` | `run_all`: every gate in order, each on the gate worker with its deadline |
//! | `worker.rs` | supervised execution: the gate worker, one reused thread per deployment that runs gates and warm-ups with a deadline and panic capture, abandoning itself on an overrun; [`Supervised`] |
//! | `golden.rs` | [`GoldenSet`], [`NpzSpec`]: held-out examples loaded from `.npz` or built in code |
//! | `golden_error.rs` | [`GoldenError`]: why a golden set could not be loaded or built |
//! | `npz.rs` | reading `.npz` arrays without trusting declared sizes: bounded header, checked shape × size against the entry and a limit, payload memory bounded by the bytes that arrive |
//! | `quarantine/` | the public `bluegreen::quarantine` module's machinery (feature `quarantine`): qualifying a candidate in a capped child process |
//! | `gates/` | the public `bluegreen::gates` module: golden-set gates, latency, sanity, schema, shadow |
//!
//! Stands on `model/` and `slot/` (a [`Context`](validate::Context) holds the two loaded
//! slots). The traffic features, the deployment and the backends import it; nothing here
//! imports them. The shadow gate reads [`ShadowStatus`], a plain summary defined here, so
//! validation does not depend on the shadow worker that fills it in.

mod context;
pub mod gates;
mod golden;
mod golden_error;
mod npz;
#[cfg(feature = "quarantine")]
pub mod quarantine;
mod report;
mod run;
pub mod validate;
mod worker;

pub use context::ShadowStatus;
pub use golden::{GoldenSet, NpzSpec};
pub use golden_error::GoldenError;
pub(crate) use run::run_all;
pub(crate) use worker::{GateWorker, Supervised, Task};
