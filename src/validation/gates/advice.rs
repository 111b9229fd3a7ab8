//! Power guidance: a gate whose golden set is too small for its bound to ever pass (or
//! ever fail) says so when it is built, with the number of examples it would need.

use std::fmt;

use super::stats;

/// What is wrong with a gate's bound for the size of its golden set; from a gate's
/// `advice()`, also logged (`tracing` warning, target `bluegreen`) when the gate is built
/// and repeated in its report line when it refuses.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct SizeAdvice {
    /// The gate (`regression`, `accuracy`, `agreement`).
    pub gate: &'static str,
    /// What the bound can never do with this many examples.
    pub problem: SizeProblem,
    /// Examples in the golden set.
    pub examples: usize,
    /// Examples the bound needs, when some number would do.
    pub needed: Option<u64>,
    /// The whole advice as one sentence.
    pub message: String,
}

/// What a bound can never do with a golden set this small.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeProblem {
    /// The gate refuses every candidate that is not strictly better than live (or, for a
    /// share, than perfect).
    NeverPasses,
    /// The gate passes every candidate, however bad.
    NeverFails,
    /// The bound is finer than one example: a single extra mistake decides.
    BelowOneExample,
}

impl fmt::Display for SizeAdvice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl SizeAdvice {
    fn new(
        gate: &'static str,
        problem: SizeProblem,
        examples: usize,
        needed: Option<u64>,
        message: String,
    ) -> Self {
        let advice = Self {
            gate,
            problem,
            examples,
            needed,
            message,
        };
        tracing::warn!(target: "bluegreen", gate, examples, needed, "{}", advice.message);
        advice
    }
}

fn pct(confidence: f64) -> String {
    let s = format!("{:.3}", confidence * 100.0);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn needs(needed: Option<u64>) -> String {
    match needed {
        Some(n) => format!("it needs at least {n} examples"),
        None => "no golden set is large enough".to_owned(),
    }
}

/// Advice for a non-inferiority regression gate.
pub(crate) fn non_inferior(examples: usize, margin: f64, confidence: f64) -> Option<SizeAdvice> {
    let needed = stats::non_inferiority_examples(margin, confidence);
    if needed.is_some_and(|n| examples as u64 >= n) {
        return None;
    }
    Some(SizeAdvice::new(
        "regression",
        SizeProblem::NeverPasses,
        examples,
        needed,
        format!(
            "regression: with {examples} golden examples, non-inferiority at margin {margin} \
             ({}% confidence) can never pass a candidate that is not better than live, \
             even one predicting exactly like it; {}",
            pct(confidence),
            needs(needed)
        ),
    ))
}

/// Advice for a not-worse regression gate.
pub(crate) fn not_worse(examples: usize, alpha: f64) -> Option<SizeAdvice> {
    let needed = stats::not_worse_examples(alpha);
    if needed.is_some_and(|n| examples as u64 >= n) {
        return None;
    }
    let p = 0.5f64.powi(i32::try_from(examples).unwrap_or(i32::MAX));
    Some(SizeAdvice::new(
        "regression",
        SizeProblem::NeverFails,
        examples,
        needed,
        format!(
            "regression: with {examples} golden examples, not-worse at alpha {alpha} can never \
             refuse a candidate: even one wrong on every example live gets right has \
             p = {p:.4}; {}",
            needs(needed)
        ),
    ))
}

/// Advice for the point-estimate regression rule (the pre-statistics behaviour).
pub(crate) fn point(examples: usize, max_drop: f64) -> Option<SizeAdvice> {
    let one = 1.0 / examples.max(1) as f64;
    if max_drop >= one {
        return None;
    }
    // ⌈1/max_drop⌉ examples make one example worth at most max_drop.
    let needed = (max_drop > 0.0).then(|| (1.0 / max_drop).ceil() as u64);
    Some(SizeAdvice::new(
        "regression",
        SizeProblem::BelowOneExample,
        examples,
        needed,
        format!(
            "regression: with {examples} golden examples one example is {one:.4} of accuracy, \
             more than max_drop {max_drop}: a single mistake live does not make refuses the \
             candidate, whatever the noise; use the non-inferior or not-worse policy, or {}",
            needs(needed)
        ),
    ))
}

/// Advice for a share gate (accuracy, agreement): `lower_bound` when the lower end of the
/// interval at `confidence` must reach `min`, else the measured share must.
pub(crate) fn share(
    gate: &'static str,
    examples: usize,
    min: f64,
    lower_bound: Option<f64>,
) -> Option<SizeAdvice> {
    if let Some(confidence) = lower_bound {
        let needed = stats::lower_bound_examples(min, confidence);
        if needed.is_some_and(|n| examples as u64 >= n) {
            return None;
        }
        let text = format!(
            "{gate}: with {examples} golden examples, the lower end of the {}% Wilson \
             interval stays below {min} even with every example right; {}",
            pct(confidence),
            needs(needed)
        );
        return Some(SizeAdvice::new(
            gate,
            SizeProblem::NeverPasses,
            examples,
            needed,
            text,
        ));
    }
    if min > 1.0 {
        let text = format!("{gate}: a share can never reach {min}");
        return Some(SizeAdvice::new(
            gate,
            SizeProblem::NeverPasses,
            examples,
            None,
            text,
        ));
    }
    if min <= 0.0 {
        let text = format!("{gate}: every share is at least {min}, so the gate never fails");
        return Some(SizeAdvice::new(
            gate,
            SizeProblem::NeverFails,
            examples,
            None,
            text,
        ));
    }
    None
}
