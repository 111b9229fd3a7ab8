//! What validation produces: one [`Check`] per gate, adding up to a [`ValidationReport`].

use std::fmt;
use std::time::{Duration, SystemTime};

use super::validate::Bound;

/// How one gate ended.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The gate passed.
    Passed,
    /// The gate judged the candidate and failed it.
    Failed,
    /// The gate (or the candidate inside it) panicked.
    Panicked,
    /// The gate ran past its deadline.
    TimedOut,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Passed => "pass",
            CheckStatus::Failed => "FAIL",
            CheckStatus::Panicked => "PANIC",
            CheckStatus::TimedOut => "TIMEOUT",
        })
    }
}

/// The outcome of one gate in a [`ValidationReport`].
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The validator's name.
    pub name: String,
    /// How it ended.
    pub status: CheckStatus,
    /// The measured value, for measured gates.
    pub measured: Option<f64>,
    /// The bound the value was held to, for measured gates.
    pub bound: Option<Bound>,
    /// The confidence interval around the measured value, for the statistical gates
    /// (also shown in [`detail`](Self::detail)).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub interval: Option<Interval>,
    /// Explanation (the reason for a failure, the panic message, …).
    pub detail: String,
    /// How long the gate ran (until its deadline, for a timeout).
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "crate::serde_util::secs",
            deserialize_with = "crate::serde_util::secs_de"
        )
    )]
    pub elapsed: Duration,
}

impl Check {
    /// Whether this gate passed.
    pub fn passed(&self) -> bool {
        self.status == CheckStatus::Passed
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.status, self.name)?;
        if let Some(m) = self.measured {
            write!(f, ": {m:.6}")?;
        }
        if let Some(b) = self.bound {
            write!(f, " (required {b})")?;
        }
        if !self.detail.is_empty() {
            write!(f, " — {}", self.detail)?;
        }
        write!(f, " [{:.1?}]", self.elapsed)
    }
}

/// A confidence interval around a measured value, as the statistical gates report it
/// (see [`gates::stats`](crate::gates::stats)).
///
/// ```
/// use bluegreen::gates::stats;
/// let iv = stats::wilson(439, 450, 0.95);
/// assert_eq!(iv.to_string(), "95% Wilson interval [0.9568, 0.9863]");
/// assert!(iv.contains(439.0 / 450.0));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Two-sided confidence level (0.95 for a 95 % interval).
    pub confidence: f64,
    /// How it was computed.
    pub method: IntervalMethod,
}

impl Interval {
    /// An interval `[low, high]` at two-sided `confidence`, computed by `method`.
    pub fn new(low: f64, high: f64, confidence: f64, method: IntervalMethod) -> Self {
        Self {
            low,
            high,
            confidence,
            method,
        }
    }

    /// Whether `value` lies inside (ends included).
    pub fn contains(&self, value: f64) -> bool {
        self.low <= value && value <= self.high
    }

    /// `high − low`.
    pub fn width(&self) -> f64 {
        self.high - self.low
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = self.confidence * 100.0;
        // 95 or 99.9, never 95.00000000000001.
        let pct = format!("{:.3}", pct);
        let pct = pct.trim_end_matches('0').trim_end_matches('.');
        // A difference gets its sign, so "[-0.0130, +0.0085]" reads as a difference.
        if self.method == IntervalMethod::PairedScore {
            write!(
                f,
                "{pct}% {} interval [{:+.4}, {:+.4}]",
                self.method,
                self.low + 0.0,
                self.high + 0.0
            )
        } else {
            write!(
                f,
                "{pct}% {} interval [{:.4}, {:.4}]",
                self.method, self.low, self.high
            )
        }
    }
}

/// How an [`Interval`] was computed.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntervalMethod {
    /// Wilson score interval for a share.
    Wilson,
    /// Clopper–Pearson (exact binomial) interval for a share.
    ClopperPearson,
    /// Score interval for the paired difference of two shares on the same examples
    /// (Tango 1998).
    PairedScore,
}

impl fmt::Display for IntervalMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntervalMethod::Wilson => "Wilson",
            IntervalMethod::ClopperPearson => "Clopper-Pearson",
            IntervalMethod::PairedScore => "paired score",
        })
    }
}

/// Every gate's outcome for one candidate.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// Version of the candidate.
    pub candidate: String,
    /// Version that was live during validation.
    pub live: String,
    /// One entry per configured validator, in configuration order.
    pub checks: Vec<Check>,
    /// Wall time of the whole validation.
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "crate::serde_util::secs",
            deserialize_with = "crate::serde_util::secs_de"
        )
    )]
    pub elapsed: Duration,
    /// When validation finished.
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "crate::serde_util::unix_secs",
            deserialize_with = "crate::serde_util::unix_secs_de"
        )
    )]
    pub finished_at: SystemTime,
}

impl ValidationReport {
    /// Whether every gate passed (vacuously true with no gates configured).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(Check::passed)
    }

    /// The gates that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed())
    }

    /// The check with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The report as pretty-printed JSON (for CI logs and dashboards).
    #[cfg(feature = "serde")]
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// One line naming the failed gates, for error messages. A detail shared with an
    /// earlier failed gate (one broken model failing every golden gate) is said once.
    pub fn failure_summary(&self) -> String {
        let failures: Vec<&Check> = self.failures().collect();
        let names: Vec<String> = failures
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let earlier = failures[..i]
                    .iter()
                    .find(|e| !c.detail.is_empty() && e.detail == c.detail);
                match earlier {
                    _ if c.detail.is_empty() => format!("{} ({})", c.name, c.status),
                    Some(e) => format!("{} ({}: same as {})", c.name, c.status, e.name),
                    None => format!("{} ({}: {})", c.name, c.status, c.detail),
                }
            })
            .collect();
        if names.is_empty() {
            "no gate failed".to_owned()
        } else {
            names.join("; ")
        }
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        writeln!(
            f,
            "validation of {} against live {}: {verdict} ({} gates, {:.1?})",
            self.candidate,
            self.live,
            self.checks.len(),
            self.elapsed
        )?;
        for c in &self.checks {
            writeln!(f, "  {c}")?;
        }
        Ok(())
    }
}
