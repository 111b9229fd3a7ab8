//! The regression gate: is the candidate less accurate than the live model, judged on the
//! same golden examples with a paired test that knows its noise?

use std::sync::Arc;

use super::advice::{self, SizeAdvice};
use super::golden_gates::{Shared, evaluated};
use super::stats::{self, Paired};
use super::verdict;
use crate::model::Model;
use crate::validation::validate::{Bound, Context, Validator, Verdict};

/// How the [regression gate](RegressionGate) decides. Every policy reports the accuracy
/// difference (candidate − live) with its paired score interval and the discordant counts.
///
/// Both models answer the same golden examples, so only the *discordant* examples — right
/// for one model, wrong for the other — carry evidence; the tests here are paired.
///
/// | policy | passes when | use it for |
/// |---|---|---|
/// | [`NonInferior`](Self::NonInferior) | the interval's lower end is above `−margin`: the golden set *shows* the candidate loses less than `margin` | automatic promotion (the default of [`regression`](super::GoldenGates::regression)) |
/// | [`NotWorse`](Self::NotWorse) | the exact McNemar test does not find the candidate worse at level `alpha` | refusing only clear regressions; small sets pass almost anything |
/// | [`PointEstimate`](Self::PointEstimate) | measured difference ≥ `−max_drop`, noise ignored | the behaviour before intervals |
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RegressionPolicy {
    /// *Non-inferior*: pass only when the upper end of the accuracy drop's two-sided
    /// interval at `confidence` is below `margin` (equivalently the difference's lower end
    /// is above `−margin`). A small golden set cannot show a small margin: the gate then
    /// refuses everything not better than live, and says so when it is built
    /// ([`RegressionGate::advice`]).
    ///
    /// Measured: the difference; bound: `≥ −margin`, held by the interval's lower end.
    NonInferior {
        /// The largest accuracy drop accepted (0.01 = one point).
        margin: f64,
        /// Two-sided confidence of the interval (0.95: the drop's upper end is a 97.5 %
        /// one-sided bound).
        confidence: f64,
    },
    /// *Not-worse*: refuse only when the candidate is significantly worse than live — the
    /// one-sided exact McNemar p-value for "candidate worse" is below `alpha`. The report
    /// shows the difference's interval at `1 − 2·alpha`, whose lower end is above 0 about
    /// when the test refuses.
    ///
    /// Measured: the p-value; bound: `≥ alpha`.
    NotWorse {
        /// Significance level (e.g. 0.05).
        alpha: f64,
    },
    /// The point estimate, noise ignored: measured difference ≥ `−max_drop`. One example
    /// of a small golden set can decide it; kept for compatibility.
    ///
    /// Measured: the difference; bound: `≥ −max_drop`.
    PointEstimate {
        /// The largest measured accuracy drop accepted.
        max_drop: f64,
    },
}

impl RegressionPolicy {
    /// Non-inferiority at `margin`, 95 % confidence: what
    /// [`regression(margin)`](super::GoldenGates::regression) applies.
    pub fn non_inferior(margin: f64) -> Self {
        RegressionPolicy::NonInferior {
            margin,
            confidence: 0.95,
        }
    }

    /// The interval level reported for this policy.
    fn confidence(&self) -> f64 {
        match *self {
            RegressionPolicy::NonInferior { confidence, .. } => confidence,
            RegressionPolicy::NotWorse { alpha } => (1.0 - 2.0 * alpha).clamp(0.5, 1.0),
            RegressionPolicy::PointEstimate { .. } => 0.95,
        }
    }

    fn advice(&self, examples: usize) -> Option<SizeAdvice> {
        match *self {
            RegressionPolicy::NonInferior { margin, confidence } => {
                advice::non_inferior(examples, margin, confidence)
            }
            RegressionPolicy::NotWorse { alpha } => advice::not_worse(examples, alpha),
            RegressionPolicy::PointEstimate { max_drop } => advice::point(examples, max_drop),
        }
    }
}

/// Gate: the candidate is not less accurate than the live model on the golden set, by a
/// [`RegressionPolicy`]. From [`GoldenGates::regression`](super::GoldenGates::regression),
/// [`not_worse`](super::GoldenGates::not_worse) or
/// [`regression_with`](super::GoldenGates::regression_with).
pub struct RegressionGate<M: Model> {
    shared: Arc<Shared<M>>,
    policy: RegressionPolicy,
    advice: Option<SizeAdvice>,
}

impl<M: Model> RegressionGate<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, policy: RegressionPolicy) -> Self {
        let advice = policy.advice(shared.golden.len());
        Self {
            shared,
            policy,
            advice,
        }
    }

    /// The policy it applies.
    pub fn policy(&self) -> RegressionPolicy {
        self.policy
    }

    /// Power guidance, computed when the gate was built: set when the golden set is too
    /// small for the policy to ever pass a candidate no better than live (non-inferior),
    /// to ever refuse one (not-worse), or when one example outweighs the bound (point
    /// estimate). Also logged then, and repeated in the report when the gate refuses.
    pub fn advice(&self) -> Option<&SizeAdvice> {
        self.advice.as_ref()
    }
}

impl<M: Model> Validator<M> for RegressionGate<M> {
    fn name(&self) -> &str {
        "regression"
    }

    fn warm_up_inputs(&self) -> Vec<M::Input> {
        self.shared.warm_up_inputs()
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let Some(truth) = self.shared.golden.labels() else {
            return Verdict::fail("the golden set has no labels");
        };
        if cx.candidate_generation() == cx.live_generation() {
            // The live model judged against itself (a readiness check of the model that
            // is serving): no difference, whatever the golden set's size.
            let (measured, bound) = match self.policy {
                RegressionPolicy::NonInferior { margin, .. } => (0.0, Bound::AtLeast(-margin)),
                RegressionPolicy::NotWorse { alpha } => (1.0, Bound::AtLeast(alpha)),
                RegressionPolicy::PointEstimate { max_drop } => (0.0, Bound::AtLeast(-max_drop)),
            };
            let detail = format!(
                "the candidate {} is the live model itself: nothing to compare",
                cx.candidate_version()
            );
            return verdict(true, measured, bound, None, detail);
        }
        let (cand, live) = (self.shared.candidate(cx), self.shared.live(cx));
        let c = evaluated!(cand, "candidate");
        let l = evaluated!(live, "live model");
        if let Err(e) = self.shared.labels_fit(cx.candidate_info(), c) {
            return Verdict::fail(e);
        }
        let (cl, ll, tl) = (c.labels.to_vec(), l.labels.to_vec(), truth.to_vec());
        let paired = Paired::count(&cl, &ll, &tl);
        let n = paired.n.max(1) as f64;
        let right = |labels: &[i64]| labels.iter().zip(&tl).filter(|(a, b)| a == b).count();
        let (ca, la) = (right(&cl) as f64 / n, right(&ll) as f64 / n);
        let diff = paired.difference();
        let iv = stats::paired_difference(paired, self.policy.confidence());
        let test = stats::mcnemar(paired.live_only, paired.candidate_only);
        let mut detail = format!(
            "candidate {} accuracy {ca:.4} vs live {} {la:.4}: difference {diff:+.4}, {iv}; \
             right only for the candidate on {}, only for live on {} (exact McNemar p = {} \
             for 'candidate worse')",
            cx.candidate_version(),
            cx.live_version(),
            paired.candidate_only,
            paired.live_only,
            p_value(test.p_worse),
        );
        // The interval is around the difference: the measured value, except under
        // not-worse, which measures a p-value.
        let interval = (!matches!(self.policy, RegressionPolicy::NotWorse { .. })).then_some(iv);
        let (passed, measured, bound) = match self.policy {
            RegressionPolicy::NonInferior { margin, .. } => {
                let passed = iv.low > -margin;
                let verb = if passed { "shown" } else { "not shown" };
                detail.push_str(&format!(
                    "; non-inferior at margin {margin}: {verb} (the lower end must be above {})",
                    -margin + 0.0
                ));
                (passed, diff, Bound::AtLeast(-margin))
            }
            RegressionPolicy::NotWorse { alpha } => {
                let passed = test.p_worse >= alpha;
                let verb = if passed {
                    "not significantly"
                } else {
                    "significantly"
                };
                detail.push_str(&format!("; not-worse at alpha {alpha}: {verb} worse"));
                (passed, test.p_worse, Bound::AtLeast(alpha))
            }
            RegressionPolicy::PointEstimate { max_drop } => {
                let passed = diff >= -max_drop;
                (passed, diff, Bound::AtLeast(-max_drop))
            }
        };
        if let (false, Some(a)) = (passed, &self.advice) {
            detail.push_str(&format!("; {a}"));
        }
        verdict(passed, measured, bound, interval, detail)
    }
}

/// A p-value for a report: four decimals, or two significant digits below 0.0001.
fn p_value(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}
