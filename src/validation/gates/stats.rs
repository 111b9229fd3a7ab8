//! The statistics behind the golden-set gates: confidence intervals for a share (Wilson,
//! Clopper–Pearson), the exact McNemar test and a score interval for the paired
//! difference of two models' accuracies on the same examples, and the golden-set sizes a
//! bound needs.
//!
//! Everything is a plain function of counts, so the figures in a report can be checked by
//! hand (the tests do). Quantiles and special functions come from `statrs`; the exact
//! binomial tail is summed term by term in log space.
//!
//! ```
//! use bluegreen::gates::stats;
//!
//! // 52 of 54 right: 96.3 %, but the 95 % Wilson interval is 87.5 % .. 99.0 %.
//! let iv = stats::wilson(52, 54, 0.95);
//! assert!((iv.low - 0.8746).abs() < 1e-4 && (iv.high - 0.9898).abs() < 1e-4);
//!
//! // The candidate is wrong on 1 example the live model gets right, and right on none it
//! // gets wrong: exact McNemar says that is no evidence at all (p = 0.5).
//! assert_eq!(stats::mcnemar(1, 0).p_worse, 0.5);
//! ```

use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::inv_beta_reg;
use statrs::function::factorial::ln_binomial;

use crate::validation::report::{Interval, IntervalMethod};

/// The standard normal quantile `z` such that a two-sided interval at `confidence`
/// (e.g. 0.95 → 1.959964) leaves `(1 − confidence) / 2` in each tail.
///
/// `confidence` is clamped into `[0.5, 1 − 1e-12]`.
pub fn z_two_sided(confidence: f64) -> f64 {
    let c = confidence.clamp(0.5, 1.0 - 1e-12);
    Normal::standard().inverse_cdf(1.0 - (1.0 - c) / 2.0)
}

/// The Wilson score interval for `successes` out of `n` at two-sided `confidence`.
///
/// It stays inside `[0, 1]`, is never empty at 0 or `n` successes, and its coverage is
/// close to the stated level even for small `n` — unlike the textbook `p ± z·√(p(1−p)/n)`.
/// With no examples it is `[0, 1]`.
pub fn wilson(successes: u64, n: u64, confidence: f64) -> Interval {
    let method = IntervalMethod::Wilson;
    if n == 0 {
        return Interval::new(0.0, 1.0, confidence, method);
    }
    let (x, n) = (successes.min(n) as f64, n as f64);
    let z = z_two_sided(confidence);
    let z2 = z * z;
    let center = (x + z2 / 2.0) / (n + z2);
    let half = z * (x * (n - x) / n + z2 / 4.0).sqrt() / (n + z2);
    Interval::new(
        (center - half).max(0.0),
        (center + half).min(1.0),
        confidence,
        method,
    )
}

/// The Clopper–Pearson ("exact") interval for `successes` out of `n` at two-sided
/// `confidence`: guaranteed coverage at least the stated level, at the price of being
/// wider than [`wilson`]. With no examples it is `[0, 1]`.
pub fn clopper_pearson(successes: u64, n: u64, confidence: f64) -> Interval {
    let method = IntervalMethod::ClopperPearson;
    if n == 0 {
        return Interval::new(0.0, 1.0, confidence, method);
    }
    let x = successes.min(n);
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    let (xf, nf) = (x as f64, n as f64);
    let low = if x == 0 {
        0.0
    } else {
        inv_beta_reg(xf, nf - xf + 1.0, tail)
    };
    let high = if x == n {
        1.0
    } else {
        inv_beta_reg(xf + 1.0, nf - xf, 1.0 - tail)
    };
    Interval::new(low, high, confidence, method)
}

/// Two models judged on the same examples: how many each got right where the other did
/// not. Examples both got right (or both wrong) say nothing about which is better.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paired {
    /// Examples judged.
    pub n: u64,
    /// Examples only the candidate got right.
    pub candidate_only: u64,
    /// Examples only the live model (the baseline) got right.
    pub live_only: u64,
}

impl Paired {
    /// Counts the discordant examples from the two models' labels and the truth.
    pub fn count(candidate: &[i64], live: &[i64], truth: &[i64]) -> Self {
        let (mut candidate_only, mut live_only) = (0u64, 0u64);
        for ((c, l), t) in candidate.iter().zip(live).zip(truth) {
            match (c == t, l == t) {
                (true, false) => candidate_only += 1,
                (false, true) => live_only += 1,
                _ => {}
            }
        }
        Self {
            n: truth.len() as u64,
            candidate_only,
            live_only,
        }
    }

    /// Candidate accuracy minus live accuracy: `(candidate_only − live_only) / n`.
    pub fn difference(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        (self.candidate_only as f64 - self.live_only as f64) / self.n as f64
    }
}

/// The exact McNemar test on the discordant examples; from [`mcnemar`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McNemar {
    /// One-sided p-value for "the candidate is worse": the chance, if both models were
    /// equally good, that of the `worse + better` discordant examples at least `worse`
    /// go against the candidate — `P(X ≥ worse)` for `X ~ Binomial(worse + better, ½)`.
    pub p_worse: f64,
    /// Two-sided p-value: `min(1, 2 · min(P(X ≥ worse), P(X ≤ worse)))`.
    pub p_two_sided: f64,
}

/// The exact McNemar test: `worse` examples only the live model got right, `better`
/// examples only the candidate got right.
///
/// Exact, not the chi-square approximation (which is poor for the handful of discordant
/// examples a golden set usually has): the binomial tail is summed term by term, each
/// `ln C(m, i) − m ln 2` in log space, so it neither overflows nor loses the small tail.
/// With no discordant examples both p-values are 1.
pub fn mcnemar(worse: u64, better: u64) -> McNemar {
    let m = worse.saturating_add(better);
    let upper = binomial_half_tail_at_least(m, worse);
    // P(X ≤ worse) = P(X ≥ m − worse) by symmetry of Binomial(m, ½).
    let lower = binomial_half_tail_at_least(m, m - worse);
    McNemar {
        p_worse: upper,
        p_two_sided: (2.0 * upper.min(lower)).min(1.0),
    }
}

/// `P(X ≥ k)` for `X ~ Binomial(m, ½)`, exactly (up to f64 rounding of each term).
fn binomial_half_tail_at_least(m: u64, k: u64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > m {
        return 0.0;
    }
    let ln_half_m = m as f64 * std::f64::consts::LN_2;
    // The largest term of the tail is its first (k ≥ m/2) or the centre term.
    let peak = ln_binomial(m, k.max(m / 2).min(m)) - ln_half_m;
    let sum: f64 = (k..=m)
        .map(|i| (ln_binomial(m, i) - ln_half_m - peak).exp())
        .sum();
    (peak + sum.ln()).exp().min(1.0)
}

/// The score interval (Tango 1998) for the candidate's accuracy minus the live model's,
/// both measured on the same `n` examples, at two-sided `confidence`.
///
/// It inverts the score test of the paired (multinomial) model with the concordant
/// examples as a nuisance, so it uses what pairing buys — examples both models get right
/// or wrong carry no noise — and it stays honest at the edges: with no discordant example
/// at all it is `±z²/(n + z²)`, the Wilson bound for "no difference seen in `n` examples",
/// not the empty interval a Wald interval would give.
pub fn paired_difference(p: Paired, confidence: f64) -> Interval {
    let method = IntervalMethod::PairedScore;
    if p.n == 0 {
        return Interval::new(-1.0, 1.0, confidence, method);
    }
    let z = z_two_sided(confidence);
    // Tango's parameterization: δ = P(live only) − P(candidate only), the drop.
    let (b, c, n) = (p.live_only as f64, p.candidate_only as f64, p.n as f64);
    let estimate = (b - c) / n;
    // Z(δ) decreases from +∞ at δ = −1 through 0 at the estimate to −∞ at δ = 1.
    let score = |delta: f64| -> f64 {
        let w = (b + c) + (b - c - 2.0 * n) * delta;
        let q = (w
            + (w * w + 8.0 * n * c * delta * (1.0 - delta))
                .max(0.0)
                .sqrt())
            / (4.0 * n);
        let q = q.max(0.0).max(-delta);
        let var = n * (2.0 * q + delta - delta * delta);
        if var <= 0.0 {
            return if b - c - n * delta >= 0.0 {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            };
        }
        (b - c - n * delta) / var.sqrt()
    };
    // Z is 0 at the estimate by definition (0/0 there when no example is discordant), so
    // each end is searched strictly on its side of it.
    let drop_high = solve_decreasing(&score, -z, estimate, 1.0);
    let drop_low = solve_decreasing(&score, z, -1.0, estimate);
    // The candidate's gain is minus the drop.
    Interval::new(-drop_high, -drop_low, confidence, method)
}

/// The `x` in `(lo, hi)` where the decreasing `f` crosses `target`, by bisection to f64
/// resolution. `f` is evaluated at the far end only: at `hi` when `target < 0` (the
/// crossing lies above `lo`, where `f` is 0), at `lo` when `target > 0`; if `f` does not
/// reach `target` before that end, the end is returned.
fn solve_decreasing(f: &impl Fn(f64) -> f64, target: f64, lo: f64, hi: f64) -> f64 {
    let (mut lo, mut hi) = (lo, hi);
    if target < 0.0 && f(hi) >= target {
        return hi;
    }
    if target > 0.0 && f(lo) <= target {
        return lo;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if f(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The fewest examples with which a *non-inferiority* regression gate can pass a
/// candidate that predicts exactly like the live model: the smallest `n` with
/// `z²/(n + z²) < margin` (the upper end of [`paired_difference`]'s drop with no
/// discordant example). `None` when no `n` suffices (`margin ≤ 0`).
///
/// A candidate that differs from live on some examples needs more: with `d` of the
/// examples discordant and no net change, roughly `z² · d / margin²`.
pub fn non_inferiority_examples(margin: f64, confidence: f64) -> Option<u64> {
    if margin.is_nan() || margin <= 0.0 {
        return None;
    }
    let z2 = z_two_sided(confidence).powi(2);
    // z²/(n + z²) < margin  ⇔  n > z²(1 − margin)/margin.
    let bound = (z2 * (1.0 - margin) / margin).max(0.0);
    Some(bound.floor() as u64 + 1)
}

/// The fewest discordant examples with which a *not-worse* regression gate at level
/// `alpha` can refuse anything: the smallest `m` with `½^m < alpha` (the candidate wrong
/// on all `m`, right on none). `None` when no `m` suffices (`alpha ≤ 0`).
pub fn not_worse_examples(alpha: f64) -> Option<u64> {
    if alpha.is_nan() || alpha <= 0.0 {
        return None;
    }
    if alpha > 1.0 {
        return Some(0);
    }
    let mut m = 0u64;
    while 0.5f64.powi(i32::try_from(m).unwrap_or(i32::MAX)) >= alpha {
        m += 1;
    }
    Some(m)
}

/// The fewest examples with which a share gate that requires the *lower end* of its
/// Wilson interval to reach `min` can pass at all (every example right): the smallest `n`
/// with `n/(n + z²) ≥ min`. `None` when no `n` suffices (`min ≥ 1`).
pub fn lower_bound_examples(min: f64, confidence: f64) -> Option<u64> {
    if min.is_nan() || min >= 1.0 {
        return None;
    }
    if min <= 0.0 {
        return Some(0);
    }
    let z2 = z_two_sided(confidence).powi(2);
    // n/(n + z²) ≥ min  ⇔  n ≥ min·z²/(1 − min).
    let mut n = (min * z2 / (1.0 - min)).ceil() as u64;
    // Guard the rounding at the boundary.
    while (n as f64) / (n as f64 + z2) < min {
        n += 1;
    }
    Some(n)
}
