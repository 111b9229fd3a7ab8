//! The digits models and the one call each path makes: where the model files and the
//! golden set are, ONNX Runtime's shared [`environment`], a bare session built like
//! `OnnxModel`'s pooled ones, `OnnxModel` loading, and one call through a bare session,
//! `OnnxModel` and `BlueGreen<OnnxModel>` ([`bare_run`], [`model_run`], [`bluegreen_run`]).

use std::path::PathBuf;
use std::sync::OnceLock;

use bluegreen::onnx::ndarray::{ArrayD, Axis};
use bluegreen::onnx::ort;
use bluegreen::onnx::ort::environment::Environment;
use bluegreen::onnx::ort::session::Session;
use bluegreen::onnx::ort::session::builder::GraphOptimizationLevel;
use bluegreen::onnx::ort::value::TensorRef;
use bluegreen::onnx::{Inputs, OnnxConfig, OnnxModel};
use bluegreen::{BlueGreen, GoldenSet, Model};

/// Distinct single-row inputs the read-path loops cycle through.
pub const ROWS: usize = 16;
/// Sessions per `OnnxModel` (one per core here; the default on this machine).
pub const POOL: usize = 2;

pub fn model_path(version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("models/digits/{version}/model.onnx"))
}

/// The held-out digits golden set (450 rows of 64 features, labels).
pub fn golden() -> GoldenSet {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits/golden.npz");
    GoldenSet::from_npz(&path).expect("models/digits/golden.npz")
}

/// The first `n` golden rows, each as a `[1, 64]` array.
pub fn single_rows(golden: &GoldenSet, n: usize) -> Vec<ArrayD<f32>> {
    golden
        .inputs()
        .outer_iter()
        .take(n)
        .map(|row| row.to_owned().insert_axis(Axis(0)).into_dyn())
        .collect()
}

/// ONNX Runtime's process-wide environment, shared by bluegreen's sessions and the bare
/// ones built here. bluegreen keeps the environment it creates in `init_runtime()` to
/// itself, and ort allows one per process, so it is created here with bluegreen's
/// settings (name, telemetry off) and handed to bluegreen with `init_runtime_with`;
/// `init_runtime()` then confirms bluegreen uses it.
pub fn environment() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let env = ort::init()
            .with_name("bluegreen")
            .with_telemetry(false)
            .build()
            .unwrap_or_else(|e| {
                panic!(
                    "ONNX Runtime: {e}; to fix: {}",
                    bluegreen::onnx::RUNTIME_FIX
                )
            });
        bluegreen::onnx::init_runtime_with(env.clone())
            .expect("bluegreen's runtime must not exist yet: load models after this");
        bluegreen::onnx::init_runtime().expect("ONNX Runtime");
        env
    })
}

/// A session built the way `OnnxModel` builds each of its pooled ones (same
/// environment, 1 intra-op thread, all graph optimizations), to be used bare.
pub fn bare_session(version: u32) -> Session {
    fn fail(what: &str, e: impl std::fmt::Display) -> ! {
        panic!("bare session: {what}: {e}")
    }
    let builder = Session::builder(environment()).unwrap_or_else(|e| fail("builder", e));
    let builder = builder
        .with_intra_threads(1)
        .unwrap_or_else(|e| fail("intra threads", e));
    let mut builder = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .unwrap_or_else(|e| fail("optimization level", e));
    builder
        .commit_from_file(model_path(version))
        .unwrap_or_else(|e| fail("load", e))
}

/// One bare `session.run` on one `[1, 64]` row; returns the number of outputs.
#[inline]
pub fn bare_run(session: &mut Session, x: &ArrayD<f32>) -> u64 {
    let value = TensorRef::from_array_view(x).expect("tensor");
    let outputs = session.run(ort::inputs![value]).expect("run");
    outputs.len() as u64
}

/// `version` as an `OnnxModel` of `pool` sessions, 1 intra-op thread each.
pub fn load_model(version: u32, pool: usize) -> OnnxModel {
    environment();
    config(pool).load(model_path(version)).expect("load model")
}

pub(super) fn config(pool: usize) -> OnnxConfig {
    OnnxConfig::new().pool_size(pool).intra_threads(1)
}

/// One `OnnxModel::predict`; returns the number of outputs.
#[inline]
pub fn model_run(model: &OnnxModel, x: &Inputs) -> u64 {
    model.predict(x).expect("predict").len() as u64
}

/// One `BlueGreen::predict`; returns the number of outputs.
#[inline]
pub fn bluegreen_run(bg: &BlueGreen<OnnxModel>, x: &Inputs) -> u64 {
    bg.predict(x).expect("predict").len() as u64
}
