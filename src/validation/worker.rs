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
//!
//! A swap hands its work over once ([`GateWorker::run_each`]): the candidate's warm-up and
//! every gate, one after another, the outcomes written on a board the admin thread reads
//! when the last is in or when the running task's deadline passes. On a machine whose
//! cores are all busy serving, each wake-up of a sleeping thread waits for the scheduler
//! to preempt a request thread — up to a time slice, a few ms — so a hand-off per gate
//! and per result made a five-gate swap 10–25× slower than idle; one hand-off makes it
//! 1.5–3× (quickbench `gated_swap`).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::sync::channel::{Receiver, Sender};
use crate::sync::{Arc, Condvar, Mutex};

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

impl<T> Supervised<T> {
    /// The same ending, with a finished value turned by `f` (which may refuse it).
    pub(crate) fn then<U>(self, f: impl FnOnce(T) -> Supervised<U>) -> Supervised<U> {
        match self {
            Supervised::Done(value) => f(value),
            Supervised::Panicked(message) => Supervised::Panicked(message),
            Supervised::TimedOut => Supervised::TimedOut,
            Supervised::NotStarted(why) => Supervised::NotStarted(why),
        }
    }

    /// What stands for an outcome [`GateWorker::run_each`] did not return (it returns one
    /// per task; this keeps its callers total).
    pub(crate) fn missing() -> (Self, Duration) {
        (
            Supervised::NotStarted("no outcome".to_owned()),
            Duration::ZERO,
        )
    }
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
    #[cfg(any(test, feature = "quarantine"))]
    pub(crate) fn run<T, F>(&self, deadline: Duration, what: String, work: F) -> Supervised<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let task = Task {
            deadline,
            what,
            work: Box::new(work),
            ends_on_overrun: false,
        };
        self.run_each(vec![task])
            .pop()
            .unwrap_or_else(Supervised::missing)
            .0
    }

    /// Runs `tasks` one after another in one hand-off to the worker, waiting for each at
    /// most its deadline; returns each task's outcome, in order, with the time it ran.
    ///
    /// Hand-offs are what a loaded machine makes slow: a sleeping thread woken while
    /// every core is busy waits for the scheduler to preempt someone — up to a time slice
    /// (a few ms) each time. So the worker takes the next task as soon as one ends and
    /// writes each outcome on a board, and this thread sleeps until the board is full or
    /// the running task's deadline passes, whichever is first: two wake-ups for any number
    /// of gates. A task that overruns its deadline is abandoned with its worker; the tasks
    /// after it run on a fresh one.
    pub(crate) fn run_each<T: Send + 'static>(
        &self,
        tasks: Vec<Task<T>>,
    ) -> Vec<(Supervised<T>, Duration)> {
        let mut outcomes = Vec::with_capacity(tasks.len());
        let mut rest = tasks;
        while !rest.is_empty() {
            rest = self.board(rest, &mut outcomes);
        }
        outcomes
    }

    /// Hands `tasks` to one worker and collects their outcomes until they are done (an
    /// empty return) or one overran (the tasks it never started are returned).
    fn board<T: Send + 'static>(
        &self,
        tasks: Vec<Task<T>>,
        outcomes: &mut Vec<(Supervised<T>, Duration)>,
    ) -> Vec<Task<T>> {
        let not_started = |outcomes: &mut Vec<_>, n: usize, why: &str| {
            let why = why.to_owned();
            outcomes.extend((0..n).map(|_| (Supervised::NotStarted(why.clone()), Duration::ZERO)));
        };
        // Taken for the job: a job that overruns keeps its worker, and the next job gets
        // a fresh one.
        let worker = match self.idle.lock().take() {
            Some(tx) => tx,
            None => match spawn() {
                Ok(tx) => tx,
                Err(e) => {
                    not_started(outcomes, tasks.len(), &e.to_string());
                    return Vec::new();
                }
            },
        };
        let n = tasks.len();
        // Read before the worker can take any.
        let deadlines: Vec<Duration> = tasks.iter().map(|t| t.deadline).collect();
        let ends: Vec<Option<String>> = tasks
            .iter()
            .map(|t| t.ends_on_overrun.then(|| t.what.clone()))
            .collect();
        let board = Arc::new(Board {
            state: Mutex::new(BoardState {
                tasks: VecDeque::from(tasks),
                done: Vec::with_capacity(n),
                // Until the worker starts the first task, its deadline runs from now.
                clock: Instant::now(),
                running: false,
                waiting_until: None,
                abandoned: false,
            }),
            full: Condvar::new(),
        });
        let (b, late) = (Arc::clone(&board), std::sync::Arc::clone(&self.late));
        let job: Job = Box::new(move || b.work(&late));
        if worker.send(job).is_err() {
            let left = board.state.lock().tasks.drain(..).count();
            not_started(outcomes, left, "the gate worker is gone");
            return Vec::new();
        }
        let mut st = board.state.lock();
        loop {
            let k = st.done.len();
            if k == n {
                break;
            }
            // A deadline too far to represent is no deadline.
            let due = st.clock.checked_add(deadlines[k]);
            if due.is_some_and(|due| Instant::now() >= due) {
                // Task k overran — or was not even started in its time (a worker slow to
                // wake) and is dropped unstarted. Either way the worker is abandoned:
                // under the lock it takes no other task, and the rest go to a fresh one.
                st.abandoned = true;
                let waited = st.clock.elapsed();
                if !st.running {
                    st.tasks.pop_front();
                }
                outcomes.append(&mut st.done);
                outcomes.push((Supervised::TimedOut, waited));
                let rest: Vec<Task<T>> = st.tasks.drain(..).collect();
                return match &ends[k] {
                    Some(what) => {
                        let why = format!("skipped: {what} overran its deadline");
                        not_started(outcomes, rest.len(), &why);
                        Vec::new()
                    }
                    None => rest,
                };
            }
            st.waiting_until = due;
            match due {
                Some(due) => {
                    let _ = board.full.wait_until(&mut st, due);
                }
                None => board.full.wait(&mut st),
            }
        }
        outcomes.append(&mut st.done);
        drop(st);
        *self.idle.lock() = Some(worker);
        Vec::new()
    }
}

/// Where the worker takes its tasks and writes their outcomes, for [`GateWorker::run_each`].
struct Board<T> {
    state: Mutex<BoardState<T>>,
    /// Told when every task has an outcome, and when a task starts whose deadline falls
    /// before the waiter would look again.
    full: Condvar,
}

struct BoardState<T> {
    /// Not yet started.
    tasks: VecDeque<Task<T>>,
    /// Outcomes in order, each with the time its task ran.
    done: Vec<(Supervised<T>, Duration)>,
    /// Since when task `done.len()` has been due: when the worker started it, or — not
    /// started yet — when the one before it ended (the first: when it was handed over).
    clock: Instant,
    /// Whether the worker has taken task `done.len()`.
    running: bool,
    /// Until when the waiter sleeps (`None`: until told): a task whose deadline falls
    /// earlier wakes it when it starts, so an overrun is seen at its own deadline.
    waiting_until: Option<Instant>,
    /// The waiter gave up on the running task: the worker takes no other and keeps its
    /// outcome to itself.
    abandoned: bool,
}

impl<T> Board<T> {
    /// The worker's side: every task in turn, until none is left or the waiter gave up.
    fn work(&self, late: &LatePanic) {
        loop {
            let Task { what, work, .. } = {
                let mut st = self.state.lock();
                if st.abandoned {
                    return;
                }
                match st.tasks.pop_front() {
                    Some(task) => {
                        let now = Instant::now();
                        (st.clock, st.running) = (now, true);
                        let sooner = match (now.checked_add(task.deadline), st.waiting_until) {
                            (Some(due), Some(waiting)) => due < waiting,
                            (Some(_), None) => true,
                            (None, _) => false,
                        };
                        if sooner {
                            self.full.notify_all();
                        }
                        task
                    }
                    None => return,
                }
            };
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(work));
            let ran = started.elapsed();
            let mut st = self.state.lock();
            if st.abandoned {
                drop(st);
                // Nobody waits any more: a panic is reported to `late`, and a value (it
                // may hold models) is dropped here, guarded like the work itself.
                let message = match outcome {
                    Err(payload) => Some(message_of(payload)),
                    Ok(unsent) => catch_unwind(AssertUnwindSafe(move || drop(unsent)))
                        .err()
                        .map(message_of),
                };
                if let Some(message) = message {
                    late(&what, message);
                }
                return;
            }
            st.done.push((
                match outcome {
                    Ok(value) => Supervised::Done(value),
                    Err(payload) => Supervised::Panicked(message_of(payload)),
                },
                ran,
            ));
            (st.clock, st.running) = (Instant::now(), false);
            if st.tasks.is_empty() {
                self.full.notify_all();
            }
        }
    }
}

/// A panic's message; the payload is dropped guarded (a payload whose `Drop` panics
/// would otherwise unwind out of the worker thread).
fn message_of(payload: Box<dyn std::any::Any + Send>) -> String {
    let message =
        panic_message(payload.as_ref()).unwrap_or_else(|| "non-string panic payload".to_owned());
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again); // its drop could panic too
    }
    message
}

/// One piece of supervised work for [`GateWorker::run_each`].
pub(crate) struct Task<T> {
    /// How long the caller waits for it.
    pub(crate) deadline: Duration,
    /// What it is, for a panic reported after it was abandoned.
    pub(crate) what: String,
    pub(crate) work: Box<dyn FnOnce() -> T + Send>,
    /// An overrun of this task ends the hand-off: the tasks after it are not started
    /// ([`Supervised::NotStarted`]). For a warm-up: a model that hangs there would hang
    /// each gate in turn, deadline after deadline.
    pub(crate) ends_on_overrun: bool,
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

    /// Blocks until `release` is set (a hang the test ends).
    fn until(release: &AtomicBool) {
        while !release.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits (bounded) for the late panics an abandoned job reports, then checks them.
    fn assert_late(late: &Late, expected: &[(&str, &str)]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while late.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(what, msg)| ((*what).to_owned(), (*msg).to_owned()))
            .collect();
        assert_eq!(*late.lock().unwrap(), expected);
    }

    fn task<T: Send + 'static>(
        deadline: Duration,
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Task<T> {
        Task {
            deadline,
            what: what.to_owned(),
            work: Box::new(f),
            ends_on_overrun: false,
        }
    }

    #[test]
    fn tasks_of_one_hand_off_run_in_order_on_one_thread_past_a_panic() {
        let (worker, late) = worker();
        let long = Duration::from_secs(5);
        let outcomes = worker.run_each(vec![
            task(long, "a", thread_id),
            task(long, "b", || -> std::thread::ThreadId {
                panic!("gate b broke")
            }),
            task(Duration::MAX, "c", thread_id),
        ]);
        let ids: Vec<_> = outcomes
            .iter()
            .map(|(o, _)| match o {
                Supervised::Done(id) => Some(*id),
                Supervised::Panicked(msg) => {
                    assert_eq!(msg, "gate b broke");
                    None
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids.len(), 3);
        assert!(ids[1].is_none(), "the panic is the second outcome");
        assert_eq!(ids[0], ids[2], "one thread ran them all, panic or not");
        assert_ne!(ids[0], Some(thread_id()));
        assert!(late.lock().unwrap().is_empty());
        let Supervised::Done(next) = run(&worker, thread_id) else {
            panic!("expected a value");
        };
        assert_eq!(
            Some(next),
            ids[0],
            "the worker was kept for the next hand-off"
        );
    }

    #[test]
    fn an_overrun_in_a_hand_off_abandons_its_worker_and_the_rest_run_on_a_fresh_one() {
        let (worker, late) = worker();
        let release = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&release);
        let long = Duration::from_secs(5);
        // The first task's deadline is far: the overrun must be seen at its own deadline,
        // not when the waiter would have looked again for the first task's.
        let far = Duration::from_secs(120);
        let outcomes = worker.run_each(vec![
            task(far, "first", thread_id),
            task(Duration::from_millis(20), "hung gate", move || {
                until(&r);
                panic!("too late");
            }),
            task(long, "after", thread_id),
        ]);
        let [(first, _), (hung, waited), (after, _)] = <[_; 3]>::try_from(outcomes)
            .unwrap_or_else(|o| panic!("three outcomes, got {}", o.len()));
        let (Supervised::Done(first), Supervised::Done(after)) = (first, after) else {
            panic!("the tasks around the overrun ran");
        };
        assert!(matches!(hung, Supervised::TimedOut), "{hung:?}");
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
        assert!(
            waited < far / 2,
            "seen at its own deadline, not the first's: {waited:?}"
        );
        assert_ne!(
            first, after,
            "the task after the overrun ran on a fresh worker"
        );
        release.store(true, Ordering::SeqCst);
        assert_late(&late, &[("hung gate", "too late")]);
    }

    #[test]
    fn a_task_past_its_deadline_before_it_started_has_one_outcome_and_the_rest_still_run() {
        let (worker, _late) = worker();
        for _ in 0..20 {
            // A zero deadline has usually passed before the worker takes the task (it
            // may also be done first: then its value stands). Never both.
            let outcomes = worker.run_each(vec![
                task(Duration::ZERO, "instant", || 1),
                task(Duration::from_secs(5), "after", || 2),
            ]);
            assert_eq!(outcomes.len(), 2, "one outcome per task");
            assert!(
                matches!(outcomes[0].0, Supervised::TimedOut | Supervised::Done(1)),
                "{:?}",
                outcomes[0]
            );
            assert!(
                matches!(outcomes[1].0, Supervised::Done(2)),
                "{:?}",
                outcomes[1]
            );
        }
    }

    #[test]
    fn a_panic_whose_payload_panics_when_dropped_is_reported_and_the_worker_lives() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("payload drop");
            }
        }
        let (worker, _late) = worker();
        let outcomes = worker.run_each(vec![
            task(
                Duration::from_secs(5),
                "bomb",
                || -> std::thread::ThreadId { std::panic::panic_any(Bomb) },
            ),
            task(Duration::from_secs(5), "after", thread_id),
        ]);
        assert!(
            matches!(&outcomes[0].0, Supervised::Panicked(m) if m == "non-string panic payload"),
            "{:?}",
            outcomes[0]
        );
        let Supervised::Done(after) = outcomes[1].0 else {
            panic!("the next task ran: {:?}", outcomes[1]);
        };
        let Supervised::Done(next) = run(&worker, thread_id) else {
            panic!("expected a value");
        };
        assert_eq!(after, next, "the same worker, alive, ran both");
    }

    #[test]
    fn an_overrun_of_a_task_that_ends_the_hand_off_skips_the_rest() {
        let (worker, _late) = worker();
        let release = Arc::new(AtomicBool::new(false));
        let ran_after = Arc::new(AtomicBool::new(false));
        let (r, a) = (Arc::clone(&release), Arc::clone(&ran_after));
        let mut first = task(Duration::from_millis(20), "warm-up of v2", move || {
            until(&r);
        });
        first.ends_on_overrun = true;
        let outcomes = worker.run_each(vec![
            first,
            task(Duration::from_secs(5), "gate", move || {
                a.store(true, Ordering::SeqCst)
            }),
        ]);
        assert!(
            matches!(outcomes[0].0, Supervised::TimedOut),
            "{:?}",
            outcomes[0]
        );
        assert!(
            matches!(&outcomes[1].0, Supervised::NotStarted(why)
                if why == "skipped: warm-up of v2 overran its deadline"),
            "{:?}",
            outcomes[1]
        );
        release.store(true, Ordering::SeqCst);
        assert!(!ran_after.load(Ordering::SeqCst), "the gate never ran");
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
                until(&r);
                panic!("too late");
            },
        );
        assert!(matches!(outcome, Supervised::TimedOut), "{outcome:?}");
        let Supervised::Done(next) = run(&worker, thread_id) else {
            panic!("expected a value");
        };
        assert_ne!(Some(next), *hung_on.lock().unwrap(), "a fresh thread");
        release.store(true, Ordering::SeqCst);
        assert_late(&late, &[("hung gate", "too late")]);
    }
}
