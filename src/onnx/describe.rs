//! What a loaded session declares, in bluegreen's terms: inputs, outputs and metadata
//! ([`ModelInfo`]).

use std::collections::BTreeMap;

use ort::session::Session;
use ort::value::{Outlet, ValueType};

use super::config::Source;
use super::metadata::{DROPPED_KEY, MetadataLimits, read_custom};
use super::tensor::{element_type, value_element_type};
use crate::{Dim, ModelInfo, TensorSpec};

/// Inputs, outputs and metadata of a session loaded from `source`. The custom metadata
/// is read from `source` itself, in one pass and within `limits` (see `metadata.rs`).
pub(super) fn describe(session: &Session, source: Source<'_>, limits: MetadataLimits) -> ModelInfo {
    let mut metadata = BTreeMap::new();
    match read_custom(source, limits) {
        Ok(custom) => {
            if let Some(note) = custom.dropped_note(limits) {
                tracing::warn!(target: "bluegreen", path = ?source.path(), %note,
                    "model metadata beyond the limits was not read");
                metadata.insert(DROPPED_KEY.to_owned(), note);
            }
            metadata.extend(custom.entries);
        }
        Err(reason) => {
            metadata.insert(
                "bluegreen.metadata_error".to_owned(),
                format!("custom metadata not read: {reason}"),
            );
        }
    }
    if let Ok(meta) = session.metadata() {
        let standard = [
            ("onnx.producer_name", meta.producer()),
            ("onnx.graph_name", meta.name()),
            ("onnx.domain", meta.domain()),
            ("onnx.doc_string", meta.description()),
            ("onnx.graph_doc_string", meta.graph_description()),
            (
                "onnx.model_version",
                meta.version().filter(|v| *v != 0).map(|v| v.to_string()),
            ),
        ];
        for (key, value) in standard {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                metadata.insert(key.to_string(), value);
            }
        }
    }
    ModelInfo {
        inputs: session.inputs().iter().map(spec).collect(),
        outputs: session.outputs().iter().map(spec).collect(),
        metadata,
    }
}

fn spec(outlet: &Outlet) -> TensorSpec {
    let dtype = outlet.dtype();
    let shape = match dtype {
        ValueType::Tensor {
            shape,
            dimension_symbols,
            ..
        } => Some(
            shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d >= 0 {
                        Dim::Fixed(usize::try_from(d).unwrap_or(usize::MAX))
                    } else {
                        let name = dimension_symbols.get(i).filter(|s| !s.is_empty());
                        Dim::Dynamic(name.cloned())
                    }
                })
                .collect(),
        ),
        _ => None,
    };
    TensorSpec {
        name: outlet.name().to_string(),
        dtype: match dtype {
            ValueType::Tensor { ty, .. } => element_type(*ty),
            other => value_element_type(other),
        },
        shape,
    }
}
