//! Input and output tensors of an [`OnnxModel`](super::OnnxModel).

use std::fmt;
use std::sync::Arc;

use ndarray::{Array, ArrayD, ArrayViewD, Dimension};
use ort::value::{DynValue, TensorElementType, ValueType};

use super::OnnxError;
use crate::ElementType;

/// One input tensor: `f32` or `i64`, any rank, owned.
///
/// Built from any `ndarray` array of those element types with `.into()`. Arrays that are not
/// in standard (row-major, contiguous) layout are accepted and copied into that layout at
/// call time; standard-layout arrays are passed to ONNX Runtime without copying.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// 32-bit float tensor.
    F32(ArrayD<f32>),
    /// 64-bit signed integer tensor.
    I64(ArrayD<i64>),
}

impl Tensor {
    /// The element type.
    pub fn dtype(&self) -> ElementType {
        match self {
            Tensor::F32(_) => ElementType::F32,
            Tensor::I64(_) => ElementType::I64,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
        }
    }
}

impl<D: Dimension> From<Array<f32, D>> for Tensor {
    fn from(a: Array<f32, D>) -> Self {
        Tensor::F32(a.into_dyn())
    }
}

impl<D: Dimension> From<Array<i64, D>> for Tensor {
    fn from(a: Array<i64, D>) -> Self {
        Tensor::I64(a.into_dyn())
    }
}

/// Which model input a tensor is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InputKey {
    /// The model's only input, whatever its name.
    Only,
    /// The input with this name.
    Named(String),
}

/// The inputs of one [`predict`](crate::Model::predict) call: tensors bound to the model's
/// input names.
///
/// ```
/// use bluegreen::onnx::Inputs;
/// use bluegreen::onnx::ndarray::{Array1, Array2};
///
/// // A model with one input: no name needed.
/// let one = Inputs::single(Array2::<f32>::zeros((1, 64)));
/// assert_eq!(one.len(), 1);
///
/// // Several inputs, by name (any order).
/// let two = Inputs::new()
///     .with("x", Array2::<f32>::zeros((2, 3)))
///     .with("k", Array1::<i64>::from(vec![1, 2]));
/// assert_eq!(two.names().collect::<Vec<_>>(), [Some("x"), Some("k")]);
/// ```
///
/// Names, element types, ranks and fixed dimensions are checked against the model before
/// ONNX Runtime is called; a mismatch is a typed [`OnnxError`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    pub(crate) entries: Vec<(InputKey, Tensor)>,
}

impl Inputs {
    /// No inputs yet; add them with [`with`](Inputs::with) or [`insert`](Inputs::insert).
    pub fn new() -> Self {
        Self::default()
    }

    /// One tensor for a model with exactly one input, whatever that input is called.
    pub fn single(tensor: impl Into<Tensor>) -> Self {
        Self {
            entries: vec![(InputKey::Only, tensor.into())],
        }
    }

    /// Adds a tensor for the input called `name`.
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, tensor: impl Into<Tensor>) -> Self {
        self.insert(name, tensor);
        self
    }

    /// Adds a tensor for the input called `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: impl Into<Tensor>) {
        self.entries
            .push((InputKey::Named(name.into()), tensor.into()));
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The names the tensors are bound to, in insertion order (`None` for
    /// [`single`](Inputs::single)).
    pub fn names(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.entries.iter().map(|(b, _)| match b {
            InputKey::Only => None,
            InputKey::Named(n) => Some(n.as_str()),
        })
    }

    /// The tensors with their names, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &Tensor)> + '_ {
        self.names().zip(self.entries.iter().map(|(_, t)| t))
    }
}

impl<N: Into<String>, T: Into<Tensor>> FromIterator<(N, T)> for Inputs {
    fn from_iter<I: IntoIterator<Item = (N, T)>>(iter: I) -> Self {
        let mut inputs = Inputs::new();
        for (n, t) in iter {
            inputs.insert(n, t);
        }
        inputs
    }
}

/// A borrowed view of one output tensor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TensorView<'a> {
    /// 32-bit float tensor.
    F32(ArrayViewD<'a, f32>),
    /// 64-bit signed integer tensor.
    I64(ArrayViewD<'a, i64>),
    /// An output of another element type, or not a tensor (sequence, map): not readable
    /// through this API.
    Other(ElementType),
}

impl TensorView<'_> {
    /// The element type.
    pub fn dtype(&self) -> ElementType {
        match self {
            TensorView::F32(_) => ElementType::F32,
            TensorView::I64(_) => ElementType::I64,
            TensorView::Other(t) => *t,
        }
    }
}

/// The output values of one run, inline for models with up to four outputs (no heap
/// allocation per call on the hot path).
pub(crate) type OutputValues = smallvec::SmallVec<[DynValue; 4]>;

/// The outputs of one [`predict`](crate::Model::predict) call, in graph order.
///
/// Holds ONNX Runtime's output buffers directly (no copy); read them as `ndarray` views with
/// [`f32`](Outputs::f32) / [`i64`](Outputs::i64), or iterate with [`iter`](Outputs::iter).
/// Call `.to_owned()` on a view to keep the data beyond the `Outputs`.
pub struct Outputs {
    names: Arc<[String]>,
    values: OutputValues,
}

impl Outputs {
    pub(crate) fn new(names: Arc<[String]>, values: OutputValues) -> Self {
        debug_assert_eq!(names.len(), values.len());
        Self { names, values }
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Output names, in graph order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(String::as_str)
    }

    /// Whether there is an output called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// The output called `name`, if any.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.index(name).and_then(|i| self.values.get(i)).map(view)
    }

    /// The element type of the output called `name`, if any.
    pub fn dtype(&self, name: &str) -> Option<ElementType> {
        self.index(name)
            .and_then(|i| self.values.get(i))
            .map(|v| value_element_type(v.dtype()))
    }

    /// The `f32` output called `name`.
    ///
    /// # Errors
    /// [`OnnxError::NoSuchOutput`] or [`OnnxError::OutputType`].
    pub fn f32(&self, name: &str) -> Result<ArrayViewD<'_, f32>, OnnxError> {
        match self.lookup(name)? {
            TensorView::F32(a) => Ok(a),
            other => Err(self.type_error(name, ElementType::F32, other.dtype())),
        }
    }

    /// The `i64` output called `name`.
    ///
    /// # Errors
    /// [`OnnxError::NoSuchOutput`] or [`OnnxError::OutputType`].
    pub fn i64(&self, name: &str) -> Result<ArrayViewD<'_, i64>, OnnxError> {
        match self.lookup(name)? {
            TensorView::I64(a) => Ok(a),
            other => Err(self.type_error(name, ElementType::I64, other.dtype())),
        }
    }

    /// `(name, view)` for every output, in graph order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, TensorView<'_>)> + '_ {
        self.names
            .iter()
            .zip(&self.values)
            .map(|(n, v)| (n.as_str(), view(v)))
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn lookup(&self, name: &str) -> Result<TensorView<'_>, OnnxError> {
        self.get(name).ok_or_else(|| OnnxError::NoSuchOutput {
            name: name.to_string(),
            available: self.names.to_vec(),
        })
    }

    fn type_error(&self, name: &str, requested: ElementType, actual: ElementType) -> OnnxError {
        OnnxError::OutputType {
            name: name.to_string(),
            requested,
            actual,
        }
    }
}

impl fmt::Debug for Outputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (name, v) in self.iter() {
            match v {
                TensorView::F32(a) => m.entry(&name, &a),
                TensorView::I64(a) => m.entry(&name, &a),
                TensorView::Other(t) => m.entry(&name, &t),
            };
        }
        m.finish()
    }
}

fn view(v: &DynValue) -> TensorView<'_> {
    match v.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            ..
        } => match v.try_extract_array::<f32>() {
            Ok(a) => TensorView::F32(a),
            Err(_) => TensorView::Other(ElementType::F32),
        },
        ValueType::Tensor {
            ty: TensorElementType::Int64,
            ..
        } => match v.try_extract_array::<i64>() {
            Ok(a) => TensorView::I64(a),
            Err(_) => TensorView::Other(ElementType::I64),
        },
        other => TensorView::Other(value_element_type(other)),
    }
}

/// bluegreen's name for an ort value type (element type for tensors; the kind otherwise).
pub(crate) fn value_element_type(t: &ValueType) -> ElementType {
    match t {
        ValueType::Tensor { ty, .. } => element_type(*ty),
        ValueType::Sequence(_) => ElementType::Other("sequence"),
        ValueType::Map { .. } => ElementType::Other("map"),
        ValueType::Optional(_) => ElementType::Other("optional"),
    }
}

/// bluegreen's name for an ort tensor element type.
pub(crate) fn element_type(t: TensorElementType) -> ElementType {
    match t {
        TensorElementType::Float32 => ElementType::F32,
        TensorElementType::Float64 => ElementType::F64,
        TensorElementType::Int32 => ElementType::I32,
        TensorElementType::Int64 => ElementType::I64,
        TensorElementType::Uint8 => ElementType::U8,
        TensorElementType::Bool => ElementType::Bool,
        TensorElementType::String => ElementType::String,
        TensorElementType::Int8 => ElementType::Other("i8"),
        TensorElementType::Uint16 => ElementType::Other("u16"),
        TensorElementType::Int16 => ElementType::Other("i16"),
        TensorElementType::Uint32 => ElementType::Other("u32"),
        TensorElementType::Uint64 => ElementType::Other("u64"),
        TensorElementType::Float16 => ElementType::Other("f16"),
        TensorElementType::Bfloat16 => ElementType::Other("bf16"),
        _ => ElementType::Other("other"),
    }
}
