//! # bluegreen
//!
//! Replace the ML model inside a running inference service without downtime, without
//! letting a bad model answer users, and with an instant way back.
//!
//! ## The model in one page
//!
//! A [`BlueGreen<M>`](BlueGreen) holds up to three loaded models of type `M:`[`Model`]:
//!
//! * the **active** model (*blue*) answers every [`predict`](BlueGreen::predict);
//! * a **candidate** (*green*) is staged, validated and warmed beside it;
//! * the **previous** model — active before the last swap — stays loaded so that
//!   [`rollback`](BlueGreen::rollback) is instant, also while a candidate is staged or
//!   refused ([`Builder::memory_tight`] trades that for two models resident).
//!
//! The life of a candidate:
//!
//! 1. [`stage`](BlueGreen::stage) puts it in the candidate slot. An earlier candidate is
//!    **retired** first: bluegreen waits (bounded) until the calls still running on it
//!    have **drained**, then a background retirer thread drops it — never a request
//!    thread.
//! 2. [`swap`](BlueGreen::swap) **warms** it up (always: configured samples, else inputs
//!    the gates offer, else the model warms itself) and runs every configured
//!    [`Validator`] on it — both in one hand-off to a supervised worker thread, each with a
//!    deadline (a panic or overrun fails it) — and only then flips traffic with one atomic
//!    pointer store. A refused candidate stays
//!    staged, marked failed, and the error carries the [`ValidationReport`]; the live model
//!    and the rollback target never notice.
//! 3. Calls that started before the flip finish on the old model, which becomes the
//!    previous model. [`rollback`](BlueGreen::rollback) flips back without re-validating.
//!
//! Admin operations (stage, swap, rollback, validate) are serialized by a lock that
//! request threads never touch; [`acting_as`](BlueGreen::acting_as) says who asked. With
//! a journal (feature `journal`, `Builder::journal`) each decision is recorded before it
//! is taken, a restart resumes on the version last live, and versions rolled back or
//! refused stay banned for the same bytes. [`status`](BlueGreen::status) returns a
//! [`Status`] snapshot: versions, states, in-flight, request, error and panic counts per
//! slot, swap and rollback counts, the last validation report, models being retired,
//! abandoned work and [`Faults`]. [`predict_versioned`](BlueGreen::predict_versioned) says
//! which model answered.
//!
//! Models, gates and hooks are untrusted code: a panic or a hang in them is caught or
//! abandoned on bluegreen's own threads, counted with the version, and never ends a
//! bluegreen thread or wedges the deployment — see [`BlueGreen`]'s "Faults" section.
//!
//! ## After the switch (opt-in)
//!
//! * [`Bake`]: the newly promoted model is watched — error rate, p99 latency, outcomes
//!   reported with [`record_outcome`](BlueGreen::record_outcome) — against absolute limits
//!   and the previous model's record; a breach rolls back on its own and is recorded in
//!   [`Status::last_auto_rollback`].
//! * [`Shadow`]: a share of live calls is mirrored to the staged candidate on a worker
//!   thread through a bounded queue; [`ShadowGate`] turns the comparison into a gate.
//! * Canary ([`start_canary`](BlueGreen::start_canary)) and session [`Affinity`], both on
//!   [`predict_keyed`](BlueGreen::predict_keyed), which routes by a stable hash of a
//!   request key.
//!
//! ## Untrusted candidates (feature `quarantine`, default)
//!
//! [`stage_quarantined`](BlueGreen::stage_quarantined) first qualifies a candidate file in
//! a child process — the application's binary re-executed, under address-space, CPU-time
//! and wall-clock caps — and loads it only if it passed; an endless loop, a memory bomb or a
//! crash is a typed refusal naming its cause, and never runs in the serving process. See
//! `quarantine`.
//!
//! Built-in gates live in [`gates`] (golden-set quality, regression against the live model,
//! sanity, schema, latency); the `onnx` module (feature `onnx`, default) is the ONNX
//! Runtime backend, on the CPU or an accelerator (`onnx::ExecutionProvider`: features
//! `cuda`, `tensorrt`, `openvino`, `coreml`, `directml`).
//!
//! ## Fitting into a service (opt-in features)
//!
//! * `metrics`: every figure through the [`metrics`](https://docs.rs/metrics) facade into the
//!   recorder your application installs — calls, errors, panics and latency per version,
//!   in-flight per slot, swaps, rollbacks, automatic rollbacks by limit, gate verdicts,
//!   shadow and canary, retirements, faults — labelled with the deployment's
//!   [`name`](Builder::name). Published from the per-thread lanes by a collector thread or
//!   by `BlueGreen::publish_metrics` at scrape time; `predict` is unchanged.
//! * `tower`: `service::PredictService`, a `tower::Service` over a deployment that runs
//!   inference on a fixed worker pool, with backpressure through `poll_ready`.
//!
//! ## The read path
//!
//! `predict` is an [`arc_swap`] guard load plus a call: no lock, no shared reference-count
//! increment, no shared counter. Measured on a 2-core machine, one shared in-flight
//! counter next to the arc-swap load makes a call cost ~40 ns at two threads instead of
//! ~4.5 ns (and ~200 ns on machines whose cores are further apart); so per-slot statistics
//! live in per-thread cache-padded lanes written only by their own thread.
//! Draining needs no counter on the read path either: when arc-swap replaces the active
//! pointer it converts every outstanding guard on the old model into a real reference, so
//! the old model's reference count *is* its number of unfinished calls.
//!
//! This protocol is model-checked: `tests/loom.rs` runs the deployment under
//! [loom](https://docs.rs/loom) (`bash scripts/loom.sh`), with the primitives of `sync/`
//! replaced by loom's, through every interleaving up to a preemption bound of readers,
//! swap, rollback, drain, the retirer and the bake monitor. It checks that an answer comes
//! from a version active at some point of its call, that a retired model is dropped exactly
//! once, on the retirer, after its last call, that no more models are resident than
//! documented, that swap and manual and automatic rollback leave one consistent
//! [`status`](BlueGreen::status), and that no two live threads share a lane; the file
//! shows the failures loom reports for a retirer that skips the drain and for shared lanes.
//!
//! ## Where things are
//!
//! The source is in layers; each imports only from the layers above it in this list, and
//! each folder's `mod.rs` is a table of contents of its files.
//!
//! | folder | layer | public face |
//! |---|---|---|
//! | `sync/` | under the floor: `Arc`, atomics, locks, the swap cell, channels and threads — std, parking_lot, arc-swap, crossbeam normally, loom's under `--cfg bluegreen_loom` | — |
//! | `model/` | the floor: the [`Model`] contract and what a model declares ([`ModelInfo`]) | [`Model`], [`ModelInfo`], [`TensorSpec`] |
//! | `slot/` | a loaded model with its identity (version, content hash) and generation; per-thread lanes and counters | [`Identity`], [`ContentHash`] |
//! | `validation/` | the gate contract, gate context and reports, supervised runs, golden sets, built-in gates | [`validate`], [`gates`], [`GoldenSet`] |
//! | `traffic/` | after the switch: bake window, shadow traffic, canary and affinity routing | [`bake`], [`shadow`], [`routing`] |
//! | `journal/` | the deployment journal: every decision in SQLite, resume and bans (rows compiled always, storage with feature `journal`) | `journal` (feature `journal`) |
//! | `deployment/` | [`BlueGreen`]: read path, builder, admin and canary operations, bake monitor, retirer, status, metrics publishing, [`Error`] | [`BlueGreen`], [`Builder`], [`Status`] |
//! | `service/` | the `tower::Service` over a deployment and its worker pool | `service` (feature `tower`) |
//! | `rollout/` | the model repository and the watcher that rolls versions out | [`repository`], `watch` (feature `watch`) |
//! | `onnx/` | the ONNX Runtime backend; stands on `model/` and the gates' [`Binding`](gates::Binding) only | `onnx` (feature `onnx`) |
//!
//! Two crate-root files sit above the layers: `lib.rs`, and `quarantine.rs`, the public
//! `quarantine` module (feature `quarantine`, default), whose machinery is in
//! `validation/quarantine/` and which wires the backends' loaders into the child's hook.
//!
//! ## Example
//!
//! ```
//! use bluegreen::{BlueGreen, Model};
//!
//! struct Threshold(f32);
//! impl Model for Threshold {
//!     type Input = f32;
//!     type Output = bool;
//!     type Error = std::convert::Infallible;
//!     fn predict(&self, x: &f32) -> Result<bool, Self::Error> { Ok(*x > self.0) }
//! }
//!
//! let bg = BlueGreen::new("v1", Threshold(0.5))?;
//! assert!(!bg.predict(&0.4).unwrap());
//!
//! bg.stage("v2", Threshold(0.3))?;   // candidate in standby
//! bg.swap()?;                         // validate, warm, flip
//! assert!(bg.predict(&0.4).unwrap());
//!
//! bg.rollback()?;                     // instant: v1 was kept loaded
//! assert_eq!(bg.active().version(), "v1");
//! # Ok::<(), bluegreen::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The layers (their order is in the crate docs, "Where things are"); each folder's `mod.rs`
// is its table of contents.
mod deployment;
#[cfg(feature = "journal")]
pub mod journal;
#[cfg(not(feature = "journal"))]
mod journal;
mod model;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "quarantine")]
pub mod quarantine;
mod rollout;
#[cfg(feature = "serde")]
mod serde_util;
#[cfg(feature = "tower")]
pub mod service;
mod slot;
mod sync;
mod traffic;
mod validation;

// Public modules, at the paths users know.
pub use crate::rollout::repository;
#[cfg(feature = "watch")]
pub use crate::rollout::watch;
pub use crate::traffic::{bake, routing, shadow};
pub use crate::validation::{gates, validate};

// Flat re-exports.
pub use crate::deployment::{
    Abandoned, Acting, Active, Actor, BlueGreen, Builder, CanaryReport, ContentChange, Error,
    Fault, FaultKind, Faults, JournalStatus, Result, RetiringModel, RollbackReport, SlotState,
    SlotStatus, StageReport, Status, SwapReport, Versioned,
};
pub use crate::model::{Dim, ElementType, Model, ModelInfo, TensorSpec};
#[cfg(feature = "onnx")]
pub use crate::onnx::{OnnxBinding, OnnxConfig, OnnxError, OnnxModel};
pub use crate::slot::{ContentHash, Identity, InvalidContentHash};
pub use crate::validation::{GoldenError, GoldenSet, NpzSpec};
// Items whose page lives in their public module: a link here, not a second page.
#[doc(no_inline)]
pub use crate::bake::{AutoRollback, Bake, BakeLimit, BakeStatus};
#[doc(no_inline)]
pub use crate::repository::Repository;
#[doc(no_inline)]
pub use crate::routing::Affinity;
#[doc(no_inline)]
pub use crate::shadow::{Comparison, Shadow, ShadowGate, ShadowStatus};
#[doc(no_inline)]
pub use crate::validate::{Check, CheckStatus, ValidationReport, Validator};
#[cfg(feature = "watch")]
#[doc(no_inline)]
pub use crate::watch::{WatchPolicy, Watcher};

/// The README's examples, compiled and run as doctests.
#[cfg(all(doctest, feature = "onnx", feature = "journal"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
