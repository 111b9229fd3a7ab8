//! Calibration: run the live (baseline) model over the golden set and derive, from its
//! figures and their intervals, bounds for each gate that a candidate as good as the
//! baseline passes — before any candidate exists.

use std::fmt;

use super::GoldenGates;
use super::golden_gates::max_abs_error;
use super::stats::{self, Paired};
use crate::model::Model;
use crate::validation::GoldenError;
use crate::validation::report::Interval;

/// Why a calibration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CalibrationError {
    /// The baseline failed on the golden set, or its output could not be read.
    #[error("the baseline could not be evaluated on the golden set: {0}")]
    Evaluation(String),
    /// A golden label is not a class the baseline can predict.
    #[error(transparent)]
    Labels(GoldenError),
}

/// A share measured on the golden set, with its Wilson interval.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareFigure {
    /// Examples counted (e.g. right).
    pub count: u64,
    /// Examples in all.
    pub n: u64,
    /// `count / n`.
    pub value: f64,
    /// Its Wilson interval at the calibration's confidence.
    pub interval: Interval,
}

/// Bounds suggested by a [`Calibration`], each for the gate of the same name; `None` when
/// the golden set lacks what the gate needs (labels, expected outputs).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggested {
    /// For [`accuracy`](GoldenGates::accuracy): the lower end of the baseline's accuracy
    /// interval, rounded down to a hundredth. A candidate as accurate as the baseline
    /// measures at least the lower end in about 97.5 % of golden sets of this size.
    pub min_accuracy: Option<f64>,
    /// For [`regression`](GoldenGates::regression) (non-inferior): the margin a candidate
    /// as accurate as the baseline, but right and wrong on different examples (as many as
    /// the baseline gets wrong), can show — rounded up to a multiple of 0.005.
    pub max_drop: Option<f64>,
    /// For [`agreement`](GoldenGates::agreement): the least agreement with the baseline of
    /// any candidate that passes the suggested accuracy bound — `min_accuracy + baseline
    /// accuracy − 1`, since two models disagree only where one of them is wrong — rounded
    /// down to a hundredth.
    pub min_agreement: Option<f64>,
    /// For [`expected_outputs`](GoldenGates::expected_outputs): the power of ten at or
    /// above ten times the baseline's own error, at least `1e-6`.
    pub max_abs_error: Option<f64>,
}

/// The live (baseline) model's figures on a golden set, with intervals and suggested
/// bounds per gate; from [`GoldenGates::calibrate`]. `Display` prints it as a report.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The baseline's version label.
    pub version: String,
    /// Where the golden set came from.
    pub golden: String,
    /// Examples in the golden set.
    pub examples: usize,
    /// Classes the model scores (declared, else the width of its scores; else the golden
    /// set's declared count), if known.
    pub classes: Option<usize>,
    /// Two-sided confidence of every interval.
    pub confidence: f64,
    /// The baseline's accuracy, when the golden set has labels.
    pub accuracy: Option<ShareFigure>,
    /// The smallest non-inferiority margin this golden set can show at all: the upper end
    /// of the drop for a candidate predicting exactly like the baseline, `z²/(n + z²)`.
    pub smallest_margin: f64,
    /// Examples on which the "as accurate but different" candidate behind
    /// [`Suggested::max_drop`] differs from the baseline (half right only for it, half
    /// only for the baseline).
    pub differing: Option<u64>,
    /// The upper end of the accuracy drop of that candidate: the margin it can show.
    pub differing_margin: Option<f64>,
    /// The fewest discordant examples, all against the candidate, with which a not-worse
    /// gate at alpha 0.05 refuses.
    pub not_worse_refuses_from: Option<u64>,
    /// The baseline's largest absolute error against the golden set's expected outputs.
    pub expected_error: Option<f64>,
    /// The suggested bounds.
    pub suggested: Suggested,
}

fn floor_hundredth(x: f64) -> f64 {
    ((x * 100.0 + 1e-9).floor() / 100.0).max(0.0)
}

fn ceil_half_hundredth(x: f64) -> f64 {
    // Strictly above x: non-inferiority needs the drop's upper end *below* the margin.
    ((x * 200.0 + 1e-9).floor() + 1.0) / 200.0
}

impl<M: Model> GoldenGates<M> {
    /// Runs `model` (the live model, or the baseline a CI run compares against) over the
    /// golden set and returns its figures with intervals at two-sided `confidence`, and
    /// suggested bounds for each gate ([`Suggested`]).
    ///
    /// ```
    /// use bluegreen::gates::{Binding, GoldenGates, Predictions};
    /// use bluegreen::{GoldenSet, Model};
    /// use ndarray::{Array1, Array2, ArrayView2};
    /// # struct ArgMax;
    /// # impl Model for ArgMax {
    /// #     type Input = Array2<f32>; type Output = Array2<f32>; type Error = std::convert::Infallible;
    /// #     fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>, Self::Error> { Ok(x.clone()) }
    /// # }
    /// # struct Rows;
    /// # impl Binding<ArgMax> for Rows {
    /// #     fn input(&self, rows: ArrayView2<'_, f32>) -> Array2<f32> { rows.to_owned() }
    /// #     fn read(&self, out: &Array2<f32>, _: usize) -> Result<Predictions, String> {
    /// #         Ok(Predictions::from_scores(out.clone()))
    /// #     }
    /// # }
    /// // 200 examples, the arg-max model gets 190 right.
    /// let inputs = Array2::from_shape_fn((200, 2), |(i, j)| if j == i % 2 { 1.0 } else { 0.0 });
    /// let labels = Array1::from_iter((0..200).map(|i| if i < 10 { 1 - i % 2 } else { i % 2 } as i64));
    /// let gates = GoldenGates::new(GoldenSet::new(inputs)?.with_labels(labels)?, Rows);
    /// let cal = gates.calibrate("v1", &ArgMax, 0.95)?;
    /// let accuracy = cal.accuracy.unwrap();
    /// assert_eq!((accuracy.count, accuracy.n), (190, 200));
    /// assert_eq!(cal.suggested.min_accuracy, Some(0.91)); // Wilson lower end 0.9103
    /// println!("{cal}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn calibrate(
        &self,
        version: &str,
        model: &M,
        confidence: f64,
    ) -> Result<Calibration, CalibrationError> {
        let shared = &self.shared;
        let golden = &shared.golden;
        let info = model.info();
        let eval = shared
            .evaluate(model, &info)
            .map_err(CalibrationError::Evaluation)?;
        let model = shared.model_classes(&info, Some(&eval)).map(|(k, _)| k);
        if let Some(k) = model {
            golden.check_classes(k).map_err(CalibrationError::Labels)?;
        }
        let classes = model.or(golden.classes());
        let n = golden.len() as u64;
        let z2 = stats::z_two_sided(confidence).powi(2);
        let smallest_margin = z2 / (n as f64 + z2);

        let (mut accuracy, mut differing, mut differing_margin) = (None, None, None);
        let mut suggested = Suggested {
            min_accuracy: None,
            max_drop: None,
            min_agreement: None,
            max_abs_error: None,
        };
        if let Some(truth) = golden.labels() {
            let right = eval
                .labels
                .iter()
                .zip(truth)
                .filter(|(a, b)| a == b)
                .count() as u64;
            let value = right as f64 / n as f64;
            let interval = stats::wilson(right, n, confidence);
            accuracy = Some(ShareFigure {
                count: right,
                n,
                value,
                interval,
            });
            // An equally accurate candidate, right only for it on half of the baseline's
            // errors' worth of examples and only for the baseline on the other half.
            let half = (n - right).div_ceil(2);
            differing = Some(2 * half);
            let drop = stats::paired_difference(
                Paired {
                    n,
                    candidate_only: half,
                    live_only: half,
                },
                confidence,
            );
            differing_margin = Some(-drop.low);
            let min_accuracy = floor_hundredth(interval.low);
            suggested.min_accuracy = Some(min_accuracy);
            suggested.max_drop = Some(ceil_half_hundredth(-drop.low));
            suggested.min_agreement = Some(floor_hundredth(min_accuracy + value - 1.0));
        }
        let expected_error = match (golden.expected(), &eval.scores) {
            (Some(expected), Some(scores)) => max_abs_error(scores, expected).ok().map(|e| e.0),
            _ => None,
        };
        suggested.max_abs_error = expected_error.map(|e| {
            let floor = (10.0 * e).max(1e-6);
            10f64.powf(floor.log10().ceil())
        });
        Ok(Calibration {
            version: version.to_owned(),
            golden: golden.source().to_owned(),
            examples: golden.len(),
            classes,
            confidence,
            accuracy,
            smallest_margin,
            differing,
            differing_margin,
            not_worse_refuses_from: stats::not_worse_examples(0.05),
            expected_error,
            suggested,
        })
    }
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = format!("{:.3}", self.confidence * 100.0);
        let pct = pct.trim_end_matches('0').trim_end_matches('.');
        let classes = self
            .classes
            .map_or_else(String::new, |k| format!(", {k} classes"));
        writeln!(
            f,
            "calibration of {} on {} ({} examples{classes}; {pct}% intervals)",
            self.version, self.golden, self.examples
        )?;
        let s = &self.suggested;
        match (&self.accuracy, s.min_accuracy, s.max_drop, s.min_agreement) {
            (Some(acc), Some(min_acc), Some(max_drop), Some(min_agree)) => {
                writeln!(
                    f,
                    "  accuracy: {:.6} ({} of {}), {}",
                    acc.value, acc.count, acc.n, acc.interval
                )?;
                writeln!(
                    f,
                    "    suggested accuracy({min_acc}): a candidate as accurate as the baseline measures at least {:.4} in about {}% of golden sets this size",
                    acc.interval.low,
                    trim(100.0 - (100.0 - self.confidence * 100.0) / 2.0)
                )?;
                writeln!(
                    f,
                    "  regression (non-inferior): a candidate predicting exactly like the baseline shows a drop below {:.4}; one as accurate but different on {} examples (half each way) needs a margin above {:.4}",
                    self.smallest_margin,
                    self.differing.unwrap_or(0),
                    self.differing_margin.unwrap_or(f64::NAN)
                )?;
                writeln!(
                    f,
                    "    suggested regression({max_drop}); margins up to {:.4} can never pass a candidate that is not better than the baseline",
                    self.smallest_margin
                )?;
                if let Some(m) = self.not_worse_refuses_from {
                    writeln!(
                        f,
                        "  regression (not-worse, alpha 0.05): refuses only from {m} or more discordant examples all against the candidate"
                    )?;
                }
                writeln!(
                    f,
                    "  agreement: a candidate passing accuracy({min_acc}) agrees with the baseline on at least {:.4} of examples (they can disagree only where one is wrong)",
                    min_acc + acc.value - 1.0
                )?;
                writeln!(f, "    suggested agreement({min_agree})")?;
            }
            _ => writeln!(
                f,
                "  accuracy, regression, agreement: the golden set has no labels"
            )?,
        }
        match (self.expected_error, s.max_abs_error) {
            (Some(e), Some(bound)) => {
                let e = if e == 0.0 {
                    "0 (identical)".to_owned()
                } else {
                    format!("{e:.3e}")
                };
                writeln!(
                    f,
                    "  expected outputs: max abs error {e} against the golden set's expected outputs"
                )?;
                writeln!(f, "    suggested expected_outputs({bound:e})")
            }
            _ => writeln!(
                f,
                "  expected outputs: none in the golden set (or no scores)"
            ),
        }
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
