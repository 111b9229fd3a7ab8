//! What a loaded session declares, in bluegreen's terms: inputs, outputs and metadata
//! ([`ModelInfo`]).

use std::collections::BTreeMap;

use ort::session::Session;
use ort::value::{Outlet, ValueType};

use super::tensor::{element_type, value_element_type};
use crate::{Dim, ModelInfo, TensorSpec};

/// Inputs, outputs and metadata of a session, in bluegreen's terms.
pub(super) fn describe(session: &Session) -> ModelInfo {
    let mut metadata = BTreeMap::new();
    if let Ok(meta) = session.metadata() {
        if let Ok(keys) = meta.custom_keys() {
            for key in keys {
                if let Some(value) = meta.custom(&key) {
                    metadata.insert(key, value);
                }
            }
        }
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
