//! What the watcher does with a target: [`WatchPolicy`] (promote, or stage and dry-run),
//! and how the deployment's answer becomes a promotion, a refusal or a retry.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::PoisonError;
use std::time::SystemTime;

use super::events::{Refusal, RefusalKind, WatchEvent};
use super::worker::{Outcome, Worker, no_message};
use crate::deployment::Error;
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
        let lock = self.op_lock.clone();
        let _op = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(PoisonError::into_inner));
        let version = target.version.clone();

        // Fleet mode going back to the previous model: roll back instead of loading it.
        if self.manifest.is_some() && self.back_to_previous(&version) {
            return Outcome::Done;
        }

        tracing::info!(target: "bluegreen::watch", %version, policy = %self.policy, "staging");
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
            Some(file) => {
                self.bg
                    .stage_quarantined_with(version.clone(), target.file(file), |_| load())
            }
            _ => self.bg.stage_with(version.clone(), load),
        };
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

    pub(super) fn refuse_or_defer(&mut self, version: &str, e: Error) -> Outcome {
        let reason = e.to_string();
        let (kind, report) = match e {
            Error::Load { .. } => (RefusalKind::Load, None),
            Error::ValidationFailed(report) => (RefusalKind::Validation, Some(*report)),
            Error::WarmupFailed { .. } => (RefusalKind::Warmup, None),
            #[cfg(feature = "quarantine")]
            Error::Quarantined(report) => (RefusalKind::Quarantine, report.validation.clone()),
            #[cfg(feature = "quarantine")]
            Error::NoQuarantine => (RefusalKind::Other, None),
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
        self.emit(WatchEvent::Refused(refusal));
    }
}
