//! The numeric sanity gate: finite outputs, probabilities in range, outputs as declared.

use std::sync::Arc;

use super::golden_gates::{Shared, evaluated};
use crate::model::Model;
use crate::validation::validate::{Bound, Context, Validator, Verdict};

/// Gate: the candidate's outputs over the golden set have no NaN or infinity, its scores
/// are probabilities (each in 0..=1, each row summing to 1) unless told otherwise, its
/// labels index its scores, and its outputs match the names, element types and shapes it
/// declares. Measures the number of problems; passes at 0. From
/// [`GoldenGates::sanity`](super::GoldenGates::sanity).
pub struct SanityGate<M: Model> {
    shared: Arc<Shared<M>>,
    probabilities: bool,
    tolerance: f32,
}

impl<M: Model> SanityGate<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>) -> Self {
        Self {
            shared,
            probabilities: true,
            tolerance: 1e-3,
        }
    }

    /// Scores are free-form (logits, regression outputs): only finiteness is checked.
    pub fn scores_are_not_probabilities(mut self) -> Self {
        self.probabilities = false;
        self
    }

    /// Slack allowed on probability bounds and row sums (default 1e-3).
    pub fn tolerance(mut self, tolerance: f32) -> Self {
        self.tolerance = tolerance;
        self
    }
}

impl<M: Model> Validator<M> for SanityGate<M> {
    fn name(&self) -> &str {
        "sanity"
    }

    fn warm_up_inputs(&self) -> Vec<M::Input> {
        self.shared.warm_up_inputs()
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let cand = self.shared.candidate(cx);
        let c = evaluated!(cand, "candidate");
        let mut problems = 0usize;
        let mut first: Option<String> = None;
        let mut note = |what: String| {
            problems += 1;
            first.get_or_insert(what);
        };
        if let Some(why) = &c.declared_mismatch {
            note(format!("output differs from its declaration: {why}"));
        }
        if let Some(scores) = &c.scores {
            let classes = scores.ncols() as i64;
            for (row, values) in scores.rows().into_iter().enumerate() {
                if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                    note(format!("non-finite score {v} at golden row {row}"));
                    continue;
                }
                if self.probabilities {
                    let t = self.tolerance;
                    if let Some(v) = values.iter().find(|&&v| v < -t || v > 1.0 + t) {
                        note(format!("probability {v} out of 0..=1 at golden row {row}"));
                    } else {
                        let sum: f32 = values.sum();
                        if (sum - 1.0).abs() > t {
                            note(format!("probabilities sum to {sum} at golden row {row}"));
                        }
                    }
                }
            }
            if let Some((row, l)) = c
                .labels
                .iter()
                .enumerate()
                .find(|(_, l)| **l < 0 || **l >= classes)
            {
                note(format!(
                    "label {l} at golden row {row} is not one of the {classes} scored classes"
                ));
            }
        }
        let verdict = Verdict::measure(problems as f64, Bound::AtMost(0.0));
        match first {
            Some(first) => verdict.with_detail(format!("{problems} problems; first: {first}")),
            None => verdict.with_detail(format!("{} examples checked", c.labels.len())),
        }
    }
}
