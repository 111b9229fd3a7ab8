//! Measurements on the real models in `models/digits` (ONNX Runtime through `ort`).
//!
//! Everything here first calls [`environment`], which creates ONNX Runtime's process-wide
//! environment and hands it to bluegreen, so that bare sessions and bluegreen's share it.
//! Call nothing else that loads a model before.
//!
//! | file | holds |
//! |---|---|
//! | `digits.rs` | model and golden-set paths, the shared environment, bare sessions, model loading, one call per path |
//! | `read_path.rs` | [`OnnxPath`], [`OnnxBench`]: bare session vs `OnnxModel` vs `BlueGreen<OnnxModel>` at 1–2 threads |
//! | `first_calls.rs` | [`after_swap`]: the first 100 calls after swapping in a freshly loaded model, against steady state |
//! | `validation.rs` | [`ValidationBench`]: the accuracy gate's throughput against raw `predict` |
//! | `gated_swap.rs` | [`GatedSwap`]: `swap()` with five gates, idle and with two busy readers |
//! | `qualify.rs` | [`Qualify`]: qualifying v2 in this process vs in a quarantine child vs an empty child (feature `quarantine`) |
//! | `shadow.rs` | [`OnnxShadow`]: v2 shadowing v1, none / saturated / real |

mod digits;
mod first_calls;
mod gated_swap;
#[cfg(feature = "quarantine")]
mod qualify;
mod read_path;
mod shadow;
mod validation;

// Flat, as `common::onnx::X`; each bench names only some of it.
#[cfg(feature = "quarantine")]
#[allow(unused_imports)]
pub use self::qualify::{Noop, Qualify, QualifyRound, hook};
#[allow(unused_imports)]
pub use self::{
    digits::{
        POOL, ROWS, bare_run, bare_session, bluegreen_run, environment, golden, load_model,
        model_path, model_run, single_rows,
    },
    first_calls::{
        AfterSwap, FIRST, PAUSE, SETTLE_CALLS, STEADY_WINDOWS, WARMUP_SAMPLES, after_pause,
        after_swap, after_swap_warmed_here, golden_inputs,
    },
    gated_swap::{GATES, GatedSwap},
    read_path::{OnnxBench, OnnxPath},
    shadow::{OnnxShadow, OnnxShadowMode, labels},
    validation::{VALIDATION_BATCH, ValidationBench, ValidationRound},
};
