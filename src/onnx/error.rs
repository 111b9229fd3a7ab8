//! [`OnnxError`]: everything that can go wrong loading or running an ONNX model.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Dim, ElementType};

/// What to do when ONNX Runtime cannot be found or loaded. Part of every runtime error message.
pub const RUNTIME_FIX: &str = "run scripts/setup-ort.sh, or set ORT_DYLIB_PATH to libonnxruntime.so 1.31.x, \
     or enable ort's download-binaries feature";

/// Why loading or running an ONNX model failed.
///
/// Input-mismatch variants are returned by [`OnnxModel::predict`](crate::Model::predict)
/// *before* anything reaches ONNX Runtime, and name the input, what the model expects and
/// what was given. After any error the model keeps serving later calls normally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// `ORT_DYLIB_PATH` names a file that does not exist.
    #[error(
        "ONNX Runtime library not found at `{}` (from ORT_DYLIB_PATH); to fix: {fix}",
        path.display(),
        fix = RUNTIME_FIX
    )]
    RuntimeNotFound {
        /// The path that was looked for.
        path: PathBuf,
    },

    /// ONNX Runtime could not be loaded or initialized (library missing from the search
    /// path, not a shared library, too old, …).
    #[error("ONNX Runtime could not be loaded: {reason}; to fix: {fix}", fix = RUNTIME_FIX)]
    RuntimeUnavailable {
        /// What ort / the dynamic loader reported.
        reason: String,
    },

    /// An ort environment was already created outside bluegreen (ort allows one per process),
    /// and bluegreen was not given it.
    #[error(
        "an ort Environment already exists in this process ({reason}); hand it to \
         bluegreen::onnx::init_runtime_with(env) before loading models"
    )]
    ForeignEnvironment {
        /// What ort reported.
        reason: String,
    },

    /// [`init_runtime_with`](super::init_runtime_with) was called after bluegreen had
    /// already set up its runtime.
    #[error("bluegreen's ONNX Runtime environment is already initialized")]
    RuntimeAlreadyInitialized,

    /// The model file does not exist.
    #[error("ONNX model file not found: `{}`", path.display())]
    ModelNotFound {
        /// The path that was given.
        path: PathBuf,
    },

    /// The model path exists but cannot be read as a file (a directory, no permission, …).
    #[error("cannot read ONNX model `{}`: {reason}", path.display())]
    ModelUnreadable {
        /// The path that was given.
        path: PathBuf,
        /// Why it cannot be read.
        reason: String,
    },

    /// ONNX Runtime rejected the model: corrupt or truncated file, unsupported operator or
    /// opset, invalid graph.
    #[error("invalid ONNX model {}: {message}", Origin(path.as_deref()))]
    InvalidModel {
        /// The model file, or `None` for a model loaded from memory.
        path: Option<PathBuf>,
        /// ONNX Runtime's message.
        message: String,
    },

    /// The configured [execution provider](super::OnnxConfig::execution_provider) cannot be
    /// used: bluegreen was built without its feature, the ONNX Runtime library has no such
    /// provider, or ONNX Runtime could not start it (no device, missing CUDA libraries, …).
    /// Not returned when [`cpu_fallback`](super::OnnxConfig::cpu_fallback) is on: the model
    /// is then loaded on the CPU.
    #[error(
        "execution provider {provider} is unavailable: {reason}; to fix: enable bluegreen's \
         matching feature and use an ONNX Runtime library built with it, or allow \
         OnnxConfig::cpu_fallback"
    )]
    ProviderUnavailable {
        /// The provider asked for.
        provider: super::ExecutionProvider,
        /// Why it cannot be used.
        reason: String,
    },

    /// The configuration cannot work (e.g. a pool of zero sessions).
    #[error("invalid ONNX model configuration: {0}")]
    InvalidConfig(String),

    /// An input name the model does not have.
    #[error("unknown input `{name}`; the model's inputs are {}", List(expected))]
    UnknownInput {
        /// The name that was given.
        name: String,
        /// The model's input names, in graph order.
        expected: Vec<String>,
    },

    /// A model input that was not given.
    #[error("missing input `{name}`; the model's inputs are {}", List(expected))]
    MissingInput {
        /// The input that is missing.
        name: String,
        /// The model's input names, in graph order.
        expected: Vec<String>,
    },

    /// The same input was given twice.
    #[error("input `{name}` was given more than once")]
    DuplicateInput {
        /// The repeated name.
        name: String,
    },

    /// [`Inputs::single`](super::Inputs::single) was used (or mixed with named inputs) but the
    /// model does not have exactly one input.
    #[error(
        "an unnamed input needs a model with exactly one input; this model's inputs are {}",
        List(expected)
    )]
    AmbiguousInput {
        /// The model's input names, in graph order.
        expected: Vec<String>,
    },

    /// An input has the wrong element type.
    #[error("input `{name}`: expected element type {expected}, got {got}")]
    WrongDtype {
        /// The input.
        name: String,
        /// The model's declared element type.
        expected: ElementType,
        /// The element type given.
        got: ElementType,
    },

    /// An input has the wrong number of dimensions.
    #[error(
        "input `{name}`: expected {expected} dimensions {}, got {got} dimensions {got_shape:?}",
        Shape(expected_shape)
    )]
    WrongRank {
        /// The input.
        name: String,
        /// The declared rank.
        expected: usize,
        /// The declared shape.
        expected_shape: Vec<Dim>,
        /// The given rank.
        got: usize,
        /// The given shape.
        got_shape: Vec<usize>,
    },

    /// An input has the wrong size along a fixed dimension.
    #[error(
        "input `{name}`: dimension {axis} must be {expected} (declared shape {}), got {got} (shape {got_shape:?})",
        Shape(expected_shape)
    )]
    WrongDim {
        /// The input.
        name: String,
        /// The axis (0-based).
        axis: usize,
        /// The declared size of that axis.
        expected: usize,
        /// The given size of that axis.
        got: usize,
        /// The declared shape.
        expected_shape: Vec<Dim>,
        /// The given shape.
        got_shape: Vec<usize>,
    },

    /// The model has no output with this name.
    #[error("no output `{name}`; the model's outputs are {}", List(available))]
    NoSuchOutput {
        /// The name asked for.
        name: String,
        /// The output names, in graph order.
        available: Vec<String>,
    },

    /// An output was read as the wrong element type.
    #[error("output `{name}` has element type {actual}, not {requested}")]
    OutputType {
        /// The output.
        name: String,
        /// The element type asked for.
        requested: ElementType,
        /// The output's element type.
        actual: ElementType,
    },

    /// ONNX Runtime failed while running the model or creating a session.
    #[error("ONNX Runtime error: {message}")]
    Runtime {
        /// ONNX Runtime's message.
        message: String,
    },
}

impl OnnxError {
    /// Whether this error is about the caller's input (name, type, shape) rather than the
    /// model or the runtime.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            OnnxError::UnknownInput { .. }
                | OnnxError::MissingInput { .. }
                | OnnxError::DuplicateInput { .. }
                | OnnxError::AmbiguousInput { .. }
                | OnnxError::WrongDtype { .. }
                | OnnxError::WrongRank { .. }
                | OnnxError::WrongDim { .. }
        )
    }

    pub(crate) fn runtime(e: impl fmt::Display) -> Self {
        OnnxError::Runtime {
            message: e.to_string(),
        }
    }
}

/// Displays a model's origin: its path, or "(in-memory)".
struct Origin<'a>(Option<&'a Path>);

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, "`{}`", p.display()),
            None => f.write_str("(loaded from memory)"),
        }
    }
}

/// Displays names as `[`a`, `b`]`.
struct List<'a>(&'a [String]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{n}`")?;
        }
        f.write_str("]")
    }
}

/// Displays a declared shape as `[batch, 64]`.
struct Shape<'a>(&'a [Dim]);

impl fmt::Display for Shape<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
