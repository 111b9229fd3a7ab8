//! The bake window: watching a freshly promoted model and rolling back on its own.
//!
//! Validation before the switch cannot see what only production traffic shows. With a
//! [`Bake`] configured, every [`swap`](crate::BlueGreen::swap) (or canary promotion) puts
//! the new active model in the [`Baking`](crate::SlotState::Baking) state. A monitor
//! thread compares what the new model shows — error rate, p99 latency, outcomes the
//! application reports with [`record_outcome`](crate::BlueGreen::record_outcome) — with
//! absolute limits and with what the previous model showed. The first breach rolls back
//! at once, records an [`AutoRollback`] in [`Status`](crate::Status), emits a `tracing`
//! error and calls the configured hook; the rolled-back model is not promoted again
//! without a new stage. When the window passes cleanly the model becomes stable
//! ([`Active`](crate::SlotState::Active)) and the previous one stays standby for manual
//! rollback until a new candidate is staged.

use std::time::{Duration, SystemTime};

use crate::slot::Observed;

/// What a bake window watches and for how long; see the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use bluegreen::Bake;
///
/// let bake = Bake::for_duration(Duration::from_secs(300))
///     .min_requests(1_000)
///     .max_error_rate(0.01)              // absolute: at most 1 % failed calls
///     .max_error_rate_increase(0.002)    // relative: at most +0.2 points over the previous model
///     .max_p99_ratio(1.5)                // p99 at most 1.5x the previous model's
///     .min_outcome_success(0.9);         // reported outcomes at least 90 % good
/// # let _ = bake;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Bake {
    pub(crate) duration: Duration,
    pub(crate) min_requests: u64,
    pub(crate) min_samples: u64,
    pub(crate) max_error_rate: Option<f64>,
    pub(crate) max_error_rate_increase: Option<f64>,
    pub(crate) max_p99: Option<Duration>,
    pub(crate) max_p99_ratio: Option<f64>,
    pub(crate) min_outcome_success: Option<f64>,
    pub(crate) max_outcome_drop: Option<f64>,
    pub(crate) check_every: Duration,
}

impl Bake {
    /// A bake lasting `duration` after the swap.
    pub fn for_duration(duration: Duration) -> Self {
        Self {
            duration,
            min_requests: 0,
            min_samples: 20,
            max_error_rate: None,
            max_error_rate_increase: None,
            max_p99: None,
            max_p99_ratio: None,
            min_outcome_success: None,
            max_outcome_drop: None,
            check_every: Duration::from_millis(50),
        }
    }

    /// A bake lasting until the new model has served `requests` calls.
    pub fn for_requests(requests: u64) -> Self {
        Self::for_duration(Duration::ZERO).min_requests(requests)
    }

    /// The bake also lasts until the new model has served this many calls.
    pub fn min_requests(mut self, requests: u64) -> Self {
        self.min_requests = requests;
        self
    }

    /// Limits are judged only once this many calls (or outcomes) have been seen, so one
    /// early error is not a 100 % error rate (default 20).
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples.max(1);
        self
    }

    /// Roll back if more than this share (0..=1) of calls fail.
    pub fn max_error_rate(mut self, rate: f64) -> Self {
        self.max_error_rate = Some(rate);
        self
    }

    /// Roll back if the error rate exceeds the previous model's by more than this.
    pub fn max_error_rate_increase(mut self, increase: f64) -> Self {
        self.max_error_rate_increase = Some(increase);
        self
    }

    /// Roll back if p99 call latency exceeds this (turns on per-call timing).
    pub fn max_p99(mut self, p99: Duration) -> Self {
        self.max_p99 = Some(p99);
        self
    }

    /// Roll back if p99 latency exceeds this multiple of the previous model's p99
    /// (turns on per-call timing).
    pub fn max_p99_ratio(mut self, ratio: f64) -> Self {
        self.max_p99_ratio = Some(ratio);
        self
    }

    /// Roll back if less than this share of reported outcomes is good.
    pub fn min_outcome_success(mut self, success: f64) -> Self {
        self.min_outcome_success = Some(success);
        self
    }

    /// Roll back if the good-outcome share drops more than this below the previous model's.
    pub fn max_outcome_drop(mut self, drop: f64) -> Self {
        self.max_outcome_drop = Some(drop);
        self
    }

    /// How often the monitor looks (default 50 ms).
    pub fn check_every(mut self, period: Duration) -> Self {
        self.check_every = period.max(Duration::from_millis(1));
        self
    }

    /// Whether a limit needs per-call latency.
    pub(crate) fn times_calls(&self) -> bool {
        self.max_p99.is_some() || self.max_p99_ratio.is_some()
    }

    /// The first limit `now` breaches, which one and in words; `prev` is the previous
    /// model's record.
    pub(crate) fn breach(&self, now: &Observed, prev: Option<&Observed>) -> Option<Breach> {
        let (limit, reason) = self.breached(now, prev)?;
        Some(Breach { limit, reason })
    }

    fn breached(&self, now: &Observed, prev: Option<&Observed>) -> Option<(BakeLimit, String)> {
        let enough = |o: &Observed| o.requests >= self.min_samples;
        let enough_outcomes = |o: &Observed| o.outcomes >= self.min_samples;
        let pct = |r: f64| format!("{:.2}%", r * 100.0);
        if enough(now) {
            let rate = now.error_rate();
            if let Some(max) = self.max_error_rate
                && rate > max
            {
                return Some((
                    BakeLimit::ErrorRate,
                    format!(
                        "error rate {} ({} of {} calls) exceeds the limit of {}",
                        pct(rate),
                        now.errors,
                        now.requests,
                        pct(max)
                    ),
                ));
            }
            if let (Some(up), Some(p)) = (self.max_error_rate_increase, prev.filter(|p| enough(p)))
                && rate > p.error_rate() + up
            {
                return Some((
                    BakeLimit::ErrorRateIncrease,
                    format!(
                        "error rate {} exceeds the previous model's {} by more than {}",
                        pct(rate),
                        pct(p.error_rate()),
                        pct(up)
                    ),
                ));
            }
            if let (Some(max), Some(p99)) = (self.max_p99, now.p99)
                && p99 > max
            {
                return Some((
                    BakeLimit::P99,
                    format!("p99 latency {p99:?} exceeds the limit of {max:?}"),
                ));
            }
            if let (Some(k), Some(p99), Some(prev_p99)) = (
                self.max_p99_ratio,
                now.p99,
                prev.filter(|p| enough(p)).and_then(|p| p.p99),
            ) && p99.as_secs_f64() > k * prev_p99.as_secs_f64()
            {
                return Some((
                    BakeLimit::P99Ratio,
                    format!("p99 latency {p99:?} exceeds {k}x the previous model's {prev_p99:?}"),
                ));
            }
        }
        if enough_outcomes(now) {
            let ok = now.outcome_success();
            if let Some(min) = self.min_outcome_success
                && ok < min
            {
                return Some((
                    BakeLimit::OutcomeSuccess,
                    format!(
                        "good outcomes {} ({} of {} reported) below the minimum of {}",
                        pct(ok),
                        now.outcomes_ok,
                        now.outcomes,
                        pct(min)
                    ),
                ));
            }
            if let (Some(drop), Some(p)) =
                (self.max_outcome_drop, prev.filter(|p| enough_outcomes(p)))
                && ok < p.outcome_success() - drop
            {
                return Some((
                    BakeLimit::OutcomeDrop,
                    format!(
                        "good outcomes {} dropped more than {} below the previous model's {}",
                        pct(ok),
                        pct(drop),
                        pct(p.outcome_success())
                    ),
                ));
            }
        }
        None
    }

    /// Whether the window is over.
    pub(crate) fn passed(&self, elapsed: Duration, now: &Observed) -> bool {
        elapsed >= self.duration && now.requests >= self.min_requests
    }
}

/// Which bake limit a model breached: the kind of [`AutoRollback::reason`], for alerts and
/// metric labels.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BakeLimit {
    /// [`Bake::max_error_rate`].
    ErrorRate,
    /// [`Bake::max_error_rate_increase`].
    ErrorRateIncrease,
    /// [`Bake::max_p99`].
    P99,
    /// [`Bake::max_p99_ratio`].
    P99Ratio,
    /// [`Bake::min_outcome_success`].
    OutcomeSuccess,
    /// [`Bake::max_outcome_drop`].
    OutcomeDrop,
}

impl BakeLimit {
    /// A short snake_case name (`error_rate`, `p99_ratio`, …), stable across releases.
    pub fn as_str(self) -> &'static str {
        match self {
            BakeLimit::ErrorRate => "error_rate",
            BakeLimit::ErrorRateIncrease => "error_rate_increase",
            BakeLimit::P99 => "p99",
            BakeLimit::P99Ratio => "p99_ratio",
            BakeLimit::OutcomeSuccess => "outcome_success",
            BakeLimit::OutcomeDrop => "outcome_drop",
        }
    }
}

impl std::fmt::Display for BakeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A breached limit: which, and in words.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Breach {
    pub(crate) limit: BakeLimit,
    pub(crate) reason: String,
}

/// An automatic rollback: what, when and why. Kept in [`Status`](crate::Status) and passed
/// to the hook set with [`Builder::on_auto_rollback`](crate::Builder::on_auto_rollback).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct AutoRollback {
    /// The version that was rolled back (now standby, state rolled-back).
    pub from: String,
    /// The version serving again.
    pub to: String,
    /// The limit it breached, in words.
    pub reason: String,
    /// Which limit that was.
    pub limit: BakeLimit,
    /// How long it had been baking.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub after: Duration,
    /// When it happened.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub at: SystemTime,
}

/// A running bake, in [`Status::bake`](crate::Status::bake).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct BakeStatus {
    /// The version baking.
    pub version: String,
    /// Time since the swap.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub elapsed: Duration,
    /// Calls it has served.
    pub requests: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Its p99 latency, when calls are timed.
    pub p99: Option<Duration>,
    /// Outcomes reported for it.
    pub outcomes: u64,
    /// Good outcomes among them.
    pub outcomes_ok: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(requests: u64, errors: u64) -> Observed {
        Observed {
            requests,
            errors,
            ..Observed::default()
        }
    }

    #[test]
    fn absolute_error_rate_breaches_only_after_enough_samples() {
        let bake = Bake::for_duration(Duration::from_secs(1))
            .max_error_rate(0.05)
            .min_samples(20);
        assert_eq!(bake.breach(&seen(5, 5), None), None, "too few samples");
        let why = bake.breach(&seen(40, 4), None).unwrap();
        assert_eq!(why.limit, BakeLimit::ErrorRate);
        let why = why.reason;
        assert_eq!(
            why,
            "error rate 10.00% (4 of 40 calls) exceeds the limit of 5.00%"
        );
        assert_eq!(bake.breach(&seen(40, 2), None), None);
    }

    #[test]
    fn relative_limits_compare_with_the_previous_model() {
        let bake = Bake::for_requests(100).max_error_rate_increase(0.01);
        let prev = seen(1000, 20); // 2 %
        assert_eq!(bake.breach(&seen(100, 2), Some(&prev)), None);
        assert!(bake.breach(&seen(100, 4), Some(&prev)).is_some());
        assert_eq!(
            bake.breach(&seen(100, 4), None),
            None,
            "no baseline, no judgement"
        );

        let bake = Bake::for_requests(10).max_p99_ratio(2.0);
        let prev = Observed {
            p99: Some(Duration::from_micros(100)),
            ..seen(100, 0)
        };
        let slow = Observed {
            p99: Some(Duration::from_micros(250)),
            ..seen(100, 0)
        };
        assert!(
            bake.breach(&slow, Some(&prev))
                .unwrap()
                .reason
                .contains("exceeds 2x")
        );
    }

    #[test]
    fn outcomes_are_judged_on_their_own_count() {
        let bake = Bake::for_requests(10)
            .min_outcome_success(0.9)
            .min_samples(10);
        let mut o = seen(0, 0);
        o.outcomes = 10;
        o.outcomes_ok = 8;
        assert!(
            bake.breach(&o, None)
                .unwrap()
                .reason
                .starts_with("good outcomes 80.00%")
        );
    }

    #[test]
    fn the_window_needs_both_time_and_requests() {
        let bake = Bake::for_duration(Duration::from_secs(1)).min_requests(10);
        assert!(!bake.passed(Duration::from_secs(2), &seen(5, 0)));
        assert!(!bake.passed(Duration::from_millis(10), &seen(50, 0)));
        assert!(bake.passed(Duration::from_secs(2), &seen(50, 0)));
    }
}
