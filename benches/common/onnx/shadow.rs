//! Shadow traffic with the real models: digits v1 live, v2 staged, and no shadow, a
//! saturated one (slow worker) or the real v2 run flat out by the worker
//! ([`OnnxShadowMode`], [`OnnxShadow`]).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bluegreen::onnx::{Inputs, OnnxModel, Outputs};
use bluegreen::shadow::{Comparison, Shadow, ShadowStatus};
use bluegreen::{BlueGreen, Model};

use super::super::{Load, RunResult, SHADOW_QUEUE, SHADOW_SLOW, nanos, run_chunks_with};
use super::read_path::calibrate_with;
use super::{POOL, ROWS, bluegreen_run, golden, load_model, single_rows};

/// The live answer a mirrored ONNX request keeps: its labels (`Outputs` is not `Clone`,
/// so the shadow uses `Shadow::summarized`; `Inputs` is `Clone`).
pub fn labels(out: &Outputs) -> Vec<i64> {
    out.i64("label")
        .map(|a| a.iter().copied().collect())
        .unwrap_or_default()
}

/// Shadow set-up of an [`OnnxShadow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnnxShadowMode {
    /// No shadow configured.
    None,
    /// Every call mirrored through a queue of [`SHADOW_QUEUE`] to a worker held
    /// [`SHADOW_SLOW`] per mirror: saturated, and the worker sleeps
    /// rather than competing for a core, so what remains is the caller's own cost.
    Saturated,
    /// Every call mirrored through a queue of [`SHADOW_QUEUE`] to the real v2, run flat
    /// out by the worker on the other core (on a 2-core machine, that costs the caller
    /// shared caches and memory bandwidth too).
    Real,
}

impl OnnxShadowMode {
    pub fn name(self) -> &'static str {
        match self {
            OnnxShadowMode::None => "none",
            OnnxShadowMode::Saturated => "saturated",
            OnnxShadowMode::Real => "real",
        }
    }
}

/// Digits v1 live, v2 staged (pool of [`POOL`] each, warmed), with the shadow set-up of
/// an [`OnnxShadowMode`].
pub struct OnnxShadow {
    bg: BlueGreen<OnnxModel>,
    inputs: Vec<Inputs>,
}

impl OnnxShadow {
    pub fn new(mode: OnnxShadowMode) -> Self {
        let inputs: Vec<Inputs> = single_rows(&golden(), ROWS)
            .into_iter()
            .map(Inputs::single)
            .collect();
        let mut builder = BlueGreen::builder().warmup_samples(inputs.clone());
        if mode != OnnxShadowMode::None {
            let slow = mode == OnnxShadowMode::Saturated;
            let compare = move |candidate: &Outputs, live: &Vec<i64>| {
                if slow {
                    std::thread::sleep(SHADOW_SLOW);
                }
                Comparison {
                    agree: labels(candidate) == *live,
                    abs_diff: 0.0,
                }
            };
            builder = builder
                .shadow(Shadow::summarized(1.0, labels, compare).queue_capacity(SHADOW_QUEUE));
        }
        let bg = builder.build("1", load_model(1, POOL)).expect("deployment");
        let candidate = load_model(2, POOL);
        candidate.warm_up(&inputs).expect("warm-up");
        bg.stage("2", candidate).expect("stage");
        Self { bg, inputs }
    }

    /// One reader calling `predict` in `chunks` chunks of `chunk_calls` calls.
    pub fn run(&self, chunks: usize, chunk_calls: u64) -> RunResult {
        let (bg, inputs) = (&self.bg, &self.inputs);
        run_chunks_with(
            Load::ONE,
            chunks,
            chunk_calls,
            &mut [()],
            |_, x| bluegreen_run(bg, &inputs[(x as usize) % ROWS]),
            || {},
        )
    }

    /// Calls per chunk so that one chunk of [`run`](Self::run) takes about `target`.
    pub fn calibrate(&self, target: Duration) -> u64 {
        calibrate_with(target, |chunks, calls| self.run(chunks, calls))
    }

    /// The shadow's counters for v2 (`None` without a shadow).
    pub fn shadow(&self) -> Option<ShadowStatus> {
        self.bg.status().shadow
    }

    /// The copies one mirrored call makes before its enqueue is attempted (input clone,
    /// kept labels, boxed), ns per call over `n` calls: what a saturated shadow throws
    /// away for every dropped mirror.
    pub fn mirror_copy_ns(&self, n: usize) -> f64 {
        let out = self.bg.predict(&self.inputs[0]).expect("predict");
        let started = Instant::now();
        for i in 0..n {
            let input = self.inputs[i % ROWS].clone();
            let kept: Box<dyn std::any::Any + Send> = Box::new(labels(&out));
            black_box((input, kept));
        }
        nanos(started.elapsed()) / n.max(1) as f64
    }
}
