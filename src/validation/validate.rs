//! Gates in front of a swap: the [`Validator`] trait, its [`Verdict`]s and the
//! [`ValidationReport`] they add up to.
//!
//! A validator sees the candidate and the live model ([`Context`]) and returns a
//! [`Verdict`]: pass or fail, and — for measured gates — the value it measured and the
//! [`Bound`] it was held to. bluegreen runs the configured validators one after another
//! on a supervised worker thread, each with a deadline; a validator that panics or
//! overruns fails, and the live model keeps serving whatever happens (see [`BlueGreen::swap`](crate::BlueGreen::swap)).

use std::fmt;
use std::time::Duration;

use crate::model::Model;

pub use super::context::Context;
pub use super::report::{Check, CheckStatus, Interval, IntervalMethod, ValidationReport};

/// A gate a candidate must pass before it takes traffic.
///
/// Implement it for your own checks, or wrap a closure with [`from_fn`].
///
/// # Example
///
/// ```
/// use bluegreen::{validate::{Bound, Context, Verdict}, Model, Validator};
///
/// /// Candidate must agree with the live model on a probe input.
/// struct AgreesOnProbe;
///
/// impl<M: Model<Input = f64, Output = f64>> Validator<M> for AgreesOnProbe {
///     fn name(&self) -> &str { "agrees-on-probe" }
///     fn validate(&self, cx: &Context<M>) -> Verdict {
///         match (cx.candidate().predict(&1.0), cx.live().predict(&1.0)) {
///             (Ok(c), Ok(l)) => Verdict::measure((c - l).abs(), Bound::AtMost(0.1)),
///             (Err(e), _) => Verdict::fail(format!("candidate failed: {e}")),
///             (_, Err(e)) => Verdict::fail(format!("live model failed: {e}")),
///         }
///     }
/// }
/// ```
pub trait Validator<M: Model>: Send + Sync + 'static {
    /// Short stable name shown in reports (e.g. `accuracy`).
    fn name(&self) -> &str;

    /// Judges the candidate.
    fn validate(&self, cx: &Context<M>) -> Verdict;

    /// How long this validator may run; `None` uses the deployment's default
    /// ([`Builder::validation_deadline`](crate::Builder::validation_deadline)).
    fn deadline(&self) -> Option<Duration> {
        None
    }

    /// Representative inputs this gate can offer for warming a model up, used when no
    /// [warm-up samples](crate::Builder::warmup_samples) are configured (the first gate
    /// offering any is used). The golden-set gates offer a few golden rows. The default
    /// offers none.
    fn warm_up_inputs(&self) -> Vec<M::Input> {
        Vec::new()
    }
}

/// A [`Validator`] made from a name and a closure; see [`from_fn`].
pub struct FnValidator<F> {
    name: String,
    f: F,
}

/// Makes a validator from a closure returning a [`Verdict`] or a `Result<(), E: Display>`.
///
/// ```
/// use bluegreen::{validate, BlueGreen, Model};
/// # struct Doubler;
/// # impl Model for Doubler {
/// #     type Input = i64; type Output = i64; type Error = std::convert::Infallible;
/// #     fn predict(&self, x: &i64) -> Result<i64, Self::Error> { Ok(2 * x) }
/// # }
/// let gate = validate::from_fn("doubles", |cx: &validate::Context<Doubler>| {
///     match cx.candidate().predict(&21) {
///         Ok(42) => Ok(()),
///         other => Err(format!("expected 42, got {other:?}")),
///     }
/// });
/// let bg = BlueGreen::builder().validator(gate).build("v1", Doubler).unwrap();
/// # let _ = bg;
/// ```
pub fn from_fn<M, F, R>(name: impl Into<String>, f: F) -> FnValidator<F>
where
    M: Model,
    F: Fn(&Context<M>) -> R + Send + Sync + 'static,
    R: Into<Verdict>,
{
    FnValidator {
        name: name.into(),
        f,
    }
}

impl<M, F, R> Validator<M> for FnValidator<F>
where
    M: Model,
    F: Fn(&Context<M>) -> R + Send + Sync + 'static,
    R: Into<Verdict>,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        (self.f)(cx).into()
    }
}

/// A limit a measured value is held to.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Passes when measured ≥ the limit (accuracy, agreement).
    AtLeast(f64),
    /// Passes when measured ≤ the limit (error, latency).
    AtMost(f64),
}

impl Bound {
    /// Whether `measured` satisfies the bound. NaN never does.
    pub fn holds(&self, measured: f64) -> bool {
        match *self {
            Bound::AtLeast(limit) => measured >= limit,
            Bound::AtMost(limit) => measured <= limit,
        }
    }

    /// The limit itself.
    pub fn limit(&self) -> f64 {
        match *self {
            Bound::AtLeast(l) | Bound::AtMost(l) => l,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `+ 0.0` turns a limit of -0 (from `-max_drop` with max_drop 0) into 0.
        match self {
            Bound::AtLeast(l) => write!(f, ">= {}", l + 0.0),
            Bound::AtMost(l) => write!(f, "<= {}", l + 0.0),
        }
    }
}

/// A validator's judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub(crate) passed: bool,
    pub(crate) measured: Option<f64>,
    pub(crate) bound: Option<Bound>,
    pub(crate) interval: Option<Interval>,
    pub(crate) detail: String,
}

impl Verdict {
    /// Passes, with an explanation.
    pub fn pass(detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            measured: None,
            bound: None,
            interval: None,
            detail: detail.into(),
        }
    }

    /// Fails, with the reason.
    pub fn fail(detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            measured: None,
            bound: None,
            interval: None,
            detail: detail.into(),
        }
    }

    /// Passes exactly when `measured` satisfies `bound` (NaN fails).
    pub fn measure(measured: f64, bound: Bound) -> Self {
        Self {
            passed: bound.holds(measured),
            measured: Some(measured),
            bound: Some(bound),
            interval: None,
            detail: String::new(),
        }
    }

    /// Adds an explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Adds the confidence interval around the measured value.
    pub fn with_interval(mut self, interval: Interval) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Whether the gate passed.
    pub fn passed(&self) -> bool {
        self.passed
    }
}

impl<E: fmt::Display> From<Result<(), E>> for Verdict {
    fn from(r: Result<(), E>) -> Self {
        match r {
            Ok(()) => Verdict::pass(""),
            Err(e) => Verdict::fail(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_rejects_nan_and_respects_direction() {
        assert!(Bound::AtLeast(0.9).holds(0.9));
        assert!(!Bound::AtLeast(0.9).holds(0.89));
        assert!(Bound::AtMost(5.0).holds(5.0));
        assert!(!Bound::AtMost(5.0).holds(5.1));
        assert!(!Bound::AtLeast(0.0).holds(f64::NAN));
        assert!(!Bound::AtMost(0.0).holds(f64::NAN));
    }

    #[test]
    fn verdict_from_result_keeps_the_error_text() {
        let v: Verdict = Err::<(), _>("too slow").into();
        assert!(!v.passed());
        assert_eq!(v.detail, "too slow");
        let v: Verdict = Ok::<(), String>(()).into();
        assert!(v.passed());
    }
}
