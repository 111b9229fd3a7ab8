//! The retirer: one background thread per deployment that drops retired models.
//!
//! Dropping a model can be expensive (freeing weights, tearing down runtime sessions). If
//! the last reference to an old model were released by a request thread, that request
//! would pay for it. bluegreen therefore only retires a model once its in-flight calls have
//! drained, and hands it to this thread, which performs the drop and acknowledges it.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use super::bluegreen::Inner;
use super::error::{Error, Result};
use crate::model::Model;
use crate::slot::Slot;

enum Job<M: Model> {
    /// Drop this slot now and acknowledge.
    Retire {
        slot: Arc<Slot<M>>,
        done: Sender<()>,
    },
    /// Keep this slot until the deployment shuts down (used by `Drop`, so the last
    /// reference is released here even while the deployment's own fields are dropped).
    HoldUntilShutdown(Arc<Slot<M>>),
}

pub(crate) struct Retirer<M: Model> {
    tx: Option<Sender<Job<M>>>,
    handle: Option<JoinHandle<()>>,
}

impl<M: Model> Retirer<M> {
    pub(crate) fn start() -> Result<Self, Error> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let handle = std::thread::Builder::new()
            .name("bluegreen-retirer".to_owned())
            .spawn(move || run(rx))
            .map_err(|source| Error::Spawn {
                what: "retirer",
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Drops `slot` on the retirer thread; with `wait`, returns only once it is gone
    /// (so a model loaded next never coexists with it).
    ///
    /// The caller has already waited for the slot's in-flight calls to drain.
    pub(crate) fn retire(&self, slot: Arc<Slot<M>>, wait_for_drop: bool) {
        let (done, wait) = crossbeam_channel::bounded(1);
        let Some(tx) = &self.tx else {
            return; // only during shutdown, when nothing retires any more
        };
        match tx.send(Job::Retire { slot, done }) {
            Ok(()) if wait_for_drop => {
                // An Err means the thread died mid-drop (a model's Drop panicked); the
                // slot is gone either way.
                let _ = wait.recv();
            }
            Ok(()) => {}
            // The thread is gone (a model's Drop panicked earlier): drop here, don't leak.
            Err(crossbeam_channel::SendError(job)) => drop(job),
        }
    }

    /// Hands `slot` to the retirer to release at shutdown.
    pub(crate) fn hold_until_shutdown(&self, slot: Arc<Slot<M>>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job::HoldUntilShutdown(slot));
        }
    }
}

impl<M: Model> Drop for Retirer<M> {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run<M: Model>(rx: Receiver<Job<M>>) {
    let mut held = Vec::new();
    for job in rx.iter() {
        match job {
            Job::Retire { slot, done } => {
                let version = slot.version.to_string();
                let generation = slot.generation;
                let others = Arc::strong_count(&slot) - 1;
                let started = Instant::now();
                drop(slot);
                if others > 0 {
                    tracing::warn!(target: "bluegreen", %version, generation, others,
                        "retired model still referenced elsewhere; the last holder frees it");
                } else {
                    tracing::info!(target: "bluegreen", %version, generation,
                        drop = ?started.elapsed(), "retired model dropped");
                }
                let _ = done.send(());
            }
            Job::HoldUntilShutdown(slot) => held.push(slot),
        }
    }
    drop(held);
}

impl<M: Model> Inner<M> {
    /// Waits for the standby model to drain, then drops it on the retirer thread.
    /// Must be called with the admin lock held (nobody else can add references then).
    pub(super) fn retire_standby(&self, wait_for_drop: bool) -> Result<Option<(String, Duration)>> {
        let slot = match &self.state.lock().standby {
            None => return Ok(None),
            Some(s) => Arc::clone(&s.slot),
        };
        // No new keyed request, session or mirrored call may reach it from here on.
        self.unpublish();
        let started = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            // Ours plus the state's; anything beyond is a running call or a pin.
            let holders = (Arc::strong_count(&slot) - 2) as u64;
            if holders == 0 {
                break;
            }
            let waited = started.elapsed();
            if waited >= self.config.drain_timeout {
                self.publish(&self.state.lock());
                tracing::warn!(target: "bluegreen", version = %slot.version, holders,
                    ?waited, "drain timed out; model kept");
                return Err(Error::DrainTimeout {
                    version: slot.version.to_string(),
                    holders,
                    waited,
                });
            }
            std::thread::sleep(pause.min(self.config.drain_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        let drained = started.elapsed();
        {
            let mut st = self.state.lock();
            st.standby = None;
            st.last_change = SystemTime::now();
        }
        let version = slot.version.to_string();
        self.retirer.retire(slot, wait_for_drop);
        tracing::info!(target: "bluegreen", %version, drain = ?drained, "standby retired");
        Ok(Some((version, drained)))
    }
}
