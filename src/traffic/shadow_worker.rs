//! The shadow worker: the thread that runs the staged candidate on mirrored requests and
//! compares its answers with the live ones — and what happens when the candidate hangs.
//!
//! The candidate is untrusted. A panic in it (or in the comparison) counts as an error on
//! that request. A call that overruns the [call deadline](super::shadow::Shadow::call_deadline)
//! is *abandoned* the next time the deployment looks ([`Worker::abandon_if_hung`], from
//! its admin path and `status()`): the call counts as an error, the hung thread is
//! registered as [hung work](crate::slot::Hung) (so retiring the candidate does not wait
//! for the reference it holds), no more requests are mirrored to that candidate, and a
//! fresh worker takes over the queue for the next one. The abandoned thread exits if its
//! call ever returns. So one hung candidate costs one thread, not the shadow feature.

use crate::sync::{AtomicU64, Ordering};
use std::panic::{AssertUnwindSafe, catch_unwind};
// `Weak` and the `Arc`s here are std's (loom has no `Weak`); the slots are the `sync` shim's.
use crate::sync::thread::JoinHandle;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::sync::ArcSwapOption;
use crate::sync::Mutex;
use crate::sync::channel::Receiver;

use super::shadow::{Compare, Job, Tally};
use crate::model::Model;
use crate::slot::{Hung, HungWork, Slot};

/// The call the worker is inside right now.
struct Busy<M: Model> {
    generation: u64,
    version: &'static str,
    since: Instant,
    /// Which worker made it.
    epoch: u64,
    /// The worker holds the candidate through this handle during the call.
    held: Weak<crate::sync::Arc<Slot<M>>>,
}

/// What every incarnation of the worker shares.
struct Shared<M: Model> {
    rx: Receiver<Job<M>>,
    target: Arc<ArcSwapOption<Slot<M>>>,
    tally: Arc<Mutex<Option<Tally>>>,
    compare: Arc<Compare<M>>,
    busy: Mutex<Option<Busy<M>>>,
    /// The current worker's number; an older worker that wakes up leaves.
    epoch: AtomicU64,
    /// A candidate that hung once is not mirrored to again (0: none).
    hung_generation: AtomicU64,
    call_deadline: Duration,
    on_panic: OnPanic,
}

/// Where a panic on the shadow worker came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShadowPanic {
    /// The candidate (or the comparison) on a mirrored request.
    Call,
    /// Dropping what a mirrored request held: the candidate's last reference, or the
    /// application's input and summary.
    Drop,
    /// A call abandoned past its deadline, when it finally returned.
    Late,
}

/// Told about every panic on the shadow worker (where, version, message).
pub(crate) type OnPanic = Arc<dyn Fn(ShadowPanic, &'static str, String) + Send + Sync>;

/// The current worker thread.
struct Current {
    handle: JoinHandle<()>,
    /// Disconnects when that thread ends.
    exited: Receiver<()>,
}

pub(crate) struct Worker<M: Model> {
    shared: Arc<Shared<M>>,
    current: Mutex<Option<Current>>,
}

/// A mirrored call abandoned by [`Worker::abandon_if_hung`].
pub(crate) struct Abandoned {
    pub(crate) version: &'static str,
    pub(crate) after: Duration,
}

impl<M: Model> Worker<M> {
    pub(crate) fn start(
        rx: Receiver<Job<M>>,
        target: Arc<ArcSwapOption<Slot<M>>>,
        tally: Arc<Mutex<Option<Tally>>>,
        compare: Arc<Compare<M>>,
        call_deadline: Duration,
        on_panic: OnPanic,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            rx,
            target,
            tally,
            compare,
            busy: Mutex::new(None),
            epoch: AtomicU64::new(0),
            hung_generation: AtomicU64::new(0),
            call_deadline,
            on_panic,
        });
        let current = spawn(&shared, 0)?;
        Ok(Self {
            shared,
            current: Mutex::new(Some(current)),
        })
    }

    /// Abandons the worker if it has been inside one call for longer than the call
    /// deadline (see the module docs), registering the call in `hung`.
    pub(crate) fn abandon_if_hung(&self, hung: &Hung) -> Option<Abandoned> {
        // Serializes abandoners, so the newest worker is the one kept as current.
        let mut current = self.current.lock();
        let (busy, epoch) = {
            let mut busy = self.shared.busy.lock();
            match busy.as_ref() {
                Some(b) if b.since.elapsed() > self.shared.call_deadline => {}
                _ => return None,
            }
            let taken = busy.take()?;
            // Under the same lock the worker checks when its call returns: it either
            // finished first (and counted the call) or finds itself replaced (and does
            // not), never both.
            let epoch = self.shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            self.shared
                .hung_generation
                .store(taken.generation, Ordering::SeqCst);
            (taken, epoch)
        };
        if let Some(held) = busy.held.upgrade() {
            hung.abandon(
                HungWork {
                    what: format!("mirrored call on candidate {}", busy.version),
                    versions: vec![busy.version],
                    generations: vec![busy.generation],
                    since: SystemTime::now(),
                },
                &held,
            );
        }
        if let Some(tally) = self
            .shared
            .tally
            .lock()
            .as_mut()
            .filter(|t| t.generation == busy.generation)
        {
            tally.errors += 1;
        }
        // A fresh worker for the queue; the hung one leaves if it ever returns.
        match spawn(&self.shared, epoch) {
            Ok(next) => *current = Some(next),
            Err(e) => tracing::error!(target: "bluegreen", error = %e,
                "could not start a new shadow worker; shadowing stops"),
        }
        Some(Abandoned {
            version: busy.version,
            after: busy.since.elapsed(),
        })
    }

    /// Waits up to `wait` for the current worker to end (the queue must be closed).
    pub(crate) fn stop(&self, wait: Duration) {
        let Some(current) = self.current.lock().take() else {
            return;
        };
        match current.exited.recv_timeout(wait) {
            Err(crate::sync::channel::RecvTimeoutError::Timeout) => {
                tracing::warn!(target: "bluegreen",
                    "shadow worker still inside the candidate at shutdown; left behind");
            }
            _ => {
                let _ = current.handle.join();
            }
        }
    }
}

fn spawn<M: Model>(shared: &Arc<Shared<M>>, epoch: u64) -> std::io::Result<Current> {
    let (alive, exited) = crate::sync::channel::bounded::<()>(0);
    let shared = Arc::clone(shared);
    let handle = crate::sync::thread::Builder::new()
        .name("bluegreen-shadow".to_owned())
        .spawn(move || {
            // Dropped when this worker ends, so `stop` can wait for it with a deadline.
            let _alive = alive;
            run(&shared, epoch);
        })?;
    Ok(Current { handle, exited })
}

fn run<M: Model>(shared: &Shared<M>, epoch: u64) {
    for job in shared.rx.iter() {
        let Some(candidate) = shared.target.load_full() else {
            release(shared, "-", job);
            continue;
        };
        let held = Arc::new(candidate);
        let version = held.version;
        if held.generation != job.generation
            || held.generation == shared.hung_generation.load(Ordering::SeqCst)
        {
            release(shared, version, (held, job));
            continue;
        }
        {
            let mut busy = shared.busy.lock();
            if shared.epoch.load(Ordering::SeqCst) != epoch {
                drop(busy);
                release(shared, version, (held, job));
                return; // replaced: the new worker has the queue
            }
            *busy = Some(Busy {
                generation: held.generation,
                version,
                since: Instant::now(),
                epoch,
                held: Arc::downgrade(&held),
            });
        }
        let started = Instant::now();
        let judged = catch_unwind(AssertUnwindSafe(|| {
            held.model
                .predict(&job.input)
                .map(|out| (shared.compare)(&out, &job.live))
        }));
        let elapsed = started.elapsed();
        let abandoned = {
            let mut busy = shared.busy.lock();
            let mine = busy.as_ref().is_some_and(|b| b.epoch == epoch);
            if mine {
                *busy = None;
            }
            !mine
        };
        if abandoned {
            // Counted as an error when it was abandoned. It may hold the candidate's last
            // reference now.
            if let Err(payload) = &judged {
                (shared.on_panic)(ShadowPanic::Late, version, message(payload.as_ref()));
            }
            drop(judged);
            release(shared, version, (held, job));
            return;
        }
        let panicked = {
            let mut guard = shared.tally.lock();
            match guard.as_mut().filter(|t| t.generation == job.generation) {
                None => None,
                Some(tally) => match judged {
                    Ok(Ok(c)) => {
                        tally.compared += 1;
                        tally.agreed += u64::from(c.agree);
                        tally.sum_abs_diff += c.abs_diff;
                        tally.latency.record_latency(elapsed);
                        None
                    }
                    Ok(Err(_)) => {
                        tally.errors += 1;
                        None
                    }
                    Err(payload) => {
                        tally.errors += 1;
                        Some(message(payload.as_ref()))
                    }
                },
            }
        };
        if let Some(message) = panicked {
            (shared.on_panic)(ShadowPanic::Call, version, message);
        }
        release(shared, version, (held, job));
    }
}

/// Drops what a mirrored request held — the application's input and summary, and
/// perhaps the candidate's last reference — inside `catch_unwind`: their `Drop`s are
/// untrusted, and this thread must go on.
fn release<M: Model, T>(shared: &Shared<M>, version: &'static str, held: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(held))) {
        (shared.on_panic)(ShadowPanic::Drop, version, message(payload.as_ref()));
    }
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    crate::model::panic_message(payload).unwrap_or_else(|| "non-string panic payload".to_owned())
}
