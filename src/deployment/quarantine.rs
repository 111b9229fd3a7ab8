//! Staging through quarantine: the candidate is qualified in a child process first (see
//! [`crate::quarantine`]), and loaded into this process only if it passed.

use std::path::Path;

use super::actor::Actor;
use super::admin::unloaded;
use super::audit::record;
use super::bluegreen::{BlueGreen, Inner, checked_identity, checked_version};
use super::error::{Error, Result};
use super::report::StageReport;
use crate::journal::{EventKind, Value};
use crate::model::Model;
use crate::slot::Identity;
use crate::validation::quarantine::{QuarantineError, QuarantineReport, fingerprint};

impl<M: Model> BlueGreen<M> {
    /// Qualifies the candidate file at `path` in a quarantine child (the deployment's
    /// [`Quarantine`](crate::quarantine::Quarantine)), then — only if it passed — loads it
    /// into this process with the quarantine's loader and stages it like
    /// [`stage_with`](Self::stage_with). Its gates run again at [`swap`](Self::swap).
    ///
    /// The child runs without the admin lock: the deployment stays fully operable (stage,
    /// swap, rollback) while it runs, and the live model serves throughout. The result is
    /// recorded as [`Status::last_quarantine`](crate::Status::last_quarantine) and logged
    /// (target `bluegreen::quarantine`) with the child's peak memory, CPU time and
    /// duration, and returned in [`StageReport::quarantine`].
    ///
    /// # Errors
    /// [`Error::Quarantined`] when the child refused it (the report's `refusal` names the
    /// cause) or the file changed after it passed; [`Error::NoQuarantine`] without a
    /// configured quarantine; otherwise what [`stage_with`](Self::stage_with) returns.
    pub fn stage_quarantined(
        &self,
        identity: impl Into<Identity>,
        path: impl AsRef<Path>,
    ) -> Result<StageReport> {
        self.inner
            .stage_quarantined(&Actor::Application, identity.into(), path.as_ref())
    }

    /// Like [`stage_quarantined`](Self::stage_quarantined), loading a candidate that
    /// passed with `load` instead of the quarantine's own loader (the repository watcher
    /// uses its loader this way).
    ///
    /// # Errors
    /// As [`stage_quarantined`](Self::stage_quarantined).
    pub fn stage_quarantined_with<F, E>(
        &self,
        identity: impl Into<Identity>,
        path: impl AsRef<Path>,
        load: F,
    ) -> Result<StageReport>
    where
        F: FnOnce(&Path) -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.inner
            .stage_quarantined_with(&Actor::Application, identity.into(), path.as_ref(), load)
    }

    /// Qualifies the candidate file at `path` as `version` in a quarantine child without
    /// staging it (a dry run, e.g. for a CI job), recording the result in the status.
    ///
    /// # Errors
    /// [`Error::NoQuarantine`] without a configured quarantine. A refusal is not an error
    /// here: it is in the returned report.
    pub fn quarantine(
        &self,
        version: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<QuarantineReport> {
        self.inner.quarantine(version.into(), path.as_ref())
    }

    /// Whether the deployment has a quarantine configured.
    pub fn has_quarantine(&self) -> bool {
        self.inner.config.quarantine.is_some()
    }
}

impl<M: Model> Inner<M> {
    pub(super) fn stage_quarantined(
        &self,
        actor: &Actor,
        identity: Identity,
        path: &Path,
    ) -> Result<StageReport> {
        let quarantine = self.config.quarantine.clone().ok_or(Error::NoQuarantine)?;
        self.stage_quarantined_with(actor, identity, path, move |p| quarantine.load(p))
    }

    pub(super) fn stage_quarantined_with<F, E>(
        &self,
        actor: &Actor,
        identity: Identity,
        path: &Path,
        load: F,
    ) -> Result<StageReport>
    where
        F: FnOnce(&Path) -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let identity = checked_identity(identity)?;
        self.refuse_before_quarantine(&identity)?;
        let report = self.quarantine(identity.version().to_owned(), path)?;
        if !report.passed() {
            self.record_quarantine_refusal(actor, &identity, &report);
            return Err(Error::Quarantined(Box::new(report)));
        }
        let expected = report.content_hash;
        let mut changed = false;
        let staged = self.stage_with(actor, identity.clone(), || {
            let model = load(path).map_err(Into::into)?;
            if expected.is_some() && fingerprint(path) != expected {
                changed = true;
                return Err("changed after quarantine".into());
            }
            Ok::<M, Box<dyn std::error::Error + Send + Sync>>(model)
        });
        match staged {
            Ok(stage) => Ok(StageReport {
                quarantine: Some(report),
                ..stage
            }),
            Err(_) if changed => {
                let mut report = report;
                report.refusal = Some(QuarantineError::Changed {
                    path: path.to_path_buf(),
                });
                self.record_quarantine(&report);
                tracing::warn!(target: "bluegreen::quarantine", version = %report.version,
                    "the candidate file changed after it passed quarantine; not staged");
                Err(Error::Quarantined(Box::new(report)))
            }
            Err(e) => Err(e),
        }
    }

    fn quarantine(&self, version: String, path: &Path) -> Result<QuarantineReport> {
        let quarantine = self.config.quarantine.as_ref().ok_or(Error::NoQuarantine)?;
        let version: String = checked_version(version)?.into();
        let candidate = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let report = quarantine.qualify(&version, &candidate);
        self.record_quarantine(&report);
        Ok(report)
    }

    fn record_quarantine(&self, report: &QuarantineReport) {
        let mut st = self.state.lock();
        if !report.passed() {
            st.quarantine_refusals += 1;
        }
        st.last_quarantine = Some(report.clone());
    }

    /// Records a refusal in quarantine in the journal; one that says the candidate itself
    /// is bad (its gates, a crash, a cap, garbage) bans it like a gate refusal, one that
    /// says the set-up is wrong (no hook, no loader, a child that could not start, a load
    /// failure) does not.
    fn record_quarantine_refusal(
        &self,
        actor: &Actor,
        identity: &Identity,
        report: &QuarantineReport,
    ) {
        let ban = matches!(
            report.refusal,
            Some(
                QuarantineError::Refused(_)
                    | QuarantineError::Crashed { .. }
                    | QuarantineError::ExceededMemory { .. }
                    | QuarantineError::ExceededCpu { .. }
                    | QuarantineError::ExceededWallTime { .. }
                    | QuarantineError::Garbage { .. }
                    | QuarantineError::Exited { .. }
            )
        );
        let reason = report.refusal.as_ref().map_or_else(
            || "refused in quarantine".to_owned(),
            |r| format!("quarantine: {r}"),
        );
        let active = self.active.load_full();
        let _ = self.audit.fact(|| {
            let row = record(EventKind::Refusal, &active, actor)
                .subject(unloaded(identity))
                .ban(ban)
                .reason(reason);
            match &report.validation {
                Some(v) => row.detail("report", Value::Report(Box::new(v.clone()))),
                None => row,
            }
        });
    }

    /// The refusals `stage` would make anyway, made before spending a child on it.
    fn refuse_before_quarantine(&self, identity: &Identity) -> Result<()> {
        self.audit.ready()?;
        self.audit.check_ban(identity)?;
        let st = self.state.lock();
        self.refuse_during_canary(&st)?;
        if self.config.memory_tight {
            self.refuse_during_bake(&st)?;
        }
        if self.active.load().version == identity.version() {
            return Err(Error::VersionInUse {
                version: identity.version().to_owned(),
                slot: "active",
            });
        }
        Ok(())
    }
}
