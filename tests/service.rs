//! Feature `tower`: `PredictService` answers versioned predictions from worker threads,
//! holds callers back through `poll_ready` while the pool's admissions are taken, composes
//! with tower's `load_shed`, `timeout` and `concurrency_limit`, skips work for callers that
//! have gone, and survives a panicking model.
#![cfg(feature = "tower")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bluegreen::service::{Caller, InferencePool, Job, Predict, PredictService, ServiceError};
use bluegreen::{BlueGreen, Model};
use crossbeam_channel::{Receiver, Sender};
use tower::{Service, ServiceBuilder, ServiceExt};

const PATIENCE: Duration = Duration::from_secs(20);
/// The input the test model panics on.
const BOOM: u64 = u64::MAX;

/// Answers `(tag, x)`; panics on [`BOOM`]; with a gate, each call first announces itself and
/// waits for a go (bounded by `PATIENCE`, so a bug fails instead of hanging).
struct Gated {
    tag: u64,
    gate: Option<(Sender<u64>, Receiver<()>)>,
    calls: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Model for Gated {
    type Input = u64;
    type Output = (u64, u64);
    type Error = Never;
    fn predict(&self, x: &u64) -> Result<(u64, u64), Never> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some((entered, go)) = &self.gate {
            entered.send(*x).unwrap();
            go.recv_timeout(PATIENCE)
                .expect("the test never let the call go");
        }
        if *x == BOOM {
            panic!("model {} refuses BOOM on purpose", self.tag);
        }
        Ok((self.tag, *x))
    }
}

fn free(tag: u64) -> Gated {
    Gated {
        tag,
        gate: None,
        calls: Arc::default(),
    }
}

/// A gated model: `entered` receives each call's input as it starts, `go` lets one finish.
struct Gate {
    entered: Receiver<u64>,
    go: Sender<()>,
    calls: Arc<AtomicU64>,
}

fn gated(tag: u64) -> (Gated, Gate) {
    let (entered_tx, entered) = crossbeam_channel::unbounded();
    let (go, go_rx) = crossbeam_channel::unbounded();
    let calls = Arc::<AtomicU64>::default();
    let model = Gated {
        tag,
        gate: Some((entered_tx, go_rx)),
        calls: Arc::clone(&calls),
    };
    (model, Gate { entered, go, calls })
}

impl Gate {
    fn wait_entered(&self) -> u64 {
        self.entered
            .recv_timeout(PATIENCE)
            .expect("no call reached the model")
    }
}

fn pool(workers: usize, max_in_flight: usize) -> InferencePool {
    InferencePool::builder()
        .workers(workers)
        .max_in_flight(max_in_flight)
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn poll_ready_once<S: Service<Predict<u64>>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    svc.poll_ready(&mut Context::from_waker(Waker::noop()))
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(PATIENCE, f)
        .await
        .expect("not done within the test's patience")
}

#[test]
fn answers_come_back_versioned_across_a_swap_and_keys_follow_the_canary() {
    runtime().block_on(async {
        let bg = Arc::new(BlueGreen::new("v1", free(1)).unwrap());
        let svc = PredictService::new(Arc::clone(&bg), &pool(2, 8));
        let a = bounded(svc.clone().oneshot(Predict::new(5))).await.unwrap();
        assert_eq!((a.output.unwrap(), a.version), ((1, 5), "v1"));

        bg.stage("v2", free(2)).unwrap();
        bg.start_canary(50.0).unwrap();
        for user in 0..40 {
            let key = format!("user-{user}");
            let a = bounded(svc.clone().oneshot(Predict::keyed(&key, user)))
                .await
                .unwrap();
            let expected = bg.predict_keyed_versioned(&key, &user);
            assert_eq!(
                a.version, expected.version,
                "{key} routed like predict_keyed"
            );
            let tag = if a.version == "v2" { 2 } else { 1 };
            assert_eq!(a.output.unwrap(), (tag, user));
        }
        bg.promote_canary().unwrap();
        let a = bounded(svc.oneshot(Predict::new(6))).await.unwrap();
        assert_eq!((a.output.unwrap(), a.version), ((2, 6), "v2"));
    });
}

#[test]
fn poll_ready_is_pending_while_every_admission_is_taken_and_wakes_when_one_is_freed() {
    runtime().block_on(async {
        let (model, gate) = gated(1);
        let bg = Arc::new(BlueGreen::new("v1", model).unwrap());
        let pool = pool(2, 2);
        let svc = PredictService::new(bg, &pool);
        let first = tokio::spawn(svc.clone().oneshot(Predict::new(1)));
        let second = tokio::spawn(svc.clone().oneshot(Predict::new(2)));
        let mut entered = [gate.wait_entered(), gate.wait_entered()];
        entered.sort_unstable();
        assert_eq!(entered, [1, 2]);
        assert_eq!(pool.stats().in_flight, 2);

        let mut third = svc.clone();
        assert!(poll_ready_once(&mut third).is_pending(), "the pool is full");
        // A task waiting for readiness is woken by the release, not by polling.
        let waiter = tokio::spawn(async move {
            third.ready().await.unwrap();
            third.call(Predict::new(3)).await
        });
        gate.go.send(()).unwrap(); // one of the two finishes (either)
        let third_entered = gate.wait_entered(); // and the waiting third request got in
        assert_eq!(third_entered, 3);
        gate.go.send(()).unwrap();
        gate.go.send(()).unwrap();
        let outputs = [
            bounded(first).await.unwrap().unwrap().output.unwrap(),
            bounded(second).await.unwrap().unwrap().output.unwrap(),
            bounded(waiter).await.unwrap().unwrap().output.unwrap(),
        ];
        assert_eq!(outputs, [(1, 1), (1, 2), (1, 3)]);
        assert_eq!(pool.stats().in_flight, 0);
        assert_eq!(pool.stats().completed, 3);
    });
}

#[test]
fn load_shed_refuses_at_once_when_full_and_the_refused_request_never_reaches_the_model() {
    runtime().block_on(async {
        let (model, gate) = gated(1);
        let bg = Arc::new(BlueGreen::new("v1", model).unwrap());
        let pool = pool(1, 1);
        let svc = ServiceBuilder::new()
            .load_shed()
            .service(PredictService::new(bg, &pool));
        let running = tokio::spawn(svc.clone().oneshot(Predict::new(1)));
        gate.wait_entered();
        let refused = bounded(svc.clone().oneshot(Predict::new(2))).await;
        let e = refused.expect_err("the pool is full");
        assert!(
            e.is::<tower::load_shed::error::Overloaded>(),
            "expected Overloaded, got {e}"
        );
        gate.go.send(()).unwrap();
        assert_eq!(
            bounded(running).await.unwrap().unwrap().output.unwrap(),
            (1, 1)
        );
        assert_eq!(
            gate.calls.load(Ordering::SeqCst),
            1,
            "the shed request never ran"
        );
        // Shedding reserved nothing: the next request gets in.
        let after = tokio::spawn(svc.oneshot(Predict::new(3)));
        assert_eq!(gate.wait_entered(), 3);
        gate.go.send(()).unwrap();
        assert_eq!(
            bounded(after).await.unwrap().unwrap().output.unwrap(),
            (1, 3)
        );
    });
}

#[test]
fn a_request_that_timed_out_in_the_queue_is_skipped_and_frees_its_admission() {
    runtime().block_on(async {
        let (model, gate) = gated(1);
        let bg = Arc::new(BlueGreen::new("v1", model).unwrap());
        let pool = pool(1, 4);
        let svc = PredictService::new(Arc::clone(&bg), &pool);
        let running = tokio::spawn(svc.clone().oneshot(Predict::new(1)));
        gate.wait_entered(); // the only worker is busy
        let impatient = ServiceBuilder::new()
            .timeout(Duration::from_millis(20))
            .service(svc.clone());
        let e = bounded(impatient.oneshot(Predict::new(2)))
            .await
            .expect_err("queued behind a blocked worker");
        assert!(e.is::<tower::timeout::error::Elapsed>(), "{e}");
        assert_eq!(
            pool.stats().in_flight,
            2,
            "admitted until the worker gets to it"
        );
        gate.go.send(()).unwrap();
        bounded(running).await.unwrap().unwrap();
        let drained = bounded(async {
            while pool.stats().in_flight > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        drained.await;
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.skipped), (1, 1));
        assert_eq!(
            gate.calls.load(Ordering::SeqCst),
            1,
            "the timed-out request never ran"
        );
        assert_eq!(bg.status().active.requests, 1);
    });
}

#[test]
fn a_concurrency_limit_in_front_holds_one_caller_back_and_timeouts_compose() {
    runtime().block_on(async {
        let (model, gate) = gated(1);
        let bg = Arc::new(BlueGreen::new("v1", model).unwrap());
        let pool = pool(2, 8);
        let mut limited = ServiceBuilder::new()
            .concurrency_limit(1)
            .timeout(PATIENCE)
            .service(PredictService::new(bg, &pool));
        bounded(limited.ready()).await.unwrap();
        let first = tokio::spawn(limited.call(Predict::new(1)));
        gate.wait_entered();
        assert!(
            poll_ready_once(&mut limited).is_pending(),
            "the limit of 1 is taken although the pool has room"
        );
        gate.go.send(()).unwrap();
        assert_eq!(
            bounded(first).await.unwrap().unwrap().output.unwrap(),
            (1, 1)
        );
        bounded(limited.ready()).await.unwrap();
        let second = tokio::spawn(limited.call(Predict::new(2)));
        gate.wait_entered();
        gate.go.send(()).unwrap();
        assert_eq!(
            bounded(second).await.unwrap().unwrap().output.unwrap(),
            (1, 2)
        );
    });
}

#[test]
fn a_panicking_model_is_answered_with_an_error_and_the_worker_keeps_serving() {
    runtime().block_on(async {
        let bg = Arc::new(BlueGreen::new("v1", free(1)).unwrap());
        let pool = pool(1, 4);
        let svc = PredictService::new(Arc::clone(&bg), &pool);
        let e = bounded(svc.clone().oneshot(Predict::new(BOOM)))
            .await
            .expect_err("the model panics on BOOM");
        assert_eq!(
            e,
            ServiceError::Panicked {
                message: "model 1 refuses BOOM on purpose".to_owned()
            }
        );
        let a = bounded(svc.oneshot(Predict::new(14))).await.unwrap();
        assert_eq!(a.output.unwrap(), (1, 14), "the one worker survived");
        let s = bg.status();
        assert_eq!((s.active.requests, s.active.panics), (2, 1));
        assert_eq!(pool.stats().panicked, 1);
    });
}

#[test]
fn call_without_poll_ready_is_an_error_not_a_panic() {
    runtime().block_on(async {
        let bg = Arc::new(BlueGreen::new("v1", free(1)).unwrap());
        let mut svc = PredictService::new(bg, &pool(1, 1));
        let e = bounded(svc.call(Predict::new(1))).await.unwrap_err();
        assert_eq!(e, ServiceError::NotReady);
    });
}

/// Reports the thread it ran on; with a gate, waits for a go and then whether its caller
/// is still there.
struct WhereAndWho {
    go: Option<Receiver<()>>,
    started: Sender<()>,
}

impl Job<Gated> for WhereAndWho {
    type Output = String;
    fn run(self, bg: &BlueGreen<Gated>, caller: &Caller<'_>) -> Option<String> {
        self.started.send(()).unwrap();
        if let Some(go) = &self.go {
            go.recv_timeout(PATIENCE).unwrap();
        }
        if caller.is_gone() {
            return None; // stop before the model call
        }
        let answer = bg.predict(&1).ok()?;
        Some(format!("{} {answer:?}", std::thread::current().name()?))
    }
}

#[test]
fn jobs_run_on_the_pool_threads_and_stop_early_when_their_caller_is_gone() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Arc::<AtomicU64>::default();
        let model = Gated {
            tag: 7,
            gate: None,
            calls: Arc::clone(&t),
        };
        let bg = Arc::new(BlueGreen::new("v1", model).unwrap());
        let pool = InferencePool::builder()
            .workers(1)
            .thread_name("inference")
            .build()
            .unwrap();
        let svc = PredictService::for_jobs(bg, &pool);
        let (started, started_rx) = crossbeam_channel::unbounded();
        let job = WhereAndWho {
            go: None,
            started: started.clone(),
        };
        let out = bounded(svc.clone().oneshot(job)).await.unwrap();
        assert_eq!(out, "inference-0 (7, 1)", "not on the executor's thread");

        started_rx.recv_timeout(PATIENCE).unwrap();
        let (go, go_rx) = crossbeam_channel::unbounded();
        let job = WhereAndWho {
            go: Some(go_rx),
            started,
        };
        let mut svc = svc;
        bounded(svc.ready()).await.unwrap();
        let abandoned = svc.call(job); // submitted to the pool by `call` itself
        started_rx.recv_timeout(PATIENCE).unwrap(); // the job is running
        drop(abandoned); // the caller goes away mid-job
        go.send(()).unwrap();
        let skipped = bounded(async {
            while pool.stats().skipped == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        skipped.await;
        assert_eq!(
            t.load(Ordering::SeqCst),
            1,
            "the abandoned job never called the model"
        );
        assert_eq!(pool.stats().completed, 1);
    });
}

#[test]
fn many_callers_get_the_answer_of_the_version_that_computed_it_while_versions_swap() {
    let rt = runtime();
    let bg = Arc::new(BlueGreen::new("v1", free(1)).unwrap());
    let pool = pool(2, 16);
    let svc = PredictService::new(Arc::clone(&bg), &pool);
    let swapper = {
        let bg = Arc::clone(&bg);
        std::thread::spawn(move || {
            for tag in 2..=40 {
                bg.stage(format!("v{tag}"), free(tag)).unwrap();
                bg.swap().unwrap();
            }
        })
    };
    let checked = rt.block_on(async {
        let callers: Vec<_> = (0..8u64)
            .map(|c| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let mut checked = 0;
                    for i in 0..250 {
                        let x = c * 1000 + i;
                        let a = svc.clone().oneshot(Predict::new(x)).await.unwrap();
                        let tag: u64 = a.version[1..].parse().unwrap();
                        assert_eq!(a.output.unwrap(), (tag, x), "answer of {}", a.version);
                        checked += 1;
                    }
                    checked
                })
            })
            .collect();
        let mut checked = 0;
        for c in callers {
            checked += bounded(c).await.unwrap();
        }
        checked
    });
    swapper.join().unwrap();
    assert_eq!(checked, 2000);
    assert_eq!(pool.stats().completed, 2000);
}
