//! The crate's error type.

use std::time::Duration;

use super::status::SlotState;
use crate::slot::ContentHash;
use crate::validation::validate::ValidationReport;

/// Why an admin operation was refused. The live model keeps serving in every case.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `swap()` or `validate()` with an empty standby slot.
    #[error("nothing is staged: stage a candidate before calling swap() or validate()")]
    NothingStaged,

    /// `swap()` or `validate()` while the standby slot holds a model that is not a
    /// candidate (the previous or rolled-back version).
    #[error(
        "the standby slot holds {version} ({state}), not a candidate: stage a new candidate first"
    )]
    NotACandidate {
        /// The standby model's version.
        version: String,
        /// Its state.
        state: SlotState,
    },

    /// `swap()` on a candidate that already failed validation or warm-up.
    #[error("candidate {version} already failed validation; stage a new candidate")]
    CandidateFailed {
        /// The failed candidate's version.
        version: String,
    },

    /// The candidate failed one or more gates; it stays staged, marked failed.
    #[error("candidate {} failed validation: {}", .0.candidate, .0.failure_summary())]
    ValidationFailed(Box<ValidationReport>),

    /// The candidate's warm-up returned an error, panicked or overran its deadline.
    #[error("warm-up of candidate {version} failed: {reason}")]
    WarmupFailed {
        /// The candidate's version.
        version: String,
        /// What went wrong.
        reason: String,
    },

    /// The version label is already loaded in a slot.
    #[error(
        "version {version} is already loaded as the {slot} model; give the candidate a new version label"
    )]
    VersionInUse {
        /// The duplicate label.
        version: String,
        /// `"active"` or `"previous"`.
        slot: &'static str,
    },

    /// The version label is empty or too long.
    #[error("invalid version label {version:?}: {reason}")]
    InvalidVersion {
        /// The label given.
        version: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The deployment name given to [`Builder::name`](crate::Builder::name) is empty, too
    /// long or has control characters.
    #[error("invalid deployment name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// A model could not be retired because calls were still running on it.
    #[error(
        "cannot retire {version}: {holders} calls or pins still hold it after waiting {waited:?}"
    )]
    DrainTimeout {
        /// The model that could not be retired.
        version: String,
        /// References still held on it.
        holders: u64,
        /// How long it waited.
        waited: Duration,
    },

    /// `rollback()` with no previous model in the standby slot.
    #[error("nothing to roll back to: {}", describe_standby(.standby))]
    NothingToRollBack {
        /// What the standby slot holds instead (`None` when empty).
        standby: Option<SlotState>,
    },

    /// A bake window is running, and the operation would retire the baking model's
    /// rollback target (a swap, a canary, unstaging the previous model; in a memory-tight
    /// deployment any stage).
    #[error(
        "{version} is baking: wait for its bake window to pass, or roll back, first (this would retire its rollback target)"
    )]
    BakeInProgress {
        /// The version baking.
        version: String,
    },

    /// A canary is running: staging, unstaging or swapping would retire or bypass it
    /// mid-flight.
    #[error("canary {version} is running: promote_canary() or abort_canary() first")]
    CanaryInProgress {
        /// The canary's version.
        version: String,
    },

    /// A canary operation without a running canary.
    #[error("no canary is running (standby: {})", .standby.map_or_else(|| "empty".to_owned(), |s| s.to_string()))]
    NoCanary {
        /// What the standby slot holds instead.
        standby: Option<SlotState>,
    },

    /// A traffic share outside 0..=100 percent.
    #[error("invalid canary share {percent}: must be a percentage from 0 to 100")]
    InvalidPercent {
        /// The share given.
        percent: f64,
    },

    /// An outcome reported for a version that is not loaded.
    #[error(
        "version {version} is not loaded; outcomes can only be recorded for a loaded model (active, candidate or previous)"
    )]
    UnknownVersion {
        /// The version given.
        version: String,
    },

    /// The loader passed to `stage_with` failed.
    #[error("loading candidate {version} failed: {source}")]
    Load {
        /// The candidate's version.
        version: String,
        /// The loader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The retirer is still dropping earlier models: retiring another would let models
    /// pile up in memory (see [`Builder::max_retiring`](crate::Builder::max_retiring)).
    #[error(
        "cannot retire {version}: the retirer is still dropping {dropping} after waiting {waited:?}; try again when it is done"
    )]
    RetireBacklog {
        /// The model that was to be retired (it stays loaded).
        version: String,
        /// The models still waiting to be dropped.
        dropping: String,
        /// How long it waited for room.
        waited: Duration,
    },

    /// The model panicked while bluegreen asked it something before it could be staged
    /// (its [`info`](crate::Model::info)); it was refused and dropped.
    #[error("model {version} panicked in {during}: {message}")]
    ModelPanicked {
        /// The model's version.
        version: String,
        /// What was called.
        during: &'static str,
        /// The panic message.
        message: String,
    },

    /// The version (with this content) is banned by the journal: it was rolled back,
    /// refused by its gates or aborted as a canary. Lift the ban with
    /// [`unban`](crate::BlueGreen::unban), or publish new content (a new hash is a new
    /// candidate).
    #[error(
        "version {version}{} is banned ({reason}); unban it explicitly or publish new content",
        content.map(|h| format!(" (content {})", h.short())).unwrap_or_default()
    )]
    Banned {
        /// The banned label.
        version: String,
        /// The banned content hash (`None` for a label staged without one).
        content: Option<ContentHash>,
        /// Why it was banned, by whom.
        reason: String,
    },

    /// A version's files no longer hash to what was loaded (or, at start-up, to what the
    /// journal recorded as live under this label): it was replaced in place. The new bytes
    /// are not loaded under the old label.
    #[error(
        "version {version} was replaced in place: {} recorded content {}, its files now hash to {}; publish the new bytes under a new version label",
        if *.at_start { "the journal" } else { "the loaded model has" },
        .expected.short(),
        .found.short()
    )]
    ContentChanged {
        /// The label.
        version: String,
        /// The content loaded (or recorded as live).
        expected: ContentHash,
        /// What its files hash to now.
        found: ContentHash,
        /// Whether this was found at start-up, against the journal.
        at_start: bool,
    },

    /// The journal could not record the decision, so it was not taken (see the
    /// [journal docs](crate::journal#when-the-journal-cannot-be-written)). The live model
    /// keeps serving.
    #[cfg(feature = "journal")]
    #[error("not done: the journal could not record it: {0}")]
    Journal(#[from] crate::journal::JournalError),
    /// The candidate was refused in quarantine (see
    /// [`stage_quarantined`](crate::BlueGreen::stage_quarantined)): the report's
    /// [`refusal`](crate::quarantine::QuarantineReport::refusal) names the cause. It was
    /// never loaded into this process.
    #[cfg(feature = "quarantine")]
    #[error("candidate {} refused in quarantine: {}", .0.version, .0.refusal.as_ref().map_or_else(|| "no refusal recorded".to_owned(), ToString::to_string))]
    Quarantined(Box<crate::validation::quarantine::QuarantineReport>),

    /// [`stage_quarantined`](crate::BlueGreen::stage_quarantined) on a deployment built
    /// without [`Builder::quarantine`](crate::Builder::quarantine).
    #[cfg(feature = "quarantine")]
    #[error("no quarantine is configured: build the deployment with Builder::quarantine(...)")]
    NoQuarantine,

    /// A background thread could not be started.
    #[error("could not start the {what} thread: {source}")]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn describe_standby(standby: &Option<SlotState>) -> String {
    match standby {
        None => "the standby slot is empty".to_owned(),
        Some(SlotState::RolledBack) => {
            "the standby model is the one just rolled back from; stage a candidate and swap to move forward".to_owned()
        }
        Some(state) => format!(
            "the standby slot holds a {state} candidate, not a previous version"
        ),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
