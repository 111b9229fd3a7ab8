//! [`ExecutionProvider`]: where ONNX Runtime runs a model — the CPU, or an accelerator
//! through one of ort's execution providers — registering it on a session builder, and
//! making a model's first session on it (or, when allowed, on the CPU instead).
//!
//! Each accelerator needs two things: bluegreen built with the matching cargo feature
//! (`cuda`, `tensorrt`, `openvino`, `coreml`, `directml`; each enables ort's feature of the
//! same name, which also makes ort's `download-binaries` fetch a build with it), and an
//! ONNX Runtime library built with that provider (with `load-dynamic`, the library
//! `ORT_DYLIB_PATH` names: e.g. the `onnxruntime-gpu` wheel for CUDA, not `onnxruntime`).
//! Either missing, or the device itself, is an [`OnnxError::ProviderUnavailable`] —
//! or, when the configuration allows it ([`OnnxConfig::cpu_fallback`]), a logged fall back
//! to the CPU.
//!
//! [`OnnxError::ProviderUnavailable`]: super::OnnxError::ProviderUnavailable
//! [`OnnxConfig::cpu_fallback`]: super::OnnxConfig::cpu_fallback

use std::fmt;

use ort::session::Session;
use ort::session::builder::SessionBuilder;

use super::OnnxError;
use super::config::{OnnxConfig, Source};

/// Sessions in an accelerator's pool unless [`OnnxConfig::pool_size`] says otherwise: the
/// device runs one session's kernels at a time, and each session holds its own copy of the
/// weights (and its own memory arena) on the device; a second session lets one call's
/// host-side work (input copies, CPU-only nodes) overlap another's device work.
///
/// [`OnnxConfig::pool_size`]: super::OnnxConfig::pool_size
pub const ACCELERATOR_SESSIONS: usize = 2;

/// Where ONNX Runtime runs a model; see [`OnnxConfig::execution_provider`].
///
/// [`OnnxConfig::execution_provider`]: super::OnnxConfig::execution_provider
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU provider (always available).
    #[default]
    Cpu,
    /// NVIDIA CUDA (feature `cuda`), on the GPU with this index.
    Cuda {
        /// CUDA device index.
        device_id: i32,
    },
    /// NVIDIA TensorRT (feature `tensorrt`), with CUDA for the nodes TensorRT does not
    /// take.
    TensorRt {
        /// CUDA device index.
        device_id: i32,
    },
    /// Intel OpenVINO (feature `openvino`).
    OpenVino {
        /// OpenVINO's device: `CPU`, `GPU`, `GPU.0`, `NPU`, `HETERO:NPU,GPU`, …; `None`
        /// for OpenVINO's default.
        device_type: Option<String>,
    },
    /// Apple Core ML (feature `coreml`).
    CoreMl,
    /// DirectML on Windows (feature `directml`), on the adapter with this index.
    DirectMl {
        /// DirectML adapter index.
        device_id: i32,
    },
}

impl ExecutionProvider {
    /// CUDA on GPU 0.
    pub fn cuda() -> Self {
        ExecutionProvider::Cuda { device_id: 0 }
    }

    /// TensorRT on GPU 0.
    pub fn tensorrt() -> Self {
        ExecutionProvider::TensorRt { device_id: 0 }
    }

    /// OpenVINO on its default device.
    pub fn openvino() -> Self {
        ExecutionProvider::OpenVino { device_type: None }
    }

    /// Core ML.
    pub fn coreml() -> Self {
        ExecutionProvider::CoreMl
    }

    /// DirectML on adapter 0.
    pub fn directml() -> Self {
        ExecutionProvider::DirectMl { device_id: 0 }
    }

    /// ONNX Runtime's name for it (`CUDAExecutionProvider`, …).
    pub fn runtime_name(&self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "CPUExecutionProvider",
            ExecutionProvider::Cuda { .. } => "CUDAExecutionProvider",
            ExecutionProvider::TensorRt { .. } => "TensorrtExecutionProvider",
            ExecutionProvider::OpenVino { .. } => "OpenVINOExecutionProvider",
            ExecutionProvider::CoreMl => "CoreMLExecutionProvider",
            ExecutionProvider::DirectMl { .. } => "DmlExecutionProvider",
        }
    }

    /// The bluegreen cargo feature that compiles it in (`None` for the CPU).
    pub fn feature(&self) -> Option<&'static str> {
        match self {
            ExecutionProvider::Cpu => None,
            ExecutionProvider::Cuda { .. } => Some("cuda"),
            ExecutionProvider::TensorRt { .. } => Some("tensorrt"),
            ExecutionProvider::OpenVino { .. } => Some("openvino"),
            ExecutionProvider::CoreMl => Some("coreml"),
            ExecutionProvider::DirectMl { .. } => Some("directml"),
        }
    }

    /// Whether this build of bluegreen has its feature.
    pub fn is_compiled_in(&self) -> bool {
        match self {
            ExecutionProvider::Cpu => true,
            ExecutionProvider::Cuda { .. } => cfg!(feature = "cuda"),
            ExecutionProvider::TensorRt { .. } => cfg!(feature = "tensorrt"),
            ExecutionProvider::OpenVino { .. } => cfg!(feature = "openvino"),
            ExecutionProvider::CoreMl => cfg!(feature = "coreml"),
            ExecutionProvider::DirectMl { .. } => cfg!(feature = "directml"),
        }
    }

    /// Whether it runs on an accelerator (everything but [`Cpu`](Self::Cpu)); decides the
    /// default pool size ([`ACCELERATOR_SESSIONS`] instead of one session per CPU).
    pub fn is_accelerator(&self) -> bool {
        *self != ExecutionProvider::Cpu
    }

    /// Registers it on `builder`; why not, when it cannot be: not compiled in, not in this
    /// ONNX Runtime build, or refused by ONNX Runtime.
    pub(super) fn register(&self, builder: &mut SessionBuilder) -> Result<(), String> {
        if !self.is_compiled_in() {
            return Err(format!(
                "bluegreen was built without its `{}` feature",
                self.feature().unwrap_or("?")
            ));
        }
        #[cfg(not(any(
            feature = "cuda",
            feature = "tensorrt",
            feature = "openvino",
            feature = "coreml",
            feature = "directml"
        )))]
        let _ = builder;
        match self {
            ExecutionProvider::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            ExecutionProvider::Cuda { device_id } => {
                let ep = ort::ep::CUDA::default().with_device_id(*device_id);
                append(ep, builder)
            }
            #[cfg(feature = "tensorrt")]
            ExecutionProvider::TensorRt { device_id } => {
                let trt = ort::ep::TensorRT::default().with_device_id(*device_id);
                append(trt, builder)?;
                // ONNX Runtime's advice: CUDA after TensorRT, for what TensorRT does not take.
                append(ort::ep::CUDA::default().with_device_id(*device_id), builder)
            }
            #[cfg(feature = "openvino")]
            ExecutionProvider::OpenVino { device_type } => {
                let mut ep = ort::ep::OpenVINO::default();
                if let Some(device) = device_type {
                    ep = ep.with_device_type(device);
                }
                append(ep, builder)
            }
            #[cfg(feature = "coreml")]
            ExecutionProvider::CoreMl => append(ort::ep::CoreML::default(), builder),
            #[cfg(feature = "directml")]
            ExecutionProvider::DirectMl { device_id } => append(
                ort::ep::DirectML::default().with_device_id(*device_id),
                builder,
            ),
            // Not compiled in: refused above.
            #[allow(unreachable_patterns)]
            _ => Err("not compiled in".to_owned()),
        }
    }
}

/// Checks that the ONNX Runtime library has `ep`, then registers it.
#[cfg(any(
    feature = "cuda",
    feature = "tensorrt",
    feature = "openvino",
    feature = "coreml",
    feature = "directml"
))]
fn append<E: ort::ep::ExecutionProvider>(
    ep: E,
    builder: &mut SessionBuilder,
) -> Result<(), String> {
    match E::is_available() {
        Ok(true) => {}
        Ok(false) => {
            let build = match E::NAME {
                "CUDAExecutionProvider" | "TensorrtExecutionProvider" => {
                    "a GPU build, e.g. the onnxruntime-gpu wheel's library"
                }
                "OpenVINOExecutionProvider" => "the onnxruntime-openvino wheel's library",
                "CoreMLExecutionProvider" => "ONNX Runtime's macOS build",
                _ => "the onnxruntime-directml build on Windows",
            };
            return Err(format!(
                "this ONNX Runtime library was built without {} (use {build}, via \
                 ORT_DYLIB_PATH or ort's download-binaries)",
                E::NAME
            ));
        }
        Err(e) => return Err(format!("cannot list ONNX Runtime's providers: {e}")),
    }
    ep.register(builder).map_err(|e| e.to_string())
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutionProvider::Cpu => f.write_str("CPU"),
            ExecutionProvider::Cuda { device_id } => write!(f, "CUDA (device {device_id})"),
            ExecutionProvider::TensorRt { device_id } => {
                write!(f, "TensorRT (device {device_id})")
            }
            ExecutionProvider::OpenVino { device_type: None } => f.write_str("OpenVINO"),
            ExecutionProvider::OpenVino {
                device_type: Some(d),
            } => write!(f, "OpenVINO ({d})"),
            ExecutionProvider::CoreMl => f.write_str("Core ML"),
            ExecutionProvider::DirectMl { device_id } => {
                write!(f, "DirectML (adapter {device_id})")
            }
        }
    }
}

/// The first session, on the configured provider or — when it cannot be used and the
/// configuration allows it — on the CPU: the builder for the rest of the pool, the session,
/// where it runs, and why it fell back.
pub(super) fn first_session(
    config: &OnnxConfig,
    source: Source<'_>,
    base: &dyn Fn() -> Result<SessionBuilder, OnnxError>,
) -> Result<(SessionBuilder, Session, ExecutionProvider, Option<String>), OnnxError> {
    let requested = &config.provider;
    let mut builder = base()?;
    if !requested.is_accelerator() {
        let first = commit(&mut builder, source)?;
        return Ok((builder, first, ExecutionProvider::Cpu, None));
    }
    // Why the provider cannot be used, with a CPU session already made when finding out
    // needed one.
    let (reason, on_cpu) = match requested.register(&mut builder) {
        Err(reason) => (reason, None),
        Ok(()) => match commit(&mut builder, source) {
            Ok(first) => return Ok((builder, first, requested.clone(), None)),
            Err(e) => {
                // The model or the provider? A CPU session tells: a model the CPU cannot
                // load either is an invalid model, whatever the provider.
                let mut cpu = base()?;
                let session = commit(&mut cpu, source)?;
                let message = match e {
                    OnnxError::InvalidModel { message, .. } => message,
                    other => other.to_string(),
                };
                let reason = format!("ONNX Runtime could not start a session on it: {message}");
                (reason, Some((cpu, session)))
            }
        },
    };
    if !config.cpu_fallback {
        return Err(OnnxError::ProviderUnavailable {
            provider: requested.clone(),
            reason,
        });
    }
    tracing::warn!(target: "bluegreen", provider = %requested, %reason, path = ?source.path(),
        "execution provider unavailable; loading on the CPU as configured (cpu_fallback)");
    let (builder, first) = match on_cpu {
        Some(made) => made,
        None => {
            let mut cpu = base()?;
            let first = commit(&mut cpu, source)?;
            (cpu, first)
        }
    };
    Ok((builder, first, ExecutionProvider::Cpu, Some(reason)))
}

pub(super) fn commit(
    builder: &mut SessionBuilder,
    source: Source<'_>,
) -> Result<Session, OnnxError> {
    let result = match source {
        Source::File(path) => builder.commit_from_file(path),
        Source::Memory(bytes) => builder.commit_from_memory(bytes),
    };
    result.map_err(|e| OnnxError::InvalidModel {
        path: source.path(),
        message: e.to_string(),
    })
}
