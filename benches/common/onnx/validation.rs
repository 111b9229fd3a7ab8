//! Validation throughput: `GoldenGates`' accuracy gate over the golden set, against raw
//! `OnnxModel::predict` over the same golden batches on a model in the same state
//! ([`ValidationBench`], [`ValidationRound`]): in `swap()` (the candidate warmed first, in
//! the same hand-off to the gate worker) against a fresh model given the same warm-up, and
//! in a dry-run `validate()` (a cold candidate) against a fresh cold model.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bluegreen::gates::GoldenGates;
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxModel};
use bluegreen::{BlueGreen, Model, Validator};

use super::digits::config;
use super::{POOL, environment, golden, load_model, model_path, model_run};

/// Golden rows per model call in the validation measurements (GoldenGates' default).
pub const VALIDATION_BATCH: usize = 256;

/// Times of one validation round.
#[derive(Debug, Clone, Copy)]
pub struct ValidationRound {
    /// `bg.validate()` wall time: the accuracy gate over the golden set on a freshly
    /// staged, cold v2 (the hand-off to the gate worker, reading the outputs).
    pub validate: Duration,
    /// The report's own `elapsed`.
    pub report: Duration,
    /// The validation in `swap()` of another freshly staged v2 (its report's `elapsed`:
    /// the gate, after the candidate's warm-up).
    pub in_swap: Duration,
    /// `OnnxModel::predict` over the golden batches on a freshly loaded v2 given the
    /// warm-up `swap()` gives a candidate (the gate's warm-up inputs, every session).
    pub raw_warmed: Duration,
    /// `OnnxModel::predict` over the same rows in the same batches, on another freshly
    /// loaded v2 (first pass: as cold as the validated candidate).
    pub raw_cold: Duration,
    /// The same again on that model (second pass: warm).
    pub raw_warm: Duration,
}

/// A deployment (v1 live) whose accuracy gate runs over the golden set.
pub struct ValidationBench {
    bg: BlueGreen<OnnxModel>,
    batches: Vec<Inputs>,
    warm_up: Vec<Inputs>,
    rows: usize,
    seq: u64,
}

impl Default for ValidationBench {
    fn default() -> Self {
        Self::new()
    }
}

impl ValidationBench {
    pub fn new() -> Self {
        environment();
        let gates =
            GoldenGates::with_batch_size(golden(), OnnxBinding::classifier(), VALIDATION_BATCH);
        let batches = gates
            .golden()
            .batches(VALIDATION_BATCH)
            .map(|(_, rows)| Inputs::single(rows.to_owned()))
            .collect();
        let rows = gates.golden().len();
        let warm_up = gates.accuracy(0.9).warm_up_inputs();
        let bg = BlueGreen::builder()
            .validator(gates.accuracy(0.9))
            .build("1", load_model(1, POOL))
            .expect("deployment");
        Self {
            bg,
            batches,
            warm_up,
            rows,
            seq: 0,
        }
    }

    /// Golden rows per evaluation.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Stages a fresh v2 (gates cache results per loaded model, so each round needs a
    /// new one), times `validate()`, then raw predicts on another fresh v2.
    pub fn round(&mut self) -> ValidationRound {
        self.seq += 1;
        self.bg
            .stage_with(format!("2-{}", self.seq), || {
                config(POOL).load(model_path(2))
            })
            .expect("stage");
        let started = Instant::now();
        let report = self.bg.validate().expect("validate");
        let validate = started.elapsed();
        assert!(
            report.passed(),
            "v2 must pass: {}",
            report.failure_summary()
        );
        let model = load_model(2, POOL);
        let raw = |m: &OnnxModel| {
            let started = Instant::now();
            for batch in &self.batches {
                black_box(model_run(m, batch));
            }
            started.elapsed()
        };
        let raw_cold = raw(&model);
        let raw_warm = raw(&model);
        drop(model);
        self.bg.unstage().expect("unstage");

        self.seq += 1;
        self.bg
            .stage_with(format!("2-{}", self.seq), || {
                config(POOL).load(model_path(2))
            })
            .expect("stage");
        let swapped = self.bg.swap().expect("v2 passes");
        self.bg.rollback().expect("rollback");
        let model = load_model(2, POOL);
        model.warm_up(&self.warm_up).expect("warm-up");
        let raw_warmed = raw(&model);
        ValidationRound {
            validate,
            report: report.elapsed,
            in_swap: swapped.validation.elapsed,
            raw_warmed,
            raw_cold,
            raw_warm,
        }
    }
}
