//! Fleet mode: following the desired version named in a manifest file (a Kubernetes
//! ConfigMap mounted into every replica), and going back to the previous model by
//! rollback rather than by loading it again.

use std::path::Path;

use super::events::WatchEvent;
use super::worker::Worker;
use crate::deployment::{Actor, SlotState};
use crate::model::Model;
use crate::rollout::repository::{VersionDir, read_desired_version};

impl<M, F, E> Worker<M, F>
where
    M: Model,
    F: Fn(&VersionDir) -> Result<M, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Fleet mode: the desired version, if it is complete in this repository.
    pub(super) fn desired(
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

    /// Whether `version` is the previous model, still loaded as the rollback target.
    pub(super) fn is_previous(&self, version: &str) -> bool {
        self.bg
            .status()
            .previous
            .is_some_and(|s| s.version == version && s.state == SlotState::Previous)
    }

    /// Fleet mode, the desired version being the previous model: it is still loaded and
    /// already passed its gates once, so roll back to it (as the watcher, which bans
    /// nothing: the manifest may ask for the version left again). Whether that happened
    /// (when refused, the caller loads it afresh).
    pub(super) fn back_to_previous(&mut self, version: &str) -> bool {
        if !self.is_previous(version) {
            return false;
        }
        match self.bg.acting_as(Actor::Watcher).rollback() {
            Ok(report) => {
                tracing::info!(target: "bluegreen::watch", to = %report.to,
                    from = %report.from, "rolled back to the desired version");
                self.emit(WatchEvent::RolledBack(report));
                true
            }
            Err(e) => {
                tracing::info!(target: "bluegreen::watch", %version, error = %e,
                    "rollback to the desired version refused; staging it instead");
                false
            }
        }
    }
}
