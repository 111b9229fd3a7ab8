//! The [`Watcher`] handle and its thread: configuration ([`WatcherBuilder`]), the event
//! loop that wakes on a file-system notification or a poll, and shutdown.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use notify::{RecursiveMode, Watcher as _};

use super::events::{Backend, WatchEvent, WatchStatus};
use super::policy::WatchPolicy;
use super::worker::Worker;
use crate::deployment::BlueGreen;
use crate::model::Model;
use crate::rollout::repository::{Repository, RepositoryError, VersionDir};

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
    /// [`quarantine`](WatcherBuilder::quarantine) was asked for, but the deployment was
    /// built without [`Builder::quarantine`](crate::Builder::quarantine).
    #[cfg(feature = "quarantine")]
    #[error(
        "the watcher quarantines candidates, but the deployment has no quarantine: build it with Builder::quarantine(...)"
    )]
    NoQuarantine,
}

pub(super) type Callback = Box<dyn Fn(&WatchEvent) + Send + Sync>;

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
    quarantine: Option<String>,
}

impl WatcherBuilder {
    /// What to do with a new target (default [`WatchPolicy::AutoPromote`]).
    #[must_use]
    pub fn policy(mut self, policy: WatchPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Fleet mode: converge to the version named in the manifest file at `path` (see
    /// [`read_desired_version`](crate::repository::read_desired_version) for its format) instead of the newest version. The file's
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

    /// Qualifies each target in a quarantine child before loading it: the file `file` of
    /// the version folder (e.g. `model.onnx`) goes through the deployment's
    /// [`Quarantine`](crate::quarantine::Quarantine) first, and `loader` runs only for a
    /// candidate that passed ([`BlueGreen::stage_quarantined_with`]). A refusal is reported
    /// as [`RefusalKind::Quarantine`](super::RefusalKind::Quarantine), naming the cause.
    /// The deployment must have a quarantine ([`WatchError::NoQuarantine`] otherwise).
    #[cfg(feature = "quarantine")]
    #[must_use]
    pub fn quarantine(mut self, file: impl Into<String>) -> Self {
        self.quarantine = Some(file.into());
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
        #[cfg(feature = "quarantine")]
        if self.quarantine.is_some() && !deployment.has_quarantine() {
            return Err(WatchError::NoQuarantine);
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
            state: Mutex::new(WatchStatus::before_first_look(
                self.repo.root().to_path_buf(),
                self.manifest.clone(),
                self.policy,
                backend,
                fallback_reason,
            )),
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
            quarantine: self.quarantine,
            shared: Arc::clone(&shared),
            handled: HashMap::new(),
            handled_desired: HashSet::new(),
            desired: None,
            reported_once: HashSet::new(),
            reported_error: None,
            convergence: Default::default(),
            poll: self.poll_interval,
            retry: None,
            why_not: None,
            live_content: None,
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
/// versions out to a [`BlueGreen`] deployment; see the [module docs](crate::watch).
///
/// Dropping the watcher (or [`stop`](Self::stop)) ends its thread, after any operation in
/// progress (a load, a validation) finishes.
pub struct Watcher {
    shared: Arc<Shared>,
    wake: Sender<()>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<WatchStatus>,
    pub(super) scanned: std::sync::Condvar,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, WatchStatus> {
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
            quarantine: None,
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

pub(super) fn start_notify(
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
