//! Gates in front of a swap: the [`Validator`] trait, its [`Verdict`]s and the
//! [`ValidationReport`] they add up to.
//!
//! A validator sees the candidate and the live model ([`Context`]) and returns a
//! [`Verdict`]: pass or fail, and — for measured gates — the value it measured and the
//! [`Bound`] it was held to. bluegreen runs every configured validator on its own thread
//! with a deadline; a validator that panics or overruns fails, and the live model keeps
//! serving whatever happens (see [`BlueGreen::swap`](crate::BlueGreen::swap)).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::model::Model;
use crate::model::ModelInfo;
use crate::shadow::ShadowStatus;
use crate::slot::Slot;
use crate::supervise::{self, Supervised};

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

/// What a validator sees: the candidate and the model that is live right now.
pub struct Context<M: Model> {
    candidate: Arc<Slot<M>>,
    live: Arc<Slot<M>>,
    shadow: Option<ShadowStatus>,
}

impl<M: Model> Context<M> {
    pub(crate) fn new(
        candidate: Arc<Slot<M>>,
        live: Arc<Slot<M>>,
        shadow: Option<ShadowStatus>,
    ) -> Self {
        Self {
            candidate,
            live,
            shadow,
        }
    }

    /// Shadow-traffic results for this candidate, when shadowing is configured and
    /// mirrored requests reached it (see [`ShadowGate`](crate::shadow::ShadowGate)).
    pub fn shadow(&self) -> Option<&ShadowStatus> {
        self.shadow.as_ref()
    }

    /// The model under validation.
    pub fn candidate(&self) -> &M {
        &self.candidate.model
    }

    /// The model serving traffic now (to compare against).
    pub fn live(&self) -> &M {
        &self.live.model
    }

    /// The candidate's version label.
    pub fn candidate_version(&self) -> &str {
        &self.candidate.version
    }

    /// The live model's version label.
    pub fn live_version(&self) -> &str {
        &self.live.version
    }

    /// The candidate's generation: unique per loaded model in the process, so gates can
    /// cache results per model.
    pub fn candidate_generation(&self) -> u64 {
        self.candidate.generation
    }

    /// The live model's generation.
    pub fn live_generation(&self) -> u64 {
        self.live.generation
    }

    /// What the candidate declares about itself (captured when it was staged).
    pub fn candidate_info(&self) -> &ModelInfo {
        &self.candidate.info
    }

    /// What the live model declares about itself.
    pub fn live_info(&self) -> &ModelInfo {
        &self.live.info
    }
}

/// A limit a measured value is held to.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    passed: bool,
    measured: Option<f64>,
    bound: Option<Bound>,
    detail: String,
}

impl Verdict {
    /// Passes, with an explanation.
    pub fn pass(detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            measured: None,
            bound: None,
            detail: detail.into(),
        }
    }

    /// Fails, with the reason.
    pub fn fail(detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            measured: None,
            bound: None,
            detail: detail.into(),
        }
    }

    /// Passes exactly when `measured` satisfies `bound` (NaN fails).
    pub fn measure(measured: f64, bound: Bound) -> Self {
        Self {
            passed: bound.holds(measured),
            measured: Some(measured),
            bound: Some(bound),
            detail: String::new(),
        }
    }

    /// Adds an explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
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

/// How one gate ended.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
    /// Explanation (the reason for a failure, the panic message, …).
    pub detail: String,
    /// How long the gate ran (until its deadline, for a timeout).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
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

/// Every gate's outcome for one candidate.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationReport {
    /// Version of the candidate.
    pub candidate: String,
    /// Version that was live during validation.
    pub live: String,
    /// One entry per configured validator, in configuration order.
    pub checks: Vec<Check>,
    /// Wall time of the whole validation.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub elapsed: Duration,
    /// When validation finished.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
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

/// Runs every validator, in order, each on its own thread with its deadline.
pub(crate) fn run_all<M: Model>(
    validators: &[Arc<dyn Validator<M>>],
    candidate: &Arc<Slot<M>>,
    live: &Arc<Slot<M>>,
    shadow: Option<ShadowStatus>,
    default_deadline: Duration,
) -> ValidationReport {
    let started = Instant::now();
    let cx = Arc::new(Context::new(
        Arc::clone(candidate),
        Arc::clone(live),
        shadow,
    ));
    let checks = validators
        .iter()
        .map(|v| run_one(v, &cx, default_deadline))
        .collect();
    ValidationReport {
        candidate: candidate.version.to_string(),
        live: live.version.to_string(),
        checks,
        elapsed: started.elapsed(),
        finished_at: SystemTime::now(),
    }
}

fn run_one<M: Model>(
    validator: &Arc<dyn Validator<M>>,
    cx: &Arc<Context<M>>,
    default_deadline: Duration,
) -> Check {
    let name = validator.name().to_owned();
    let deadline = validator.deadline().unwrap_or(default_deadline);
    let started = Instant::now();
    let (v, c) = (Arc::clone(validator), Arc::clone(cx));
    let outcome = supervise::run(&format!("bluegreen-gate-{name}"), deadline, move || {
        v.validate(&c)
    });
    let elapsed = started.elapsed();
    let (status, measured, bound, detail) = match outcome {
        Supervised::Done(v) => {
            let status = if v.passed {
                CheckStatus::Passed
            } else {
                CheckStatus::Failed
            };
            (status, v.measured, v.bound, v.detail)
        }
        Supervised::Panicked(msg) => (
            CheckStatus::Panicked,
            None,
            None,
            format!("panicked: {msg}"),
        ),
        Supervised::TimedOut => (
            CheckStatus::TimedOut,
            None,
            None,
            format!("exceeded its deadline of {deadline:?}"),
        ),
        Supervised::NotStarted(e) => (
            CheckStatus::Failed,
            None,
            None,
            format!("could not start: {e}"),
        ),
    };
    tracing::debug!(target: "bluegreen", gate = %name, candidate = %cx.candidate_version(),
        %status, ?elapsed, "gate finished");
    Check {
        name,
        status,
        measured,
        bound,
        detail,
        elapsed,
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
