//! Watch a model repository and roll new versions out by themselves: [`Watcher`].
//!
//! A [`Watcher`] runs one background thread next to a [`BlueGreen`] deployment. It looks at
//! a [`Repository`] (and, in fleet mode, at a desired-version manifest file) whenever the
//! file system reports a change — through the [`notify`] crate — and also every
//! [`poll_interval`](WatcherBuilder::poll_interval), so a lost or unsupported notification
//! (network file systems, some container volumes, an exhausted inotify limit) only delays a
//! rollout. When notify cannot watch at all, it falls back to polling alone
//! ([`Backend::Poll`]).
//!
//! # What it converges to
//!
//! * **Newest version** (the default): the newest *complete* version of the repository
//!   (see the [completion rule](crate::repository#the-completion-rule)). It never moves to
//!   an older version by itself.
//! * **Desired version** ([`follow_manifest`](WatcherBuilder::follow_manifest)): the
//!   version named in a manifest file — for a fleet, a Kubernetes ConfigMap mounted into
//!   every replica. Changing the file moves every replica; the version must be complete in
//!   each replica's repository. If the desired version is the standby's *previous* model,
//!   the watcher rolls back to it instantly instead of loading it again.
//!
//! # What it does with a target
//!
//! Per [`WatchPolicy`]: [`AutoPromote`](WatchPolicy::AutoPromote) stages it with
//! [`stage_with`](BlueGreen::stage_with) (the loader runs only after the old standby is
//! gone), then [`swap`](BlueGreen::swap)s, which runs every gate and warms it before any
//! request sees it; [`StageOnly`](WatchPolicy::StageOnly) stages it and runs the gates as
//! a dry run ([`validate`](BlueGreen::validate)), leaving the swap to an operator.
//!
//! A candidate that fails to load or fails a gate is **refused**: the live model keeps
//! serving, and the refusal is reported three ways — a [`WatchEvent::Refused`] to every
//! [`on_event`](WatcherBuilder::on_event) callback, a `tracing` warning (target
//! `bluegreen::watch`), and [`WatchStatus::refused`]. The deployment's own
//! [`Status`](crate::Status) shows the failed candidate in standby and counts the rejection.
//!
//! Each published version is acted on **once**: the watcher does not retry a refused
//! version in a loop (a fix is noticed when the version's marker is written again, or in
//! fleet mode when the manifest changes), and it does not fight an operator or an automatic
//! rollback by re-promoting a version it already promoted. Errors that say "not now"
//! rather than "not this model" (a drain timeout, a bake window or canary in progress) are
//! retried on the next look.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bluegreen::watch::{WatchPolicy, Watcher};
//! use bluegreen::{BlueGreen, OnnxModel};
//!
//! let bg = Arc::new(BlueGreen::new("1", OnnxModel::load("models/digits/1/model.onnx")?)?);
//! let watcher = Watcher::builder("models/digits")
//!     .policy(WatchPolicy::AutoPromote)
//!     .on_event(|e| eprintln!("watcher: {e}"))
//!     .spawn(Arc::clone(&bg), |v| OnnxModel::load(v.file("model.onnx")))?;
//! // … serve with `bg` …
//! println!("{:?}", watcher.status().refused);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use notify::{RecursiveMode, Watcher as _};

use crate::deployment::BlueGreen;
use crate::deployment::Error;
use crate::deployment::SlotState;
use crate::deployment::{RollbackReport, StageReport, SwapReport};
use crate::model::Model;
use crate::repository::{
    MarkerStamp, Repository, RepositoryError, VersionDir, compare_versions, read_desired_version,
};
use crate::validation::validate::ValidationReport;

/// How many refusals [`WatchStatus::refused`] keeps (newest last).
const KEPT_REFUSALS: usize = 16;

/// What the watcher does with a new target version.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WatchPolicy {
    /// Stage, validate (every gate), warm and swap: traffic moves if the gates pass.
    #[default]
    AutoPromote,
    /// Stage and validate as a dry run; an operator decides on the swap.
    StageOnly,
}

impl fmt::Display for WatchPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WatchPolicy::AutoPromote => "auto-promote",
            WatchPolicy::StageOnly => "stage-only",
        })
    }
}

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
    /// The deployment refused the operation for another reason.
    Other,
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalKind::Load => "load",
            RefusalKind::Validation => "validation",
            RefusalKind::Warmup => "warm-up",
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

/// Something the watcher did or noticed; passed to [`on_event`](WatcherBuilder::on_event)
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
            WatchEvent::ScanFailed { error } => write!(f, "scan failed: {error}"),
        }
    }
}

/// A snapshot of a [`Watcher`]; from [`Watcher::status`].
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
    /// Looks at the repository so far (each notification burst and each poll is one).
    pub scans: u64,
    /// When the last look finished.
    #[cfg_attr(feature = "serde", serde(serialize_with = "opt_unix_secs"))]
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

#[cfg(feature = "serde")]
fn opt_unix_secs<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => crate::serde_util::unix_secs(t, s),
        None => s.serialize_none(),
    }
}

/// Why a watcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The repository directory does not exist or is not a directory.
    #[error("model repository {} is not a directory", .0.display())]
    NoRepository(PathBuf),
    /// The manifest file cannot be read or names no version.
    #[error(transparent)]
    Manifest(RepositoryError),
    /// The watcher thread could not be started.
    #[error("could not start the watcher thread: {0}")]
    Spawn(#[source] std::io::Error),
}

type Callback = Box<dyn Fn(&WatchEvent) + Send + Sync>;

/// Configures a [`Watcher`]; from [`Watcher::builder`].
pub struct WatcherBuilder {
    repo: Repository,
    policy: WatchPolicy,
    manifest: Option<PathBuf>,
    poll_interval: Duration,
    debounce: Duration,
    notify: bool,
    callbacks: Vec<Callback>,
    op_lock: Option<Arc<Mutex<()>>>,
}

impl WatcherBuilder {
    /// What to do with a new target (default [`WatchPolicy::AutoPromote`]).
    #[must_use]
    pub fn policy(mut self, policy: WatchPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Fleet mode: converge to the version named in the manifest file at `path` (see
    /// [`read_desired_version`] for its format) instead of the newest version. The file's
    /// directory is watched, not the file, so a Kubernetes ConfigMap update — which swaps a
    /// symlinked directory rather than writing the file — is seen.
    #[must_use]
    pub fn follow_manifest(mut self, path: impl Into<PathBuf>) -> Self {
        self.manifest = Some(path.into());
        self
    }

    /// How often to look even without a notification (default 2 s). With polling alone,
    /// this is the rollout delay.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// How long to let a burst of notifications settle before looking (default 50 ms).
    #[must_use]
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// Don't use file-system notifications: poll only ([`Backend::Poll`]).
    #[must_use]
    pub fn polling_only(mut self) -> Self {
        self.notify = false;
        self
    }

    /// Calls `f` with every [`WatchEvent`], on the watcher thread. Keep it short.
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&WatchEvent) + Send + Sync + 'static) -> Self {
        self.callbacks.push(Box::new(f));
        self
    }

    /// Holds `lock` around each of the watcher's sequences (stage → swap, rollback).
    ///
    /// [`BlueGreen`] serializes single operations, but a sequence can interleave with an
    /// operator's: the watcher stages 4, an admin stages 3, the watcher's swap promotes 3.
    /// If the application also drives the deployment (an admin API), give both the same
    /// lock and hold it around the application's own sequences.
    #[must_use]
    pub fn operation_lock(mut self, lock: Arc<Mutex<()>>) -> Self {
        self.op_lock = Some(lock);
        self
    }

    /// Starts watching. `loader` turns a complete version directory into a model; it runs
    /// on the watcher thread, after the previous standby model has been released.
    ///
    /// # Errors
    /// [`WatchError::NoRepository`] if the repository directory does not exist,
    /// [`WatchError::Spawn`] if the thread cannot start. A missing or broken manifest is
    /// not an error here: it is reported ([`WatchEvent::ScanFailed`]) until it is fixed.
    pub fn spawn<M, F, E>(
        self,
        deployment: Arc<BlueGreen<M>>,
        loader: F,
    ) -> Result<Watcher, WatchError>
    where
        M: Model,
        F: Fn(&VersionDir) -> Result<M, E> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if !self.repo.root().is_dir() {
            return Err(WatchError::NoRepository(self.repo.root().to_path_buf()));
        }
        let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);

        let (backend, fallback_reason, fs_watcher) = if self.notify {
            match start_notify(&self.repo, self.manifest.as_deref(), wake_tx.clone()) {
                Ok(w) => (Backend::Notify, None, Some(w)),
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(target: "bluegreen::watch", %reason,
                        "file-system notifications unavailable; polling");
                    (Backend::Poll, Some(reason), None)
                }
            }
        } else {
            (Backend::Poll, None, None)
        };

        let shared = Arc::new(Shared {
            state: Mutex::new(WatchStatus {
                repository: self.repo.root().to_path_buf(),
                manifest: self.manifest.clone(),
                policy: self.policy,
                backend,
                fallback_reason,
                desired: None,
                target: None,
                waiting: None,
                scans: 0,
                last_scan: None,
                last_error: None,
                incomplete: Vec::new(),
                promoted: 0,
                refusals: 0,
                refused: Vec::new(),
                last_event: None,
            }),
            scanned: std::sync::Condvar::new(),
        });

        let mut worker = Worker {
            repo: self.repo,
            policy: self.policy,
            manifest: self.manifest,
            bg: deployment,
            loader,
            callbacks: self.callbacks,
            op_lock: self.op_lock,
            shared: Arc::clone(&shared),
            handled: HashMap::new(),
            handled_desired: HashSet::new(),
            desired: None,
            reported_once: HashSet::new(),
            reported_error: None,
        };
        let poll = self.poll_interval;
        let debounce = self.debounce;
        let thread = std::thread::Builder::new()
            .name("bluegreen-watch".to_owned())
            .spawn(move || {
                let _fs_watcher = fs_watcher; // keeps notifications flowing
                loop {
                    worker.tick();
                    crossbeam_channel::select! {
                        recv(stop_rx) -> _ => break,
                        recv(wake_rx) -> _ => {
                            // Let a burst (a copy in progress) settle, then look once.
                            if !debounce.is_zero() {
                                std::thread::sleep(debounce);
                            }
                            while wake_rx.try_recv().is_ok() {}
                        }
                        default(poll) => {}
                    }
                }
            })
            .map_err(WatchError::Spawn)?;
        Ok(Watcher {
            shared,
            wake: wake_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

/// Watches a model repository (and optionally a desired-version manifest) and rolls new
/// versions out to a [`BlueGreen`] deployment; see the [module docs](self).
///
/// Dropping the watcher (or [`stop`](Self::stop)) ends its thread, after any operation in
/// progress (a load, a validation) finishes.
pub struct Watcher {
    shared: Arc<Shared>,
    wake: Sender<()>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<WatchStatus>,
    scanned: std::sync::Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, WatchStatus> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Watcher {
    /// Configures a watcher for the repository at `repository` (a path or a
    /// [`Repository`] with a custom marker).
    pub fn builder(repository: impl Into<Repository>) -> WatcherBuilder {
        WatcherBuilder {
            repo: repository.into(),
            policy: WatchPolicy::AutoPromote,
            manifest: None,
            poll_interval: Duration::from_secs(2),
            debounce: Duration::from_millis(50),
            notify: true,
            callbacks: Vec::new(),
            op_lock: None,
        }
    }

    /// A snapshot of what the watcher has seen and done.
    pub fn status(&self) -> WatchStatus {
        self.shared.lock().clone()
    }

    /// Asks for a look at the repository now, without waiting for a notification or the
    /// next poll.
    pub fn rescan(&self) {
        let _ = self.wake.try_send(());
    }

    /// Blocks until the watcher has finished `scans` looks in total, or `timeout` passes.
    /// Returns whether it got there. Useful in tests and at start-up ("the first look is
    /// done").
    pub fn wait_for_scans(&self, scans: u64, timeout: Duration) -> bool {
        let guard = self.shared.lock();
        let (guard, _) = self
            .shared
            .scanned
            .wait_timeout_while(guard, timeout, |s| s.scans < scans)
            .unwrap_or_else(PoisonError::into_inner);
        guard.scans >= scans
    }

    /// Stops the watcher and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("status", &*self.shared.lock())
            .finish_non_exhaustive()
    }
}

fn start_notify(
    repo: &Repository,
    manifest: Option<&Path>,
    wake: Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reads are not changes: the watcher's own looks (listing the repository, reading
        // the manifest, loading a model) would otherwise wake it again, in a loop.
        if let Ok(e) = &event
            && matches!(e.kind, notify::EventKind::Access(_))
        {
            return;
        }
        // Any change (or a watch error) is a reason to look; a full channel means a look
        // is already pending.
        let _ = wake.try_send(());
    })?;
    w.watch(repo.root(), RecursiveMode::Recursive)?;
    if let Some(manifest) = manifest {
        let dir = manifest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let inside_repo = dir
            .canonicalize()
            .ok()
            .zip(repo.root().canonicalize().ok())
            .is_some_and(|(d, r)| d.starts_with(r));
        if !inside_repo {
            w.watch(dir, RecursiveMode::NonRecursive)?;
        }
    }
    Ok(w)
}

/// The watcher thread's state.
struct Worker<M: Model, F> {
    repo: Repository,
    policy: WatchPolicy,
    manifest: Option<PathBuf>,
    bg: Arc<BlueGreen<M>>,
    loader: F,
    callbacks: Vec<Callback>,
    op_lock: Option<Arc<Mutex<()>>>,
    shared: Arc<Shared>,
    /// Newest-version mode: versions acted on (or skipped), with the marker seen then.
    handled: HashMap<String, Option<MarkerStamp>>,
    /// Fleet mode: (version, marker) acted on since the desired version last changed.
    handled_desired: HashSet<(String, Option<MarkerStamp>)>,
    /// Fleet mode: the desired version last read.
    desired: Option<String>,
    /// (version, reason) of `Waiting` and `Deferred` events already reported.
    reported_once: HashSet<(String, String)>,
    /// The last read error reported (reported again only when it changes).
    reported_error: Option<String>,
}

/// What the deployment's answer means for the watcher.
enum Outcome {
    /// Acted on (promoted, staged, or refused for good): don't act again.
    Done,
    /// "Not now": look again next time.
    Retry,
}

impl<M, F, E> Worker<M, F>
where
    M: Model,
    F: Fn(&VersionDir) -> Result<M, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn tick(&mut self) {
        let result = self.look();
        let mut st = self.shared.lock();
        st.scans += 1;
        st.last_scan = Some(SystemTime::now());
        match result {
            Ok(()) => {
                st.last_error = None;
                drop(st);
                self.reported_error = None;
            }
            Err(error) => {
                st.last_error = Some(error.clone());
                drop(st);
                if self.reported_error.as_ref() != Some(&error) {
                    tracing::warn!(target: "bluegreen::watch", %error, "cannot read the repository");
                    self.reported_error = Some(error.clone());
                    self.emit(WatchEvent::ScanFailed { error });
                }
            }
        }
        self.shared.scanned.notify_all();
    }

    /// One look: find the target, act on it if needed. Errors are read errors.
    fn look(&mut self) -> Result<(), String> {
        let versions = self.repo.versions().map_err(|e| e.to_string())?;
        let incomplete: Vec<String> = versions
            .iter()
            .filter(|v| !v.is_complete())
            .map(|v| v.version.clone())
            .collect();
        {
            let mut st = self.shared.lock();
            st.incomplete = incomplete;
            st.waiting = None;
        }

        let target = match self.manifest.clone() {
            None => self.newest(&versions),
            Some(path) => self.desired(&path, &versions)?,
        };
        let Some(target) = target else {
            return Ok(());
        };

        let key = (target.version.clone(), target.marker);
        let seen = match &self.manifest {
            None => self.handled.get(&key.0) == Some(&key.1),
            Some(_) => self.handled_desired.contains(&key),
        };
        if seen {
            return Ok(());
        }
        let active = self.bg.active().version().to_owned();
        let act = if active == target.version {
            false
        } else if self.manifest.is_none() {
            // Newest-version mode never moves to an older version by itself.
            compare_versions(&target.version, &active).is_gt()
        } else {
            true
        };
        let outcome = if act {
            self.act(&target)
        } else {
            Outcome::Done
        };
        if let Outcome::Done = outcome {
            match &self.manifest {
                None => {
                    self.handled.insert(key.0, key.1);
                }
                Some(_) => {
                    self.handled_desired.insert(key);
                }
            }
        }
        Ok(())
    }

    /// Newest-version mode: the newest complete version; incomplete newer ones reported.
    fn newest(&mut self, versions: &[VersionDir]) -> Option<VersionDir> {
        let newest = versions.iter().rev().find(|v| v.is_complete()).cloned();
        for v in versions.iter().rev() {
            if v.is_complete() {
                break;
            }
            let reason = format!("no {} marker yet (still being copied?)", self.repo.marker());
            self.waiting(&v.version, reason);
        }
        let mut st = self.shared.lock();
        st.target = newest.as_ref().map(|v| v.version.clone());
        newest
    }

    /// Fleet mode: the desired version, if it is complete in this repository.
    fn desired(
        &mut self,
        manifest: &Path,
        versions: &[VersionDir],
    ) -> Result<Option<VersionDir>, String> {
        let desired = read_desired_version(manifest).map_err(|e| e.to_string())?;
        if self.desired.as_ref() != Some(&desired) {
            tracing::info!(target: "bluegreen::watch", %desired,
                previous = ?self.desired, "desired version changed");
            self.desired = Some(desired.clone());
            // A new desired version: everything may be acted on again (going back to a
            // version desired before included).
            self.handled_desired.clear();
        }
        {
            let mut st = self.shared.lock();
            st.desired = Some(desired.clone());
            st.target = Some(desired.clone());
        }
        match versions.iter().find(|v| v.version == desired) {
            Some(v) if v.is_complete() => Ok(Some(v.clone())),
            Some(_) => {
                let reason = format!("no {} marker yet (still being copied?)", self.repo.marker());
                self.waiting(&desired, reason);
                Ok(None)
            }
            None if self.bg.active().version() == desired => Ok(None),
            None => {
                self.waiting(&desired, "not in this replica's repository".to_owned());
                Ok(None)
            }
        }
    }

    fn waiting(&mut self, version: &str, reason: String) {
        self.shared.lock().waiting = Some(format!("{version}: {reason}"));
        if self
            .reported_once
            .insert((version.to_owned(), reason.clone()))
        {
            tracing::info!(target: "bluegreen::watch", %version, %reason, "waiting");
            self.emit(WatchEvent::Waiting {
                version: version.to_owned(),
                reason,
            });
        }
    }

    /// Stages the target and, per policy, swaps or dry-runs it.
    fn act(&mut self, target: &VersionDir) -> Outcome {
        let lock = self.op_lock.clone();
        let _op = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner));
        let version = target.version.clone();

        // Fleet mode going back to the previous model: it is still loaded and already
        // passed its gates once; roll back instead of loading it again.
        if self.manifest.is_some() {
            let status = self.bg.status();
            let previous = status
                .standby
                .as_ref()
                .is_some_and(|s| s.version == version && s.state == SlotState::Previous);
            if previous {
                match self.bg.rollback() {
                    Ok(report) => {
                        tracing::info!(target: "bluegreen::watch", to = %report.to,
                            from = %report.from, "rolled back to the desired version");
                        self.emit(WatchEvent::RolledBack(report));
                        return Outcome::Done;
                    }
                    // Fall through to loading it afresh.
                    Err(e) => {
                        tracing::info!(target: "bluegreen::watch", %version, error = %e,
                            "rollback to the desired version refused; staging it instead");
                    }
                }
            }
        }

        tracing::info!(target: "bluegreen::watch", %version, policy = %self.policy, "staging");
        let loader = &self.loader;
        // A panicking loader is a failed load, not the end of the watcher thread.
        let staged = self.bg.stage_with(version.clone(), || {
            match panic::catch_unwind(AssertUnwindSafe(|| loader(target))) {
                Ok(loaded) => loaded.map_err(Into::into),
                Err(payload) => {
                    Err(format!("the loader panicked: {}", no_message(payload.as_ref())).into())
                }
            }
        });
        match staged {
            Ok(report) => self.emit(WatchEvent::Staged(report)),
            Err(e) => return self.refuse_or_defer(&version, e),
        }
        match self.policy {
            WatchPolicy::AutoPromote => match self.bg.swap() {
                Ok(report) => {
                    if report.to != version {
                        // Only possible if someone else staged meanwhile without sharing
                        // the operation lock.
                        tracing::warn!(target: "bluegreen::watch", wanted = %version,
                            promoted = %report.to, "another candidate was promoted");
                    }
                    tracing::info!(target: "bluegreen::watch", from = %report.from,
                        to = %report.to, "promoted");
                    self.shared.lock().promoted += 1;
                    self.emit(WatchEvent::Promoted(report));
                    Outcome::Done
                }
                Err(e) => self.refuse_or_defer(&version, e),
            },
            WatchPolicy::StageOnly => match self.bg.validate() {
                Ok(report) => {
                    let passed = report.passed();
                    self.emit(WatchEvent::Validated(report.clone()));
                    if !passed {
                        let reason = format!(
                            "dry run failed: {}; the candidate stays staged, not promoted",
                            report.failure_summary()
                        );
                        self.refuse(&version, RefusalKind::Validation, reason, Some(report));
                    }
                    Outcome::Done
                }
                Err(e) => self.refuse_or_defer(&version, e),
            },
        }
    }

    fn refuse_or_defer(&mut self, version: &str, e: Error) -> Outcome {
        let reason = e.to_string();
        let (kind, report) = match e {
            Error::Load { .. } => (RefusalKind::Load, None),
            Error::ValidationFailed(report) => (RefusalKind::Validation, Some(*report)),
            Error::WarmupFailed { .. } => (RefusalKind::Warmup, None),
            Error::CandidateFailed { .. }
            | Error::InvalidVersion { .. }
            | Error::VersionInUse { .. } => (RefusalKind::Other, None),
            // Drain timeouts, bake windows, canaries, …: not a verdict on the model.
            _ => {
                // Reported once per version and reason, not on every retry.
                if self
                    .reported_once
                    .insert((version.to_owned(), format!("deferred: {reason}")))
                {
                    tracing::info!(target: "bluegreen::watch", %version, %reason, "deferred");
                    self.emit(WatchEvent::Deferred {
                        version: version.to_owned(),
                        reason,
                    });
                }
                return Outcome::Retry;
            }
        };
        self.refuse(version, kind, reason, report);
        Outcome::Done
    }

    fn refuse(
        &mut self,
        version: &str,
        kind: RefusalKind,
        reason: String,
        report: Option<ValidationReport>,
    ) {
        tracing::warn!(target: "bluegreen::watch", %version, %kind, %reason,
            "candidate refused; the live model keeps serving");
        let refusal = Refusal {
            version: version.to_owned(),
            kind,
            reason,
            report,
            at: SystemTime::now(),
        };
        {
            let mut st = self.shared.lock();
            st.refusals += 1;
            if st.refused.len() >= KEPT_REFUSALS {
                st.refused.remove(0);
            }
            st.refused.push(refusal.clone());
        }
        self.emit(WatchEvent::Refused(refusal));
    }

    fn emit(&self, event: WatchEvent) {
        for f in &self.callbacks {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(&event))) {
                tracing::error!(target: "bluegreen::watch",
                    panic = %no_message(payload.as_ref()), "an on_event callback panicked");
            }
        }
        self.shared.lock().last_event = Some(event);
    }
}

/// The panic's message, or `(no message)`.
fn no_message(payload: &(dyn std::any::Any + Send)) -> String {
    crate::validation::supervise::panic_message(payload)
        .unwrap_or_else(|| "(no message)".to_owned())
}
