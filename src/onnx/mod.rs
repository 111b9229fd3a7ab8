//! ONNX Runtime backend: [`OnnxModel`] serves an `.onnx` file through the [`Model`](crate::Model)
//! trait, from many threads at once.
//!
//! ```no_run
//! use bluegreen::Model;
//! use bluegreen::onnx::{Inputs, OnnxModel, init_runtime, ndarray::Array2};
//!
//! init_runtime()?; // optional: fail at start-up, with instructions, if ONNX Runtime is missing
//! let model = OnnxModel::load("models/digits/2/model.onnx")?;
//! println!("{:?}", model.info().inputs); // [input: f32[batch, 64]]
//!
//! let x = Array2::<f32>::zeros((3, 64));
//! let out = model.predict(&Inputs::single(x))?;
//! for (name, tensor) in out.iter() {
//!     println!("{name}: {:?}", tensor.dtype());
//! }
//! let labels = out.i64("label")?; // shape [3]
//! # let _ = labels;
//! # Ok::<(), bluegreen::onnx::OnnxError>(())
//! ```
//!
//! # Inputs and outputs
//!
//! [`Inputs`] binds `f32`/`i64` [`ndarray`] arrays ([`Tensor`]) to input names
//! ([`Inputs::single`] for a model with one input). Before ONNX Runtime sees anything, each
//! call is checked against the model: unknown, missing or repeated names, element type, rank
//! and every fixed dimension; a mismatch is a typed [`OnnxError`] naming the input, what the
//! model declares and what was given. Arrays are passed to ONNX Runtime by reference, not
//! copied (unless they are not in standard layout). [`Outputs`] owns ONNX Runtime's output
//! buffers and lends them as `ndarray` views ([`Outputs::f32`], [`Outputs::i64`],
//! [`Outputs::iter`] in graph order).
//!
//! [`OnnxBinding`] connects an [`OnnxModel`] to the golden-set gates
//! ([`GoldenGates`](crate::gates::GoldenGates)): golden rows become the model's input, and
//! predictions are read from its `label` / `probabilities` outputs (configurable).
//!
//! [`Model::info`](crate::Model::info) reports the graph's inputs and outputs (symbolic
//! dimensions as [`Dim::Dynamic`](crate::Dim::Dynamic) with their name, e.g. `batch`) and the
//! model's metadata: every custom metadata entry under its own key (`feature_schema`,
//! `model_version`, …), plus the standard ONNX fields, when set, under `onnx.producer_name`,
//! `onnx.graph_name`, `onnx.domain`, `onnx.doc_string`, `onnx.graph_doc_string`,
//! `onnx.model_version`. A model cannot make bluegreen keep unbounded metadata: at most
//! 1024 custom entries and 1 MiB are kept by default
//! ([`OnnxConfig::metadata_limits`]); what was left out is reported under
//! `bluegreen.metadata_dropped`. The entries are read from the file in one linear pass
//! (ONNX Runtime's own per-key lookup copies the whole map each time: 20 000 entries took
//! 30 s that way).
//!
//! # Concurrency: a pool of sessions
//!
//! ort's `Session::run` takes `&mut self` (ONNX Runtime's `Run` is not safe to call
//! concurrently on one session in every configuration), so one session serves one call at a
//! time. An [`OnnxModel`] therefore holds a pool of sessions, each behind its own
//! `parking_lot::Mutex` on its own cache line, sized with [`OnnxConfig::pool_size`]
//! (default: the number of CPUs; two on an accelerator, see below) — size it to the number
//! of threads that call `predict`.
//!
//! Picking a session must not itself become the bottleneck: a write to memory that several
//! threads share (a round-robin counter, a shared reference count) costs ~10× more at two
//! threads than at one. So there is none on the hot path. Each thread has a *home* index in a
//! thread-local, assigned once per thread. A call `try_lock`s the home session; if another
//! thread holds it, it tries the others in turn and makes the first free one its new home, so
//! threads settle on distinct sessions; only when every session is busy does it wait, on its
//! home. In the steady state each session's lock (and the reference count of its output-name
//! list, cloned into each [`Outputs`]) is only ever touched by one thread.
//!
//! [`Model::warm_up`](crate::Model::warm_up) runs every sample on **every** session of the
//! pool: a fresh session's first run is ~50× slower than steady state (lazy allocation,
//! kernel selection), and a pool warmed through `predict` would warm only one session.
//! [`OnnxModel::runs_per_session`] shows what ran where.
//!
//! ## Memory
//!
//! Every session loads its own copy of the graph and its weights: a pool of `n` sessions
//! needs about `n` times the model's size. The sessions share a `PrepackedWeightsContainer`
//! ([`OnnxConfig::share_prepacked_weights`], on by default), so the re-laid-out copies that
//! kernels such as MatMul/Gemm/Conv build at load time exist once per model rather than once
//! per session. For a large model, prefer a smaller pool with more
//! [`intra_threads`](OnnxConfig::intra_threads) each.
//!
//! # Execution providers: GPUs and other accelerators
//!
//! [`OnnxConfig::execution_provider`] picks where ONNX Runtime runs the model:
//! [`ExecutionProvider::Cpu`] (the default), CUDA, TensorRT, OpenVINO, Core ML or DirectML.
//! Each accelerator needs bluegreen's cargo feature of the same name (`cuda`, `tensorrt`,
//! `openvino`, `coreml`, `directml`; each forwards ort's, so ort's `download-binaries`
//! then fetches a build with it) and an ONNX Runtime library built with the provider —
//! with `load-dynamic`, e.g. the `onnxruntime-gpu` wheel's `libonnxruntime.so` (and its
//! `libonnxruntime_providers_cuda.so` beside it) for CUDA.
//!
//! When the provider cannot be used — the feature is off, the library lacks it, or ONNX
//! Runtime cannot start it on this machine (no device, missing CUDA libraries) — loading
//! fails with [`OnnxError::ProviderUnavailable`], naming the provider and why. A model the
//! CPU cannot load either is an [`OnnxError::InvalidModel`], whatever the provider. With
//! [`OnnxConfig::cpu_fallback`] the model is instead loaded on the CPU, a warning is logged
//! with the reason, and the model says so ([`OnnxModel::execution_provider`],
//! [`OnnxModel::cpu_fallback_reason`]) — a choice, never a silent default: a service that
//! sized its fleet for GPUs usually wants to fail its readiness check instead.
//!
//! On an accelerator the pool defaults to [`ACCELERATOR_SESSIONS`] (two) sessions, not one
//! per CPU: the device runs one session's kernels at a time, and every session keeps its
//! own copy of the weights and its own memory arena on the device, so more sessions cost
//! device memory without adding throughput; the second lets one call's host-side work
//! overlap the other's device work. Feed an accelerator batches rather than many
//! concurrent single rows. A retired model's sessions are released by the retirer thread
//! like any other model; `scripts/gpu-check.sh` measures what that gives back on a CUDA
//! machine.
//!
//! # Linking ONNX Runtime
//!
//! bluegreen depends on `ort` without choosing how ONNX Runtime is linked
//! (`default-features = false`), so the application decides, in its own `Cargo.toml`:
//!
//! - `ort = { version = "=2.0.0-rc.15", features = ["download-binaries"] }`: ort downloads
//!   ONNX Runtime at build time and links it in (needs internet at build time).
//! - `ort = { version = "=2.0.0-rc.15", features = ["load-dynamic"] }`: ONNX Runtime
//!   (≥ 1.31) is loaded at run time from `ORT_DYLIB_PATH` (or `libonnxruntime.so` on the
//!   loader path). Without internet, the `onnxruntime==1.31.1` wheel on PyPI contains
//!   `onnxruntime/capi/libonnxruntime.so.1.31.1`; this repository's `scripts/setup-ort.sh`
//!   extracts it to `.ort/lib/`, and `.cargo/config.toml` points `ORT_DYLIB_PATH` there for
//!   the repository's own tests, examples and benches.
//!
//! # Runtime initialization and errors
//!
//! ort creates ONNX Runtime's process-wide environment lazily and, with `load-dynamic`,
//! **panics** when the library cannot be loaded. bluegreen does not let that reach you: the
//! first model load (or an explicit [`init_runtime`]) creates the environment once, inside a
//! `OnceLock`. Before ort is touched, an `ORT_DYLIB_PATH` naming a missing file is reported
//! as [`OnnxError::RuntimeNotFound`], one naming a directory or a file that is not a shared
//! library as [`OnnxError::RuntimeUnavailable`]; any panic from ort's loader after that (no
//! library on the loader's path, a library without the ONNX Runtime API, one older than
//! 1.31) is caught and returned as [`OnnxError::RuntimeUnavailable`] too — quietly: while
//! ort runs, a panic hook that ignores the calling thread's panics (and hands every other
//! thread's to yours) stands in for yours, so nothing is printed and your hook does not
//! fire for it. std cannot swap a hook atomically: in the instants between taking the hook
//! and setting the next one, another thread's panic is printed by std's default hook
//! instead of reaching yours (never lost, never silenced; details in `quiet.rs`). Every
//! such message says what to do:
//! run `scripts/setup-ort.sh`, or set `ORT_DYLIB_PATH` to `libonnxruntime.so` 1.31.x, or
//! enable ort's `download-binaries` feature. A failed initialization is retried on the next
//! call. To use an environment of your own (custom logging, execution providers, or a
//! library loaded from an explicit path with `ort::init_from`), pass it to
//! [`init_runtime_with`] before loading models. (Catching ort's panic needs unwinding: under
//! `panic = "abort"` only the checks made before ort is touched return errors.)
//!
//! # Where things are
//!
//! A backend: it stands on the crate's floor ([`Model`](crate::Model), the schema types) and
//! on the gates' [`Binding`](crate::gates::Binding); nothing in the deployment core imports
//! it.
//!
//! | file | holds |
//! |---|---|
//! | `model.rs` | [`OnnxModel`]: the session pool, `predict`, input resolution, warm-up |
//! | `check.rs` | checking a tensor against its declared element type, rank and fixed dimensions |
//! | `config.rs` | [`OnnxConfig`], [`OptimizationLevel`]: how a model is loaded |
//! | `provider.rs` | [`ExecutionProvider`]: CPU, CUDA, TensorRT, OpenVINO, Core ML, DirectML; registering one; the first session and the CPU fallback |
//! | `describe.rs` | reading a session's inputs, outputs and metadata into a [`ModelInfo`](crate::ModelInfo) |
//! | `metadata.rs` | reading the custom metadata from the model file in one linear pass, within limits |
//! | `tensor.rs` | [`Inputs`], [`Outputs`], [`Tensor`], [`TensorView`] |
//! | `binding.rs` | [`OnnxBinding`]: golden rows in, labels and scores out |
//! | `runtime.rs` | creating ONNX Runtime's environment once, without letting ort's panics out |
//! | `quiet.rs` | catching ort's loader panic without the panic hook printing it or calling yours |
//! | `quarantine.rs` | [`OnnxTrial`] and the built-in `onnx` loader of the quarantine child (feature `quarantine`) |
//! | `error.rs` | [`OnnxError`] |

mod binding;
mod check;
mod config;
mod describe;
mod error;
mod metadata;
mod model;
mod provider;
#[cfg(feature = "quarantine")]
mod quarantine;
mod quiet;
mod runtime;
mod tensor;

pub use self::binding::OnnxBinding;
pub use self::config::{OnnxConfig, OptimizationLevel};
pub use self::error::{OnnxError, RUNTIME_FIX};
pub use self::model::OnnxModel;
pub use self::provider::{ACCELERATOR_SESSIONS, ExecutionProvider};
#[cfg(feature = "quarantine")]
pub use self::quarantine::OnnxTrial;
#[cfg(feature = "quarantine")]
pub(crate) use self::quarantine::register_quarantine_loader;
pub use self::runtime::{init_runtime, init_runtime_with, runtime_initialized};
pub use self::tensor::{Inputs, Outputs, Tensor, TensorView};

/// The `ndarray` version bluegreen's tensors use, re-exported so that yours matches.
pub use ndarray;
/// The `ort` version bluegreen is built on (for [`init_runtime_with`] and `ort::init_from`).
pub use ort;
