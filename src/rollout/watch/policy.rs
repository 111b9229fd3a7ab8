//! What the watcher does with a target: [`WatchPolicy`] (promote, or stage and dry-run),
//! and how the deployment's answer becomes a promotion, a refusal or a retry.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use super::events::{Refusal, RefusalKind, WatchEvent};
use super::worker::{Outcome, Worker, no_message};
use crate::deployment::{Actor, Error};
use crate::model::Model;
use crate::rollout::repository::VersionDir;
use crate::validation::validate::ValidationReport;

/// How many refusals [`WatchStatus::refused`] keeps (newest last).
pub(super) const KEPT_REFUSALS: usize = 16;

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

impl<M, F, E> Worker<M, F>
where
    M: Model,
    F: Fn(&VersionDir) -> Result<M, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Stages the target and, per policy, swaps or dry-runs it.
    pub(super) fn act(&mut self, target: &VersionDir) -> Outcome {
        let version = target.version.clone();
        let fleet_back = self.manifest.is_some() && self.is_previous(&version);
        // "Not now" is found out before taking the operation lock, from a status snapshot:
        // a drain that would time out is not waited for while holding it.
        if !fleet_back && let Some(reason) = self.not_now() {
            return self.defer(&version, reason);
        }
        let lock = self.op_lock.clone();
        let _op = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner));
        // Fleet mode going back to the previous model: roll back instead of loading it.
        if fleet_back && self.back_to_previous(&version) {
            return Outcome::Done;
        }

        // What the loader will read, hashed first: the deployment keeps it with the model,
        // the journal records it, and a ban holds for these bytes only.
        let identity = match self.repo.identity(target) {
            Ok(identity) => identity,
            Err(e) => {
                let reason = format!("cannot read its files: {e}");
                self.refuse(&version, RefusalKind::Load, reason, None);
                return Outcome::Done;
            }
        };
        tracing::info!(target: "bluegreen::watch", %identity, policy = %self.policy, "staging");
        let bg_arc = Arc::clone(&self.bg);
        let bg = bg_arc.acting_as(Actor::Watcher);
        let loader = &self.loader;
        // A panicking loader is a failed load, not the end of the watcher thread.
        let load = || -> Result<M, Box<dyn std::error::Error + Send + Sync>> {
            match panic::catch_unwind(AssertUnwindSafe(|| loader(target))) {
                Ok(loaded) => loaded.map_err(Into::into),
                Err(payload) => {
                    Err(format!("the loader panicked: {}", no_message(payload.as_ref())).into())
                }
            }
        };
        let staged = match &self.quarantine {
            #[cfg(feature = "quarantine")]
            Some(file) => bg.stage_quarantined_with(identity, target.file(file), |_| load()),
            _ => bg.stage_with(identity, load),
        };
        match staged {
            Ok(report) => self.emit(WatchEvent::Staged(report)),
            Err(e) => return self.refuse_or_defer(&version, e),
        }
        match self.policy {
            WatchPolicy::AutoPromote => match bg.swap() {
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
            WatchPolicy::StageOnly => match bg.validate() {
                Ok(report) => {
                    let passed = report.passed();
                    self.emit(WatchEvent::Validated(report.clone()));
                    if passed {
                        self.why_not = Some((
                            version.clone(),
                            "staged and validated; waiting for an operator's swap (stage-only)"
                                .to_owned(),
                        ));
                    } else {
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

    pub(super) fn refuse_or_defer(&mut self, version: &str, e: Error) -> Outcome {
        let reason = e.to_string();
        let cause = super::retry::cause(&e);
        let (kind, report) = match e {
            Error::Load { .. } => (RefusalKind::Load, None),
            Error::ValidationFailed(report) => (RefusalKind::Validation, Some(*report)),
            Error::WarmupFailed { .. } => (RefusalKind::Warmup, None),
            Error::Banned { .. } => (RefusalKind::Banned, None),
            #[cfg(feature = "quarantine")]
            Error::Quarantined(report) => (RefusalKind::Quarantine, report.validation.clone()),
            #[cfg(feature = "quarantine")]
            Error::NoQuarantine => (RefusalKind::Other, None),
            Error::CandidateFailed { .. }
            | Error::InvalidVersion { .. }
            | Error::VersionInUse { .. }
            | Error::ContentChanged { .. } => (RefusalKind::Other, None),
            // Drain timeouts, a full retirer, bake windows, canaries, a journal that cannot
            // be written: not a verdict on the model.
            _ => return self.defer(version, (cause, reason)),
        };
        self.refuse(version, kind, reason, report);
        Outcome::Done
    }

    pub(super) fn refuse(
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
            // This look's number: `scans` counts the looks finished.
            self.convergence.refused(&refusal, st.scans + 1);
            st.refusals += 1;
            if st.refused.len() >= KEPT_REFUSALS {
                st.refused.remove(0);
            }
            st.refused.push(refusal.clone());
        }
        self.why_not = Some((
            version.to_owned(),
            format!("refused ({kind}): {}", refusal.reason),
        ));
        self.emit(WatchEvent::Refused(refusal));
    }
}
