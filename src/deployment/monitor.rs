//! The bake monitor: one thread per deployment (when a [`Bake`](crate::Bake) is configured)
//! that looks at the baking model and rolls back on a breach.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::bluegreen::Inner;
use super::error::{Error, Result};
use super::state::BakeRun;
use super::status::SlotState;
use crate::model::Model;
use crate::traffic::bake::AutoRollback;

pub(super) struct Monitor {
    pub(super) stop: Option<crossbeam_channel::Sender<()>>,
    pub(super) handle: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    pub(super) fn start<M: Model>(inner: Arc<Inner<M>>, every: Duration) -> Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name("bluegreen-bake".to_owned())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    inner.check_bake();
                }
            })
            .map_err(|source| Error::Spawn {
                what: "bake monitor",
                source,
            })?;
        Ok(Self {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            // The last `BlueGreen` can be released on the monitor thread itself (by an
            // auto-rollback hook holding it); a thread cannot join itself, and it is about
            // to leave its loop anyway now that `stop` is gone.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl<M: Model> Inner<M> {
    /// One look at the running bake (called by the monitor thread).
    pub(super) fn check_bake(&self) {
        let Some(bake) = &self.config.bake else {
            return;
        };
        let (run, active, previous) = {
            let mut st = self.state.lock();
            let Some(run) = st.bake else { return };
            let active = self.active.load_full();
            if active.generation != run.generation {
                st.bake = None;
                return;
            }
            let previous = st
                .standby
                .as_ref()
                .filter(|s| s.state == SlotState::Previous)
                .map(|s| Arc::clone(&s.slot));
            (run, active, previous)
        };
        let now = active.observed();
        let prev = previous.as_ref().map(|p| p.observed());
        drop(previous);
        if let Some(reason) = bake.breach(&now, prev.as_ref()) {
            drop(active);
            self.auto_rollback(run, reason);
        } else if bake.passed(run.started.elapsed(), &now) {
            let mut st = self.state.lock();
            if st.bake.is_some_and(|b| b.generation == run.generation) {
                st.bake = None;
                st.last_change = SystemTime::now();
                drop(st);
                tracing::info!(target: "bluegreen", version = %active.version,
                    requests = now.requests, errors = now.errors, elapsed = ?run.started.elapsed(),
                    "bake passed; version is stable");
            }
        }
    }

    pub(super) fn auto_rollback(&self, run: BakeRun, reason: String) {
        let record = {
            let _admin = self.admin.lock();
            // Re-check under the admin lock: a manual rollback may have won the race.
            if self
                .state
                .lock()
                .bake
                .is_none_or(|b| b.generation != run.generation)
            {
                return;
            }
            let report = match self.rollback_locked() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(target: "bluegreen", %reason, error = %e,
                        "bake limit breached but automatic rollback failed");
                    return;
                }
            };
            let record = AutoRollback {
                from: report.from,
                to: report.to,
                reason,
                after: run.started.elapsed(),
                at: SystemTime::now(),
            };
            let mut st = self.state.lock();
            st.auto_rollbacks += 1;
            st.last_auto_rollback = Some(record.clone());
            record
        };
        tracing::error!(target: "bluegreen", from = %record.from, to = %record.to,
            reason = %record.reason, after = ?record.after, "automatic rollback");
        // Outside the admin lock: the hook may call back into the deployment.
        if let Some(hook) = &self.config.on_auto_rollback {
            hook(&record);
        }
    }
}
