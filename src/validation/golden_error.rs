//! [`GoldenError`]: why a golden set could not be loaded or built.

/// Why a golden set could not be loaded or built. Each variant names the source and array.
///
/// The message never repeats an underlying error that [`source`](std::error::Error::source)
/// returns (the [`Io`](GoldenError::Io) variant): print the chain to see it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// The file could not be opened or read. The OS error is the
    /// [`source`](std::error::Error::source).
    #[error("cannot read golden set {path}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable `.npz` archive (truncated, not a zip, bad entry, bad
    /// `.npy` header, CRC mismatch).
    #[error("golden set {path} is not a valid .npz archive ({array}): {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// The array being read when it failed (`-` for the archive itself).
        array: String,
        /// What was wrong.
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
    /// The array's declared shape needs more bytes than the limit
    /// ([`NpzSpec::max_bytes`](crate::NpzSpec::max_bytes), 1 GiB by default). Refused
    /// before anything is allocated for it.
    #[error(
        "array `{array}` in {path} declares shape {shape:?} of {dtype} ({}), over the limit of {limit} bytes (NpzSpec::max_bytes)",
        match .bytes { Some(b) => format!("{b} bytes"), None => "more bytes than 64 bits can count".to_owned() }
    )]
    TooLarge {
        /// The file.
        path: String,
        /// The array.
        array: String,
        /// The shape its `.npy` header declares.
        shape: Vec<usize>,
        /// Its element type.
        dtype: &'static str,
        /// Shape × element size (`None` when that overflows 64 bits).
        bytes: Option<u64>,
        /// The limit in force.
        limit: u64,
    },
    /// The array's `.npy` header and its zip entry disagree on its size. Refused before
    /// anything is allocated for it.
    #[error(
        "array `{array}` in {path}: its header declares shape {shape:?} of {dtype} ({header_says} bytes with the header), but its zip entry holds {entry_holds} bytes"
    )]
    SizeMismatch {
        /// The file.
        path: String,
        /// The array.
        array: String,
        /// The shape its `.npy` header declares.
        shape: Vec<usize>,
        /// Its element type.
        dtype: &'static str,
        /// Header plus shape × element size, in bytes.
        header_says: u64,
        /// The zip entry's declared uncompressed size.
        entry_holds: u64,
    },
    /// The array's data ended before its declared size (memory was only allocated for what
    /// arrived).
    #[error("array `{array}` in {path} ends after {found} of its {expected} data bytes")]
    Truncated {
        /// The file.
        path: String,
        /// The array.
        array: String,
        /// Data bytes declared.
        expected: u64,
        /// Data bytes found.
        found: u64,
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
    /// A label is negative (labels index a model's class scores).
    #[error("label {label} at row {row} of `{array}` in {path} is negative")]
    NegativeLabel {
        /// The source.
        path: String,
        /// The array.
        array: String,
        /// The row.
        row: usize,
        /// The offending label.
        label: i64,
    },
    /// A label is not below the number of classes (given to the golden set, or declared by
    /// the model it is checked against).
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
        /// The number of classes.
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
