//! [`OnnxBinding`]: how golden-set gates feed an [`OnnxModel`] and read its predictions.

use ndarray::{Array1, Array2, ArrayView2, Ix2};

use super::{Inputs, OnnxModel, Outputs, TensorView};
use crate::validation::gates::{Binding, Predictions};
use crate::{Dim, ModelInfo};

/// [`Binding`] for ONNX classifiers: golden rows become one `f32` input tensor
/// `[rows, features]`; predictions are read from an `i64` label output and an `f32` score
/// output.
///
/// The default ([`OnnxBinding::classifier`]) fits scikit-learn models converted with
/// skl2onnx (`zipmap` off): the model's only input, labels from `label`, scores from
/// `probabilities`.
///
/// ```no_run
/// use bluegreen::gates::GoldenGates;
/// use bluegreen::onnx::{OnnxBinding, OnnxModel};
/// use bluegreen::{BlueGreen, GoldenSet};
///
/// let golden = GoldenSet::from_npz("models/digits/golden.npz")?;
/// let gates = GoldenGates::new(golden, OnnxBinding::classifier());
/// let bg = BlueGreen::builder()
///     .validator(gates.accuracy(0.95))
///     .validator(gates.sanity())
///     .build("1", OnnxModel::load("models/digits/1/model.onnx")?)?;
/// bg.stage("2", OnnxModel::load("models/digits/2/model.onnx")?)?;
/// bg.swap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxBinding {
    input: Option<String>,
    labels: Option<String>,
    scores: Option<String>,
}

impl Default for OnnxBinding {
    fn default() -> Self {
        Self::classifier()
    }
}

impl OnnxBinding {
    /// The model's only input; labels from `label`, scores from `probabilities`.
    pub fn classifier() -> Self {
        Self {
            input: None,
            labels: Some("label".to_string()),
            scores: Some("probabilities".to_string()),
        }
    }

    /// Feed the rows to the input called `name` (default: the model's only input). Golden
    /// rows feed one input, so a model with several inputs cannot be gated this way.
    #[must_use]
    pub fn input_name(mut self, name: impl Into<String>) -> Self {
        self.input = Some(name.into());
        self
    }

    /// Read labels (`i64`, shape `[rows]` or `[rows, 1]`) from the output called `name`.
    #[must_use]
    pub fn labels(mut self, name: impl Into<String>) -> Self {
        self.labels = Some(name.into());
        self
    }

    /// The model has no label output: labels are the arg-max of the scores.
    #[must_use]
    pub fn labels_from_scores(mut self) -> Self {
        self.labels = None;
        self
    }

    /// Read scores (`f32`, shape `[rows, classes]`) from the output called `name`.
    #[must_use]
    pub fn scores(mut self, name: impl Into<String>) -> Self {
        self.scores = Some(name.into());
        self
    }

    /// The model gives no scores; only labels are read (gates that need scores report
    /// that they have none).
    #[must_use]
    pub fn without_scores(mut self) -> Self {
        self.scores = None;
        self
    }

    fn read_scores(&self, output: &Outputs, rows: usize) -> Result<Option<Array2<f32>>, String> {
        let Some(name) = &self.scores else {
            return Ok(None);
        };
        let view = output.f32(name).map_err(|e| e.to_string())?;
        let shape = view.shape().to_vec();
        let scores = view.into_dimensionality::<Ix2>().map_err(|_| {
            format!("output `{name}` has shape {shape:?}, expected [{rows}, classes]")
        })?;
        if scores.nrows() != rows {
            return Err(format!(
                "output `{name}` has shape {shape:?}, expected [{rows}, classes]"
            ));
        }
        Ok(Some(scores.to_owned()))
    }

    fn read_labels(
        &self,
        name: &str,
        output: &Outputs,
        rows: usize,
    ) -> Result<Array1<i64>, String> {
        let view = output.i64(name).map_err(|e| e.to_string())?;
        let shape = view.shape();
        let fits = matches!(shape, [n] if *n == rows) || matches!(shape, [n, 1] if *n == rows);
        if !fits {
            return Err(format!(
                "output `{name}` has shape {shape:?}, expected [{rows}] or [{rows}, 1]"
            ));
        }
        Ok(view.iter().copied().collect())
    }
}

impl Binding<OnnxModel> for OnnxBinding {
    fn input(&self, rows: ArrayView2<'_, f32>) -> Inputs {
        let rows = rows.to_owned();
        match &self.input {
            None => Inputs::single(rows),
            Some(name) => Inputs::new().with(name.clone(), rows),
        }
    }

    fn read(&self, output: &Outputs, rows: usize) -> Result<Predictions, String> {
        let scores = self.read_scores(output, rows)?;
        match (&self.labels, scores) {
            (Some(name), scores) => Ok(Predictions {
                labels: self.read_labels(name, output, rows)?,
                scores,
            }),
            (None, Some(scores)) => Ok(Predictions::from_scores(scores)),
            (None, None) => Err("the binding reads neither labels nor scores".to_string()),
        }
    }

    /// Every output is declared, with the declared element type, rank and fixed sizes, and
    /// every declared output is present.
    fn check_declared(&self, output: &Outputs, info: &ModelInfo) -> Result<(), String> {
        for (name, view) in output.iter() {
            let Some(spec) = info.output(name) else {
                return Err(format!("output `{name}` is not declared by the model"));
            };
            if view.dtype() != spec.dtype {
                return Err(format!(
                    "output `{name}` is {} but declared {}",
                    view.dtype(),
                    spec.dtype
                ));
            }
            let (Some(dims), Some(shape)) = (&spec.shape, shape_of(&view)) else {
                continue;
            };
            let fits = dims.len() == shape.len()
                && dims
                    .iter()
                    .zip(shape)
                    .all(|(d, &n)| !matches!(d, Dim::Fixed(f) if *f != n));
            if !fits {
                return Err(format!(
                    "output `{name}` has shape {shape:?} but is declared {spec}"
                ));
            }
        }
        if let Some(missing) = info.outputs.iter().find(|s| !output.contains(&s.name)) {
            return Err(format!("declared output `{}` is missing", missing.name));
        }
        Ok(())
    }
}

fn shape_of<'a>(view: &'a TensorView<'_>) -> Option<&'a [usize]> {
    match view {
        TensorView::F32(a) => Some(a.shape()),
        TensorView::I64(a) => Some(a.shape()),
        TensorView::Other(_) => None,
    }
}
