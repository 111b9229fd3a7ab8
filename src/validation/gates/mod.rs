//! Built-in gates: golden-set quality, regression against the live model, numeric sanity,
//! schema compatibility and latency budget.
//!
//! Every gate is a [`Validator`](crate::Validator) that reports the value it measured and
//! the bound it held it to, so a [`ValidationReport`](crate::ValidationReport) reads like a
//! checklist. The statistical gates also report the value's confidence interval
//! ([`Interval`], in the check's detail) and know their noise:
//!
//! | gate | measures | passes when |
//! |---|---|---|
//! | [`accuracy`](GoldenGates::accuracy) | candidate accuracy vs true labels, with its Wilson interval | ≥ min (or its interval's lower end ≥ min, [`ShareRule::LowerBound`]) |
//! | [`expected_outputs`](GoldenGates::expected_outputs) | max abs error vs expected outputs | ≤ max |
//! | [`regression`](GoldenGates::regression) | candidate accuracy − live accuracy on the same examples, with its paired score interval and exact McNemar p-value | the interval's lower end > −max_drop (*non-inferior*); or [`not_worse`](GoldenGates::not_worse): McNemar p ≥ α; see [`RegressionPolicy`] |
//! | [`agreement`](GoldenGates::agreement) | share of examples where candidate and live agree on the top label, with its Wilson interval | ≥ min (or lower end ≥ min) |
//! | [`sanity`](GoldenGates::sanity) | non-finite values, probabilities out of range, outputs off their declared shape/dtype | = 0 |
//! | [`latency`](GoldenGates::latency) | candidate p99 per single-example call (absolute, or ÷ live p99 in the same run) | ≤ budget |
//! | [`SchemaGate`] | inputs the service feeds that the candidate does not accept; metadata mismatches | = 0 |
//!
//! Golden-set gates come from one [`GoldenGates`], which holds the
//! [`GoldenSet`](crate::GoldenSet) and a
//! [`Binding`] — how a batch of golden rows becomes a model input and how a model output
//! becomes labels and scores. Gates made by one `GoldenGates` share a small cache, so a
//! model is run over the golden set once per validation however many gates look at it,
//! and the live model's evaluation is reused while candidates come and go. The golden
//! rows are turned into model inputs once, on first use, and kept (one more copy of the
//! inputs in memory): every later evaluation runs on them without copying a row.
//!
//! A statistical gate whose golden set is too small for its bound to ever pass (or ever
//! fail) says so when it is built ([`SizeAdvice`], from its `advice()`, also logged), with
//! the number of examples it would need. [`GoldenGates::calibrate`] runs the live model
//! alone over the golden set and suggests a bound for each gate.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Binding`], [`Predictions`]; the one hand-built `Verdict` helper |
//! | `golden_gates.rs` | [`GoldenGates`] (makes the golden-set gates), the shared evaluation cache, the class-count check, [`ExpectedOutputsGate`] |
//! | `quality.rs` | [`AccuracyGate`], [`AgreementGate`], [`ShareRule`] |
//! | `regression.rs` | [`RegressionGate`], [`RegressionPolicy`] |
//! | `stats.rs` | the public [`stats`] module: Wilson and Clopper–Pearson intervals, exact McNemar, the paired score interval, examples a bound needs |
//! | `advice.rs` | [`SizeAdvice`], [`SizeProblem`]: power guidance |
//! | `calibrate.rs` | [`Calibration`], [`Suggested`], [`ShareFigure`], [`CalibrationError`] |
//! | `sanity.rs`, `latency.rs`, `schema.rs` | [`SanityGate`], [`LatencyGate`], [`SchemaGate`] |
//! | `shadow.rs` | `ShadowGate`, judging shadow-traffic evidence (public as `bluegreen::shadow::ShadowGate`) |

mod advice;
mod calibrate;
mod golden_gates;
mod latency;
mod quality;
mod regression;
mod sanity;
mod schema;
pub(crate) mod shadow;
pub mod stats;

use ndarray::{Array1, Array2, ArrayView2};

use crate::model::Model;
use crate::model::{Dim, ElementType, ModelInfo};
use crate::validation::validate::{Bound, Verdict};

#[doc(no_inline)]
pub use crate::validation::validate::{Interval, IntervalMethod};
pub use advice::{SizeAdvice, SizeProblem};
pub use calibrate::{Calibration, CalibrationError, ShareFigure, Suggested};
pub use golden_gates::{ExpectedOutputsGate, GoldenGates};
pub use latency::{LatencyBudget, LatencyGate};
pub use quality::{AccuracyGate, AgreementGate, ShareRule};
pub use regression::{RegressionGate, RegressionPolicy};
pub use sanity::SanityGate;
pub use schema::SchemaGate;

/// How golden-set rows become a model input, and a model output becomes predictions.
///
/// [`OnnxBinding`](crate::onnx::OnnxBinding) implements it for ONNX classifiers; implement
/// it for your own model types.
pub trait Binding<M: Model>: Send + Sync + 'static {
    /// The model input for a batch of golden rows (one example per row).
    fn input(&self, rows: ArrayView2<'_, f32>) -> M::Input;

    /// The predictions in `output`, which answered a batch of `rows` examples.
    fn read(&self, output: &M::Output, rows: usize) -> Result<Predictions, String>;

    /// Whether `output` matches what the model declares in `info` (names, element types,
    /// shapes). Used by the sanity gate; the default checks nothing.
    fn check_declared(&self, output: &M::Output, info: &ModelInfo) -> Result<(), String> {
        let _ = (output, info);
        Ok(())
    }

    /// How many classes a model described by `info` scores, if it declares it: golden
    /// labels at or above it can never be predicted, so the accuracy and regression gates
    /// refuse them (see [`GoldenGates::check_labels_against`]).
    ///
    /// The default finds the one `f32` output of shape `[batch, k]` with a fixed `k`
    /// (scikit-learn's `probabilities` via skl2onnx, most classifiers' logits) and
    /// returns `k`; `None` when there is no such output or more than one. Override it
    /// when your model says it otherwise. Without a declared count the gates use the
    /// width of the scores the model actually returned.
    fn classes(&self, info: &ModelInfo) -> Option<usize> {
        let mut widths = info
            .outputs
            .iter()
            .filter_map(|t| match (t.dtype, t.shape.as_deref()) {
                (ElementType::F32, Some([_, Dim::Fixed(k)])) => Some(*k),
                _ => None,
            });
        let first = widths.next()?;
        widths.next().is_none().then_some(first)
    }
}

/// What a model predicted for a batch of examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    /// The predicted class of each example.
    pub labels: Array1<i64>,
    /// Per-class scores (probabilities) of each example, if the model gives them.
    pub scores: Option<Array2<f32>>,
}

impl Predictions {
    /// Predictions from scores alone: each label is the row's arg-max (NaN never wins).
    pub fn from_scores(scores: Array2<f32>) -> Self {
        let labels = scores
            .rows()
            .into_iter()
            .map(|row| {
                let mut best: Option<(usize, f32)> = None;
                for (i, &v) in row.iter().enumerate() {
                    if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                        best = Some((i, v));
                    }
                }
                best.map_or(-1, |(i, _)| i as i64)
            })
            .collect();
        Self {
            labels,
            scores: Some(scores),
        }
    }
}

/// A measured verdict whose pass/fail a gate decided itself (from an interval or a test,
/// not only from `measured` against `bound`). The one place gates build a `Verdict` by
/// hand.
pub(crate) fn verdict(
    passed: bool,
    measured: f64,
    bound: Bound,
    interval: Option<Interval>,
    detail: String,
) -> Verdict {
    Verdict {
        passed,
        measured: Some(measured),
        bound: Some(bound),
        interval,
        detail,
    }
}
