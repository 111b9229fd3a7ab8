//! What the watcher reports: [`WatchEvent`]s as they happen, [`Refusal`]s, and the
//! [`WatchStatus`] snapshot.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::WatchPolicy;
use crate::deployment::{RollbackReport, StageReport, SwapReport};
use crate::slot::ContentHash;
use crate::validation::validate::ValidationReport;

/// How the watcher learns about changes.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// File-system notifications (inotify, FSEvents, …), plus a periodic look.
    Notify,
    /// Periodic looks only.
    Poll,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Notify => "notify",
            Backend::Poll => "poll",
        })
    }
}

/// At which step a candidate was refused.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The loader failed (missing or corrupt files).
    Load,
    /// A gate failed (in a swap, or in the dry run of [`WatchPolicy::StageOnly`]).
    Validation,
    /// Warm-up failed.
    Warmup,
    /// The journal bans this version with these bytes (it was rolled back or refused
    /// before, maybe before a restart); unban it or publish new bytes.
    Banned,
    /// Refused in a quarantine child (see
    /// [`WatcherBuilder::quarantine`](super::WatcherBuilder::quarantine)); the reason names
    /// the cause. It was never loaded into the serving process.
    Quarantine,
    /// The deployment refused the operation for another reason.
    Other,
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalKind::Load => "load",
            RefusalKind::Validation => "validation",
            RefusalKind::Warmup => "warm-up",
            RefusalKind::Banned => "banned",
            RefusalKind::Quarantine => "quarantine",
            RefusalKind::Other => "other",
        })
    }
}

/// A candidate the watcher did not promote, and why. The live model kept serving.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The refused version.
    pub version: String,
    /// At which step.
    pub kind: RefusalKind,
    /// The error, in words.
    pub reason: String,
    /// The gates' report, when validation ran.
    pub report: Option<ValidationReport>,
    /// When it was refused.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub at: SystemTime,
}

/// Something the watcher did or noticed; passed to [`on_event`](crate::watch::WatcherBuilder::on_event)
/// callbacks and kept as [`WatchStatus::last_event`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// The target version is not usable yet: it has no completion marker (still being
    /// copied), or, in fleet mode, it is not in this replica's repository. Reported once
    /// per version and reason.
    Waiting {
        /// The version.
        version: String,
        /// Why it is not acted on.
        reason: String,
    },
    /// A version was staged as the candidate.
    Staged(StageReport),
    /// A staged candidate's dry-run validation ([`WatchPolicy::StageOnly`]).
    Validated(ValidationReport),
    /// A candidate passed its gates and took traffic.
    Promoted(SwapReport),
    /// Fleet mode: the desired version was the previous model; traffic went back to it.
    RolledBack(RollbackReport),
    /// A candidate was refused; the live model keeps serving.
    Refused(Refusal),
    /// The deployment could not act now (a drain timeout, a bake or canary in progress);
    /// tried again on every look, reported once per version and reason.
    Deferred {
        /// The version the watcher wanted to act on.
        version: String,
        /// The deployment's answer.
        reason: String,
    },
    /// The live version's files were replaced in place: they no longer hash to what the
    /// serving model was loaded from. The model keeps serving; the new bytes are not
    /// loaded under this name. Reported once per new hash.
    ContentChanged {
        /// The version.
        version: String,
        /// What the serving model was loaded from.
        loaded: ContentHash,
        /// What its files hash to now.
        found: ContentHash,
    },
    /// The repository or the manifest could not be read. Reported once per distinct
    /// message.
    ScanFailed {
        /// What went wrong.
        error: String,
    },
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchEvent::Waiting { version, reason } => write!(f, "waiting for {version}: {reason}"),
            WatchEvent::Staged(r) => write!(f, "staged {}", r.version),
            WatchEvent::Validated(r) => write!(
                f,
                "dry run of {}: {}",
                r.candidate,
                if r.passed() {
                    "passed".to_owned()
                } else {
                    format!("failed: {}", r.failure_summary())
                }
            ),
            WatchEvent::Promoted(r) => write!(f, "promoted {} (was {})", r.to, r.from),
            WatchEvent::RolledBack(r) => write!(f, "rolled back to {} (was {})", r.to, r.from),
            WatchEvent::Refused(r) => write!(f, "refused {} ({}): {}", r.version, r.kind, r.reason),
            WatchEvent::Deferred { version, reason } => {
                write!(f, "deferred {version}: {reason}")
            }
            WatchEvent::ContentChanged {
                version,
                loaded,
                found,
            } => write!(
                f,
                "{version} replaced in place: loaded {}, files now {}",
                loaded.short(),
                found.short()
            ),
            WatchEvent::ScanFailed { error } => write!(f, "scan failed: {error}"),
        }
    }
}

/// A snapshot of a [`Watcher`](crate::Watcher); from [`Watcher::status`](crate::Watcher::status).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct WatchStatus {
    /// The repository directory.
    pub repository: PathBuf,
    /// The desired-version manifest, in fleet mode.
    pub manifest: Option<PathBuf>,
    /// What the watcher does with a target.
    pub policy: WatchPolicy,
    /// How it learns about changes ([`Backend::Poll`] after a fallback).
    pub backend: Backend,
    /// Why notify is not used, when [`backend`](Self::backend) is [`Backend::Poll`]
    /// although notifications were wanted.
    pub fallback_reason: Option<String>,
    /// Fleet mode: the version the manifest names, as last read.
    pub desired: Option<String>,
    /// The version the watcher is converging to (newest complete, or desired).
    pub target: Option<String>,
    /// What the target is waiting for, if it cannot be acted on yet.
    pub waiting: Option<String>,
    /// The refusal that keeps the watcher from its target, while it stands: this replica
    /// will not serve the version it is asked to serve (in fleet mode, the manifest's)
    /// until the target changes or its files are published again. Cleared when the target
    /// changes or is live. A fleet's controller aborts a rollout on it.
    pub refusing: Option<Refusal>,
    /// The look (numbered as [`scans`](Self::scans) counts them) that first read the
    /// current target.
    pub target_since_scan: Option<u64>,
    /// The look at the end of which the current target was first live; `None` while it is
    /// not. With [`target_since_scan`](Self::target_since_scan), how many looks convergence
    /// took.
    pub converged_since_scan: Option<u64>,
    /// The version serving all traffic, as of the last look: the *actual* version, to
    /// compare with [`target`](Self::target) (the *desired* one).
    pub active: Option<String>,
    /// Whether the active version is the target (or there is no target).
    pub converged: bool,
    /// Why it is not, in words — waiting for files, refused (and how), deferred (and
    /// until when), banned, staged for an operator — when not converged.
    pub divergence: Option<String>,
    /// When the watcher will try the target again after a "not now" answer (a drain
    /// timeout, a full retirer, a bake or canary in progress), backing off exponentially.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::opt_unix_secs")
    )]
    pub next_retry: Option<SystemTime>,
    /// The live version's files were replaced in place (see [`WatchEvent::ContentChanged`]).
    pub content_changed: Option<String>,
    /// Looks at the repository so far (each notification burst and each poll is one).
    pub scans: u64,
    /// When the last look finished.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::opt_unix_secs")
    )]
    pub last_scan: Option<SystemTime>,
    /// The last problem reading the repository or manifest (cleared by a clean look).
    pub last_error: Option<String>,
    /// Versions present without their completion marker.
    pub incomplete: Vec<String>,
    /// Candidates promoted by this watcher.
    pub promoted: u64,
    /// Candidates refused by this watcher (all time; [`refused`](Self::refused) keeps the
    /// last few).
    pub refusals: u64,
    /// The most recent refusals, oldest first.
    pub refused: Vec<Refusal>,
    /// The most recent event.
    pub last_event: Option<WatchEvent>,
}

impl WatchStatus {
    /// The status of a watcher that has not looked yet: nothing desired, seen or promoted.
    pub(super) fn before_first_look(
        repository: PathBuf,
        manifest: Option<PathBuf>,
        policy: WatchPolicy,
        backend: Backend,
        fallback_reason: Option<String>,
    ) -> Self {
        WatchStatus {
            repository,
            manifest,
            policy,
            backend,
            fallback_reason,
            desired: None,
            target: None,
            waiting: None,
            refusing: None,
            target_since_scan: None,
            converged_since_scan: None,
            active: None,
            converged: true,
            divergence: None,
            next_retry: None,
            content_changed: None,
            scans: 0,
            last_scan: None,
            last_error: None,
            incomplete: Vec::new(),
            promoted: 0,
            refusals: 0,
            refused: Vec::new(),
            last_event: None,
        }
    }
}
