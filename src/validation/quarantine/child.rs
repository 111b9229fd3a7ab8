//! The child's side: the [`Hook`] an application's `main()` calls first, the loaders it
//! knows, and the trial it runs on a candidate ([`Trial`]).
//!
//! In a process started as a quarantine child (the `BLUEGREEN_QUARANTINE` environment
//! variable is set), [`Hook::enter`] never returns: it says hello, reads the [`Job`] from
//! stdin, caps itself, loads the candidate with the named loader, warms it, runs the
//! trial's gates, writes the verdict to stdout and exits. In any other process it returns
//! at once and costs nothing.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::limits::{apply, own_usage};
use super::protocol::{CHILD_ENV, Frame, Job, PROTOCOL, write_frame};
use crate::model::{Model, panic_message};
use crate::slot::{Hung, Slot};
use crate::validation::validate::{Check, CheckStatus};
use crate::validation::validate::{ValidationReport, Validator};
use crate::validation::{GateWorker, Supervised, run_all};

/// The most the child reads of its job from stdin.
const MAX_JOB_BYTES: u64 = 4 << 20;

/// A candidate on trial in the child: the model, and the gates it must pass there.
///
/// In the child there is no live model: gates see the candidate as both
/// [`candidate`](crate::validate::Context::candidate) and
/// [`live`](crate::validate::Context::live), so give the trial gates that judge the
/// candidate alone (accuracy, sanity, expected outputs, an absolute latency budget).
/// Comparisons with the live model run in the serving process, where every configured
/// gate runs again before the swap.
pub struct Trial<M: Model> {
    model: M,
    gates: Vec<Arc<dyn Validator<M>>>,
}

impl<M: Model> Trial<M> {
    /// A trial of `model` with no gates: it must load and warm up.
    pub fn new(model: M) -> Self {
        Self {
            model,
            gates: Vec::new(),
        }
    }

    /// Adds a gate.
    #[must_use]
    pub fn gate(mut self, gate: impl Validator<M>) -> Self {
        self.gates.push(Arc::new(gate));
        self
    }

    /// Adds a shared gate.
    #[must_use]
    pub fn shared_gate(mut self, gate: Arc<dyn Validator<M>>) -> Self {
        self.gates.push(gate);
        self
    }
}

/// A loader as the child knows it: by name, turning a job into a verdict.
pub(crate) trait ChildLoader: Send + Sync {
    fn name(&self) -> &str;
    /// `Err` is a failed load; `Ok` the trial's report (passed or not).
    fn run(&self, job: &Job, out: &mut dyn Write) -> Result<ValidationReport, String>;
}

struct FnLoader<F> {
    name: String,
    load: F,
}

impl<M, F, E> ChildLoader for FnLoader<F>
where
    M: Model,
    F: Fn(&Job) -> Result<Trial<M>, E> + Send + Sync,
    E: std::fmt::Display,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn run(&self, job: &Job, out: &mut dyn Write) -> Result<ValidationReport, String> {
        let started = Instant::now();
        let trial = match catch_unwind(AssertUnwindSafe(|| (self.load)(job))) {
            Ok(Ok(trial)) => trial,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(p) => return Err(format!("the loader panicked: {}", message(p.as_ref()))),
        };
        let _ = write_frame(
            out,
            &Frame::Loaded {
                load_secs: started.elapsed().as_secs_f64(),
            },
        );
        let Trial { model, gates } = trial;
        let slot = match Slot::new(model, &job.version, None, false) {
            Ok(slot) => Arc::new(slot),
            Err((_, msg)) => return Err(format!("the model panicked in info: {msg}")),
        };
        Ok(run_trial(&slot, &gates, job.gate_deadline))
    }
}

/// Warm-up (on inputs the first gate offers, else the model's own), then every gate.
fn run_trial<M: Model>(
    slot: &Arc<Slot<M>>,
    gates: &[Arc<dyn Validator<M>>],
    deadline: Duration,
) -> ValidationReport {
    let started = Instant::now();
    let inputs: Vec<M::Input> = gates
        .iter()
        .map(|g| g.warm_up_inputs())
        .find(|i| !i.is_empty())
        .unwrap_or_default();
    // In the child, a panic after a deadline goes to its stderr (the parent keeps the tail).
    let worker = GateWorker::new(Arc::new(|what: &str, message: String| {
        eprintln!("bluegreen quarantine: {what} panicked after its deadline: {message}");
    }));
    let s = Arc::clone(slot);
    let what = format!("warm-up of {}", slot.version);
    let outcome = worker.run(deadline, what, move || {
        s.model.warm_up(&inputs).map_err(|e| e.to_string())
    });
    let (status, detail) = match outcome {
        Supervised::Done(Ok(calls)) => (CheckStatus::Passed, format!("{calls} warm-up calls")),
        Supervised::Done(Err(e)) => (CheckStatus::Failed, format!("error: {e}")),
        Supervised::Panicked(m) => (CheckStatus::Panicked, format!("panicked: {m}")),
        Supervised::TimedOut => (
            CheckStatus::TimedOut,
            format!("exceeded its deadline of {deadline:?}"),
        ),
        Supervised::NotStarted(e) => (CheckStatus::Failed, format!("could not start: {e}")),
    };
    let warm_up = Check {
        name: "warm-up".to_owned(),
        status,
        measured: None,
        bound: None,
        interval: None,
        detail,
        elapsed: started.elapsed(),
    };
    let mut report = if warm_up.passed() {
        run_all::<M, ()>(
            gates,
            slot,
            slot,
            None,
            deadline,
            &Hung::default(),
            &worker,
            None,
        )
        .0
    } else {
        ValidationReport {
            candidate: slot.version.to_owned(),
            live: String::new(),
            checks: Vec::new(),
            elapsed: Duration::ZERO,
            finished_at: SystemTime::now(),
        }
    };
    report.live = "(quarantine: none)".to_owned();
    report.checks.insert(0, warm_up);
    report.elapsed = started.elapsed();
    report
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    panic_message(payload).unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// The quarantine entry point of a binary: the loaders it can run in a child, and
/// [`enter`](Self::enter), which `main()` calls first.
///
/// `Hook::new()` knows the built-in loaders (`OnnxModel`'s, with the `onnx` feature);
/// [`register`](Self::register) adds your own. A binary that only quarantines ONNX models
/// can call [`bluegreen::quarantine::enter()`](crate::quarantine::enter) instead.
///
/// ```
/// use bluegreen::quarantine::{Hook, Trial};
/// # struct Threshold(f32);
/// # impl bluegreen::Model for Threshold {
/// #     type Input = f32; type Output = bool; type Error = std::convert::Infallible;
/// #     fn predict(&self, x: &f32) -> Result<bool, Self::Error> { Ok(*x > self.0) }
/// # }
///
/// fn main() {
///     // First thing: in a quarantine child this runs the job and exits.
///     Hook::new()
///         .register("threshold", |job| {
///             let text = std::fs::read_to_string(&job.candidate).map_err(|e| e.to_string())?;
///             let t: f32 = text.trim().parse().map_err(|e| format!("{e}"))?;
///             Ok::<_, String>(Trial::new(Threshold(t)))
///         })
///         .enter();
///     // … the application …
/// }
/// ```
pub struct Hook {
    pub(crate) loaders: Vec<Box<dyn ChildLoader>>,
}

impl Hook {
    /// A hook with no loaders at all (not even the built-in ones).
    pub fn empty() -> Self {
        Self {
            loaders: Vec::new(),
        }
    }

    /// Registers the loader `name`: in the child, `load` turns the [`Job`] (the
    /// candidate's path, its version, the settings the parent's
    /// [`Quarantine`](super::Quarantine) was given) into a [`Trial`]. A later registration
    /// of the same name replaces an earlier one.
    #[must_use]
    pub fn register<M, F, E>(mut self, name: impl Into<String>, load: F) -> Self
    where
        M: Model,
        F: Fn(&Job) -> Result<Trial<M>, E> + Send + Sync + 'static,
        E: std::fmt::Display + 'static,
    {
        let name = name.into();
        self.loaders.retain(|l| l.name() != name);
        self.loaders.push(Box::new(FnLoader { name, load }));
        self
    }

    /// The names of the registered loaders.
    pub fn loaders(&self) -> Vec<String> {
        self.loaders.iter().map(|l| l.name().to_owned()).collect()
    }

    /// In a quarantine child: runs the job and **exits the process** (status 0 once the
    /// verdict is written). Anywhere else: returns at once.
    ///
    /// Call it first in `main()`, before anything else runs (a server, a thread pool,
    /// argument parsing): the child is a fresh copy of your binary, and whatever runs
    /// before this call runs in the child too. Forgetting it does not go unnoticed: the
    /// parent refuses the candidate with
    /// [`QuarantineError::NoHook`](super::QuarantineError::NoHook).
    pub fn enter(self) {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let code = self.serve();
        std::process::exit(code);
    }

    fn serve(&self) -> i32 {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let hello = Frame::Hello {
            protocol: PROTOCOL,
            loaders: self.loaders(),
        };
        if write_frame(&mut out, &hello).is_err() {
            return 3; // nobody is listening
        }
        let frame = self.run_job(&mut out);
        match write_frame(&mut out, &frame) {
            Ok(()) => 0,
            Err(_) => 3,
        }
    }

    /// Reads the job, caps this process, runs the trial: the final frame.
    fn run_job(&self, out: &mut dyn Write) -> Frame {
        let job = match self.job() {
            Ok(job) => job,
            Err(reason) => return Frame::BadJob { reason },
        };
        let Some(loader) = self.loaders.iter().find(|l| l.name() == job.loader) else {
            return Frame::UnknownLoader {
                name: job.loader.clone(),
                available: self.loaders(),
            };
        };
        if let Err(reason) = apply(&job.limits).and_then(|()| watchdog(job.limits.wall)) {
            return Frame::BadJob { reason };
        }
        match loader.run(&job, out) {
            Ok(report) => Frame::Verdict {
                report,
                usage: own_usage(),
            },
            Err(reason) => Frame::LoadFailed {
                reason,
                usage: own_usage(),
            },
        }
    }

    fn job(&self) -> Result<Job, String> {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_JOB_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read the job from stdin: {e}"))?;
        if bytes.len() as u64 > MAX_JOB_BYTES {
            return Err(format!("a job larger than {MAX_JOB_BYTES} bytes"));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("a job that is not JSON: {e}"))
    }
}

/// Exits this process two seconds past the parent's deadline: a child whose parent died
/// (and so cannot kill it) does not outlive its deadline by much.
fn watchdog(wall: Duration) -> Result<(), String> {
    std::thread::Builder::new()
        .name("bluegreen-quarantine-watchdog".to_owned())
        .spawn(move || {
            std::thread::sleep(wall.saturating_add(Duration::from_secs(2)));
            std::process::exit(4);
        })
        .map(drop)
        .map_err(|e| format!("cannot start the watchdog thread: {e}"))
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("loaders", &self.loaders())
            .finish()
    }
}
