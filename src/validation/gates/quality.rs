//! Share gates over a golden set — accuracy against the true labels, agreement with the
//! live model — reporting each share with its Wilson interval.

use std::sync::Arc;

use super::advice::{self, SizeAdvice};
use super::golden_gates::{Shared, evaluated};
use super::{stats, verdict};
use crate::model::Model;
use crate::validation::validate::{Bound, Context, Interval, Validator, Verdict};

/// How a share gate ([`accuracy`](super::GoldenGates::accuracy_with),
/// [`agreement`](super::GoldenGates::agreement_with)) decides. Both rules report the
/// measured share with its Wilson interval.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShareRule {
    /// Passes when the measured share is at least `min`; the 95 % interval is reported, not
    /// used. What `accuracy(min)` and `agreement(min)` do.
    Measured {
        /// The least share that passes.
        min: f64,
    },
    /// Passes only when the lower end of the two-sided Wilson interval at `confidence`
    /// reaches `min`: the golden set must *show* the share is high enough, so a small set
    /// refuses more. Power guidance tells at build time when no result could pass.
    LowerBound {
        /// The least lower end that passes.
        min: f64,
        /// Two-sided confidence of the interval (e.g. 0.95).
        confidence: f64,
    },
}

impl ShareRule {
    fn min(&self) -> f64 {
        match *self {
            ShareRule::Measured { min } | ShareRule::LowerBound { min, .. } => min,
        }
    }

    fn confidence(&self) -> f64 {
        match *self {
            ShareRule::Measured { .. } => 0.95,
            ShareRule::LowerBound { confidence, .. } => confidence,
        }
    }

    /// `k` of `n`: passed, and the detail's sentence about the interval.
    /// Whether `k` of `n` passes, the interval, and the words for the report.
    fn judge(&self, k: u64, n: u64) -> (bool, Interval, String) {
        let iv = stats::wilson(k, n, self.confidence());
        match *self {
            ShareRule::Measured { min } => (k as f64 / n.max(1) as f64 >= min, iv, format!("{iv}")),
            ShareRule::LowerBound { min, .. } => {
                let passed = iv.low >= min;
                let verb = if passed { "reaches" } else { "is below" };
                (passed, iv, format!("{iv}: its lower end {verb} {min}"))
            }
        }
    }

    fn advice(&self, gate: &'static str, examples: usize) -> Option<SizeAdvice> {
        let lower = match *self {
            ShareRule::Measured { .. } => None,
            ShareRule::LowerBound { confidence, .. } => Some(confidence),
        };
        advice::share(gate, examples, self.min(), lower)
    }
}

fn with_advice(detail: String, passed: bool, advice: Option<&SizeAdvice>) -> String {
    match advice {
        Some(a) if !passed => format!("{detail}; {a}"),
        _ => detail,
    }
}

/// Gate: candidate accuracy on the golden labels. From [`GoldenGates::accuracy`] or
/// [`GoldenGates::accuracy_with`].
///
/// [`GoldenGates::accuracy`]: super::GoldenGates::accuracy
/// [`GoldenGates::accuracy_with`]: super::GoldenGates::accuracy_with
pub struct AccuracyGate<M: Model> {
    shared: Arc<Shared<M>>,
    rule: ShareRule,
    advice: Option<SizeAdvice>,
}

impl<M: Model> AccuracyGate<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, rule: ShareRule) -> Self {
        let advice = rule.advice("accuracy", shared.golden.len());
        Self {
            shared,
            rule,
            advice,
        }
    }

    /// The rule it applies.
    pub fn rule(&self) -> ShareRule {
        self.rule
    }

    /// Power guidance: set when the golden set is too small for the rule to ever pass (or
    /// ever fail).
    pub fn advice(&self) -> Option<&SizeAdvice> {
        self.advice.as_ref()
    }
}

impl<M: Model> Validator<M> for AccuracyGate<M> {
    fn name(&self) -> &str {
        "accuracy"
    }

    fn warm_up_inputs(&self) -> Vec<M::Input> {
        self.shared.warm_up_inputs()
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let Some(truth) = self.shared.golden.labels() else {
            return Verdict::fail("the golden set has no labels");
        };
        let cand = self.shared.candidate(cx);
        let c = evaluated!(cand, "candidate");
        if let Err(e) = self.shared.labels_fit(cx.candidate_info(), c) {
            return Verdict::fail(e);
        }
        let n = truth.len() as u64;
        let right = c.labels.iter().zip(truth).filter(|(a, b)| a == b).count() as u64;
        let (passed, interval, words) = self.rule.judge(right, n);
        let detail = format!("{right} of {n} golden examples right; {words}");
        verdict(
            passed,
            right as f64 / n as f64,
            Bound::AtLeast(self.rule.min()),
            Some(interval),
            with_advice(detail, passed, self.advice.as_ref()),
        )
    }
}

/// Gate: share of examples where candidate and live predict the same label. From
/// [`GoldenGates::agreement`] or [`GoldenGates::agreement_with`].
///
/// [`GoldenGates::agreement`]: super::GoldenGates::agreement
/// [`GoldenGates::agreement_with`]: super::GoldenGates::agreement_with
pub struct AgreementGate<M: Model> {
    shared: Arc<Shared<M>>,
    rule: ShareRule,
    advice: Option<SizeAdvice>,
}

impl<M: Model> AgreementGate<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, rule: ShareRule) -> Self {
        let advice = rule.advice("agreement", shared.golden.len());
        Self {
            shared,
            rule,
            advice,
        }
    }

    /// The rule it applies.
    pub fn rule(&self) -> ShareRule {
        self.rule
    }

    /// Power guidance: set when the golden set is too small for the rule to ever pass (or
    /// ever fail).
    pub fn advice(&self) -> Option<&SizeAdvice> {
        self.advice.as_ref()
    }
}

impl<M: Model> Validator<M> for AgreementGate<M> {
    fn name(&self) -> &str {
        "agreement"
    }

    fn warm_up_inputs(&self) -> Vec<M::Input> {
        self.shared.warm_up_inputs()
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let (cand, live) = (self.shared.candidate(cx), self.shared.live(cx));
        let c = evaluated!(cand, "candidate");
        let l = evaluated!(live, "live model");
        let n = l.labels.len() as u64;
        let same = c
            .labels
            .iter()
            .zip(&l.labels)
            .filter(|(a, b)| a == b)
            .count() as u64;
        let (passed, interval, words) = self.rule.judge(same, n);
        let detail = format!(
            "same label as live {} on {same} of {n} examples; {words}",
            cx.live_version()
        );
        verdict(
            passed,
            same as f64 / n.max(1) as f64,
            Bound::AtLeast(self.rule.min()),
            Some(interval),
            with_advice(detail, passed, self.advice.as_ref()),
        )
    }
}
