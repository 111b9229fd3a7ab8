//! Predict request bodies → the model's [`Inputs`], in one streaming pass over the JSON.
//!
//! Hostile bodies are normal bodies, so the parser allocates only for what it has received:
//! numbers go straight into one flat buffer (no JSON tree, nothing reserved from a declared
//! or guessed size), the shape is learnt from the first array that *closes* at each depth,
//! and every later array at that depth is checked against it element by element — a ragged
//! array is refused at its first extra element or at its early end. Nesting deeper than
//! [`MAX_DEPTH`] and more than `max_rows` rows are refused as they are reached. The final
//! element count is checked against the shape with checked arithmetic. Every refusal is a
//! typed [`RequestError`] (HTTP 400), never a panic, an abort or a large allocation.

use std::cell::RefCell;
use std::fmt;

use bluegreen::onnx::ndarray::{ArrayD, IxDyn};
use bluegreen::onnx::{Inputs, Tensor};
use bluegreen::{ElementType, TensorSpec};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

pub use super::request_error::RequestError;

/// Deepest nesting of arrays accepted in one input (the tensor's rank).
pub const MAX_DEPTH: usize = 16;

/// Parses a predict body against the model's declared inputs (`specs` give each input's
/// element type; names and ranks are left to the model's own typed checks).
///
/// `{"inputs": [[…], …]}` is the model's only input; `{"inputs": {"<name>": [[…]], …}}`
/// names each input. At most `max_rows` rows (outermost elements) per input.
pub fn parse_inputs(
    body: &[u8],
    specs: &[TensorSpec],
    max_rows: usize,
) -> Result<Inputs, RequestError> {
    if body.is_empty() {
        return Err(RequestError::EmptyBody);
    }
    let failure = RefCell::new(None);
    let ctx = Ctx {
        specs,
        max_rows,
        failure: &failure,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Top(&ctx)
        .deserialize(&mut de)
        .and_then(|inputs| de.end().map(|()| inputs));
    match parsed {
        Ok(inputs) => Ok(inputs),
        Err(e) => Err(failure
            .into_inner()
            .unwrap_or_else(|| RequestError::Malformed(e.to_string()))),
    }
}

/// What every visitor shares: the model's inputs, the row limit, and the typed error that
/// stopped the parse (serde's error type carries only text).
struct Ctx<'a> {
    specs: &'a [TensorSpec],
    max_rows: usize,
    failure: &'a RefCell<Option<RequestError>>,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&self, e: RequestError) -> E {
        let text = e.to_string();
        *self.failure.borrow_mut() = Some(e);
        E::custom(text)
    }

    fn dtype_of(&self, name: &str) -> ElementType {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .map_or(ElementType::F32, |s| s.dtype)
    }
}

/// Implements every non-container `visit_*` of a visitor as `self.other(kind)`.
macro_rules! scalars_are_other {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            self.other("a boolean")
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            self.other("a string")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.other("null")
        }
    };
}

/// The body: an object with one field, `inputs`.
struct Top<'c, 'a>(&'c Ctx<'a>);

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Inputs;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Inputs, D::Error> {
        d.deserialize_any(self)
    }
}

impl Top<'_, '_> {
    fn other<E: de::Error>(self, kind: &'static str) -> Result<Inputs, E> {
        Err(self.0.fail(RequestError::NotAnObject(kind)))
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = Inputs;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object like {"inputs": [[...]]}"#)
    }
    scalars_are_other!();
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Inputs, E> {
        self.other("a number")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Inputs, E> {
        self.other("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Inputs, E> {
        self.other("a number")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Inputs, A::Error> {
        self.other("an array")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inputs, A::Error> {
        let ctx = self.0;
        let mut inputs = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "inputs" {
                return Err(ctx.fail(RequestError::UnknownField(key)));
            }
            if inputs.is_some() {
                return Err(ctx.fail(RequestError::Duplicate(r#"field "inputs""#.to_owned())));
            }
            inputs = Some(map.next_value_seed(InputsField(ctx))?);
        }
        inputs.ok_or_else(|| ctx.fail(RequestError::MissingInputs))
    }
}

/// The `inputs` field: one array, or an object of named arrays.
struct InputsField<'c, 'a>(&'c Ctx<'a>);

impl<'de> DeserializeSeed<'de> for InputsField<'_, '_> {
    type Value = Inputs;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Inputs, D::Error> {
        d.deserialize_any(self)
    }
}

impl InputsField<'_, '_> {
    fn other<E: de::Error>(self, kind: &'static str) -> Result<Inputs, E> {
        Err(self.0.fail(RequestError::InputsKind(kind)))
    }
}

impl<'de> Visitor<'de> for InputsField<'_, '_> {
    type Value = Inputs;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array or an object of arrays")
    }
    scalars_are_other!();
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Inputs, E> {
        self.other("a number")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Inputs, E> {
        self.other("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Inputs, E> {
        self.other("a number")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Inputs, A::Error> {
        let ctx = self.0;
        // A model with several inputs refuses an unnamed one with its own typed error; build
        // the tensor as f32 then and let that error speak.
        let (name, dtype) = match ctx.specs {
            [only] => (only.name.clone(), only.dtype),
            [first, ..] => (first.name.clone(), ElementType::F32),
            [] => ("inputs".to_owned(), ElementType::F32),
        };
        let mut b = Builder::new(ctx, name, dtype).map_err(|e| ctx.fail(e))?;
        b.array(seq, 0)?;
        Ok(Inputs::single(b.finish().map_err(|e| ctx.fail(e))?))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inputs, A::Error> {
        let ctx = self.0;
        let mut inputs = Inputs::new();
        let mut names: Vec<String> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if names.contains(&name) {
                return Err(ctx.fail(RequestError::Duplicate(format!("input `{name}`"))));
            }
            let dtype = ctx.dtype_of(&name);
            let mut b = Builder::new(ctx, name.clone(), dtype).map_err(|e| ctx.fail(e))?;
            map.next_value_seed(NamedInput(&mut b))?;
            inputs.insert(name.clone(), b.finish().map_err(|e| ctx.fail(e))?);
            names.push(name);
        }
        if names.is_empty() {
            return Err(ctx.fail(RequestError::NoInputs));
        }
        Ok(inputs)
    }
}

/// The flat values of one tensor, in the element type the model declares.
enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// One input's tensor, built while its nested arrays stream by.
struct Builder<'c, 'a> {
    ctx: &'c Ctx<'a>,
    name: String,
    data: Data,
    /// `shape[d]`: the length of the first array that closed at depth `d` (`None` before).
    shape: Vec<Option<usize>>,
    /// The depth of the numbers (the rank), once the first number was seen.
    rank: Option<usize>,
    /// Where the parse is: the index at each depth.
    at: Vec<usize>,
}

impl<'c, 'a> Builder<'c, 'a> {
    fn new(ctx: &'c Ctx<'a>, name: String, dtype: ElementType) -> Result<Self, RequestError> {
        let data = match dtype {
            ElementType::F32 => Data::F32(Vec::new()),
            ElementType::I64 => Data::I64(Vec::new()),
            other => {
                return Err(RequestError::UnsupportedType {
                    input: name,
                    dtype: other,
                });
            }
        };
        Ok(Builder {
            ctx,
            name,
            data,
            shape: Vec::new(),
            rank: None,
            at: Vec::new(),
        })
    }

    fn here(&self) -> String {
        if self.at.is_empty() {
            return "the top level".to_owned();
        }
        self.at.iter().map(|i| format!("[{i}]")).collect()
    }

    fn fail<E: de::Error>(&self, e: RequestError) -> E {
        self.ctx.fail(e)
    }

    /// An array at `depth` (0 = the input itself), element by element.
    fn array<'de, A: SeqAccess<'de>>(&mut self, mut seq: A, depth: usize) -> Result<(), A::Error> {
        if depth >= MAX_DEPTH {
            return Err(self.fail(RequestError::TooDeep {
                input: self.name.clone(),
                at: self.here(),
                max: MAX_DEPTH,
            }));
        }
        if self.rank.is_some_and(|r| depth >= r) {
            return Err(self.fail(RequestError::ExpectedNumber {
                input: self.name.clone(),
                at: self.here(),
                kind: "an array",
            }));
        }
        if self.shape.len() <= depth {
            self.shape.push(None);
        }
        let bound = self.shape[depth];
        let mut count = 0usize;
        loop {
            // At a limit, the array must end here: any further element is refused as soon
            // as it starts, without being read.
            let refuse = if depth == 0 && count == self.ctx.max_rows {
                Some(RequestError::TooManyRows {
                    input: self.name.clone(),
                    max: self.ctx.max_rows,
                })
            } else if let Some(expected) = bound
                && count == expected
            {
                Some(RequestError::Ragged {
                    input: self.name.clone(),
                    at: self.here(),
                    len: format!("more than {expected}"),
                    expected,
                })
            } else {
                None
            };
            self.at.push(count);
            let got = seq.next_element_seed(Element {
                b: self,
                depth: depth + 1,
                refuse,
            })?;
            self.at.pop();
            if got.is_none() {
                break;
            }
            // Cannot overflow: `count` stops at `max_rows` or at the first sibling's length
            // except at the first array of a depth, whose elements each took input bytes.
            count = count.saturating_add(1);
        }
        if count == 0 {
            return Err(self.fail(RequestError::EmptyArray {
                input: self.name.clone(),
                at: self.here(),
            }));
        }
        match bound {
            None => self.shape[depth] = Some(count),
            Some(expected) if expected != count => {
                return Err(self.fail(RequestError::Ragged {
                    input: self.name.clone(),
                    at: self.here(),
                    len: count.to_string(),
                    expected,
                }));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A number at `depth`.
    fn number<E: de::Error>(&mut self, n: Number, depth: usize) -> Result<(), E> {
        match self.rank {
            None => self.rank = Some(depth),
            Some(r) if r != depth => {
                return Err(self.fail(RequestError::ExpectedArray {
                    input: self.name.clone(),
                    at: self.here(),
                    kind: "a number",
                }));
            }
            Some(_) => {}
        }
        let at = || self.at.iter().map(|i| format!("[{i}]")).collect::<String>();
        match &mut self.data {
            Data::F32(values) => {
                let x = match n {
                    Number::U(u) => u as f32,
                    Number::I(i) => i as f32,
                    Number::F(f) => f as f32,
                };
                if !x.is_finite() {
                    return Err(self.ctx.fail(RequestError::DoesNotFit {
                        input: self.name.clone(),
                        at: at(),
                        value: n.to_string(),
                        dtype: ElementType::F32,
                    }));
                }
                values.push(x);
            }
            Data::I64(values) => {
                let x = match n {
                    Number::I(i) => Some(i),
                    Number::U(u) => i64::try_from(u).ok(),
                    Number::F(_) => None,
                };
                let Some(x) = x else {
                    return Err(self.ctx.fail(RequestError::NotInteger {
                        input: self.name.clone(),
                        at: at(),
                        value: n.to_string(),
                    }));
                };
                values.push(x);
            }
        }
        Ok(())
    }

    /// Anything else where an element goes.
    fn other<E: de::Error>(&self, kind: &'static str, depth: usize) -> E {
        let input = self.name.clone();
        let at = self.here();
        if self.rank.is_none_or(|r| r == depth) {
            self.fail(RequestError::ExpectedNumber { input, at, kind })
        } else {
            self.fail(RequestError::ExpectedArray { input, at, kind })
        }
    }

    /// The tensor, once every array closed.
    fn finish(self) -> Result<Tensor, RequestError> {
        let shape: Vec<usize> = self.shape.iter().map(|d| d.unwrap_or(0)).collect();
        let count = match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        };
        let product = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&p| p == count && self.rank == Some(shape.len()));
        let shape_error = || RequestError::Shape {
            input: self.name.clone(),
            count,
            shape: shape.clone(),
        };
        if product.is_none() {
            return Err(shape_error());
        }
        let tensor = match self.data {
            Data::F32(v) => ArrayD::from_shape_vec(IxDyn(&shape), v).map(Tensor::from),
            Data::I64(v) => ArrayD::from_shape_vec(IxDyn(&shape), v).map(Tensor::from),
        };
        tensor.map_err(|_| shape_error())
    }
}

/// A JSON number as serde_json hands it over.
#[derive(Clone, Copy)]
enum Number {
    U(u64),
    I(i64),
    F(f64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::U(u) => write!(f, "{u}"),
            Number::I(i) => write!(f, "{i}"),
            Number::F(x) => write!(f, "{x}"),
        }
    }
}

/// A named input's value: must be an array.
struct NamedInput<'b, 'c, 'a>(&'b mut Builder<'c, 'a>);

impl<'de> DeserializeSeed<'de> for NamedInput<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl NamedInput<'_, '_, '_> {
    fn other<E: de::Error>(self, kind: &'static str) -> Result<(), E> {
        Err(self.0.fail(RequestError::NotAnArray {
            input: self.0.name.clone(),
            kind,
        }))
    }
}

impl<'de> Visitor<'de> for NamedInput<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a nested array of numbers")
    }
    scalars_are_other!();
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.other("a number")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.other("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.other("a number")
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other("an object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.0.array(seq, 0)
    }
}

/// One element of an array at `depth - 1`. With `refuse`, the array had to end before
/// this element: whatever it is, it is refused with that error, unread.
struct Element<'b, 'c, 'a> {
    b: &'b mut Builder<'c, 'a>,
    depth: usize,
    refuse: Option<RequestError>,
}

impl<'de> DeserializeSeed<'de> for Element<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Element<'_, '_, '_> {
    fn other<E: de::Error>(self, kind: &'static str) -> Result<(), E> {
        match self.refuse {
            Some(e) => Err(self.b.fail(e)),
            None => Err(self.b.other(kind, self.depth)),
        }
    }

    fn number<E: de::Error>(self, n: Number) -> Result<(), E> {
        match self.refuse {
            Some(e) => Err(self.b.fail(e)),
            None => self.b.number(n, self.depth),
        }
    }
}

impl<'de> Visitor<'de> for Element<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or an array")
    }
    scalars_are_other!();
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<(), E> {
        self.number(Number::U(u))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<(), E> {
        self.number(Number::I(i))
    }
    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        self.number(Number::F(x))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // Not read further either way.
        self.other("an object")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        match self.refuse {
            Some(e) => Err(self.b.fail(e)),
            None => self.b.array(seq, self.depth),
        }
    }
}
