//! The schema gate: the candidate must accept exactly what the service feeds.

use crate::model::Model;
use crate::model::{Dim, ModelInfo, TensorSpec};
use crate::validation::validate::{Bound, Context, Validator, Verdict};

/// Gate: every tensor the service feeds is a declared input of the candidate with the same
/// element type and a compatible shape; the candidate requires no input the service does
/// not feed; and the required metadata (e.g. `feature_schema`) matches.
///
/// Measures the number of mismatches (passes at 0) and names each one, e.g.
/// `the service feeds input "input" but the candidate declares only pixels: f32[batch, 32]`.
///
/// ```
/// use bluegreen::gates::SchemaGate;
/// use bluegreen::{Dim, ElementType, TensorSpec};
///
/// // What our service sends: a batch of 64 float features named "input".
/// let gate = SchemaGate::feeds(vec![TensorSpec::new(
///     "input",
///     ElementType::F32,
///     vec![Dim::Dynamic(None), Dim::Fixed(64)],
/// )])
/// .require_metadata("feature_schema", "digits-8x8-f32");
/// # let _ = gate;
/// ```
#[derive(Debug, Clone)]
pub struct SchemaGate {
    feed: Option<Vec<TensorSpec>>,
    metadata: Vec<(String, Option<String>)>,
}

impl SchemaGate {
    /// The service feeds exactly these tensors. A dynamic dimension here means the
    /// service varies it (a batch), so the candidate must leave it dynamic too.
    pub fn feeds(feed: Vec<TensorSpec>) -> Self {
        Self {
            feed: Some(feed),
            metadata: Vec::new(),
        }
    }

    /// The service feeds what the live model declares: the candidate must accept the live
    /// model's inputs.
    pub fn like_live() -> Self {
        Self {
            feed: None,
            metadata: Vec::new(),
        }
    }

    /// The candidate's metadata must have `key` = `value`.
    pub fn require_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), Some(value.into())));
        self
    }

    /// The candidate's metadata `key` must equal the live model's.
    pub fn same_metadata_as_live(mut self, key: impl Into<String>) -> Self {
        self.metadata.push((key.into(), None));
        self
    }

    /// Every mismatch between the feed (or `live`) and `candidate`, in words.
    pub fn mismatches(&self, candidate: &ModelInfo, live: &ModelInfo) -> Vec<String> {
        let feed = self.feed.as_deref().unwrap_or(&live.inputs);
        let mut out = Vec::new();
        if candidate.inputs.is_empty() && !feed.is_empty() {
            out.push("the candidate declares no inputs, so it cannot be checked".to_owned());
            return out;
        }
        for fed in feed {
            let Some(decl) = candidate.input(&fed.name) else {
                out.push(format!(
                    "the service feeds input {:?} but the candidate declares only {}",
                    fed.name,
                    list(&candidate.inputs)
                ));
                continue;
            };
            if decl.dtype != fed.dtype {
                out.push(format!(
                    "input {:?}: the service feeds {} but the candidate takes {}",
                    fed.name, fed.dtype, decl.dtype
                ));
            }
            if let (Some(fs), Some(ds)) = (&fed.shape, &decl.shape) {
                if fs.len() != ds.len() {
                    out.push(format!(
                        "input {:?}: the service feeds rank {} ({fed}) but the candidate takes rank {} ({decl})",
                        fed.name,
                        fs.len(),
                        ds.len()
                    ));
                } else {
                    for (axis, (f, d)) in fs.iter().zip(ds).enumerate() {
                        let ok = match (f, d) {
                            (_, Dim::Dynamic(_)) => true,
                            (Dim::Fixed(a), Dim::Fixed(b)) => a == b,
                            (Dim::Dynamic(_), Dim::Fixed(_)) => false,
                        };
                        if !ok {
                            out.push(format!(
                                "input {:?} axis {axis}: the service feeds {f} but the candidate requires {d} ({decl})",
                                fed.name
                            ));
                        }
                    }
                }
            }
        }
        for decl in &candidate.inputs {
            if !feed.iter().any(|f| f.name == decl.name) {
                out.push(format!(
                    "the candidate requires input {decl} which the service does not feed"
                ));
            }
        }
        for (key, want) in &self.metadata {
            let want = match want {
                Some(v) => Some(v.as_str()),
                None => live.metadata.get(key).map(String::as_str),
            };
            let have = candidate.metadata.get(key).map(String::as_str);
            if have != want {
                out.push(format!(
                    "metadata {key:?}: expected {}, the candidate has {}",
                    quoted(want),
                    quoted(have)
                ));
            }
        }
        out
    }
}

fn quoted(v: Option<&str>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"))
}

fn list(specs: &[TensorSpec]) -> String {
    if specs.is_empty() {
        return "nothing".to_owned();
    }
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl<M: Model> Validator<M> for SchemaGate {
    fn name(&self) -> &str {
        "schema"
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let problems = self.mismatches(cx.candidate_info(), cx.live_info());
        let verdict = Verdict::measure(problems.len() as f64, Bound::AtMost(0.0));
        if problems.is_empty() {
            verdict.with_detail(format!("inputs {}", list(&cx.candidate_info().inputs)))
        } else {
            verdict.with_detail(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ElementType;

    fn info(name: &str, width: usize, schema: &str) -> ModelInfo {
        let mut m = ModelInfo {
            inputs: vec![TensorSpec::new(
                name,
                ElementType::F32,
                vec![Dim::Dynamic(Some("batch".into())), Dim::Fixed(width)],
            )],
            ..ModelInfo::default()
        };
        m.metadata.insert("feature_schema".into(), schema.into());
        m
    }

    #[test]
    fn identical_schemas_have_no_mismatch() {
        let live = info("input", 64, "a");
        let gate = SchemaGate::like_live().same_metadata_as_live("feature_schema");
        assert!(gate.mismatches(&live.clone(), &live).is_empty());
    }

    #[test]
    fn renamed_and_narrower_input_is_named_in_the_mismatch() {
        let live = info("input", 64, "digits-8x8-f32");
        let cand = info("pixels", 32, "digits-4x8-f32");
        let gate = SchemaGate::like_live().same_metadata_as_live("feature_schema");
        let m = gate.mismatches(&cand, &live);
        assert_eq!(
            m,
            [
                "the service feeds input \"input\" but the candidate declares only pixels: f32[batch, 32]",
                "the candidate requires input pixels: f32[batch, 32] which the service does not feed",
                "metadata \"feature_schema\": expected \"digits-8x8-f32\", the candidate has \"digits-4x8-f32\"",
            ]
        );
    }

    #[test]
    fn wrong_width_dtype_and_fixed_batch_are_each_reported() {
        let feed = info("input", 64, "x");
        let mut cand = info("input", 32, "x");
        cand.inputs[0].dtype = ElementType::F64;
        cand.inputs[0].shape = Some(vec![Dim::Fixed(1), Dim::Fixed(32)]);
        let m = SchemaGate::feeds(feed.inputs.clone()).mismatches(&cand, &ModelInfo::default());
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("feeds f32 but the candidate takes f64"));
        assert!(m[1].contains("axis 0: the service feeds batch but the candidate requires 1"));
        assert!(m[2].contains("axis 1: the service feeds 64 but the candidate requires 32"));
    }
}
