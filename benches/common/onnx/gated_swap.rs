//! `swap()` with five gates, idle and with two readers busy on both cores
//! ([`GatedSwap`]): what a promotion costs the admin path when the service is saturated.
//!
//! The deployment serves digits v1 with the gates a careful service configures — schema
//! like live, sanity, accuracy, regression against live, agreement with live — over the
//! 450-row golden set. Each round stages a freshly loaded v2 (untimed), times `swap()`
//! (the five gates and the flip), and rolls back, so v1 stays live and its golden-set
//! evaluation stays cached, as it does in a service while candidates come and go.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bluegreen::BlueGreen;
use bluegreen::gates::{GoldenGates, SchemaGate};
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxModel};

use super::super::with_busy_readers;
use super::digits::config;
use super::{POOL, environment, golden, load_model, model_path, single_rows};

/// The gates of [`GatedSwap`], in order.
pub const GATES: usize = 5;

/// A deployment of digits v1 behind [`GATES`] gates, and a single-row request for its
/// readers.
pub struct GatedSwap {
    bg: BlueGreen<OnnxModel>,
    request: Inputs,
    seq: u64,
}

impl Default for GatedSwap {
    fn default() -> Self {
        Self::new()
    }
}

impl GatedSwap {
    pub fn new() -> Self {
        environment();
        let golden = golden();
        let request = Inputs::single(single_rows(&golden, 1).remove(0));
        let gates = GoldenGates::new(golden, OnnxBinding::classifier());
        let bg = BlueGreen::builder()
            .validator(SchemaGate::like_live())
            .validator(gates.sanity())
            .validator(gates.accuracy(0.9))
            .validator(gates.regression(0.05))
            .validator(gates.agreement(0.9))
            .build("1", load_model(1, POOL))
            .expect("deployment");
        Self {
            bg,
            request,
            seq: 0,
        }
    }

    /// Stages a fresh v2 and times `swap()` with `readers` threads calling `predict` flat
    /// out meanwhile (0 = idle), then rolls back (untimed).
    pub fn round(&mut self, readers: usize) -> Duration {
        self.seq += 1;
        let version = format!("2-{}", self.seq);
        let bg = &self.bg;
        let took = with_busy_readers(bg, readers, &self.request, || {
            bg.stage_with(version, || config(POOL).load(model_path(2)))
                .expect("stage");
            let started = Instant::now();
            let report = bg.swap().expect("v2 passes every gate");
            let took = started.elapsed();
            black_box(report);
            took
        });
        bg.rollback().expect("rollback");
        took
    }
}
