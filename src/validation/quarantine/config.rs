//! [`Quarantine`]: how candidates are qualified in a child — which loader the child uses
//! and with what settings, the caps, the program to run — and how the serving process
//! loads a candidate that passed.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::QuarantineError;
use super::limits::Limits;
use super::parent::{self, Program};
use super::protocol::Job;
use super::report::QuarantineReport;
use crate::model::Model;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Loader<M> = Arc<dyn Fn(&Path) -> Result<M, BoxError> + Send + Sync>;

/// Qualifies untrusted candidates in a child process before they enter the serving
/// process; give it to [`Builder::quarantine`](crate::Builder::quarantine) and stage with
/// [`stage_quarantined`](crate::BlueGreen::stage_quarantined).
///
/// It names the loader the child runs (registered in the child's [`Hook`](super::Hook);
/// `OnnxModel`'s is built in: `Quarantine::onnx(OnnxTrial)`), the settings that loader
/// reads, the caps, and how the serving process loads a candidate that passed.
///
/// ```
/// use bluegreen::quarantine::Quarantine;
/// use std::time::Duration;
/// # struct Threshold(f32);
/// # impl bluegreen::Model for Threshold {
/// #     type Input = f32; type Output = bool; type Error = std::convert::Infallible;
/// #     fn predict(&self, x: &f32) -> Result<bool, Self::Error> { Ok(*x > self.0) }
/// # }
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// let q = Quarantine::new("threshold", (), |path| {
///     let t: f32 = std::fs::read_to_string(path)?.trim().parse()?;
///     Ok::<_, BoxError>(Threshold(t))
/// })
/// .memory_limit(512 << 20)
/// .cpu_limit(Duration::from_secs(5))
/// .wall_limit(Duration::from_secs(10));
/// # let _ = q;
/// ```
pub struct Quarantine<M: Model> {
    pub(crate) loader: String,
    pub(crate) settings: serde_json::Value,
    pub(crate) limits: Limits,
    pub(crate) program: Program,
    pub(crate) gate_deadline: Duration,
    load: Loader<M>,
}

impl<M: Model> Clone for Quarantine<M> {
    fn clone(&self) -> Self {
        Self {
            loader: self.loader.clone(),
            settings: self.settings.clone(),
            limits: self.limits,
            program: self.program.clone(),
            gate_deadline: self.gate_deadline,
            load: Arc::clone(&self.load),
        }
    }
}

impl<M: Model> fmt::Debug for Quarantine<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quarantine")
            .field("loader", &self.loader)
            .field("limits", &self.limits)
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl<M: Model> Quarantine<M> {
    /// Candidates are qualified by the child's loader `loader` (see
    /// [`Hook::register`](super::Hook::register)), which reads `settings` (any
    /// serializable value; the child gets it back with [`Job::settings`]); a candidate
    /// that passed is loaded into the serving process with `load`.
    ///
    /// Default caps: 2 GiB of address space, 60 s of CPU time, 120 s of wall time, 10 s
    /// for the child to say hello, 1 MiB of output.
    pub fn new<F, E>(loader: impl Into<String>, settings: impl serde::Serialize, load: F) -> Self
    where
        F: Fn(&Path) -> Result<M, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Self {
            loader: loader.into(),
            // Values serde_json cannot represent (maps with non-string keys) become null.
            settings: serde_json::to_value(settings).unwrap_or_default(),
            limits: Limits::default(),
            program: Program::default(),
            gate_deadline: Duration::from_secs(60),
            load: Arc::new(move |p| load(p).map_err(Into::into)),
        }
    }

    /// The child's address-space cap, bytes (`RLIMIT_AS`; see the
    /// [module docs](crate::quarantine#the-caps) for sizing it). Default 2 GiB.
    #[must_use]
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.limits.memory = Some(bytes);
        self
    }

    /// The child's CPU-time cap (user + system, all threads). Default 60 s.
    #[must_use]
    pub fn cpu_limit(mut self, cpu: Duration) -> Self {
        self.limits.cpu = Some(cpu);
        self
    }

    /// Lifts the memory and CPU caps (the wall-clock deadline always applies).
    #[must_use]
    pub fn uncapped(mut self) -> Self {
        self.limits.memory = None;
        self.limits.cpu = None;
        self
    }

    /// The child's wall-clock deadline, from its start to its verdict. Default 120 s.
    /// Each gate in the child may also run at most this long.
    #[must_use]
    pub fn wall_limit(mut self, wall: Duration) -> Self {
        self.limits.wall = wall;
        self.gate_deadline = self.gate_deadline.min(wall);
        self
    }

    /// How long the child may take to say hello before it is taken for a program without
    /// the hook. Default 10 s.
    #[must_use]
    pub fn handshake_limit(mut self, handshake: Duration) -> Self {
        self.limits.handshake = handshake;
        self
    }

    /// How many bytes the child may write to its stdout in all. Default 1 MiB (a verdict
    /// is a few kilobytes).
    #[must_use]
    pub fn output_limit(mut self, bytes: usize) -> Self {
        self.limits.max_output = bytes;
        self
    }

    /// How long each gate may run in the child. Default 60 s, at most the wall limit.
    #[must_use]
    pub fn gate_deadline(mut self, deadline: Duration) -> Self {
        self.gate_deadline = deadline.min(self.limits.wall);
        self
    }

    /// The program the child runs. Default: this very executable, re-executed (its `main()`
    /// must call the [hook](super::Hook::enter) first), with the single argument
    /// `--bluegreen-quarantine-child`. Use it for a helper binary of your own, or a test
    /// harness.
    #[must_use]
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program.path = Some(path.into());
        self
    }

    /// The child's arguments (replacing the default `--bluegreen-quarantine-child`).
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.program.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets an environment variable for the child (it inherits the parent's otherwise).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.program.env.push((key.into(), value.into()));
        self
    }

    /// The name of the child's loader.
    pub fn loader(&self) -> &str {
        &self.loader
    }

    /// The wall-clock deadline of a child.
    pub fn wall(&self) -> Duration {
        self.limits.wall
    }

    /// Qualifies the candidate at `candidate` as `version` in a child process and reports.
    /// Blocks for at most the wall limit (plus a few milliseconds to reap the child).
    pub fn qualify(&self, version: &str, candidate: &Path) -> QuarantineReport {
        let job = Job {
            version: version.to_owned(),
            candidate: candidate.to_path_buf(),
            loader: self.loader.clone(),
            settings: self.settings.clone(),
            gate_deadline: self.gate_deadline,
            limits: self.limits.for_child(),
        };
        let before = fingerprint(candidate);
        let mut report = parent::run(&self.program, &self.limits, &job);
        report.content_hash = before;
        if report.passed() && before.is_some() && before != fingerprint(candidate) {
            report.refusal = Some(QuarantineError::Changed {
                path: candidate.to_path_buf(),
            });
        }
        log(&report);
        report
    }

    /// Loads a candidate into this process with the loader given to [`new`](Self::new).
    ///
    /// # Errors
    /// Whatever that loader returns.
    pub fn load(&self, candidate: &Path) -> Result<M, BoxError> {
        (self.load)(candidate)
    }
}

/// xxh3 of a regular file's bytes (`None` for a folder or an unreadable path).
pub(crate) fn fingerprint(path: &Path) -> Option<u64> {
    let mut file = std::fs::File::open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut chunk).ok()?;
        if n == 0 {
            return Some(hasher.digest());
        }
        hasher.update(&chunk[..n]);
    }
}

fn log(report: &QuarantineReport) {
    let u = &report.usage;
    let peak_mb = u.peak_memory.map(|b| b as f64 / 1e6);
    let cpu_s = u.cpu.map(|c| c.as_secs_f64());
    match &report.refusal {
        None => tracing::info!(target: "bluegreen::quarantine", version = %report.version,
            ?peak_mb, ?cpu_s, elapsed_s = u.elapsed.as_secs_f64(), "candidate passed quarantine"),
        Some(e) => tracing::warn!(target: "bluegreen::quarantine", version = %report.version,
            cause = e.cause(), reason = %e, ?peak_mb, ?cpu_s, elapsed_s = u.elapsed.as_secs_f64(),
            "candidate refused in quarantine; it was never loaded into this process"),
    }
}
