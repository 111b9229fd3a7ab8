//! Running untrusted admin-path work (validators, warm-up) with a deadline and panic capture.
//!
//! A candidate model is untrusted until it has passed its gates: it may panic, or hang.
//! Each piece of such work runs on its own named thread; the admin thread waits for it at
//! most until the deadline. A panic becomes [`Supervised::Panicked`] with its message; a
//! thread still running at the deadline is abandoned (threads cannot be killed) and
//! reported as [`Supervised::TimedOut`]. It keeps its references to the models it uses;
//! the caller registers it as abandoned work ([`crate::slot::Hung`]) so that retiring
//! those models does not wait for it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

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

/// Runs `work` on a new thread named `name`, waiting at most `deadline`.
///
/// The work runs inside `catch_unwind`, and so does the drop of everything it captured
/// (a `FnOnce` drops its captures when its call returns): a thread abandoned at its
/// deadline that later panics, or drops the last reference to a model whose `Drop`
/// panics, ends quietly instead of unwinding out of a bluegreen thread.
pub(crate) fn run<T, F>(name: &str, deadline: Duration, work: F) -> Supervised<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded(1);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|payload| {
                panic_message(payload.as_ref())
                    .unwrap_or_else(|| "non-string panic payload".to_owned())
            });
            // The receiver is gone after a timeout; nobody is left to tell, and an
            // unsent value is dropped here — also inside a guard, as it may hold models.
            if let Err(unsent) = tx.send(outcome) {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(unsent)));
            }
        });
    let handle = match spawned {
        Ok(h) => h,
        Err(e) => return Supervised::NotStarted(e.to_string()),
    };
    match rx.recv_timeout(deadline) {
        Ok(outcome) => {
            // The thread has sent its value and is about to exit; joining is immediate.
            let _ = handle.join();
            match outcome {
                Ok(value) => Supervised::Done(value),
                Err(message) => Supervised::Panicked(message),
            }
        }
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            let _ = handle.join();
            Supervised::Panicked("worker exited without a result".to_owned())
        }
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Supervised::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_of_work_that_finishes_in_time() {
        match run("t", Duration::from_secs(5), || 41 + 1) {
            Supervised::Done(v) => assert_eq!(v, 42),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reports_a_panic_with_its_message() {
        match run("t", Duration::from_secs(5), || -> u32 {
            panic!("boom {}", 7)
        }) {
            Supervised::Panicked(msg) => assert_eq!(msg, "boom 7"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gives_up_on_work_past_its_deadline() {
        let r = run("t", Duration::from_millis(20), || {
            std::thread::sleep(Duration::from_millis(500));
        });
        assert!(matches!(r, Supervised::TimedOut), "{r:?}");
    }
}
