//! Execution providers on a machine without accelerators (the CPU build of ONNX Runtime from
//! the `onnxruntime` wheel has only the CPU provider): asking for CUDA, TensorRT, OpenVINO,
//! Core ML or DirectML is a typed `ProviderUnavailable` error naming the provider and why —
//! or, when the configuration chose it, a logged fall back to the CPU whose model says so
//! and answers exactly like a CPU model. A broken model stays an invalid-model error
//! whatever the provider. Accelerator pools default to two sessions.
//!
//! With bluegreen's provider features on (`cargo test --all-features`), the reason is ONNX
//! Runtime's (the library lacks the provider); without them, it is the missing feature.
//! The GPU path itself is exercised by `scripts/gpu-check.sh` on a CUDA machine.
#![cfg(feature = "onnx")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bluegreen::onnx::ndarray::Array2;
use bluegreen::onnx::{
    ACCELERATOR_SESSIONS, ExecutionProvider, Inputs, OnnxConfig, OnnxError, OnnxModel,
};
use bluegreen::{BlueGreen, Model};

fn digits(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("models/digits/{version}/model.onnx"))
}

fn accelerators() -> Vec<ExecutionProvider> {
    vec![
        ExecutionProvider::cuda(),
        ExecutionProvider::Cuda { device_id: 3 },
        ExecutionProvider::tensorrt(),
        ExecutionProvider::openvino(),
        ExecutionProvider::OpenVino {
            device_type: Some("GPU.0".to_owned()),
        },
        ExecutionProvider::coreml(),
        ExecutionProvider::directml(),
    ]
}

/// What the reason must say for `provider` in this build.
fn assert_reason_explains(provider: &ExecutionProvider, reason: &str) {
    if provider.is_compiled_in() {
        assert!(
            reason.contains("this ONNX Runtime library was built without")
                && reason.contains(provider.runtime_name()),
            "{provider}: {reason}"
        );
    } else {
        let feature = provider.feature().unwrap();
        assert_eq!(
            reason,
            format!("bluegreen was built without its `{feature}` feature"),
            "{provider}"
        );
    }
}

#[test]
fn asking_for_an_accelerator_the_runtime_lacks_is_a_typed_error_naming_it() {
    for provider in accelerators() {
        let result = OnnxConfig::new()
            .execution_provider(provider.clone())
            .load(digits(2));
        match result {
            Err(OnnxError::ProviderUnavailable {
                provider: named,
                reason,
            }) => {
                assert_eq!(named, provider);
                assert_reason_explains(&provider, &reason);
                let message = OnnxError::ProviderUnavailable {
                    provider: named,
                    reason,
                }
                .to_string();
                assert!(
                    message.starts_with(&format!("execution provider {provider} is unavailable")),
                    "{message}"
                );
                assert!(message.contains("OnnxConfig::cpu_fallback"), "{message}");
            }
            Err(other) => panic!("{provider}: expected ProviderUnavailable, got {other}"),
            Ok(m) => panic!(
                "{provider}: loaded on {} although this machine has no such provider",
                m.execution_provider()
            ),
        }
    }
}

/// Collects everything `tracing` writes while a closure runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn a_chosen_cpu_fallback_is_logged_says_why_and_answers_like_the_cpu_model() {
    let x = Inputs::single(Array2::<f32>::from_shape_fn((3, 64), |(r, c)| {
        ((r * 64 + c) % 17) as f32
    }));
    let cpu = OnnxModel::load(digits(2)).unwrap();
    let expected = cpu.predict(&x).unwrap();
    for provider in accelerators() {
        let (model, log) = logged(|| {
            OnnxConfig::new()
                .execution_provider(provider.clone())
                .cpu_fallback(true)
                .load(digits(2))
                .unwrap()
        });
        assert_eq!(model.execution_provider(), &ExecutionProvider::Cpu);
        let reason = model.cpu_fallback_reason().expect("it fell back");
        assert_reason_explains(&provider, reason);
        assert!(
            log.contains("execution provider unavailable; loading on the CPU as configured")
                && log.contains(&provider.to_string()),
            "no warning for {provider}:\n{log}"
        );
        assert_eq!(
            model.pool_size(),
            OnnxConfig::new().resolved_pool_size(),
            "sized for the CPU it runs on"
        );
        let got = model.predict(&x).unwrap();
        assert_eq!(got.i64("label").unwrap(), expected.i64("label").unwrap());
        assert_eq!(
            got.f32("probabilities").unwrap(),
            expected.f32("probabilities").unwrap()
        );
    }
    // A pool size given explicitly is kept after the fall back.
    let model = OnnxConfig::new()
        .execution_provider(ExecutionProvider::cuda())
        .cpu_fallback(true)
        .pool_size(3)
        .load(digits(2))
        .unwrap();
    assert_eq!(model.pool_size(), 3);
    // On the CPU nothing falls back.
    let plain = OnnxModel::load(digits(2)).unwrap();
    assert_eq!(
        (plain.execution_provider(), plain.cpu_fallback_reason()),
        (&ExecutionProvider::Cpu, None)
    );
}

#[test]
fn a_broken_model_is_an_invalid_model_error_whatever_the_provider() {
    for fallback in [true, false] {
        let err = OnnxConfig::new()
            .execution_provider(ExecutionProvider::cuda())
            .cpu_fallback(fallback)
            .load_from_memory(b"definitely not an onnx graph")
            .unwrap_err();
        match (fallback, &err) {
            (true, OnnxError::InvalidModel { path: None, .. }) => {}
            // Without the fall back the provider is judged first: it is unavailable here.
            (false, OnnxError::ProviderUnavailable { .. }) => {}
            _ => panic!("fallback {fallback}: unexpected {err}"),
        }
    }
}

#[test]
fn accelerator_pools_default_to_two_sessions_and_the_cpu_to_one_per_core() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(OnnxConfig::new().resolved_pool_size(), cores);
    for provider in accelerators() {
        let config = OnnxConfig::new().execution_provider(provider);
        assert_eq!(config.resolved_pool_size(), ACCELERATOR_SESSIONS);
        assert_eq!(ACCELERATOR_SESSIONS, 2);
        assert_eq!(config.pool_size(1).resolved_pool_size(), 1);
    }
}

#[test]
fn a_fallen_back_model_serves_and_swaps_in_a_deployment() {
    let load = |v: u32| {
        OnnxConfig::new()
            .execution_provider(ExecutionProvider::cuda())
            .cpu_fallback(true)
            .pool_size(2)
            .load(digits(v))
            .unwrap()
    };
    let bg = BlueGreen::new("1", load(1)).unwrap();
    bg.stage("2", load(2)).unwrap();
    bg.swap().unwrap();
    let x = Inputs::single(Array2::<f32>::zeros((1, 64)));
    let answer = bg.predict_versioned(&x);
    assert_eq!(answer.version, "2");
    assert_eq!(answer.output.unwrap().i64("label").unwrap().len(), 1);
    assert_eq!(
        bg.active().model().execution_provider(),
        &ExecutionProvider::Cpu
    );
}
