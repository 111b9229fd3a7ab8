//! Checking a call's tensors against what the model declares, before ONNX Runtime sees
//! them: element type, rank and every fixed dimension.

use super::OnnxError;
use super::tensor::Tensor;
use crate::{Dim, TensorSpec};

/// Validates one tensor against its declared spec (element type, rank, fixed dims).
pub(super) fn check(spec: &TensorSpec, t: &Tensor) -> Result<(), OnnxError> {
    let got = t.dtype();
    if spec.dtype != got {
        return Err(OnnxError::WrongDtype {
            name: spec.name.clone(),
            expected: spec.dtype,
            got,
        });
    }
    let Some(dims) = &spec.shape else {
        return Ok(());
    };
    let shape = t.shape();
    if dims.len() != shape.len() {
        return Err(OnnxError::WrongRank {
            name: spec.name.clone(),
            expected: dims.len(),
            expected_shape: dims.clone(),
            got: shape.len(),
            got_shape: shape.to_vec(),
        });
    }
    for (axis, (d, &size)) in dims.iter().zip(shape).enumerate() {
        if let Dim::Fixed(expected) = d
            && *expected != size
        {
            return Err(OnnxError::WrongDim {
                name: spec.name.clone(),
                axis,
                expected: *expected,
                got: size,
                expected_shape: dims.clone(),
                got_shape: shape.to_vec(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ElementType;

    fn spec_f32(name: &str, dims: Vec<Dim>) -> TensorSpec {
        TensorSpec::new(name, ElementType::F32, dims)
    }

    #[test]
    fn check_accepts_dynamic_batch_and_matching_fixed_dim() {
        let s = spec_f32(
            "input",
            vec![Dim::Dynamic(Some("batch".into())), Dim::Fixed(4)],
        );
        let t = Tensor::from(ndarray::Array2::<f32>::zeros((7, 4)));
        assert!(check(&s, &t).is_ok());
    }

    #[test]
    fn check_rejects_wrong_fixed_dim_with_axis() {
        let s = spec_f32("input", vec![Dim::Dynamic(None), Dim::Fixed(4)]);
        let t = Tensor::from(ndarray::Array2::<f32>::zeros((2, 5)));
        match check(&s, &t) {
            Err(OnnxError::WrongDim {
                name,
                axis,
                expected,
                got,
                ..
            }) => {
                assert_eq!((name.as_str(), axis, expected, got), ("input", 1, 4, 5));
            }
            other => panic!("expected WrongDim, got {other:?}"),
        }
    }

    #[test]
    fn check_rejects_wrong_rank_and_dtype() {
        let s = spec_f32("input", vec![Dim::Dynamic(None), Dim::Fixed(4)]);
        let t = Tensor::from(ndarray::Array1::<f32>::zeros(4));
        assert!(matches!(
            check(&s, &t),
            Err(OnnxError::WrongRank {
                expected: 2,
                got: 1,
                ..
            })
        ));
        let t = Tensor::from(ndarray::Array2::<i64>::zeros((1, 4)));
        assert!(matches!(
            check(&s, &t),
            Err(OnnxError::WrongDtype {
                expected: ElementType::F32,
                got: ElementType::I64,
                ..
            })
        ));
    }
}
