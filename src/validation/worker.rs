//! The gate worker: one thread per deployment that runs supervised work — gates, warm-ups
//! — one job after another, with a deadline for each.
//!
//! A candidate model is untrusted until it has passed its gates: it may panic, or hang.
//! The admin thread waits for each job at most until its deadline. A panic becomes
//! [`Supervised::Panicked`] with its message; a job still running at the deadline is
//! [`Supervised::TimedOut`] and abandoned. It keeps its references to the models it uses;
//! the caller registers it as hung work ([`crate::slot::Hung`]) so that retiring those
//! models does not wait for it. The job runs inside `catch_unwind`, and so does the drop
//! of everything it captured (a `FnOnce` drops its captures when its call returns): an
//! abandoned job that later panics, or drops the last reference to a model whose `Drop`
//! panics, ends quietly instead of unwinding out of a bluegreen thread.
//!
//! Starting a thread per gate cost tens of microseconds per gate and left each gate's
//! model calls on a cold thread (a fresh stack, a fresh ONNX Runtime thread context); on a
//! 450-row golden set that was a large share of validation time. The worker is reused from
//! one job to the next instead. Supervision is as strict as before: a job that panics is
//! [`Supervised::Panicked`], one that overruns its deadline is [`Supervised::TimedOut`] and
//! takes the worker with it — that thread is abandoned (threads cannot be killed; it exits
//! if its job ever returns) and the next job starts a fresh one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::sync::Mutex;
use crate::sync::channel::{Receiver, Sender};

use crate::model::panic_message;

/// How a supervised piece of work ended.
#[derive(Debug)]
pub(crate) enum Supervised<T> {
    Done(T),
    Panicked(String),
    TimedOut,
    /// The worker thread could not be started.
    NotStarted(String),
}

type Job = Box<dyn FnOnce() + Send>;

/// Told about a panic in work nobody waits for any more — an abandoned job that panicked
/// when it finally returned, or while dropping what it held: (what the job was, message).
pub(crate) type LatePanic = std::sync::Arc<dyn Fn(&str, String) + Send + Sync>;

/// A reusable supervised worker thread (started on first use).
pub(crate) struct GateWorker {
    idle: Mutex<Option<Sender<Job>>>,
    late: LatePanic,
}

impl GateWorker {
    pub(crate) fn new(late: LatePanic) -> Self {
        Self {
            idle: Mutex::new(None),
            late,
        }
    }

    /// Runs `work` — described as `what`, for a panic reported after it was abandoned —
    /// on the worker, waiting at most `deadline` (see the module docs).
    pub(crate) fn run<T, F>(&self, deadline: Duration, what: String, work: F) -> Supervised<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // Taken for the job: a job that overruns keeps its worker, and the next job gets
        // a fresh one.
        let worker = match self.idle.lock().take() {
            Some(tx) => tx,
            None => match spawn() {
                Ok(tx) => tx,
                Err(e) => return Supervised::NotStarted(e.to_string()),
            },
        };
        let (result_tx, result) = crate::sync::channel::bounded(1);
        let late = std::sync::Arc::clone(&self.late);
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
                panic_message(payload.as_ref())
                    .unwrap_or_else(|| "non-string panic payload".to_owned())
            });
            // Nobody waits after a timeout: a panic is reported to `late`, and an unsent
            // value (it may hold models) is dropped here, guarded like the work itself.
            match result_tx.send(outcome) {
                Ok(()) => {}
                Err(crate::sync::channel::SendError(Err(message))) => late(&what, message),
                Err(crate::sync::channel::SendError(Ok(unsent))) => {
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(unsent))) {
                        late(
                            &what,
                            panic_message(payload.as_ref())
                                .unwrap_or_else(|| "non-string panic payload".to_owned()),
                        );
                    }
                }
            }
        });
        if worker.send(job).is_err() {
            return Supervised::NotStarted("the gate worker is gone".to_owned());
        }
        match result.recv_timeout(deadline) {
            Ok(outcome) => {
                *self.idle.lock() = Some(worker);
                match outcome {
                    Ok(value) => Supervised::Done(value),
                    Err(message) => Supervised::Panicked(message),
                }
            }
            Err(crate::sync::channel::RecvTimeoutError::Timeout) => Supervised::TimedOut,
            Err(crate::sync::channel::RecvTimeoutError::Disconnected) => {
                Supervised::Panicked("worker exited without a result".to_owned())
            }
        }
    }
}

fn spawn() -> std::io::Result<Sender<Job>> {
    let (tx, rx) = crate::sync::channel::bounded::<Job>(1);
    crate::sync::thread::Builder::new()
        .name("bluegreen-gates".to_owned())
        .spawn(move || serve(&rx))?;
    Ok(tx)
}

/// The worker's loop: one job at a time until its queue is dropped (the deployment went
/// away, or the worker was abandoned mid-job and nobody will send again).
fn serve(rx: &Receiver<Job>) {
    for job in rx.iter() {
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};

    type Late = Arc<StdMutex<Vec<(String, String)>>>;

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    fn worker() -> (GateWorker, Late) {
        let late: Late = Arc::default();
        let l = Arc::clone(&late);
        let sink: LatePanic = Arc::new(move |what, msg| l.lock().unwrap().push((what.into(), msg)));
        (GateWorker::new(sink), late)
    }

    fn run<T: Send + 'static>(
        w: &GateWorker,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Supervised<T> {
        w.run(Duration::from_secs(5), "test job".to_owned(), f)
    }

    #[test]
    fn jobs_reuse_one_thread_and_report_values_and_panics() {
        let (worker, late) = worker();
        let Supervised::Done(first) = run(&worker, thread_id) else {
            panic!("expected a value");
        };
        match run(&worker, || -> u8 { panic!("gate {} broke", 3) }) {
            Supervised::Panicked(msg) => assert_eq!(msg, "gate 3 broke"),
            other => panic!("unexpected {other:?}"),
        }
        let Supervised::Done(second) = run(&worker, thread_id) else {
            panic!("expected a value");
        };
        assert_eq!(first, second, "the same thread ran every job, panic or not");
        assert_ne!(first, thread_id());
        assert!(
            late.lock().unwrap().is_empty(),
            "a panic someone waited for is not late"
        );
    }

    #[test]
    fn a_job_past_its_deadline_is_abandoned_with_its_thread_and_its_late_panic_reported() {
        let (worker, late) = worker();
        let release = Arc::new(AtomicBool::new(false));
        let hung_on = Arc::new(StdMutex::new(None));
        let (r, h) = (Arc::clone(&release), Arc::clone(&hung_on));
        let outcome = worker.run(
            Duration::from_millis(20),
            "hung gate".to_owned(),
            move || {
                *h.lock().unwrap() = Some(thread_id());
                while !r.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                panic!("too late");
            },
        );
        assert!(matches!(outcome, Supervised::TimedOut), "{outcome:?}");
        let Supervised::Done(next) = run(&worker, thread_id) else {
            panic!("expected a value");
        };
        assert_ne!(Some(next), *hung_on.lock().unwrap(), "a fresh thread");
        release.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while late.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            *late.lock().unwrap(),
            [("hung gate".to_owned(), "too late".to_owned())]
        );
    }
}
