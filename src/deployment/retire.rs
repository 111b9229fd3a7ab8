//! Retiring models: taking them out of their slots, waiting (bounded) for their in-flight
//! calls to drain, then handing them to the retirer — one background thread per
//! deployment that drops retired models, so no request thread pays for a model's `Drop`.
//!
//! The retirer survives its models: every job runs inside `catch_unwind`, and a panicking
//! `Drop` is a [`FaultKind::DropPanicked`] with the version. It never falls behind without
//! bound: retiring waits until fewer than [`max_retiring`](crate::Builder::max_retiring)
//! models are waiting to be dropped (queued or dropping), up to the drain timeout, then
//! refuses with [`Error::RetireBacklog`] — so a slow `Drop` slows the admin path down
//! instead of letting models pile up in memory. (One operation that retires two models at
//! once — a stage replacing a candidate and a model rolled back from — hands both over
//! together.) At shutdown the deployment waits for the retirer at most what is left of the
//! [shutdown timeout](crate::Builder::shutdown_timeout), then leaves it behind to finish
//! on its own and says so.

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

impl Backlog {
    /// Waits until `done(models)` holds or `deadline` passes; whether it holds.
    fn wait_until(&self, deadline: Instant, done: impl Fn(&[RetiringModel]) -> bool) -> bool {
        let mut models = self.models.lock();
        while !done(&models) {
            if self.changed.wait_until(&mut models, deadline).timed_out() {
                return done(&models);
            }
        }
        true
    }

    fn forget(&self, generation: u64) {
        self.models.lock().retain(|m| m.generation != generation);
        self.changed.notify_all();
    }
}

pub(super) struct Retirer<M: Model> {
    tx: Option<Sender<Job<M>>>,
    handle: Option<JoinHandle<()>>,
    /// Disconnects when the thread ends.
    exited: Receiver<()>,
    backlog: Arc<Backlog>,
    faults: Arc<FaultLog>,
    /// When shutdown stops waiting for the thread (set by the deployment's `Drop`).
    stop_by: Option<Instant>,
}

impl<M: Model> Retirer<M> {
    pub(super) fn start(faults: Arc<FaultLog>, max_retiring: usize) -> Result<Self> {
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
            stop_by: None,
        })
    }

    /// How long to wait for the thread when the retirer is dropped.
    pub(super) fn stop_by(&mut self, deadline: Instant) {
        self.stop_by = Some(deadline);
    }

    /// Waits until `deadline` for room to hand another model over; the models still
    /// waiting to be dropped when it gives up.
    fn wait_for_room(&self, deadline: Instant) -> std::result::Result<(), Vec<RetiringModel>> {
        let max = self.backlog.max;
        if self.backlog.wait_until(deadline, |m| m.len() < max) {
            Ok(())
        } else {
            Err(self.backlog())
        }
    }

    /// Waits until `deadline` for every model handed over so far to be dropped; whether
    /// it got there.
    pub(super) fn wait_until_empty(&self, deadline: Instant) -> bool {
        self.backlog
            .wait_until(deadline, <[RetiringModel]>::is_empty)
    }

    /// Records `slot` in the backlog. Called before the model leaves the admin state, so
    /// that a status snapshot always shows a retiring model somewhere.
    fn reserve(&self, slot: &Slot<M>) {
        self.backlog.models.lock().push(RetiringModel {
            version: slot.version.to_owned(),
            generation: slot.generation,
            dropping: false,
            since: SystemTime::now(),
        });
    }

    /// Hands a drained, [reserved](Self::reserve) `slot` to the retirer thread; the
    /// receiver disconnects or receives once it has been dropped.
    fn send(&self, slot: Arc<Slot<M>>) -> Receiver<()> {
        let (done, dropped) = crossbeam_channel::bounded(1);
        let generation = slot.generation;
        let job = Job::Retire { slot, done };
        let unsent = match &self.tx {
            Some(tx) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        // The thread is gone (it survives its jobs, so only if it failed a moment ago):
        // release here, guarded like the thread would.
        if let Some(Job::Retire { slot, .. } | Job::HoldUntilShutdown(slot)) = unsent {
            release(slot, &self.faults);
            self.backlog.forget(generation);
        }
        dropped
    }

    /// Hands `slot` to the retirer to release at shutdown.
    pub(super) fn hold_until_shutdown(&self, slot: Arc<Slot<M>>) {
        let unsent = match &self.tx {
            Some(tx) => tx.send(Job::HoldUntilShutdown(slot)).err().map(|e| e.0),
            None => Some(Job::HoldUntilShutdown(slot)),
        };
        if let Some(Job::Retire { slot, .. } | Job::HoldUntilShutdown(slot)) = unsent {
            release(slot, &self.faults);
        }
    }

    /// The models waiting to be dropped, oldest first.
    pub(super) fn backlog(&self) -> Vec<RetiringModel> {
        self.backlog.models.lock().clone()
    }

    /// Ends the retirer: it drops what is queued and held, and is waited for until
    /// `deadline`, then left behind.
    fn shutdown(&mut self, deadline: Instant) {
        drop(self.tx.take());
        let Some(handle) = self.handle.take() else {
            return;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.exited.recv_timeout(wait) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let pending: Vec<String> = self.backlog().into_iter().map(|m| m.version).collect();
                tracing::error!(target: "bluegreen", ?pending,
                    "retirer still dropping models at shutdown; left behind to finish");
            }
            _ => {
                let _ = handle.join();
            }
        }
    }
}

impl<M: Model> Drop for Retirer<M> {
    fn drop(&mut self) {
        let deadline = self.stop_by.unwrap_or_else(Instant::now);
        self.shutdown(deadline);
    }
}

fn run<M: Model>(rx: &Receiver<Job<M>>, backlog: &Backlog, faults: &FaultLog) {
    let mut held = Vec::new();
    for job in rx.iter() {
        match job {
            Job::Retire { slot, done } => {
                let generation = slot.generation;
                // The whole job is guarded, logging included: nothing may end this thread.
                let _ = catch_unwind(AssertUnwindSafe(|| retire_now(slot, backlog, faults)));
                backlog.forget(generation);
                let _ = done.send(());
            }
            Job::HoldUntilShutdown(slot) => held.push(slot),
        }
    }
    for slot in held {
        release(slot, faults);
    }
}

/// One retirement on the retirer thread.
fn retire_now<M: Model>(slot: Arc<Slot<M>>, backlog: &Backlog, faults: &FaultLog) {
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
    release(slot, faults);
    if others > 0 {
        tracing::warn!(target: "bluegreen", %version, generation, others,
            "retired model still referenced by abandoned work; it frees the model when it ends");
    } else {
        tracing::info!(target: "bluegreen", %version, generation,
            drop = ?started.elapsed(), "retired model dropped");
    }
}

/// Drops `slot`, catching a panicking `Drop`.
fn release<M: Model>(slot: Arc<Slot<M>>, faults: &FaultLog) {
    let version = slot.version;
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(slot))) {
        faults.record(
            FaultKind::DropPanicked,
            Some(version),
            panic_text(payload.as_ref()),
        );
    }
}

impl<M: Model> Inner<M> {
    /// Hands a model that was never placed in a slot (loaded, then refused) to the
    /// retirer, so that its `Drop` runs there; nothing else holds it.
    pub(super) fn discard(&self, slot: Arc<Slot<M>>) {
        let deadline = Instant::now() + self.config.drain_timeout;
        if let Err(pending) = self.retirer.wait_for_room(deadline) {
            tracing::warn!(target: "bluegreen", version = %slot.version, backlog = pending.len(),
                "retirer backlog full; handing a refused model over anyway");
        }
        self.retirer.reserve(&slot);
        drop(self.retirer.send(slot));
    }

    /// Retires the models in `slots`, together and all or nothing: withdraws every route
    /// to them, waits for their calls and pins to drain (references held by abandoned work
    /// are not waited for), then hands them to the retirer — with `wait_for_drop`, waiting
    /// for their drops too — all by `deadline`. Returns the retired versions with their
    /// drain waits (empty slots are skipped). On a timeout or a full backlog nothing
    /// changes. Call with the admin lock held: nothing else adds references then, and of
    /// the operations that move models between slots only an automatic rollback could
    /// run, which never happens while a previous model is retired (every such operation
    /// is refused during a bake).
    pub(super) fn retire(
        &self,
        slots: &[Which],
        wait_for_drop: bool,
        deadline: Instant,
    ) -> Result<Vec<(String, Duration)>> {
        let started = Instant::now();
        let first = {
            let st = self.state.lock();
            let first = slots.iter().find_map(|&w| st.slot(w));
            match first {
                Some(s) => s.slot.version,
                None => return Ok(Vec::new()),
            }
        };
        if let Err(pending) = self.retirer.wait_for_room(deadline) {
            let dropping: Vec<String> = pending.into_iter().map(|m| m.version).collect();
            tracing::warn!(target: "bluegreen", version = %first, ?dropping,
                "retirer backlog full; model kept");
            return Err(Error::RetireBacklog {
                version: first.to_owned(),
                dropping: dropping.join(", "),
                waited: started.elapsed(),
            });
        }
        // Out of their slots, and so out of every route.
        let taken: Vec<Arc<Slot<M>>> = {
            let mut st = self.state.lock();
            for &which in slots {
                if let Some(s) = st.slot_mut(which).take() {
                    st.draining.push((which, s));
                }
            }
            self.publish(&st);
            st.draining
                .iter()
                .map(|(_, s)| Arc::clone(&s.slot))
                .collect()
        };
        let mut drained = Vec::with_capacity(taken.len());
        for slot in &taken {
            // A bounded poll with a doubling pause (50 µs to 5 ms): nothing signals when a
            // reference to the slot is dropped, so there is nothing to wait on, and a
            // backoff crate would add a dependency for these three lines.
            let mut pause = Duration::from_micros(50);
            loop {
                self.check_shadow();
                // The count first: an abandoned entry seen afterwards held its reference
                // when the count was read (a `Weak` never comes back), so subtracting it
                // cannot make a running call or a pin look gone.
                let strong = Arc::strong_count(slot) as u64;
                let abandoned = self.hung.refs_on(slot.generation);
                // Ours, the draining entry's, and abandoned work's (not waited for).
                let holders = strong.saturating_sub(2 + abandoned);
                if holders == 0 {
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    self.put_back();
                    let waited = started.elapsed();
                    tracing::warn!(target: "bluegreen", version = %slot.version, holders,
                        ?waited, "drain timed out; models kept");
                    return Err(Error::DrainTimeout {
                        version: slot.version.to_string(),
                        holders,
                        waited,
                    });
                }
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            drained.push((slot.version.to_string(), started.elapsed()));
        }
        {
            let mut st = self.state.lock();
            for slot in &taken {
                self.retirer.reserve(slot);
            }
            st.draining.clear();
            st.changed();
        }
        #[cfg(feature = "metrics")]
        for slot in &taken {
            self.publish_retired(slot);
        }
        for _ in &taken {
            self.count(Event::Retired);
        }
        let dropped: Vec<Receiver<()>> = taken.into_iter().map(|s| self.retirer.send(s)).collect();
        if wait_for_drop {
            for d in dropped {
                let _ = d.recv_timeout(deadline.saturating_duration_since(Instant::now()));
            }
        }
        for (version, drain) in &drained {
            tracing::info!(target: "bluegreen", %version, ?drain, "model retired");
        }
        Ok(drained)
    }

    /// Puts the models being drained back into their slots (a retirement gave up).
    fn put_back(&self) {
        let mut st = self.state.lock();
        for (which, s) in std::mem::take(&mut st.draining) {
            *st.slot_mut(which) = Some(s);
        }
        self.publish(&st);
    }
}
