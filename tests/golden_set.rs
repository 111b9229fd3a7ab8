//! Golden sets: loading the real `.npz`, and every kind of bad input getting a typed error
//! that names the file and the array.

use std::fs;
use std::path::{Path, PathBuf};

use bluegreen::{GoldenError, GoldenSet};
use ndarray::{Array1, Array2, array};
use ndarray_npy::NpzWriter;

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/digits/golden.npz");

/// Writes an `.npz` holding the arrays `add` puts in, inside a fresh temp dir.
fn npz(dir: &tempfile::TempDir, name: &str, add: impl FnOnce(&mut NpzWriter<fs::File>)) -> PathBuf {
    let path = dir.path().join(name);
    let mut w = NpzWriter::new(fs::File::create(&path).unwrap());
    add(&mut w);
    w.finish().unwrap();
    path
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn loads_the_bundled_digits_golden_set() {
    let g = GoldenSet::npz(GOLDEN)
        .labels("labels")
        .expected("probabilities_v2")
        .classes(10)
        .load()
        .unwrap();
    assert_eq!((g.len(), g.features()), (450, 64));
    assert_eq!(g.labels().unwrap().len(), 450);
    assert_eq!(g.expected().unwrap().dim(), (450, 10));
    assert!(g.labels().unwrap().iter().all(|&l| (0..10).contains(&l)));
    // from_npz picks up labels when present.
    assert!(GoldenSet::from_npz(GOLDEN).unwrap().labels().is_some());
}

#[test]
fn batches_cover_every_row_once_without_copying() {
    let g = GoldenSet::from_npz(GOLDEN).unwrap();
    let ranges: Vec<_> = g
        .batches(128)
        .map(|(r, rows)| (r.clone(), rows.nrows()))
        .collect();
    assert_eq!(
        ranges,
        [
            (0..128, 128),
            (128..256, 128),
            (256..384, 128),
            (384..450, 66)
        ]
    );
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = GoldenSet::from_npz("models/digits/nope.npz").unwrap_err();
    assert!(
        matches!(&err, GoldenError::Io { path, source } if path == "models/digits/nope.npz" && source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
    // The OS error is the source, not repeated in the message: a printer walking the
    // chain (as examples/validate.rs does) shows it once.
    assert_eq!(
        err.to_string(),
        "cannot read golden set models/digits/nope.npz"
    );
    let source = std::error::Error::source(&err).expect("the OS error is the source");
    assert_eq!(source.to_string(), "No such file or directory (os error 2)");
    let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert_eq!(chain.matches(&source.to_string()).count(), 1, "{chain}");
}

#[test]
fn truncated_npz_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = fs::read(GOLDEN).unwrap();
    let path = dir.path().join("truncated.npz");
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(&err, GoldenError::Corrupt { path: p, .. } if *p == shown(&path)),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_an_archive_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.npz");
    fs::write(&path, b"this is not a zip file at all").unwrap();
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(&err, GoldenError::Corrupt { array, .. } if array == "-"),
        "{err}"
    );
}

#[test]
fn a_missing_array_is_named_with_what_the_file_has() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "x.npz", |w| {
        w.add_array("features", &array![[1f32, 2.0]]).unwrap();
    });
    let err = GoldenSet::from_npz(&path).unwrap_err();
    match &err {
        GoldenError::MissingArray {
            path: p,
            array,
            available,
        } => {
            assert_eq!(
                (p.as_str(), array.as_str()),
                (shown(&path).as_str(), "inputs")
            );
            assert_eq!(available, &["features"]);
        }
        other => panic!("expected MissingArray, got {other}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "golden set {} has no array `inputs` (it has: features)",
            shown(&path)
        )
    );
}

#[test]
fn a_wrongly_named_labels_array_is_a_missing_array() {
    let err = GoldenSet::npz(GOLDEN).labels("targets").load().unwrap_err();
    assert!(
        matches!(&err, GoldenError::MissingArray { array, .. } if array == "targets"),
        "{err}"
    );
}

#[test]
fn inputs_of_the_wrong_dtype_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "f64.npz", |w| {
        w.add_array("inputs", &array![[1f64, 2.0]]).unwrap();
    });
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(&err, GoldenError::WrongDtype { array, expected: "float32", .. } if array == "inputs"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "array `inputs` in {} must hold float32 values: the file declares '<f8'",
            shown(&path)
        )
    );
}

#[test]
fn labels_of_the_wrong_dtype_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "labels_f32.npz", |w| {
        w.add_array("inputs", &array![[1f32, 2.0]]).unwrap();
        w.add_array("labels", &array![1f32]).unwrap();
    });
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(&err, GoldenError::WrongDtype { array, expected: "int64", .. } if array == "labels"),
        "{err}"
    );
}

#[test]
fn inputs_of_the_wrong_rank_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "rank1.npz", |w| {
        w.add_array("inputs", &array![1f32, 2.0, 3.0]).unwrap();
    });
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(
            &err,
            GoldenError::WrongRank {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn labels_and_inputs_of_different_lengths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "short.npz", |w| {
        w.add_array("inputs", &Array2::<f32>::zeros((3, 2)))
            .unwrap();
        w.add_array("labels", &Array1::<i64>::zeros(2)).unwrap();
    });
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(&err, GoldenError::LengthMismatch { array, expected: 3, found: 2, .. } if array == "labels"),
        "{err}"
    );
}

#[test]
fn an_empty_golden_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "empty.npz", |w| {
        w.add_array("inputs", &Array2::<f32>::zeros((0, 64)))
            .unwrap();
    });
    let err = GoldenSet::from_npz(&path).unwrap_err();
    assert!(
        matches!(&err, GoldenError::Empty { shape, .. } if shape == &[0, 64]),
        "{err}"
    );
    assert!(matches!(
        GoldenSet::new(Array2::zeros((5, 0))),
        Err(GoldenError::Empty { .. })
    ));
}

#[test]
fn labels_out_of_range_are_refused_with_row_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "labels.npz", |w| {
        w.add_array("inputs", &Array2::<f32>::zeros((3, 2)))
            .unwrap();
        w.add_array("labels", &array![0i64, 10, 1]).unwrap();
    });
    let err = GoldenSet::npz(&path)
        .labels("labels")
        .classes(10)
        .load()
        .unwrap_err();
    assert!(
        matches!(
            &err,
            GoldenError::LabelOutOfRange {
                row: 1,
                label: 10,
                classes: 10,
                ..
            }
        ),
        "{err}"
    );

    assert_eq!(
        err.to_string(),
        format!(
            "label 10 at row 1 of `labels` in {} is out of range 0..10",
            shown(&path)
        )
    );
}

#[test]
fn a_negative_label_is_named_negative_without_a_made_up_range() {
    let negative = GoldenSet::new(Array2::zeros((2, 2)))
        .unwrap()
        .with_labels(array![0i64, -1])
        .unwrap_err();
    assert!(
        matches!(
            negative,
            GoldenError::NegativeLabel {
                row: 1,
                label: -1,
                ..
            }
        ),
        "{negative:?}"
    );
    assert_eq!(
        negative.to_string(),
        "label -1 at row 1 of `labels` in <in memory> is negative"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = npz(&dir, "negative.npz", |w| {
        w.add_array("inputs", &Array2::<f32>::zeros((3, 2)))
            .unwrap();
        w.add_array("truth", &array![0i64, 1, -7]).unwrap();
    });
    let err = GoldenSet::npz(&path).labels("truth").load().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "label -7 at row 2 of `truth` in {} is negative",
            shown(&path)
        )
    );
}

#[test]
fn declared_classes_are_kept_and_hold_for_labels_added_later() {
    let g = GoldenSet::npz(GOLDEN)
        .labels("labels")
        .classes(10)
        .load()
        .unwrap();
    assert_eq!(g.classes(), Some(10));
    assert_eq!(GoldenSet::from_npz(GOLDEN).unwrap().classes(), None);

    let err = GoldenSet::new(Array2::zeros((2, 2)))
        .unwrap()
        .with_classes(3)
        .unwrap()
        .with_labels(array![2i64, 3])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "label 3 at row 1 of `labels` in <in memory> is out of range 0..3"
    );
}

#[test]
fn non_finite_inputs_are_refused() {
    let err = GoldenSet::new(array![[1f32, 2.0], [f32::NAN, 0.0]]).unwrap_err();
    assert!(
        matches!(err, GoldenError::NonFinite { row: 1, .. }),
        "{err}"
    );
}

#[test]
fn expected_outputs_of_the_wrong_length_are_refused() {
    let err = GoldenSet::new(Array2::zeros((3, 2)))
        .unwrap()
        .with_expected(Array2::zeros((4, 10)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            GoldenError::LengthMismatch {
                expected: 3,
                found: 4,
                ..
            }
        ),
        "{err}"
    );
}
