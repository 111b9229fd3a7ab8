//! The ONNX read paths: [`OnnxPath`] (bare session, `OnnxModel`, `BlueGreen<OnnxModel>`)
//! and [`OnnxBench`], which runs them on one warmed model version through the chunked
//! runner at 1 or 2 threads.

use std::time::Duration;

use bluegreen::BlueGreen;
use bluegreen::onnx::ndarray::ArrayD;
use bluegreen::onnx::ort::session::Session;
use bluegreen::onnx::{Inputs, OnnxModel};

use super::super::{Load, RunResult, median, nanos, run_chunks_with};
use super::{
    POOL, ROWS, bare_run, bare_session, bluegreen_run, golden, load_model, model_run, single_rows,
};

/// How a request reaches the digits model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnnxPath {
    /// A bare ort `Session::run` loop (one session per reader thread).
    Bare,
    /// `OnnxModel::predict` (session pool, input checks).
    Model,
    /// `BlueGreen<OnnxModel>::predict`.
    BlueGreen,
}

impl OnnxPath {
    pub const ALL: [OnnxPath; 3] = [OnnxPath::Bare, OnnxPath::Model, OnnxPath::BlueGreen];

    pub fn name(self) -> &'static str {
        match self {
            OnnxPath::Bare => "bare_session",
            OnnxPath::Model => "onnxmodel",
            OnnxPath::BlueGreen => "bluegreen_onnx",
        }
    }
}

/// The three read paths on one model version, warmed, ready to run. `OnnxModel::predict`
/// is called on the very model the deployment serves (`bg.active().model()`), so that
/// `bluegreen_onnx / onnxmodel` compares one model instance with itself: two instances
/// (or two bare sessions) of one model differ by a few percent from run to run here.
pub struct OnnxBench {
    arrays: Vec<ArrayD<f32>>,
    inputs: Vec<Inputs>,
    /// One bare session per possible reader.
    bare: Vec<Session>,
    bg: BlueGreen<OnnxModel>,
}

impl OnnxBench {
    pub fn new(version: u32) -> Self {
        let arrays = single_rows(&golden(), ROWS);
        let inputs: Vec<Inputs> = arrays.iter().cloned().map(Inputs::single).collect();
        let mut bare: Vec<Session> = (0..POOL).map(|_| bare_session(version)).collect();
        for session in &mut bare {
            for x in &arrays {
                bare_run(session, x);
            }
        }
        let bg = BlueGreen::builder()
            .warmup_samples(inputs.clone())
            .build(version.to_string(), load_model(version, POOL))
            .expect("deployment");
        Self {
            arrays,
            inputs,
            bare,
            bg,
        }
    }

    /// `readers` threads (1 or 2) call `path` in `chunks` chunks of `chunk_calls`
    /// calls each; see [`run_chunks_with`].
    pub fn run(
        &mut self,
        path: OnnxPath,
        readers: usize,
        chunks: usize,
        chunk_calls: u64,
    ) -> RunResult {
        let load = Load {
            readers,
            writer: None,
        };
        let (arrays, inputs) = (&self.arrays, &self.inputs);
        let row = |x: u64| (x as usize) % ROWS;
        let mut stateless = vec![(); readers];
        match path {
            OnnxPath::Bare => run_chunks_with(
                load,
                chunks,
                chunk_calls,
                &mut self.bare[..readers],
                |session, x| bare_run(session, &arrays[row(x)]),
                || {},
            ),
            OnnxPath::Model => {
                let active = self.bg.active();
                let model = active.model();
                run_chunks_with(
                    load,
                    chunks,
                    chunk_calls,
                    &mut stateless,
                    |_, x| model_run(model, &inputs[row(x)]),
                    || {},
                )
            }
            OnnxPath::BlueGreen => {
                let bg = &self.bg;
                run_chunks_with(
                    load,
                    chunks,
                    chunk_calls,
                    &mut stateless,
                    |_, x| bluegreen_run(bg, &inputs[row(x)]),
                    || {},
                )
            }
        }
    }

    /// Calls per chunk so that one chunk of the bare path takes about `target`.
    pub fn calibrate(&mut self, target: Duration) -> u64 {
        calibrate_with(target, |chunks, calls| {
            self.run(OnnxPath::Bare, 1, chunks, calls)
        })
    }
}

/// Calls per chunk so that one chunk of an ONNX path takes about `target`: `run(chunks,
/// chunk_calls)` makes a short probe run (3 chunks of 200 calls), whose median wall time
/// per call sets the size (64 to 2^20 calls). Serves [`OnnxBench::calibrate`] and
/// [`OnnxShadow::calibrate`](super::OnnxShadow::calibrate).
pub(super) fn calibrate_with(target: Duration, run: impl FnOnce(usize, u64) -> RunResult) -> u64 {
    let r = run(3, 200);
    let per_call = median(
        &r.chunks
            .iter()
            .map(|c| c.wall_ns_per_call)
            .collect::<Vec<_>>(),
    );
    ((nanos(target) / per_call.max(1.0)) as u64).clamp(64, 1 << 20)
}
