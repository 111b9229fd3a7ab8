//! Why a predict body is refused (HTTP 400): one variant per rule of the parser in json.rs.

use bluegreen::ElementType;

/// Why a request body is not a valid predict request. The message is the answer's `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Nothing was sent.
    #[error(r#"empty body: send JSON like {{"inputs": [[0.0, 1.0, ...]]}}"#)]
    EmptyBody,
    /// Not JSON (the parser's message, with line and column).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// The body is JSON but not an object.
    #[error(r#"the body must be a JSON object like {{"inputs": [[...]]}}, not {0}"#)]
    NotAnObject(&'static str),
    /// A top-level field other than `inputs`.
    #[error(
        r#"unknown field {0:?}: the body is {{"inputs": [[...], ...]}} or {{"inputs": {{"<input name>": [...]}}}}"#
    )]
    UnknownField(String),
    /// No `inputs` field.
    #[error(r#"missing field "inputs""#)]
    MissingInputs,
    /// `inputs` (or one named input) appears twice.
    #[error("{0} is given twice")]
    Duplicate(String),
    /// `inputs` is an empty object.
    #[error(r#""inputs" names no input"#)]
    NoInputs,
    /// `inputs` is neither an array nor an object.
    #[error(
        r#""inputs" must be an array (one input) or an object of arrays (named inputs), not {0}"#
    )]
    InputsKind(&'static str),
    /// A named input that is not an array.
    #[error("input `{input}` must be a (nested) array of numbers, not {kind}")]
    NotAnArray { input: String, kind: &'static str },
    /// An array with no element.
    #[error("input `{input}` has an empty array at {at}; send at least one value per axis")]
    EmptyArray { input: String, at: String },
    /// Arrays nested deeper than `MAX_DEPTH` (json.rs).
    #[error("input `{input}` nests arrays deeper than {max} levels (at {at})")]
    TooDeep {
        input: String,
        at: String,
        max: usize,
    },
    /// An array whose length differs from its first sibling's.
    #[error(
        "input `{input}`: ragged array: {at} has {len} elements, but the first array at its depth has {expected}"
    )]
    Ragged {
        input: String,
        at: String,
        len: String,
        expected: usize,
    },
    /// Something other than a number where the shape puts a number.
    #[error("input `{input}`: {at} is {kind}; expected a number")]
    ExpectedNumber {
        input: String,
        at: String,
        kind: &'static str,
    },
    /// Something other than an array where the shape puts an array.
    #[error("input `{input}`: {at} is {kind}; expected an array")]
    ExpectedArray {
        input: String,
        at: String,
        kind: &'static str,
    },
    /// More rows than the service accepts in one request.
    #[error(
        "input `{input}`: more than {max} rows in one request; this service accepts at most {max}"
    )]
    TooManyRows { input: String, max: usize },
    /// The element count does not fit the shape (or overflows).
    #[error("input `{input}`: {count} values do not make the shape {shape:?}")]
    Shape {
        input: String,
        count: usize,
        shape: Vec<usize>,
    },
    /// A number the model's element type cannot hold.
    #[error("input `{input}`{at}: {value} does not fit in {dtype}")]
    DoesNotFit {
        input: String,
        at: String,
        value: String,
        dtype: ElementType,
    },
    /// A non-integer for an integer input.
    #[error("input `{input}`{at}: {value} is not a 64-bit integer, and the model takes i64")]
    NotInteger {
        input: String,
        at: String,
        value: String,
    },
    /// An element type this service cannot build from JSON.
    #[error(
        "input `{input}` takes element type {dtype}, which this service cannot build from JSON (f32 and i64 only)"
    )]
    UnsupportedType { input: String, dtype: ElementType },
}

impl RequestError {
    /// Whether the refusal depends on the model's declared input types (so the answer names
    /// the version that refused it), rather than on the body alone.
    pub fn depends_on_model(&self) -> bool {
        matches!(
            self,
            RequestError::DoesNotFit { .. }
                | RequestError::NotInteger { .. }
                | RequestError::UnsupportedType { .. }
        )
    }
}
