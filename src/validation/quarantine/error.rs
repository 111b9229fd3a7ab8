//! [`QuarantineError`]: why a candidate was refused in quarantine, one variant per cause.

use std::path::PathBuf;
use std::time::Duration;

use crate::validation::validate::ValidationReport;

/// Why a candidate did not pass quarantine. The serving process never loaded it; the live
/// model kept serving.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize)]
#[non_exhaustive]
pub enum QuarantineError {
    /// The child was killed by a signal it did not get from a cap (a segfault, an abort
    /// from inside ONNX Runtime, …).
    #[error("the candidate crashed the quarantine child: signal {signal} ({name}){}", tail(.stderr))]
    Crashed {
        /// The signal number.
        signal: i32,
        /// Its name (`SIGSEGV`, `SIGABRT`, …).
        name: String,
        /// The end of the child's stderr.
        stderr: String,
    },

    /// An allocation failed under the memory cap.
    #[error("the candidate exceeded the memory cap of {} MiB: {detail}", .limit >> 20)]
    ExceededMemory {
        /// The cap, bytes of address space.
        limit: u64,
        /// What failed to allocate, in the child's words.
        detail: String,
    },

    /// The child used more CPU time than its cap.
    #[error("the candidate exceeded the CPU cap of {limit:?} (used {used:?})")]
    ExceededCpu {
        /// The cap.
        #[serde(serialize_with = "crate::serde_util::secs")]
        limit: Duration,
        /// CPU time used when it was stopped.
        #[serde(serialize_with = "crate::serde_util::secs")]
        used: Duration,
    },

    /// The child was still running at its wall-clock deadline and was killed.
    #[error("the candidate exceeded the wall-clock deadline of {limit:?}")]
    ExceededWallTime {
        /// The deadline.
        #[serde(serialize_with = "crate::serde_util::secs")]
        limit: Duration,
    },

    /// The candidate loaded and ran, and a gate failed it.
    #[error("refused by a gate in quarantine: {}", .0.failure_summary())]
    Refused(Box<ValidationReport>),

    /// The loader could not load the candidate (a missing, truncated or corrupt file).
    #[error("the candidate failed to load in quarantine: {reason}")]
    FailedToLoad {
        /// The loader's error.
        reason: String,
    },

    /// The child's output was not the protocol: too much of it, a malformed frame, or
    /// frames out of order.
    #[error("the quarantine child sent garbage: {reason}")]
    Garbage {
        /// What was wrong with it.
        reason: String,
    },

    /// The child never said hello: the program does not run the quarantine hook.
    #[error(
        "`{}` does not speak the quarantine protocol ({detail}): call `bluegreen::quarantine::enter()` (or `Hook::enter`) first thing in main(), or point the quarantine at a program that does{}",
        .program.display(), tail(.stderr)
    )]
    NoHook {
        /// The program that was started.
        program: PathBuf,
        /// What it did instead (exited with …, silent past the handshake deadline).
        detail: String,
        /// The end of its stderr.
        stderr: String,
    },

    /// The child runs the hook, but no loader of that name is registered in it.
    #[error("the quarantine child has no loader named {name:?} (it has: {})", .available.join(", "))]
    UnknownLoader {
        /// The loader asked for.
        name: String,
        /// The loaders the child registered.
        available: Vec<String>,
    },

    /// The child ended without a verdict and without a signal (it exited by itself).
    #[error("the quarantine child {status} before sending a verdict{}", tail(.stderr))]
    Exited {
        /// How it ended (`exited with status 3`).
        status: String,
        /// The end of its stderr.
        stderr: String,
    },

    /// The child could not be set up: the program could not be started, the job not
    /// written, or the caps not applied.
    #[error("the quarantine child could not be set up: {reason}")]
    Setup {
        /// What failed.
        reason: String,
    },

    /// The candidate file changed between quarantine and loading it into the serving
    /// process: what passed is not what would be loaded.
    #[error("{} changed while it was in quarantine; refusing to load what was not qualified", .path.display())]
    Changed {
        /// The candidate file.
        path: PathBuf,
    },
}

impl QuarantineError {
    /// A short name of the cause, for logs and metrics labels: `crashed`, `memory`, `cpu`,
    /// `wall-time`, `refused`, `load`, `garbage`, `no-hook`, `unknown-loader`, `exited`,
    /// `setup`, `changed`.
    pub fn cause(&self) -> &'static str {
        match self {
            QuarantineError::Crashed { .. } => "crashed",
            QuarantineError::ExceededMemory { .. } => "memory",
            QuarantineError::ExceededCpu { .. } => "cpu",
            QuarantineError::ExceededWallTime { .. } => "wall-time",
            QuarantineError::Refused(_) => "refused",
            QuarantineError::FailedToLoad { .. } => "load",
            QuarantineError::Garbage { .. } => "garbage",
            QuarantineError::NoHook { .. } => "no-hook",
            QuarantineError::UnknownLoader { .. } => "unknown-loader",
            QuarantineError::Exited { .. } => "exited",
            QuarantineError::Setup { .. } => "setup",
            QuarantineError::Changed { .. } => "changed",
        }
    }
}

fn tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("; its stderr ends: {t}")
    }
}
