//! The bake monitor: one thread per deployment (when a [`Bake`](crate::Bake) is configured)
//! that looks at the baking model and rolls back on a breach.
//!
//! Nothing the monitor calls can end it: each look runs inside `catch_unwind` (a panic is
//! a [`FaultKind::MonitorPanicked`] and the next look comes as usual), and the
//! application's hook runs on the hook thread, not here. The automatic rollback takes the
//! state lock only — not the admin lock — so a slow admin operation (a model loading, a
//! dry-run validation) never delays it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::actor::Actor;
use super::audit::{Audit, named, record};
use super::bluegreen::Inner;
use super::error::{Error, Result};
use super::faults::{FaultKind, panic_text};
use super::metrics::Event;
use super::state::BakeRun;
use crate::journal::{EventKind, Value};
use crate::model::Model;
use crate::traffic::bake::{AutoRollback, Breach};

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
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| inner.check_bake())) {
                        inner.faults.record(
                            FaultKind::MonitorPanicked,
                            None,
                            panic_text(payload.as_ref()),
                        );
                    }
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
            // Never true today (hooks run on their own thread), kept as a guard: a thread
            // cannot join itself, and it leaves its loop anyway once `stop` is gone.
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
            let Some(run) = st.bake.filter(|b| !b.claimed) else {
                return;
            };
            let active = self.active.load_full();
            if active.generation != run.generation {
                st.bake = None;
                return;
            }
            let previous = st.rollback_target().cloned();
            (run, active, previous)
        };
        let now = active.observed();
        let prev = previous.as_ref().map(|p| p.observed());
        drop(previous);
        if let Some(breach) = bake.breach(&now, prev.as_ref()) {
            drop(active);
            self.auto_rollback(run, breach);
        } else if bake.passed(run.started.elapsed(), &now) {
            let mut st = self.state.lock();
            if st.baking(run.generation).is_some_and(|b| !b.claimed) {
                st.bake = None;
                st.changed();
                drop(st);
                tracing::info!(target: "bluegreen", version = %active.version,
                    requests = now.requests, errors = now.errors, elapsed = ?run.started.elapsed(),
                    "bake passed; version is stable");
                self.audit.note(|| {
                    record(EventKind::BakePassed, &active, &Actor::Bake)
                        .subject(named(&active))
                        .detail("requests", Value::Num(now.requests as f64))
                        .detail("errors", Value::Num(now.errors as f64))
                });
            }
        }
    }

    fn auto_rollback(&self, run: BakeRun, breach: Breach) {
        let Breach { limit, reason } = breach;
        let mut st = self.state.lock();
        // Only if that bake still runs: a manual rollback may have won the race.
        if st.baking(run.generation).is_none_or(|b| b.claimed) {
            return;
        }
        let (Some(target), from) = (st.rollback_target().cloned(), self.active.load_full()) else {
            return;
        };
        self.claim(&mut st, run.generation);
        drop(st);
        // Recorded first, so that a crash right after the flip still resumes on the model
        // rolled back to — but waiting for the disk at most a moment: a slow journal never
        // keeps a bad model serving (the row then stays pending).
        if let Err(e) = self.audit.fact_within(
            || {
                record(EventKind::AutoRollback, &target, &Actor::Bake)
                    .subject(named(&from))
                    .from(named(&from))
                    .ban(true)
                    .reason(reason.clone())
                    .detail(
                        "after_secs",
                        Value::Num(run.started.elapsed().as_secs_f64()),
                    )
            },
            Audit::auto_rollback_wait(),
        ) {
            tracing::error!(target: "bluegreen", %reason, error = %e,
                "automatic rollback not recorded yet; rolling back anyway");
        }
        drop((target, from));
        let mut st = self.state.lock();
        let record = self.roll_back_in(&mut st, |st, report| {
            let record = AutoRollback {
                from: report.from.clone(),
                to: report.to.clone(),
                reason: reason.clone(),
                limit,
                after: run.started.elapsed(),
                at: SystemTime::now(),
            };
            st.auto_rollbacks += 1;
            st.last_auto_rollback = Some(record);
        });
        self.claim_released.notify_all();
        let record = match record {
            Ok(_) => st.last_auto_rollback.clone(),
            Err(e) => {
                tracing::error!(target: "bluegreen", %reason, error = %e,
                    "bake limit breached but automatic rollback failed");
                None
            }
        };
        drop(st);
        let Some(record) = record else { return };
        tracing::error!(target: "bluegreen", model = %self.config.name, from = %record.from,
            to = %record.to, reason = %record.reason, after = ?record.after, "automatic rollback");
        self.count(Event::AutoRolledBack(record.limit));
        if let Some(hooks) = &self.hooks {
            hooks.notify(&record);
        }
    }
}
