//! First requests after a swap: a freshly loaded v2 swapped in (with or without warm-up
//! samples) and its first [`FIRST`] calls timed one by one, against the same model's
//! steady state ([`after_swap`], [`AfterSwap`]); the same with the warm-up also run on
//! the measuring thread ([`after_swap_warmed_here`]); and the control without a swap,
//! after the measuring thread only paused ([`after_pause`]).

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
    after_swap_with(Before::Swap { warm }, rows, attempts)
}

/// [`after_swap`] with warm-up samples, and the same samples also run on v2 by the
/// serving (measuring) thread itself before v2 is staged: what warming on the
/// application's own request threads would buy (the candidate is not yet gated then —
/// a hang would hang a request thread, which is why bluegreen's warm-up runs on its
/// supervised worker).
pub fn after_swap_warmed_here(rows: &[Inputs], attempts: usize) -> AfterSwap {
    after_swap_with(Before::SwapWarmedHere, rows, attempts)
}

/// The control of [`after_swap`]: no swap at all — the measuring thread sleeps for
/// [`PAUSE`] (about what `swap()` keeps it waiting for the gate worker) and times the next
/// [`FIRST`] calls on the same, long-warm v1.
pub fn after_pause(rows: &[Inputs], attempts: usize) -> AfterSwap {
    after_swap_with(Before::Pause, rows, attempts)
}

/// How long [`after_pause`] sleeps.
pub const PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// What happens between the settled v1 and the timed window.
#[derive(Clone, Copy, PartialEq)]
enum Before {
    Swap { warm: bool },
    SwapWarmedHere,
    Pause,
}

fn after_swap_with(before: Before, rows: &[Inputs], attempts: usize) -> AfterSwap {
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let mut builder = BlueGreen::builder();
        if before != (Before::Swap { warm: false }) {
            builder = builder.warmup_samples(rows[..WARMUP_SAMPLES].to_vec());
        }
        let bg = builder.build("1", load_model(1, POOL)).expect("deployment");
        // A running service: this thread has been serving v1 (so per-thread state such
        // as ONNX Runtime's thread-local GEMM buffers exists) when v2 is swapped in.
        for i in 0..SETTLE_CALLS {
            black_box(bluegreen_run(&bg, &rows[i % rows.len()]));
        }
        match before {
            Before::SwapWarmedHere => {
                let model = config(POOL).load(model_path(2)).expect("load v2");
                for x in &rows[..WARMUP_SAMPLES] {
                    black_box(model.predict(x).expect("warm-up here"));
                }
                bg.stage("2", model).expect("stage");
                bg.swap().expect("swap");
            }
            Before::Swap { .. } => {
                bg.stage_with("2", || config(POOL).load(model_path(2)))
                    .expect("stage");
                bg.swap().expect("swap");
            }
            Before::Pause => std::thread::sleep(PAUSE),
        }
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
