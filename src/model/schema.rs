//! What a model declares about itself: tensor names, element types, shapes, metadata.

use std::collections::BTreeMap;
use std::fmt;

/// Element type of a tensor.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ElementType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer (scikit-learn's labels).
    I64,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// A type this crate does not name; the backend's own spelling.
    Other(&'static str),
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ElementType::F32 => "f32",
            ElementType::F64 => "f64",
            ElementType::I32 => "i32",
            ElementType::I64 => "i64",
            ElementType::U8 => "u8",
            ElementType::Bool => "bool",
            ElementType::String => "string",
            ElementType::Other(s) => s,
        };
        f.write_str(s)
    }
}

/// One dimension of a declared shape.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A size chosen per call (a batch dimension); the name, if the model gives one.
    Dynamic(Option<String>),
}

impl Dim {
    /// Whether a concrete size fits this dimension.
    pub fn accepts(&self, size: usize) -> bool {
        match self {
            Dim::Fixed(n) => *n == size,
            Dim::Dynamic(_) => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Dynamic(Some(name)) => f.write_str(name),
            Dim::Dynamic(None) => f.write_str("?"),
        }
    }
}

/// A named tensor a model takes or produces.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorSpec {
    /// The tensor's name in the model graph.
    pub name: String,
    /// Element type.
    pub dtype: ElementType,
    /// Declared shape; `None` when the model declares no shape (e.g. a sequence or map).
    pub shape: Option<Vec<Dim>>,
}

impl TensorSpec {
    /// A tensor spec with a known shape.
    pub fn new(name: impl Into<String>, dtype: ElementType, shape: Vec<Dim>) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape: Some(shape),
        }
    }
}

impl fmt::Display for TensorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.dtype)?;
        if let Some(shape) = &self.shape {
            f.write_str("[")?;
            for (i, d) in shape.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{d}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

/// What a model says about itself. Everything is optional: plain-Rust models may declare
/// nothing; ONNX models declare their graph's inputs, outputs and custom metadata.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelInfo {
    /// Declared inputs, in graph order (empty when unknown).
    pub inputs: Vec<TensorSpec>,
    /// Declared outputs, in graph order (empty when unknown).
    pub outputs: Vec<TensorSpec>,
    /// Free-form metadata (ONNX custom metadata, producer, …), e.g. `feature_schema`.
    pub metadata: BTreeMap<String, String>,
}

impl ModelInfo {
    /// The declared input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The declared output with this name.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}
