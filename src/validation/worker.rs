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

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

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

/// A reusable supervised worker thread (started on first use).
#[derive(Default)]
pub(crate) struct GateWorker {
    idle: Mutex<Option<Sender<Job>>>,
}

impl GateWorker {
    /// Runs `work` on the worker, waiting at most `deadline` (see the module docs).
    pub(crate) fn run<T, F>(&self, deadline: Duration, work: F) -> Supervised<T>
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
        let (result_tx, result) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
                panic_message(payload.as_ref())
                    .unwrap_or_else(|| "non-string panic payload".to_owned())
            });
            // Nobody waits after a timeout; an unsent value (it may hold models) is
            // dropped here, guarded like the work itself.
            if let Err(unsent) = result_tx.send(outcome) {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(unsent)));
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
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Supervised::TimedOut,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                Supervised::Panicked("worker exited without a result".to_owned())
            }
        }
    }
}

fn spawn() -> std::io::Result<Sender<Job>> {
    let (tx, rx) = crossbeam_channel::bounded::<Job>(1);
    std::thread::Builder::new()
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

    fn thread_id() -> std::thread::ThreadId {
        std::thread::current().id()
    }

    #[test]
    fn jobs_reuse_one_thread_and_report_values_and_panics() {
        let worker = GateWorker::default();
        let Supervised::Done(first) = worker.run(Duration::from_secs(5), thread_id) else {
            panic!("expected a value");
        };
        match worker.run(Duration::from_secs(5), || -> u8 {
            panic!("gate {} broke", 3)
        }) {
            Supervised::Panicked(msg) => assert_eq!(msg, "gate 3 broke"),
            other => panic!("unexpected {other:?}"),
        }
        let Supervised::Done(second) = worker.run(Duration::from_secs(5), thread_id) else {
            panic!("expected a value");
        };
        assert_eq!(first, second, "the same thread ran every job, panic or not");
        assert_ne!(first, thread_id());
    }

    #[test]
    fn a_job_past_its_deadline_is_abandoned_with_its_thread_and_the_next_gets_a_fresh_one() {
        let worker = GateWorker::default();
        let release = Arc::new(AtomicBool::new(false));
        let hung_on = Arc::new(StdMutex::new(None));
        let (r, h) = (Arc::clone(&release), Arc::clone(&hung_on));
        let outcome = worker.run(Duration::from_millis(20), move || {
            *h.lock().unwrap() = Some(thread_id());
            while !r.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert!(matches!(outcome, Supervised::TimedOut), "{outcome:?}");
        let Supervised::Done(next) = worker.run(Duration::from_secs(5), thread_id) else {
            panic!("expected a value");
        };
        assert_ne!(Some(next), *hung_on.lock().unwrap(), "a fresh thread");
        release.store(true, Ordering::SeqCst);
    }
}
