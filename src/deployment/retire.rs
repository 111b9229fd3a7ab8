//! Retiring a model: taking it out of its slot, waiting (bounded) for its in-flight calls
//! to drain, then handing it to the retirer — one background thread per deployment that
//! drops retired models, so no request thread pays for a model's `Drop`.
//!
//! The retirer survives its models: every drop runs inside `catch_unwind`, and a panic is
//! a [`FaultKind::DropPanicked`] with the version. It never falls behind without bound:
//! at most [`max_retiring`](crate::Builder::max_retiring) models may be waiting to be
//! dropped (queued or dropping); retiring another waits for room, up to the drain timeout,
//! then refuses with [`Error::RetireBacklog`] — so a slow `Drop` slows the admin path down
//! instead of letting models pile up in memory. At shutdown the deployment waits for the
//! retirer at most the [shutdown timeout](crate::Builder::shutdown_timeout), then leaves
//! it behind to finish on its own and says so.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use super::bluegreen::Inner;
use super::error::{Error, Result};
use super::faults::{FaultKind, FaultLog, panic_text};
use super::metrics::Event;
use super::state::Which;
use super::status::RetiringModel;
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

/// Models handed to the retirer and not dropped yet.
struct Backlog {
    models: Mutex<Vec<RetiringModel>>,
    changed: Condvar,
    max: usize,
}

pub(super) struct Retirer<M: Model> {
    tx: Option<Sender<Job<M>>>,
    handle: Option<JoinHandle<()>>,
    /// Disconnects when the thread ends.
    exited: Receiver<()>,
    backlog: Arc<Backlog>,
    faults: Arc<FaultLog>,
    shutdown_wait: Duration,
}

impl<M: Model> Retirer<M> {
    pub(super) fn start(
        faults: Arc<FaultLog>,
        max_retiring: usize,
        shutdown_wait: Duration,
    ) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (alive, exited) = crossbeam_channel::bounded::<()>(0);
        let backlog = Arc::new(Backlog {
            models: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            max: max_retiring.max(1),
        });
        let (b, f) = (Arc::clone(&backlog), Arc::clone(&faults));
        let handle = std::thread::Builder::new()
            .name("bluegreen-retirer".to_owned())
            .spawn(move || {
                let _alive = alive;
                run(&rx, &b, &f);
            })
            .map_err(|source| Error::Spawn {
                what: "retirer",
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            exited,
            backlog,
            faults,
            shutdown_wait,
        })
    }

    /// Waits up to `wait` until another model may be handed over; the versions still
    /// waiting to be dropped when it gives up.
    fn wait_for_room(&self, wait: Duration) -> std::result::Result<(), Vec<RetiringModel>> {
        let deadline = Instant::now() + wait;
        let mut models = self.backlog.models.lock();
        while models.len() >= self.backlog.max {
            if self
                .backlog
                .changed
                .wait_until(&mut models, deadline)
                .timed_out()
                && models.len() >= self.backlog.max
            {
                return Err(models.clone());
            }
        }
        Ok(())
    }

    /// Waits up to `wait` until every model handed over so far has been dropped; whether
    /// it got there.
    pub(super) fn wait_until_empty(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut models = self.backlog.models.lock();
        while !models.is_empty() {
            if self
                .backlog
                .changed
                .wait_until(&mut models, deadline)
                .timed_out()
            {
                return models.is_empty();
            }
        }
        true
    }

    /// Hands `slot` (drained) to the retirer thread; with `wait_for_drop`, waits up to
    /// `wait` for the drop to finish, so a model loaded next rarely coexists with it (the
    /// backlog bounds the overlap when it takes longer). Room must have been waited for.
    fn hand_over(&self, slot: Arc<Slot<M>>, wait_for_drop: bool, wait: Duration) {
        let Some(tx) = &self.tx else {
            return; // only during shutdown
        };
        self.backlog.models.lock().push(RetiringModel {
            version: slot.version.to_owned(),
            generation: slot.generation,
            dropping: false,
            since: SystemTime::now(),
        });
        let (done, dropped) = crossbeam_channel::bounded(1);
        if tx.send(Job::Retire { slot, done }).is_ok() && wait_for_drop {
            let _ = dropped.recv_timeout(wait);
        }
    }

    /// Hands `slot` to the retirer to release at shutdown.
    pub(super) fn hold_until_shutdown(&self, slot: Arc<Slot<M>>) {
        if let Some(tx) = &self.tx
            && let Err(crossbeam_channel::SendError(job)) = tx.send(Job::HoldUntilShutdown(slot))
        {
            // The thread is gone (it cannot panic, but it may have failed to start a
            // moment ago): release here, guarded like the thread would.
            release(job, &self.faults);
        }
    }

    /// The models waiting to be dropped, oldest first.
    pub(super) fn backlog(&self) -> Vec<RetiringModel> {
        self.backlog.models.lock().clone()
    }
}

impl<M: Model> Drop for Retirer<M> {
    fn drop(&mut self) {
        drop(self.tx.take());
        let Some(handle) = self.handle.take() else {
            return;
        };
        match self.exited.recv_timeout(self.shutdown_wait) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let pending: Vec<String> = self.backlog().into_iter().map(|m| m.version).collect();
                tracing::error!(target: "bluegreen", wait = ?self.shutdown_wait, ?pending,
                    "retirer still dropping models at shutdown; left behind to finish");
            }
            _ => {
                let _ = handle.join();
            }
        }
    }
}

fn run<M: Model>(rx: &Receiver<Job<M>>, backlog: &Backlog, faults: &FaultLog) {
    let mut held = Vec::new();
    for job in rx.iter() {
        match job {
            Job::Retire { slot, done } => {
                let (version, generation) = (slot.version, slot.generation);
                if let Some(m) = backlog
                    .models
                    .lock()
                    .iter_mut()
                    .find(|m| m.generation == generation)
                {
                    m.dropping = true;
                }
                let others = Arc::strong_count(&slot) - 1;
                let started = Instant::now();
                release(Job::Retire { slot, done }, faults);
                if others > 0 {
                    tracing::warn!(target: "bluegreen", %version, generation, others,
                        "retired model still referenced elsewhere; the last holder frees it");
                } else {
                    tracing::info!(target: "bluegreen", %version, generation,
                        drop = ?started.elapsed(), "retired model dropped");
                }
                backlog.models.lock().retain(|m| m.generation != generation);
                backlog.changed.notify_all();
            }
            Job::HoldUntilShutdown(slot) => held.push(slot),
        }
    }
    for slot in held {
        release(Job::HoldUntilShutdown(slot), faults);
    }
}

/// Drops the job's slot, catching a panicking `Drop`, and acknowledges a retirement.
fn release<M: Model>(job: Job<M>, faults: &FaultLog) {
    let (slot, done) = match job {
        Job::Retire { slot, done } => (slot, Some(done)),
        Job::HoldUntilShutdown(slot) => (slot, None),
    };
    let version = slot.version;
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(slot))) {
        faults.record(
            FaultKind::DropPanicked,
            Some(version),
            panic_text(payload.as_ref()),
        );
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

impl<M: Model> Inner<M> {
    /// Retires the model in slot `which`: withdraws every route to it, waits for its calls
    /// and pins to drain (references held by abandoned work do not count), then hands it
    /// to the retirer. Returns its version and the drain wait, or `None` for an empty slot.
    /// On a timeout nothing changes. Call with the admin lock held (nothing else adds
    /// references then, and nothing else moves models between slots).
    pub(super) fn retire(
        &self,
        which: Which,
        wait_for_drop: bool,
    ) -> Result<Option<(String, Duration)>> {
        let timeout = self.config.drain_timeout;
        let started = Instant::now();
        let slot = {
            let st = self.state.lock();
            match st.slot(which) {
                Some(s) => Arc::clone(&s.slot),
                None => return Ok(None),
            }
        };
        if let Err(pending) = self.retirer.wait_for_room(timeout) {
            let dropping: Vec<String> = pending.into_iter().map(|m| m.version).collect();
            tracing::warn!(target: "bluegreen", version = %slot.version, ?dropping,
                "retirer backlog full; model kept");
            return Err(Error::RetireBacklog {
                version: slot.version.to_owned(),
                dropping: dropping.join(", "),
                waited: started.elapsed(),
            });
        }
        {
            let mut st = self.state.lock();
            let taken = st.slot_mut(which).take();
            st.draining = taken.map(|s| (which, s));
            self.publish(&st);
        }
        // A bounded poll with a doubling pause (50 µs to 5 ms): nothing signals when a
        // reference to the slot is dropped, so there is nothing to wait on, and a backoff
        // crate would add a dependency for these three lines.
        let mut pause = Duration::from_micros(50);
        loop {
            // Ours plus the draining entry's; beyond that a running call, a pin, or
            // abandoned work (which is not waited for).
            self.check_shadow();
            let abandoned = self.hung.refs_on(slot.generation);
            let holders = (Arc::strong_count(&slot) as u64).saturating_sub(2 + abandoned);
            if holders == 0 {
                break;
            }
            let waited = started.elapsed();
            if waited >= timeout {
                let mut st = self.state.lock();
                if let Some((w, s)) = st.draining.take() {
                    *st.slot_mut(w) = Some(s);
                }
                self.publish(&st);
                drop(st);
                tracing::warn!(target: "bluegreen", version = %slot.version, holders,
                    ?waited, "drain timed out; model kept");
                return Err(Error::DrainTimeout {
                    version: slot.version.to_string(),
                    holders,
                    waited,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        let drained = started.elapsed();
        {
            let mut st = self.state.lock();
            st.draining = None;
            st.changed();
        }
        let version = slot.version.to_string();
        #[cfg(feature = "metrics")]
        self.publish_retired(&slot);
        self.count(Event::Retired);
        self.retirer
            .hand_over(slot, wait_for_drop, timeout.saturating_sub(drained));
        tracing::info!(target: "bluegreen", %version, drain = ?drained, "model retired");
        Ok(Some((version, drained)))
    }
}
