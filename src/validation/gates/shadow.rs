//! The shadow gate: judges a candidate on the live requests mirrored to it.

use crate::model::Model;
use crate::validation::validate::{Bound, Context, Validator, Verdict};

/// Gate: the candidate must have agreed with the live model on at least `min_agreement`
/// of at least `min_compared` mirrored requests, with no errors beyond `max_error_rate`.
///
/// Needs [`Builder::shadow`](crate::Builder::shadow); stage the candidate, let traffic
/// flow, then [`swap`](crate::BlueGreen::swap).
#[derive(Debug, Clone)]
pub struct ShadowGate {
    min_agreement: f64,
    min_compared: u64,
    max_error_rate: f64,
}

impl ShadowGate {
    /// Agreement ≥ `min_agreement` over ≥ `min_compared` mirrored requests, no errors.
    pub fn new(min_agreement: f64, min_compared: u64) -> Self {
        Self {
            min_agreement,
            min_compared,
            max_error_rate: 0.0,
        }
    }

    /// Tolerate this share of candidate errors on mirrored requests (default 0).
    pub fn max_error_rate(mut self, rate: f64) -> Self {
        self.max_error_rate = rate;
        self
    }
}

impl<M: Model> Validator<M> for ShadowGate {
    fn name(&self) -> &str {
        "shadow"
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let Some(s) = cx.shadow() else {
            return Verdict::fail(
                "no shadow traffic reached this candidate (is shadowing configured?)",
            );
        };
        if s.compared < self.min_compared {
            return Verdict::fail(format!(
                "only {} mirrored requests compared ({} mirrored, {} dropped); {} needed",
                s.compared, s.mirrored, s.dropped, self.min_compared
            ));
        }
        let error_rate = s.errors as f64 / (s.compared + s.errors) as f64;
        if error_rate > self.max_error_rate {
            return Verdict::fail(format!(
                "candidate failed on {} of {} mirrored requests",
                s.errors,
                s.compared + s.errors
            ));
        }
        Verdict::measure(s.agreement, Bound::AtLeast(self.min_agreement)).with_detail(format!(
            "agreed with live on {:.2}% of {} mirrored requests, mean abs diff {:.3e}",
            s.agreement * 100.0,
            s.compared,
            s.mean_abs_diff
        ))
    }
}
