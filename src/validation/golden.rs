//! [`GoldenSet`]: the held-out examples a candidate is judged on.
//!
//! A golden set is a matrix of inputs (one row per example, `f32`), optionally the true
//! labels (`i64`, one per row) and optionally expected outputs (`f32`, one row per
//! example — e.g. the scores a reference implementation produced). Load it from a `.npz`
//! file as NumPy's `np.savez` / `np.savez_compressed` write it, or build it in code.
//!
//! Every problem with the data is a [`GoldenError`] naming the file and the array: a
//! missing or unreadable file, a corrupt archive, a missing array, a wrong dtype or rank,
//! mismatched lengths, an empty set, or labels out of range.

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2, Axis, Ix1, Ix2};
use ndarray_npy::{NpzReader, ReadNpyError, ReadNpzError, ReadableElement};

/// Why a golden set could not be loaded or built. Each variant names the source and array.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// The file could not be opened or read.
    #[error("cannot read golden set {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable `.npz` archive (truncated, not a zip, bad entry).
    #[error("golden set {path} is not a valid .npz archive ({array}): {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// The array being read when it failed (`-` for the archive itself).
        array: String,
        /// The decoder's message.
        message: String,
    },
    /// A required array is not in the archive.
    #[error("golden set {path} has no array `{array}` (it has: {})", .available.join(", "))]
    MissingArray {
        /// The file.
        path: String,
        /// The array asked for.
        array: String,
        /// The arrays the file does have.
        available: Vec<String>,
    },
    /// The array's element type is not the one required.
    #[error("array `{array}` in {path} must hold {expected} values: {message}")]
    WrongDtype {
        /// The file.
        path: String,
        /// The array.
        array: String,
        /// The element type required (`float32`, `int64`).
        expected: &'static str,
        /// What the file declares.
        message: String,
    },
    /// The array has the wrong number of dimensions.
    #[error("array `{array}` in {path} must be {expected}-dimensional, but has {found} dimensions")]
    WrongRank {
        /// The file.
        path: String,
        /// The array.
        array: String,
        /// Dimensions required.
        expected: usize,
        /// Dimensions found.
        found: usize,
    },
    /// Two arrays that must describe the same examples have different lengths.
    #[error("array `{array}` in {path} has {found} rows, but `inputs` has {expected}")]
    LengthMismatch {
        /// The source.
        path: String,
        /// The array.
        array: String,
        /// Rows in the inputs.
        expected: usize,
        /// Rows in this array.
        found: usize,
    },
    /// The set has no examples (or no features).
    #[error("golden set {path} is empty: array `{array}` has shape {shape:?}")]
    Empty {
        /// The source.
        path: String,
        /// The array.
        array: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A label is negative or not below the declared number of classes.
    #[error("label {label} at row {row} of `{array}` in {path} is out of range 0..{classes}")]
    LabelOutOfRange {
        /// The source.
        path: String,
        /// The array.
        array: String,
        /// The row.
        row: usize,
        /// The offending label.
        label: i64,
        /// The number of classes (`i64::MAX` when only negativity was checked).
        classes: i64,
    },
    /// Inputs contain NaN or infinity.
    #[error("array `{array}` in {path} contains a non-finite value at row {row}")]
    NonFinite {
        /// The source.
        path: String,
        /// The array.
        array: String,
        /// The first row with a non-finite value.
        row: usize,
    },
}

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
            expected: None,
        })
    }

    /// Adds the true label of every example. Labels must be non-negative.
    pub fn with_labels(self, labels: Array1<i64>) -> Result<Self, GoldenError> {
        self.set_labels("labels", labels)
    }

    fn set_labels(mut self, array: &str, labels: Array1<i64>) -> Result<Self, GoldenError> {
        self.same_rows(array, labels.len())?;
        if let Some((row, &label)) = labels.iter().enumerate().find(|(_, l)| **l < 0) {
            return Err(GoldenError::LabelOutOfRange {
                path: self.source,
                array: array.to_owned(),
                row,
                label,
                classes: i64::MAX,
            });
        }
        self.labels = Some(labels);
        Ok(self)
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
                array: "labels".to_owned(),
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
}

impl NpzSpec {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            inputs: "inputs".to_owned(),
            labels: None,
            expected: None,
            classes: None,
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

    /// Refuse labels outside `0..classes`.
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = Some(classes);
        self
    }

    /// Reads the file.
    pub fn load(self) -> Result<GoldenSet, GoldenError> {
        let path = self.path.display().to_string();
        let file = File::open(&self.path).map_err(|source| GoldenError::Io {
            path: path.clone(),
            source,
        })?;
        let mut npz = NpzReader::new(BufReader::new(file)).map_err(|e| GoldenError::Corrupt {
            path: path.clone(),
            array: "-".to_owned(),
            message: e.to_string(),
        })?;
        let available = npz.names().map_err(|e| GoldenError::Corrupt {
            path: path.clone(),
            array: "-".to_owned(),
            message: e.to_string(),
        })?;
        let mut reader = Reader {
            npz: &mut npz,
            path: &path,
            available: &available,
        };

        let inputs: Array2<f32> = reader.read::<f32, Ix2>(&self.inputs, "float32", 2)?;
        let mut set = GoldenSet::checked(path.clone(), &self.inputs, inputs)?;
        if let Some((name, required)) = &self.labels
            && (*required || available.iter().any(|a| a == name))
        {
            let labels: Array1<i64> = reader.read::<i64, Ix1>(name, "int64", 1)?;
            set = set.set_labels(name, labels)?;
            if let Some(classes) = self.classes {
                set.check_classes(classes)
                    .map_err(|e| rename_array(e, name))?;
            }
        }
        if let Some(name) = &self.expected {
            let expected: Array2<f32> = reader.read::<f32, Ix2>(name, "float32", 2)?;
            set = set.set_expected(name, expected)?;
        }
        Ok(set)
    }
}

fn rename_array(e: GoldenError, name: &str) -> GoldenError {
    match e {
        GoldenError::LabelOutOfRange {
            path,
            row,
            label,
            classes,
            ..
        } => GoldenError::LabelOutOfRange {
            path,
            array: name.to_owned(),
            row,
            label,
            classes,
        },
        other => other,
    }
}

struct Reader<'a, R: std::io::Read + std::io::Seek> {
    npz: &'a mut NpzReader<R>,
    path: &'a str,
    available: &'a [String],
}

impl<R: std::io::Read + std::io::Seek> Reader<'_, R> {
    fn read<T, D>(
        &mut self,
        name: &str,
        dtype: &'static str,
        rank: usize,
    ) -> Result<ndarray::Array<T, D>, GoldenError>
    where
        T: ReadableElement,
        D: ndarray::Dimension,
    {
        if !self.available.iter().any(|a| a == name) {
            return Err(GoldenError::MissingArray {
                path: self.path.to_owned(),
                array: name.to_owned(),
                available: self.available.to_vec(),
            });
        }
        self.npz.by_name(name).map_err(|e| match e {
            ReadNpzError::Npy(ReadNpyError::WrongDescriptor(found)) => GoldenError::WrongDtype {
                path: self.path.to_owned(),
                array: name.to_owned(),
                expected: dtype,
                message: format!("the file declares {found}"),
            },
            ReadNpzError::Npy(ReadNpyError::WrongNdim(_, found)) => GoldenError::WrongRank {
                path: self.path.to_owned(),
                array: name.to_owned(),
                expected: rank,
                found,
            },
            other => GoldenError::Corrupt {
                path: self.path.to_owned(),
                array: name.to_owned(),
                message: other.to_string(),
            },
        })
    }
}
