//! [`GoldenSet`]: the held-out examples a candidate is judged on.
//!
//! A golden set is a matrix of inputs (one row per example, `f32`), optionally the true
//! labels (`i64`, one per row), optionally the number of classes they index, and optionally
//! expected outputs (`f32`, one row per example — e.g. the scores a reference
//! implementation produced). Load it from a `.npz` file as NumPy's `np.savez` /
//! `np.savez_compressed` write it, or build it in code.
//!
//! A `.npz` file is hostile input like any other: every size it declares is checked
//! against the file and a limit before anything is allocated (see `npz.rs`). Every
//! problem with the data is a [`GoldenError`] naming the file and the array: a missing or
//! unreadable file, a corrupt archive, a missing array, a wrong dtype or rank, an array
//! larger than the limit or than its entry, a truncated entry, mismatched lengths, an
//! empty set, negative labels or labels out of range.

use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::GoldenError;
use super::npz::Npz;

/// Held-out examples to judge a candidate on: inputs, and optionally true labels and
/// expected outputs. Load one from `.npz` or build it in code; every problem with the data
/// is a [`GoldenError`] naming the source and the array.
///
/// ```
/// use bluegreen::GoldenSet;
/// use ndarray::{array, Array1};
///
/// let golden = GoldenSet::new(array![[0.0f32, 1.0], [1.0, 0.0]])?
///     .with_labels(Array1::from(vec![1i64, 0]))?;
/// assert_eq!(golden.len(), 2);
/// assert_eq!(golden.labels().unwrap()[0], 1);
/// # Ok::<(), bluegreen::GoldenError>(())
/// ```
#[derive(Debug, Clone)]
pub struct GoldenSet {
    source: String,
    inputs: Array2<f32>,
    labels: Option<Array1<i64>>,
    /// Labels name `labels_array` in messages (the `.npz` array they came from).
    labels_array: String,
    classes: Option<usize>,
    expected: Option<Array2<f32>>,
}

const IN_MEMORY: &str = "<in memory>";

impl GoldenSet {
    /// A golden set from inputs, one example per row. Refuses an empty or non-finite set.
    pub fn new(inputs: Array2<f32>) -> Result<Self, GoldenError> {
        Self::checked(IN_MEMORY.to_owned(), "inputs", inputs)
    }

    fn checked(source: String, array: &str, inputs: Array2<f32>) -> Result<Self, GoldenError> {
        if inputs.nrows() == 0 || inputs.ncols() == 0 {
            return Err(GoldenError::Empty {
                path: source,
                array: array.to_owned(),
                shape: inputs.shape().to_vec(),
            });
        }
        if let Some(row) = inputs
            .axis_iter(Axis(0))
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(GoldenError::NonFinite {
                path: source,
                array: array.to_owned(),
                row,
            });
        }
        Ok(Self {
            source,
            inputs,
            labels: None,
            labels_array: "labels".to_owned(),
            classes: None,
            expected: None,
        })
    }

    /// Adds the true label of every example. Labels must be non-negative
    /// ([`GoldenError::NegativeLabel`]), and below the number of classes once that is
    /// known ([`with_classes`](Self::with_classes)).
    pub fn with_labels(self, labels: Array1<i64>) -> Result<Self, GoldenError> {
        self.set_labels("labels", labels)
    }

    fn set_labels(mut self, array: &str, labels: Array1<i64>) -> Result<Self, GoldenError> {
        self.same_rows(array, labels.len())?;
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, l)| **l < 0) {
            return Err(GoldenError::NegativeLabel {
                path: self.source,
                array: array.to_owned(),
                row,
                label,
            });
        }
        self.labels = Some(labels);
        self.labels_array = array.to_owned();
        if let Some(classes) = self.classes {
            self.check_classes(classes)?;
        }
        Ok(self)
    }

    /// Declares how many classes the labels index: every label, now or added later, must
    /// be below `classes` ([`GoldenError::LabelOutOfRange`]).
    ///
    /// Without it the golden-set gates take the number of classes from the model (its
    /// declared score width, see [`Binding::classes`](crate::gates::Binding::classes)), so
    /// an out-of-range label is caught either way.
    pub fn with_classes(mut self, classes: usize) -> Result<Self, GoldenError> {
        self.check_classes(classes)?;
        self.classes = Some(classes);
        Ok(self)
    }

    /// The number of classes declared with [`with_classes`](Self::with_classes) or
    /// [`NpzSpec::classes`], if any.
    pub fn classes(&self) -> Option<usize> {
        self.classes
    }

    /// Adds the expected output row of every example (e.g. reference scores).
    pub fn with_expected(self, expected: Array2<f32>) -> Result<Self, GoldenError> {
        self.set_expected("expected", expected)
    }

    fn set_expected(mut self, array: &str, expected: Array2<f32>) -> Result<Self, GoldenError> {
        self.same_rows(array, expected.nrows())?;
        self.expected = Some(expected);
        Ok(self)
    }

    /// Checks every label is below `classes` (labels index a model's class scores).
    pub fn check_classes(&self, classes: usize) -> Result<(), GoldenError> {
        let Some(labels) = &self.labels else {
            return Ok(());
        };
        let classes = i64::try_from(classes).unwrap_or(i64::MAX);
        match labels.iter().enumerate().find(|(_, l)| **l >= classes) {
            Some((row, &label)) => Err(GoldenError::LabelOutOfRange {
                path: self.source.clone(),
                array: self.labels_array.clone(),
                row,
                label,
                classes,
            }),
            None => Ok(()),
        }
    }

    fn same_rows(&self, array: &str, found: usize) -> Result<(), GoldenError> {
        if found == self.inputs.nrows() {
            Ok(())
        } else {
            Err(GoldenError::LengthMismatch {
                path: self.source.clone(),
                array: array.to_owned(),
                expected: self.inputs.nrows(),
                found,
            })
        }
    }

    /// Loads `inputs` (float32, 2-D) and, if present, `labels` (int64, 1-D) from a `.npz`.
    ///
    /// Use [`GoldenSet::npz`] to choose other array names or load expected outputs.
    pub fn from_npz(path: impl AsRef<Path>) -> Result<Self, GoldenError> {
        NpzSpec::new(path.as_ref()).optional_labels().load()
    }

    /// Describes which arrays of a `.npz` to load; finish with [`NpzSpec::load`].
    ///
    /// ```no_run
    /// use bluegreen::GoldenSet;
    /// let golden = GoldenSet::npz("models/digits/golden.npz")
    ///     .inputs("inputs")
    ///     .labels("labels")
    ///     .expected("probabilities_v2")
    ///     .classes(10)
    ///     .load()?;
    /// # Ok::<(), bluegreen::GoldenError>(())
    /// ```
    pub fn npz(path: impl AsRef<Path>) -> NpzSpec {
        NpzSpec::new(path.as_ref())
    }

    /// Where the set came from (a path, or `<in memory>`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Number of examples (never 0).
    pub fn len(&self) -> usize {
        self.inputs.nrows()
    }

    /// Always false: an empty golden set is refused when built.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of features per example.
    pub fn features(&self) -> usize {
        self.inputs.ncols()
    }

    /// All inputs, one example per row.
    pub fn inputs(&self) -> ArrayView2<'_, f32> {
        self.inputs.view()
    }

    /// True labels, if the set has them.
    pub fn labels(&self) -> Option<&Array1<i64>> {
        self.labels.as_ref()
    }

    /// Expected output rows, if the set has them.
    pub fn expected(&self) -> Option<&Array2<f32>> {
        self.expected.as_ref()
    }

    /// The inputs in consecutive batches of at most `size` rows (views, no copies).
    pub fn batches(
        &self,
        size: usize,
    ) -> impl Iterator<Item = (Range<usize>, ArrayView2<'_, f32>)> + '_ {
        let size = size.max(1);
        (0..self.len()).step_by(size).map(move |start| {
            let end = (start + size).min(self.len());
            let rows = self
                .inputs
                .slice_axis(Axis(0), ndarray::Slice::from(start..end));
            (start..end, rows)
        })
    }
}

/// Which arrays of a `.npz` file make a [`GoldenSet`]; from [`GoldenSet::npz`].
#[derive(Debug, Clone)]
pub struct NpzSpec {
    path: PathBuf,
    inputs: String,
    labels: Option<(String, bool)>,
    expected: Option<String>,
    classes: Option<usize>,
    max_bytes: u64,
}

impl NpzSpec {
    /// The default for [`max_bytes`](Self::max_bytes): 1 GiB per array.
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            inputs: "inputs".to_owned(),
            labels: None,
            expected: None,
            classes: None,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }

    fn optional_labels(mut self) -> Self {
        self.labels = Some(("labels".to_owned(), false));
        self
    }

    /// The float32 2-D array of inputs (default `inputs`).
    pub fn inputs(mut self, name: impl Into<String>) -> Self {
        self.inputs = name.into();
        self
    }

    /// The int64 1-D array of true labels (required once named).
    pub fn labels(mut self, name: impl Into<String>) -> Self {
        self.labels = Some((name.into(), true));
        self
    }

    /// The float32 2-D array of expected outputs (required once named).
    pub fn expected(mut self, name: impl Into<String>) -> Self {
        self.expected = Some(name.into());
        self
    }

    /// Refuse labels outside `0..classes`, and remember the count
    /// ([`GoldenSet::classes`]). Without it, the gates check the labels against the
    /// model's declared number of classes.
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = Some(classes);
        self
    }

    /// The most bytes any one array may declare (shape × element size); larger arrays
    /// are refused with [`GoldenError::TooLarge`] before anything is allocated for them.
    /// Default [`NpzSpec::DEFAULT_MAX_BYTES`] (1 GiB).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use bluegreen::{GoldenError, GoldenSet};
    /// // The bundled golden set's inputs are 450 × 64 float32 = 115 200 bytes.
    /// let small = GoldenSet::npz("models/digits/golden.npz").max_bytes(100_000).load();
    /// assert!(matches!(small, Err(GoldenError::TooLarge { bytes: Some(115_200), .. })));
    /// # Ok(()) }
    /// ```
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Reads the file: every array's declared size is checked against its zip entry and
    /// [`max_bytes`](Self::max_bytes) before it is read, and memory grows only with the
    /// bytes actually read.
    pub fn load(self) -> Result<GoldenSet, GoldenError> {
        let path = self.path.display().to_string();
        let mut npz = Npz::open(&self.path, &path, self.max_bytes)?;

        // Check names first, so a missing array is reported before a large one is read.
        let labels = match &self.labels {
            Some((name, required)) if *required || npz.has(name) => Some(name.as_str()),
            _ => None,
        };
        for name in std::iter::once(self.inputs.as_str())
            .chain(labels)
            .chain(self.expected.as_deref())
        {
            if !npz.has(name) {
                return Err(GoldenError::MissingArray {
                    path,
                    array: name.to_owned(),
                    available: npz.names().to_vec(),
                });
            }
        }

        let inputs: Array2<f32> = npz.matrix(&self.inputs)?;
        let mut set = GoldenSet::checked(path, &self.inputs, inputs)?;
        if let Some(name) = labels {
            let labels: Array1<i64> = npz.vector(name)?;
            set = set.set_labels(name, labels)?;
        }
        if let Some(classes) = self.classes {
            set = set.with_classes(classes)?;
        }
        if let Some(name) = &self.expected {
            let expected: Array2<f32> = npz.matrix(name)?;
            set = set.set_expected(name, expected)?;
        }
        Ok(set)
    }
}
