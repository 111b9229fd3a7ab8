//! One look at the repository: find the target version, decide whether to act, and report
//! what happened. Runs on the watcher thread.

use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::convergence::Convergence;
use super::events::WatchEvent;
use super::policy::WatchPolicy;
use super::retry::Retry;
use super::watcher::{Callback, Shared};
use crate::deployment::{Actor, BlueGreen};
use crate::model::Model;
use crate::rollout::content::FileStamp;
use crate::rollout::repository::{MarkerStamp, Repository, VersionDir, compare_versions};
use crate::slot::Identity;

/// The watcher thread's state.
pub(super) struct Worker<M: Model, F> {
    pub(super) repo: Repository,
    pub(super) policy: WatchPolicy,
    pub(super) manifest: Option<PathBuf>,
    pub(super) bg: Arc<BlueGreen<M>>,
    pub(super) loader: F,
    pub(super) callbacks: Vec<Callback>,
    pub(super) op_lock: Option<Arc<Mutex<()>>>,
    /// The file of a version folder to qualify in quarantine before loading.
    pub(super) quarantine: Option<String>,
    pub(super) shared: Arc<Shared>,
    /// Newest-version mode: versions acted on (or skipped), with the marker seen then.
    pub(super) handled: HashMap<String, Option<MarkerStamp>>,
    /// Fleet mode: (version, marker) acted on since the desired version last changed.
    pub(super) handled_desired: HashSet<(String, Option<MarkerStamp>)>,
    /// Fleet mode: the desired version last read.
    pub(super) desired: Option<String>,
    /// (version, reason) of `Waiting` and `Deferred` events already reported.
    pub(super) reported_once: HashSet<(String, String)>,
    /// The last read error reported (reported again only when it changes).
    pub(super) reported_error: Option<String>,
    /// Looks to the target, and the refusal in the way.
    pub(super) convergence: Convergence,
    /// The poll interval: the first backoff step.
    pub(super) poll: Duration,
    /// A target that got "not now", and when to try it again.
    pub(super) retry: Option<Retry>,
    /// Why the target (this version) is not live, in words, for the convergence report.
    pub(super) why_not: Option<(String, String)>,
    /// The live version's files as last seen, and their identity: rehashed only when the
    /// fingerprint changes.
    pub(super) live_content: Option<(String, Vec<FileStamp>, Identity)>,
}

/// What the deployment's answer means for the watcher.
pub(super) enum Outcome {
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
    pub(super) fn tick(&mut self) {
        let result = self.look();
        let active = self.bg.active().version().to_owned();
        let mut st = self.shared.lock();
        st.converged = st.target.as_ref().is_none_or(|t| *t == active);
        st.divergence = if st.converged {
            None
        } else {
            let target = st.target.clone().unwrap_or_default();
            Some(
                self.why_not
                    .as_ref()
                    .filter(|(v, _)| *v == target)
                    .map(|(_, why)| why.clone())
                    .or_else(|| st.waiting.clone())
                    .unwrap_or_else(|| {
                        format!(
                            "{target} was acted on already and {active} serves (rolled back or moved by hand); \
                             publish it again or change the manifest to try again"
                        )
                    }),
            )
        };
        let scan = st.scans + 1;
        self.convergence.after_look(&mut st, &active, scan);
        st.active = Some(active);
        st.scans = scan;
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
    pub(super) fn look(&mut self) -> Result<(), String> {
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
        self.forget_gone(&versions);
        self.check_live_content(&versions);

        let target = match self.manifest.clone() {
            None => self.newest(&versions),
            Some(path) => self.desired(&path, &versions)?,
        };
        let Some(target) = target else {
            self.clear_retry();
            return Ok(());
        };

        let key = (target.version.clone(), target.marker);
        let seen = match &self.manifest {
            None => self.handled.get(&key.0) == Some(&key.1),
            Some(_) => self.handled_desired.contains(&key),
        };
        if seen || self.backing_off(&target) {
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
        match outcome {
            Outcome::Retry => self.schedule_retry(&target),
            Outcome::Done => {
                self.clear_retry();
                match &self.manifest {
                    None => {
                        self.handled.insert(key.0, key.1);
                    }
                    Some(_) => {
                        self.handled_desired.insert(key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets what it remembered about versions no longer in the repository, so its
    /// memory follows the repository, not its history.
    fn forget_gone(&mut self, versions: &[VersionDir]) {
        let present =
            |v: &str| versions.iter().any(|d| d.version == v) || self.desired.as_deref() == Some(v);
        self.handled.retain(|v, _| present(v));
        self.reported_once.retain(|(v, _)| present(v));
    }

    /// Compares the live version's files with what the serving model was loaded from
    /// (rehashing only when their fingerprint changed); a replacement in place is
    /// reported once per new hash, and never loaded under the same name.
    fn check_live_content(&mut self, versions: &[VersionDir]) {
        let pinned = self.bg.active();
        let (version, loaded) = (pinned.version().to_owned(), pinned.content());
        drop(pinned);
        let Some(loaded) = loaded else { return };
        let Some(dir) = versions.iter().find(|v| v.version == version) else {
            return;
        };
        let Ok(stamps) = self.repo.fingerprint(dir) else {
            return;
        };
        let cached = self
            .live_content
            .as_ref()
            .filter(|(v, s, _)| *v == version && *s == stamps)
            .map(|(_, _, id)| id.clone());
        let identity = match cached {
            Some(id) => id,
            None => match self.repo.identity(dir) {
                Ok(id) => {
                    self.live_content = Some((version.clone(), stamps, id.clone()));
                    id
                }
                Err(_) => return,
            },
        };
        let Some(found) = identity.content() else {
            return;
        };
        if found == loaded {
            self.shared.lock().content_changed = None;
            return;
        }
        let _ = self.bg.acting_as(Actor::Watcher).check_content(&identity);
        let note = format!(
            "{version}: files hash to {} but the serving model was loaded from {}",
            found.short(),
            loaded.short()
        );
        if self
            .reported_once
            .insert((version.clone(), format!("content {found}")))
        {
            tracing::error!(target: "bluegreen::watch", %version, %loaded, %found,
                "the live version was replaced in place; not loading it under the same name");
            self.emit(WatchEvent::ContentChanged {
                version,
                loaded,
                found,
            });
        }
        self.shared.lock().content_changed = Some(note);
    }

    /// Newest-version mode: the newest complete version; incomplete newer ones reported.
    pub(super) fn newest(&mut self, versions: &[VersionDir]) -> Option<VersionDir> {
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

    pub(super) fn waiting(&mut self, version: &str, reason: String) {
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

    pub(super) fn emit(&self, event: WatchEvent) {
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
pub(super) fn no_message(payload: &(dyn std::any::Any + Send)) -> String {
    crate::model::panic_message(payload).unwrap_or_else(|| "(no message)".to_owned())
}
