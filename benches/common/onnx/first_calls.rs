//! First requests after a swap: a freshly loaded v2 swapped in (with or without warm-up
//! samples) and its first [`FIRST`] calls timed one by one, against the same model's
//! steady state ([`after_swap`], [`AfterSwap`]).

use std::hint::black_box;
use std::time::Instant;

use bluegreen::onnx::{Inputs, OnnxModel};
use bluegreen::{BlueGreen, Model};

use super::super::{median, nanos, percentile, thread_run_delay_ns};
use super::digits::config;
use super::{POOL, bluegreen_run, golden, load_model, model_path, single_rows};

/// Requests timed right after a swap (and per steady-state window).
pub const FIRST: usize = 100;
/// Golden rows configured as warm-up samples in the warm configuration.
pub const WARMUP_SAMPLES: usize = 16;
/// Untimed calls on v1 before the swap (from the measuring thread, like a running
/// service), and on v2 between the first window and the steady-state windows.
pub const SETTLE_CALLS: usize = 1000;
/// Steady-state windows of [`FIRST`] calls.
pub const STEADY_WINDOWS: usize = 20;

/// What one freshly loaded, swapped-in model showed.
#[derive(Debug, Clone, Copy)]
pub struct AfterSwap {
    /// p99 (nearest rank: the 99th of 100) of the first [`FIRST`] single-row calls, ns.
    pub first_p99: f64,
    /// The slowest of those calls, ns.
    pub first_max: f64,
    /// Steady-state p99 of the same model: the median over [`STEADY_WINDOWS`] windows
    /// of [`FIRST`] calls (after [`SETTLE_CALLS`]) of each window's p99, ns — the same
    /// statistic as `first_p99`, over windows in which the thread was not preempted.
    pub steady_p99: f64,
    /// Whether the first window was preempted in every attempt (its figure then includes
    /// waiting for a CPU).
    pub preempted: bool,
}

/// Single-row inputs: all 450 golden rows.
pub fn golden_inputs() -> Vec<Inputs> {
    let golden = golden();
    single_rows(&golden, golden.len())
        .into_iter()
        .map(Inputs::single)
        .collect()
}

/// Times [`FIRST`] single-row `predict`s (each call separately); `true` if the thread
/// was preempted meanwhile (Linux schedstat).
fn timed_window(bg: &BlueGreen<OnnxModel>, rows: &[Inputs], offset: usize) -> (Vec<f64>, bool) {
    let before = thread_run_delay_ns();
    let times = (0..FIRST)
        .map(|i| {
            let x = &rows[(offset + i) % rows.len()];
            let started = Instant::now();
            let n = bluegreen_run(bg, x);
            let ns = nanos(started.elapsed());
            black_box(n);
            ns
        })
        .collect();
    let preempted = matches!((before, thread_run_delay_ns()), (Some(a), Some(b)) if b > a);
    (times, preempted)
}

/// Loads digits v1 into a deployment (with [`WARMUP_SAMPLES`] golden rows as warm-up
/// samples if `warm`) and serves [`SETTLE_CALLS`] calls on it, stages a freshly loaded
/// v2 with `stage_with`, swaps, and times the first [`FIRST`] calls, then the steady
/// state of the same model, all from the calling thread. A trial whose first
/// window was preempted is redone with a fresh load, up to `attempts` times.
pub fn after_swap(warm: bool, rows: &[Inputs], attempts: usize) -> AfterSwap {
    after_swap_with(warm, false, rows, attempts)
}

/// [`after_swap`] with warm-up samples, and the same samples also run on v2 by the
/// serving (measuring) thread itself before v2 is staged: what warming on the
/// application's own request threads would buy (the candidate is not yet gated then —
/// a hang would hang a request thread, which is why bluegreen's warm-up runs on its
/// supervised worker).
pub fn after_swap_warmed_here(rows: &[Inputs], attempts: usize) -> AfterSwap {
    after_swap_with(true, true, rows, attempts)
}

fn after_swap_with(warm: bool, here: bool, rows: &[Inputs], attempts: usize) -> AfterSwap {
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let mut builder = BlueGreen::builder();
        if warm {
            builder = builder.warmup_samples(rows[..WARMUP_SAMPLES].to_vec());
        }
        let bg = builder.build("1", load_model(1, POOL)).expect("deployment");
        // A running service: this thread has been serving v1 (so per-thread state such
        // as ONNX Runtime's thread-local GEMM buffers exists) when v2 is swapped in.
        for i in 0..SETTLE_CALLS {
            black_box(bluegreen_run(&bg, &rows[i % rows.len()]));
        }
        if here {
            let model = config(POOL).load(model_path(2)).expect("load v2");
            for x in &rows[..WARMUP_SAMPLES] {
                black_box(model.predict(x).expect("warm-up here"));
            }
            bg.stage("2", model).expect("stage");
        } else {
            bg.stage_with("2", || config(POOL).load(model_path(2)))
                .expect("stage");
        }
        bg.swap().expect("swap");
        let (first, preempted) = timed_window(&bg, rows, WARMUP_SAMPLES);
        for i in 0..SETTLE_CALLS {
            black_box(bluegreen_run(&bg, &rows[i % rows.len()]));
        }
        let (mut clean, mut all) = (Vec::new(), Vec::new());
        for w in 0..STEADY_WINDOWS {
            let (times, p) = timed_window(&bg, rows, w * FIRST);
            let p99 = percentile(&times, 99.0);
            all.push(p99);
            if !p {
                clean.push(p99);
            }
        }
        let result = AfterSwap {
            first_p99: percentile(&first, 99.0),
            first_max: first.iter().copied().fold(0.0, f64::max),
            steady_p99: median(if clean.is_empty() { &all } else { &clean }),
            preempted,
        };
        if !preempted {
            return result;
        }
        last = Some(result);
    }
    last.expect("at least one attempt")
}
