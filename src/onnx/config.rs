//! [`OnnxConfig`]: how an [`OnnxModel`] is loaded — pool size, threads, graph
//! optimization — and where from (a file or bytes).

use std::path::{Path, PathBuf};

use ort::session::builder::GraphOptimizationLevel;

use super::OnnxError;
use super::metadata::MetadataLimits;
use super::model::OnnxModel;
use super::provider::{ACCELERATOR_SESSIONS, ExecutionProvider};

/// How much ONNX Runtime rewrites the graph when loading a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OptimizationLevel {
    /// No graph optimizations.
    Disable,
    /// Constant folding, redundant node elimination.
    Basic,
    /// Basic plus complex node fusions.
    Extended,
    /// Extended plus layout optimizations.
    Layout,
    /// Everything (ONNX Runtime's default).
    #[default]
    All,
}

impl From<OptimizationLevel> for GraphOptimizationLevel {
    fn from(l: OptimizationLevel) -> Self {
        match l {
            OptimizationLevel::Disable => GraphOptimizationLevel::Disable,
            OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
            OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
            OptimizationLevel::Layout => GraphOptimizationLevel::Level3,
            OptimizationLevel::All => GraphOptimizationLevel::All,
        }
    }
}

/// How an [`OnnxModel`] is loaded: pool size, threads, optimization, execution provider.
///
/// ```no_run
/// use bluegreen::onnx::{OnnxConfig, OptimizationLevel};
///
/// let model = OnnxConfig::new()
///     .pool_size(4)                 // one session per request thread
///     .intra_threads(1)             // each call runs on its caller's thread only
///     .optimization_level(OptimizationLevel::All)
///     .load("models/digits/2/model.onnx")?;
/// # Ok::<(), bluegreen::onnx::OnnxError>(())
/// ```
///
/// On a GPU (feature `cuda`, and an ONNX Runtime library built with CUDA):
///
/// ```no_run
/// use bluegreen::onnx::{ExecutionProvider, OnnxConfig};
///
/// let model = OnnxConfig::new()
///     .execution_provider(ExecutionProvider::cuda()) // GPU 0; the pool defaults to 2 sessions
///     .cpu_fallback(false)   // the default: no GPU is an error, not a silent CPU model
///     .load("models/digits/2/model.onnx")?;
/// assert_eq!(model.execution_provider(), &ExecutionProvider::cuda());
/// # Ok::<(), bluegreen::onnx::OnnxError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxConfig {
    pool_size: Option<usize>,
    pub(super) intra_threads: usize,
    pub(super) optimization_level: OptimizationLevel,
    pub(super) share_prepacked_weights: bool,
    pub(super) provider: ExecutionProvider,
    pub(super) cpu_fallback: bool,
    pub(super) metadata_limits: MetadataLimits,
}

impl Default for OnnxConfig {
    fn default() -> Self {
        Self {
            pool_size: None,
            intra_threads: 1,
            optimization_level: OptimizationLevel::All,
            share_prepacked_weights: true,
            provider: ExecutionProvider::Cpu,
            cpu_fallback: false,
            metadata_limits: MetadataLimits::default(),
        }
    }
}

impl OnnxConfig {
    /// The defaults: one session per available CPU, one intra-op thread per session, all
    /// graph optimizations, prepacked weights shared between the sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions in the pool: how many calls can run at the same time. Size it to
    /// the number of threads that call [`predict`](crate::Model::predict) concurrently. Default:
    /// [`std::thread::available_parallelism`] on the CPU, [`ACCELERATOR_SESSIONS`] (2) on an
    /// [accelerator](Self::execution_provider) — the device runs one session at a time and
    /// every session keeps its own copy of the weights in device memory. Each session holds
    /// its own copy of the model's weights (see the [module docs](super#memory)). Must be at
    /// least 1.
    ///
    /// [`ACCELERATOR_SESSIONS`]: super::ACCELERATOR_SESSIONS
    #[must_use]
    pub fn pool_size(mut self, sessions: usize) -> Self {
        self.pool_size = Some(sessions);
        self
    }

    /// Threads ONNX Runtime may use *inside* one call (intra-op parallelism). Default 1: the
    /// calling thread does all the work, and concurrency comes from the pool. 0 lets ONNX
    /// Runtime choose (one per core, per session).
    #[must_use]
    pub fn intra_threads(mut self, threads: usize) -> Self {
        self.intra_threads = threads;
        self
    }

    /// Graph optimization level. Default [`OptimizationLevel::All`].
    #[must_use]
    pub fn optimization_level(mut self, level: OptimizationLevel) -> Self {
        self.optimization_level = level;
        self
    }

    /// Share prepacked weights (ONNX Runtime's `PrepackedWeightsContainer`) between the
    /// pool's sessions. Default on. Turn off to rule it out when debugging.
    #[must_use]
    pub fn share_prepacked_weights(mut self, share: bool) -> Self {
        self.share_prepacked_weights = share;
        self
    }

    /// Where ONNX Runtime runs the model (default [`ExecutionProvider::Cpu`]). An
    /// accelerator needs bluegreen's feature of the same name and an ONNX Runtime library
    /// built with it; when either or the device is missing, loading fails with
    /// [`OnnxError::ProviderUnavailable`] — unless [`cpu_fallback`](Self::cpu_fallback) is
    /// on.
    #[must_use]
    pub fn execution_provider(mut self, provider: ExecutionProvider) -> Self {
        self.provider = provider;
        self
    }

    /// When the [execution provider](Self::execution_provider) cannot be used, load on the
    /// CPU instead of failing (default off). The fall back is logged at warn level with the
    /// reason, and the model says so ([`OnnxModel::execution_provider`],
    /// [`OnnxModel::cpu_fallback_reason`]); the pool is then sized for the CPU unless
    /// [`pool_size`](Self::pool_size) was set.
    #[must_use]
    pub fn cpu_fallback(mut self, allow: bool) -> Self {
        self.cpu_fallback = allow;
        self
    }

    /// How much of a model's custom metadata is kept in its
    /// [`ModelInfo`](crate::ModelInfo): at most `entries` entries and `bytes` bytes (as
    /// stored in the file), in file order. Default 1024 entries, 1 MiB. Entries past
    /// either limit are skipped unread, and
    /// `bluegreen.metadata_dropped` in the metadata says how many entries and bytes were
    /// left out (a warning is logged too). The metadata is read in one pass over the file
    /// however many entries it has; ONNX Runtime itself still parses all of them.
    #[must_use]
    pub fn metadata_limits(mut self, entries: usize, bytes: usize) -> Self {
        self.metadata_limits = MetadataLimits { entries, bytes };
        self
    }

    /// The pool size this configuration resolves to on its execution provider.
    pub fn resolved_pool_size(&self) -> usize {
        self.pool_size_on(&self.provider)
    }

    /// The pool size on `provider` (the configured one, or the CPU after a fall back).
    pub(super) fn pool_size_on(&self, provider: &ExecutionProvider) -> usize {
        self.pool_size.unwrap_or_else(|| {
            if provider.is_accelerator() {
                ACCELERATOR_SESSIONS
            } else {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }
        })
    }

    /// Loads the model file at `path` with this configuration.
    ///
    /// # Errors
    /// [`OnnxError::ModelNotFound`], [`OnnxError::ModelUnreadable`],
    /// [`OnnxError::InvalidModel`] (naming the path), [`OnnxError::InvalidConfig`], or a
    /// runtime error (see [`init_runtime`](super::init_runtime)).
    pub fn load(&self, path: impl AsRef<Path>) -> Result<OnnxModel, OnnxError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(OnnxError::ModelUnreadable {
                    path: path.to_path_buf(),
                    reason: "not a regular file".to_string(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(OnnxError::ModelNotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => {
                return Err(OnnxError::ModelUnreadable {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
        OnnxModel::build(self, Source::File(path))
    }

    /// Loads a model from the bytes of an `.onnx` file with this configuration. The bytes are
    /// not kept. Models with external weight files cannot be loaded this way.
    ///
    /// # Errors
    /// [`OnnxError::InvalidModel`] (with `path: None`), [`OnnxError::InvalidConfig`], or a
    /// runtime error.
    pub fn load_from_memory(&self, bytes: &[u8]) -> Result<OnnxModel, OnnxError> {
        OnnxModel::build(self, Source::Memory(bytes))
    }
}

#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    File(&'a Path),
    Memory(&'a [u8]),
}

impl Source<'_> {
    pub(super) fn path(&self) -> Option<PathBuf> {
        match self {
            Source::File(p) => Some(p.to_path_buf()),
            Source::Memory(_) => None,
        }
    }
}
