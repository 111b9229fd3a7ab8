//! Staging through quarantine: the candidate is qualified in a child process first (see
//! [`crate::quarantine`]), and loaded into this process only if it passed.

use std::path::Path;

use super::bluegreen::{BlueGreen, checked_version};
use super::error::{Error, Result};
use super::report::StageReport;
use crate::model::Model;
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
        version: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<StageReport> {
        let quarantine = self
            .inner
            .config
            .quarantine
            .clone()
            .ok_or(Error::NoQuarantine)?;
        self.stage_quarantined_with(version, path, move |p| quarantine.load(p))
    }

    /// Like [`stage_quarantined`](Self::stage_quarantined), loading a candidate that
    /// passed with `load` instead of the quarantine's own loader (the repository watcher
    /// uses its loader this way).
    ///
    /// # Errors
    /// As [`stage_quarantined`](Self::stage_quarantined).
    pub fn stage_quarantined_with<F, E>(
        &self,
        version: impl Into<String>,
        path: impl AsRef<Path>,
        load: F,
    ) -> Result<StageReport>
    where
        F: FnOnce(&Path) -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = path.as_ref();
        let version: String = checked_version(version.into())?.into();
        self.refuse_before_quarantine(&version)?;
        let report = self.quarantine(&version, path)?;
        if !report.passed() {
            return Err(Error::Quarantined(Box::new(report)));
        }
        let expected = report.content_hash;
        let mut changed = false;
        let staged = self.stage_inner(
            version,
            || {
                let model = load(path).map_err(Into::into)?;
                if expected.is_some() && fingerprint(path) != expected {
                    changed = true;
                    return Err("changed after quarantine".into());
                }
                Ok::<M, Box<dyn std::error::Error + Send + Sync>>(model)
            },
            true,
        );
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
        let quarantine = self
            .inner
            .config
            .quarantine
            .as_ref()
            .ok_or(Error::NoQuarantine)?;
        let version: String = checked_version(version.into())?.into();
        let candidate =
            std::path::absolute(path.as_ref()).unwrap_or_else(|_| path.as_ref().to_path_buf());
        let report = quarantine.qualify(&version, &candidate);
        self.record_quarantine(&report);
        Ok(report)
    }

    /// Whether the deployment has a quarantine configured.
    pub fn has_quarantine(&self) -> bool {
        self.inner.config.quarantine.is_some()
    }

    fn record_quarantine(&self, report: &QuarantineReport) {
        let mut st = self.inner.state.lock();
        if !report.passed() {
            st.quarantine_refusals += 1;
        }
        st.last_quarantine = Some(report.clone());
    }

    /// The refusals `stage` would make anyway, made before spending a child on it.
    fn refuse_before_quarantine(&self, version: &str) -> Result<()> {
        let inner = &*self.inner;
        let st = inner.state.lock();
        inner.refuse_during_canary(&st)?;
        if inner.config.memory_tight {
            inner.refuse_during_bake(&st)?;
        }
        if inner.active.load().version == version {
            return Err(Error::VersionInUse {
                version: version.to_owned(),
                slot: "active",
            });
        }
        Ok(())
    }
}
