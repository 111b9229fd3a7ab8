//! Integration tests for `bluegreen::onnx::OnnxModel` against the real digits models.
//!
//! Needs ONNX Runtime 1.31.x: run `bash scripts/setup-ort.sh` once (it fills `.ort/lib/`, where
//! `.cargo/config.toml` points ORT_DYLIB_PATH), then `cargo test --test onnx_model`.
//!
//! Reference outputs (`models/digits/golden.npz`) were recorded with Python onnxruntime 1.31.1
//! by `models/generate.py`; `tests/fixtures/two_inputs.onnx` comes from
//! `tests/fixtures/make_fixtures.py`.
#![cfg(feature = "onnx")]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bluegreen::onnx::ndarray::{Array1, Array2, ArrayD, Axis, s};
use bluegreen::onnx::{
    Inputs, OnnxConfig, OnnxError, OnnxModel, RUNTIME_FIX, Tensor, TensorView, init_runtime,
    init_runtime_with,
};
use bluegreen::{Dim, ElementType, Model, TensorSpec};
use ndarray_npy::NpzReader;

const TOLERANCE: f32 = 1e-5;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digits(version: u32) -> PathBuf {
    repo().join(format!("models/digits/{version}/model.onnx"))
}

fn two_inputs_path() -> PathBuf {
    repo().join("tests/fixtures/two_inputs.onnx")
}

struct Reference {
    label: Array1<i64>,
    probabilities: Array2<f32>,
}

struct Golden {
    inputs: Array2<f32>,
    inputs_4x8: Array2<f32>,
    v: Vec<Reference>, // index 0 = v1, …, 3 = v4
}

fn golden() -> &'static Golden {
    static GOLDEN: OnceLock<Golden> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let path = repo().join("models/digits/golden.npz");
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let mut npz = NpzReader::new(file).expect("golden.npz is a valid npz");
        let mut v = Vec::new();
        for version in 1..=4 {
            v.push(Reference {
                label: npz.by_name(&format!("label_v{version}")).expect("label_vN"),
                probabilities: npz
                    .by_name(&format!("probabilities_v{version}"))
                    .expect("probabilities_vN"),
            });
        }
        Golden {
            inputs: npz.by_name("inputs").expect("inputs"),
            inputs_4x8: npz.by_name("inputs_4x8").expect("inputs_4x8"),
            v,
        }
    })
}

fn load(version: u32, pool: usize) -> OnnxModel {
    OnnxConfig::new()
        .pool_size(pool)
        .load(digits(version))
        .unwrap_or_else(|e| panic!("loading digits v{version}: {e}"))
}

fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `inputs` through `model` and compares with the reference rows `rows` of version `v`.
fn assert_matches_reference(
    model: &OnnxModel,
    inputs: Array2<f32>,
    v: usize,
    rows: std::ops::Range<usize>,
) {
    let reference = &golden().v[v - 1];
    let out = model.predict(&Inputs::single(inputs)).expect("predict");
    let label = out.i64("label").expect("label output");
    let expected_label = reference
        .label
        .slice(s![rows.clone()])
        .into_owned()
        .into_dyn();
    assert_eq!(
        label.to_owned(),
        expected_label,
        "labels differ from Python for v{v} rows {rows:?}"
    );
    let probabilities = out
        .f32("probabilities")
        .expect("probabilities output")
        .to_owned();
    let expected = reference
        .probabilities
        .slice(s![rows.clone(), ..])
        .into_owned()
        .into_dyn();
    let err = max_abs_diff(&probabilities, &expected);
    assert!(
        err <= TOLERANCE,
        "v{v} rows {rows:?}: max |Δp| = {err:e} > {TOLERANCE:e}"
    );
}

fn assert_parity_whole_set(version: u32) {
    let model = load(version, 1);
    let g = golden();
    let n = g.inputs.nrows();
    assert_eq!(n, 450);
    let inputs = if version == 4 {
        g.inputs_4x8.clone()
    } else {
        g.inputs.clone()
    };
    assert_matches_reference(&model, inputs, version as usize, 0..n);
}

// ----------------------------------------------------------------------------------------
// parity with Python onnxruntime

#[test]
fn v1_matches_python_reference_on_whole_golden_set() {
    assert_parity_whole_set(1);
}

#[test]
fn v2_matches_python_reference_on_whole_golden_set() {
    assert_parity_whole_set(2);
}

#[test]
fn v3_matches_python_reference_on_whole_golden_set() {
    assert_parity_whole_set(3);
}

#[test]
fn v4_matches_python_reference_on_its_own_4x8_inputs() {
    assert_parity_whole_set(4);
}

#[test]
fn v2_row_by_row_matches_batched_reference() {
    let model = load(2, 1);
    let g = golden();
    for row in 0..g.inputs.nrows() {
        let x = g.inputs.slice(s![row..row + 1, ..]).to_owned();
        assert_matches_reference(&model, x, 2, row..row + 1);
    }
}

#[test]
fn model_loaded_from_bytes_matches_python_reference() {
    let bytes = std::fs::read(digits(2)).expect("read v2");
    let model = OnnxConfig::new()
        .pool_size(1)
        .load_from_memory(&bytes)
        .expect("from memory");
    assert_eq!(model.path(), None);
    let g = golden();
    assert_matches_reference(&model, g.inputs.clone(), 2, 0..g.inputs.nrows());
    let default_pool = OnnxModel::from_bytes(&bytes).expect("from_bytes");
    assert_eq!(
        default_pool.pool_size(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        "default pool size is available_parallelism"
    );
}

#[test]
fn non_standard_layout_input_gives_same_outputs() {
    let model = load(2, 1);
    let g = golden();
    // Same values, column-major memory: built transposed, then transposed back as a view.
    let transposed = g.inputs.t().as_standard_layout().into_owned(); // [64, 450] row-major
    let column_major = transposed.reversed_axes(); // [450, 64], not standard layout
    assert!(!column_major.is_standard_layout());
    assert_matches_reference(&model, column_major, 2, 0..g.inputs.nrows());
}

// ----------------------------------------------------------------------------------------
// concurrency

fn hammer(model: &OnnxModel, threads: usize, calls: usize) {
    let g = golden();
    let n = g.inputs.nrows();
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for c in 0..calls {
                    // Each thread walks its own sequence of 1..=3-row batches over the set.
                    let start = (t * 97 + c * 13) % (n - 3);
                    let len = 1 + (t + c) % 3;
                    let x = g.inputs.slice(s![start..start + len, ..]).to_owned();
                    assert_matches_reference(model, x, 2, start..start + len);
                }
            });
        }
    });
}

#[test]
fn concurrent_predict_from_four_threads_matches_reference() {
    let model = load(2, 4);
    hammer(&model, 4, 300);
    let runs = model.runs_per_session();
    assert_eq!(
        runs.iter().sum::<u64>(),
        4 * 300,
        "every call ran exactly once: {runs:?}"
    );
}

#[test]
fn concurrent_predict_with_fewer_sessions_than_threads_matches_reference() {
    let model = load(2, 2);
    hammer(&model, 4, 300);
    let runs = model.runs_per_session();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs.iter().sum::<u64>(), 4 * 300, "{runs:?}");
}

#[test]
fn onnx_model_and_outputs_are_send_and_sync_or_send() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<OnnxModel>();
    send::<bluegreen::onnx::Outputs>();
    send_sync::<OnnxError>();
}

// ----------------------------------------------------------------------------------------
// info()

#[test]
fn info_reports_names_dtypes_symbolic_shapes_and_metadata() {
    let model = load(2, 1);
    let info = model.info();
    let batch = || Dim::Dynamic(Some("batch".to_string()));
    assert_eq!(
        info.inputs,
        vec![TensorSpec::new(
            "input",
            ElementType::F32,
            vec![batch(), Dim::Fixed(64)]
        )]
    );
    assert_eq!(
        info.outputs,
        vec![
            TensorSpec::new("label", ElementType::I64, vec![batch()]),
            TensorSpec::new(
                "probabilities",
                ElementType::F32,
                vec![batch(), Dim::Fixed(10)]
            ),
        ]
    );
    let meta = &info.metadata;
    assert_eq!(
        meta.get("feature_schema").map(String::as_str),
        Some("digits-8x8-f32")
    );
    assert_eq!(meta.get("model_version").map(String::as_str), Some("2"));
    assert_eq!(meta.get("task").map(String::as_str), Some("digits"));
    assert_eq!(
        meta.get("onnx.producer_name").map(String::as_str),
        Some("bluegreen/models/generate.py")
    );
    assert_eq!(
        meta.get("onnx.graph_name").map(String::as_str),
        Some("digits_v2")
    );
    assert_eq!(model.input_names(), ["input".to_string()]);

    let v4 = load(4, 1).info();
    assert_eq!(
        v4.inputs,
        vec![TensorSpec::new(
            "pixels",
            ElementType::F32,
            vec![batch(), Dim::Fixed(32)]
        )]
    );
    assert_eq!(
        v4.metadata.get("feature_schema").map(String::as_str),
        Some("digits-4x8-f32")
    );
}

#[test]
fn info_of_two_input_fixture_lists_inputs_in_graph_order() {
    let model = OnnxConfig::new()
        .pool_size(1)
        .load(two_inputs_path())
        .expect("fixture");
    let info = model.info();
    let names: Vec<_> = info
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.dtype))
        .collect();
    assert_eq!(names, [("x", ElementType::F32), ("k", ElementType::I64)]);
    let outputs: Vec<_> = info
        .outputs
        .iter()
        .map(|t| (t.name.as_str(), t.dtype))
        .collect();
    assert_eq!(
        outputs,
        [("y", ElementType::F32), ("k_plus", ElementType::I64)]
    );
    assert_eq!(
        info.metadata.get("model_version").map(String::as_str),
        Some("7")
    );
}

// ----------------------------------------------------------------------------------------
// load errors

#[test]
fn corrupt_model_file_is_invalid_model_naming_the_path() {
    let path = digits(5);
    match OnnxModel::load(&path) {
        Err(OnnxError::InvalidModel {
            path: Some(p),
            message,
        }) => {
            assert_eq!(p, path);
            assert!(!message.is_empty());
            let shown = OnnxError::InvalidModel {
                path: Some(p),
                message,
            }
            .to_string();
            assert!(shown.contains("models/digits/5/model.onnx"), "{shown}");
        }
        other => panic!(
            "expected InvalidModel naming {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn truncated_bytes_in_memory_are_invalid_model_without_path() {
    let bytes = std::fs::read(digits(2)).expect("read v2");
    for cut in [0, 7, bytes.len() / 3, bytes.len() - 1] {
        match OnnxModel::from_bytes(&bytes[..cut]) {
            Err(OnnxError::InvalidModel {
                path: None,
                message,
            }) => assert!(!message.is_empty()),
            other => panic!("cut at {cut}: expected InvalidModel without path, got {other:?}"),
        }
    }
}

#[test]
fn missing_model_file_is_model_not_found_naming_the_path() {
    let path = repo().join("models/digits/404/model.onnx");
    match OnnxModel::load(&path) {
        Err(e @ OnnxError::ModelNotFound { .. }) => {
            assert!(
                e.to_string().contains("models/digits/404/model.onnx"),
                "{e}"
            );
            let OnnxError::ModelNotFound { path: p } = e else {
                unreachable!()
            };
            assert_eq!(p, path);
        }
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
}

#[test]
fn directory_as_model_path_is_unreadable() {
    let dir = repo().join("models/digits/2");
    assert!(matches!(
        OnnxModel::load(&dir),
        Err(OnnxError::ModelUnreadable { path, .. }) if path == dir
    ));
}

#[test]
fn pool_size_zero_is_invalid_config() {
    assert!(matches!(
        OnnxConfig::new().pool_size(0).load(digits(2)),
        Err(OnnxError::InvalidConfig(_))
    ));
}

// ----------------------------------------------------------------------------------------
// input validation at predict time

/// The model still answers correctly after an error.
fn assert_still_serves(model: &OnnxModel) {
    let g = golden();
    assert_matches_reference(model, g.inputs.slice(s![0..5, ..]).to_owned(), 2, 0..5);
}

#[test]
fn wrong_fixed_dimension_is_wrong_dim_and_model_keeps_answering() {
    let model = load(2, 1);
    let err = model
        .predict(&Inputs::single(Array2::<f32>::zeros((2, 63))))
        .expect_err("63 features must be refused");
    match &err {
        OnnxError::WrongDim {
            name,
            axis,
            expected,
            got,
            got_shape,
            ..
        } => {
            assert_eq!(
                (name.as_str(), *axis, *expected, *got),
                ("input", 1, 64, 63)
            );
            assert_eq!(got_shape, &[2, 63]);
        }
        other => panic!("expected WrongDim, got {other:?}"),
    }
    assert!(err.is_input_error());
    assert!(err.to_string().contains("input `input`"), "{err}");
    assert_eq!(
        model.runs_per_session(),
        [0],
        "refused before reaching ONNX Runtime"
    );
    assert_still_serves(&model);
}

#[test]
fn wrong_rank_is_wrong_rank_and_model_keeps_answering() {
    let model = load(2, 1);
    let x = ArrayD::<f32>::zeros(vec![1, 8, 8]);
    match model.predict(&Inputs::single(x)) {
        Err(OnnxError::WrongRank {
            name,
            expected,
            got,
            expected_shape,
            got_shape,
        }) => {
            assert_eq!((name.as_str(), expected, got), ("input", 2, 3));
            assert_eq!(
                expected_shape,
                [Dim::Dynamic(Some("batch".into())), Dim::Fixed(64)]
            );
            assert_eq!(got_shape, [1, 8, 8]);
        }
        other => panic!("expected WrongRank, got {other:?}"),
    }
    assert_still_serves(&model);
}

#[test]
fn wrong_dtype_is_wrong_dtype_and_model_keeps_answering() {
    let model = load(2, 1);
    match model.predict(&Inputs::single(Array2::<i64>::zeros((1, 64)))) {
        Err(OnnxError::WrongDtype {
            name,
            expected,
            got,
        }) => {
            assert_eq!(
                (name.as_str(), expected, got),
                ("input", ElementType::F32, ElementType::I64)
            );
        }
        other => panic!("expected WrongDtype, got {other:?}"),
    }
    assert_still_serves(&model);
}

#[test]
fn unknown_input_name_is_unknown_input_and_model_keeps_answering() {
    let model = load(2, 1);
    let inputs = Inputs::new().with("pixels", Array2::<f32>::zeros((1, 64)));
    match model.predict(&inputs) {
        Err(OnnxError::UnknownInput { name, expected }) => {
            assert_eq!(name, "pixels");
            assert_eq!(expected, ["input"]);
        }
        other => panic!("expected UnknownInput, got {other:?}"),
    }
    assert_still_serves(&model);
}

#[test]
fn named_input_works_like_single() {
    let model = load(2, 1);
    let g = golden();
    let named = model
        .predict(&Inputs::new().with("input", g.inputs.clone()))
        .expect("named input");
    assert_eq!(
        named.i64("label").unwrap().to_owned(),
        golden().v[1].label.clone().into_dyn()
    );
}

#[test]
fn missing_input_is_missing_input() {
    let model = OnnxConfig::new()
        .pool_size(1)
        .load(two_inputs_path())
        .expect("fixture");
    let only_x = Inputs::new().with("x", Array2::<f32>::zeros((1, 3)));
    match model.predict(&only_x) {
        Err(OnnxError::MissingInput { name, expected }) => {
            assert_eq!(name, "k");
            assert_eq!(expected, ["x", "k"]);
        }
        other => panic!("expected MissingInput, got {other:?}"),
    }
    assert!(matches!(
        load(2, 1).predict(&Inputs::new()),
        Err(OnnxError::MissingInput { name, .. }) if name == "input"
    ));
}

#[test]
fn duplicate_and_ambiguous_inputs_are_refused() {
    let model = OnnxConfig::new()
        .pool_size(1)
        .load(two_inputs_path())
        .expect("fixture");
    let dup = Inputs::new()
        .with("x", Array2::<f32>::zeros((1, 3)))
        .with("k", Array2::<i64>::zeros((1, 2)))
        .with("x", Array2::<f32>::zeros((1, 3)));
    assert!(matches!(model.predict(&dup), Err(OnnxError::DuplicateInput { name }) if name == "x"));
    let single = Inputs::single(Array2::<f32>::zeros((1, 3)));
    match model.predict(&single) {
        Err(OnnxError::AmbiguousInput { expected }) => assert_eq!(expected, ["x", "k"]),
        other => panic!("expected AmbiguousInput, got {other:?}"),
    }
}

#[test]
fn two_input_model_takes_f32_and_i64_inputs_in_any_order() {
    let model = OnnxConfig::new()
        .pool_size(2)
        .load(two_inputs_path())
        .expect("fixture");
    let x = Array2::from_shape_vec((2, 3), vec![0.5f32, 1.0, -2.0, 3.0, 0.0, 1.5]).unwrap();
    let k = Array2::from_shape_vec((2, 2), vec![1i64, -1, 41, 9_000_000_000]).unwrap();
    // Given in reverse of graph order, collected from an iterator.
    let inputs: Inputs = [
        ("k", Tensor::from(k.clone())),
        ("x", Tensor::from(x.clone())),
    ]
    .into_iter()
    .collect();
    let out = model.predict(&inputs).expect("two inputs");
    assert_eq!(out.f32("y").unwrap().to_owned(), (&x * 2.0).into_dyn());
    assert_eq!(out.i64("k_plus").unwrap().to_owned(), (&k + 1).into_dyn());
    let order: Vec<_> = out
        .iter()
        .map(|(n, t)| (n.to_string(), t.dtype()))
        .collect();
    assert_eq!(
        order,
        [
            ("y".to_string(), ElementType::F32),
            ("k_plus".to_string(), ElementType::I64)
        ]
    );

    // A wrong fixed dim on the *second* input is caught and names it.
    let bad = Inputs::new()
        .with("x", x)
        .with("k", Array2::<i64>::zeros((2, 3)));
    assert!(matches!(
        model.predict(&bad),
        Err(OnnxError::WrongDim { name, axis: 1, expected: 2, got: 3, .. }) if name == "k"
    ));
}

// ----------------------------------------------------------------------------------------
// outputs

#[test]
fn outputs_iterate_in_graph_order_and_refuse_wrong_type_or_name() {
    let model = load(1, 1);
    let out = model
        .predict(&Inputs::single(
            golden().inputs.slice(s![0..4, ..]).to_owned(),
        ))
        .expect("predict");
    assert_eq!(out.len(), 2);
    assert_eq!(out.names().collect::<Vec<_>>(), ["label", "probabilities"]);
    let mut it = out.iter();
    match it.next() {
        Some(("label", TensorView::I64(a))) => assert_eq!(a.shape(), [4]),
        other => panic!("first output should be i64 label, got {other:?}"),
    }
    match it.next() {
        Some(("probabilities", TensorView::F32(a))) => {
            assert_eq!(a.shape(), [4, 10]);
            for row in a.axis_iter(Axis(0)) {
                assert!((row.sum() - 1.0).abs() < 1e-4, "probabilities sum to 1");
            }
        }
        other => panic!("second output should be f32 probabilities, got {other:?}"),
    }
    assert!(it.next().is_none());
    assert_eq!(out.dtype("label"), Some(ElementType::I64));
    assert!(matches!(
        out.f32("label"),
        Err(OnnxError::OutputType {
            requested: ElementType::F32,
            actual: ElementType::I64,
            ..
        })
    ));
    assert!(matches!(
        out.i64("scores"),
        Err(OnnxError::NoSuchOutput { name, available }) if name == "scores" && available == ["label", "probabilities"]
    ));
    // Outputs outlive the model that produced them.
    drop(model);
    assert_eq!(
        out.i64("label").unwrap().to_owned(),
        golden().v[0].label.slice(s![0..4]).into_owned().into_dyn()
    );
}

// ----------------------------------------------------------------------------------------
// warm-up

#[test]
fn warm_up_runs_every_sample_on_every_session() {
    let model = load(2, 3);
    assert_eq!(model.runs_per_session(), [0, 0, 0]);
    let g = golden();
    let samples = vec![
        Inputs::single(g.inputs.slice(s![0..1, ..]).to_owned()),
        Inputs::single(g.inputs.slice(s![1..33, ..]).to_owned()),
    ];
    model.warm_up(&samples).expect("warm-up");
    assert_eq!(
        model.runs_per_session(),
        [2, 2, 2],
        "each of 3 sessions ran both samples"
    );
    assert_still_serves(&model);
    assert_eq!(
        model.runs_per_session().iter().sum::<u64>(),
        7,
        "one predict = one more run"
    );
}

#[test]
fn warm_up_with_an_invalid_sample_fails_before_running_anything() {
    let model = load(2, 2);
    let samples = vec![
        Inputs::single(golden().inputs.slice(s![0..1, ..]).to_owned()),
        Inputs::single(Array2::<f32>::zeros((1, 32))),
    ];
    assert!(matches!(
        model.warm_up(&samples),
        Err(OnnxError::WrongDim { .. })
    ));
    assert_eq!(model.runs_per_session(), [0, 0]);
}

// ----------------------------------------------------------------------------------------
// runtime initialization (child processes, since the runtime is process-wide)

/// Runs `runtime_child` in a fresh copy of this test binary with `mode` and extra env.
/// Returns the child's stderr.
fn run_child(mode: &str, env: &[(&str, Option<&str>)]) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "runtime_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("BLUEGREEN_RUNTIME_CHILD", mode);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("spawn child test");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child `{mode}` failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("CHILD-OK {mode}")),
        "child `{mode}` did not run its checks:\n{stdout}\n{stderr}"
    );
    stderr.into_owned()
}

#[test]
fn missing_runtime_library_is_an_actionable_error_not_a_panic() {
    run_child(
        "missing",
        &[(
            "ORT_DYLIB_PATH",
            Some("/nonexistent/dir/libonnxruntime.so.1.31.1"),
        )],
    );
}

#[test]
fn runtime_path_to_a_non_library_file_is_refused_before_ort_is_touched() {
    let not_a_library = digits(1);
    let stderr = run_child(
        "not_a_library",
        &[("ORT_DYLIB_PATH", Some(not_a_library.to_str().unwrap()))],
    );
    assert!(
        !stderr.contains("panicked"),
        "no panic even inside ort:\n{stderr}"
    );
}

#[test]
fn runtime_path_to_a_directory_is_refused_before_ort_is_touched() {
    let dir = repo().join(".ort");
    let stderr = run_child(
        "directory",
        &[("ORT_DYLIB_PATH", Some(dir.to_str().unwrap()))],
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A real shared library that is not ONNX Runtime: ort's loader panics, bluegreen returns
/// an error instead — and the panic hook never sees ort's panic (nothing on stderr).
#[test]
fn runtime_path_to_a_foreign_shared_library_is_an_error_not_a_panic() {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("Linux /proc/self/maps");
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .expect("this test binary maps libc")
        .to_string();
    let stderr = run_child("foreign_library", &[("ORT_DYLIB_PATH", Some(&libc))]);
    assert!(
        !stderr.contains("panicked at") && !stderr.contains("OrtGetApiBase"),
        "ort's panic reached the panic hook:\n{stderr}"
    );
}

#[test]
fn environment_built_by_the_application_is_used_via_init_runtime_with() {
    // ORT_DYLIB_PATH comes from .cargo/config.toml (or the caller's environment).
    run_child("foreign", &[]);
}

#[test]
fn ort_init_from_explicit_path_then_init_runtime_loads_models() {
    let lib = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (see scripts/setup-ort.sh)");
    run_child(
        "init_from",
        &[("ORT_DYLIB_PATH", None), ("BLUEGREEN_ORT_LIB", Some(&lib))],
    );
}

/// The child half of the runtime tests. Does nothing unless started by `run_child`.
#[test]
#[ignore = "run by the runtime tests in a child process"]
fn runtime_child() {
    let Ok(mode) = std::env::var("BLUEGREEN_RUNTIME_CHILD") else {
        return;
    };
    match mode.as_str() {
        "missing" => {
            let err = init_runtime().expect_err("no library at ORT_DYLIB_PATH");
            assert!(
                matches!(&err, OnnxError::RuntimeNotFound { path } if path.ends_with("libonnxruntime.so.1.31.1")),
                "{err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains("/nonexistent/dir/libonnxruntime.so.1.31.1"),
                "{text}"
            );
            assert!(text.contains(RUNTIME_FIX), "{text}");
            assert!(text.contains("scripts/setup-ort.sh") && text.contains("download-binaries"));
            // Loading a model reports the same, and a retry does not hang or panic.
            assert!(matches!(
                OnnxModel::load(digits(2)),
                Err(OnnxError::RuntimeNotFound { .. })
            ));
            assert!(!bluegreen::onnx::runtime_initialized());
        }
        "not_a_library" | "directory" | "foreign_library" => {
            let err = init_runtime().expect_err("ORT_DYLIB_PATH is not ONNX Runtime");
            let expected = match mode.as_str() {
                "not_a_library" => "model.onnx` is not a shared library",
                "directory" => "is a directory",
                _ => "does not export `OrtGetApiBase`",
            };
            match &err {
                OnnxError::RuntimeUnavailable { reason } => {
                    assert!(
                        reason.contains(expected),
                        "expected {expected:?} in: {reason}"
                    );
                }
                other => panic!("expected RuntimeUnavailable, got {other:?}"),
            }
            assert!(err.to_string().contains(RUNTIME_FIX));
            // A second attempt (here through a model load) fails the same way: no hang, no
            // poisoned state, no panic.
            assert!(matches!(
                OnnxModel::load(digits(2)),
                Err(OnnxError::RuntimeUnavailable { .. })
            ));
            assert!(!bluegreen::onnx::runtime_initialized());
        }
        "foreign" => {
            let env = bluegreen::onnx::ort::init()
                .with_name("app")
                .build()
                .expect("app env");
            assert!(matches!(
                init_runtime(),
                Err(OnnxError::ForeignEnvironment { .. })
            ));
            init_runtime_with(env.clone()).expect("hand over the app's environment");
            assert!(matches!(
                init_runtime_with(env),
                Err(OnnxError::RuntimeAlreadyInitialized)
            ));
            init_runtime().expect("already initialized");
            let model = load(2, 1);
            assert_still_serves(&model);
        }
        "init_from" => {
            assert!(std::env::var_os("ORT_DYLIB_PATH").is_none());
            let lib = std::env::var("BLUEGREEN_ORT_LIB").expect("lib path");
            let _builder = bluegreen::onnx::ort::init_from(&lib).expect("explicit library path");
            init_runtime().expect("environment on the explicitly loaded library");
            assert_still_serves(&load(2, 1));
        }
        other => panic!("unknown child mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

// ----------------------------------------------------------------------------------------
// OnnxBinding (golden-set gates)

#[test]
fn onnx_binding_reads_labels_and_scores_like_python() {
    use bluegreen::gates::Binding;
    use bluegreen::onnx::OnnxBinding;
    let model = load(2, 1);
    let g = golden();
    let binding = OnnxBinding::classifier();
    let out = model
        .predict(&binding.input(g.inputs.view()))
        .expect("predict");
    let p = binding.read(&out, g.inputs.nrows()).expect("read");
    assert_eq!(p.labels, g.v[1].label);
    let scores = p.scores.expect("scores");
    assert!(
        max_abs_diff(&scores.into_dyn(), &g.v[1].probabilities.clone().into_dyn()) <= TOLERANCE
    );
    binding
        .check_declared(&out, &model.info())
        .expect("outputs as declared");

    // Labels from the arg-max of the scores agree with the model's own labels here.
    let argmax = OnnxBinding::classifier()
        .labels_from_scores()
        .read(&out, g.inputs.nrows())
        .unwrap();
    assert_eq!(argmax.labels, g.v[1].label);

    // Rows fed by input name.
    let named = OnnxBinding::classifier().input_name("input");
    let out_named = model.predict(&named.input(g.inputs.view())).expect("named");
    assert_eq!(named.read(&out_named, 450).unwrap().labels, g.v[1].label);
    let wrong = OnnxBinding::classifier().input_name("pixels");
    assert!(matches!(
        model.predict(&wrong.input(g.inputs.view())),
        Err(OnnxError::UnknownInput { .. })
    ));

    // Wrong row count, missing output name, and a declaration the output does not match.
    assert!(binding.read(&out, 3).is_err());
    assert!(
        OnnxBinding::classifier()
            .scores("logits")
            .read(&out, 450)
            .unwrap_err()
            .contains("logits")
    );
    let mut doctored = model.info();
    doctored.outputs[1].shape = Some(vec![Dim::Dynamic(None), Dim::Fixed(11)]);
    let why = binding.check_declared(&out, &doctored).unwrap_err();
    assert!(why.contains("probabilities"), "{why}");
}

#[test]
fn golden_gates_with_onnx_binding_accept_v2_and_refuse_v3() {
    use bluegreen::gates::GoldenGates;
    use bluegreen::onnx::OnnxBinding;
    use bluegreen::{BlueGreen, GoldenSet};

    let golden = GoldenSet::from_npz(repo().join("models/digits/golden.npz")).expect("golden set");
    let gates = GoldenGates::new(golden, OnnxBinding::classifier());
    let bg = BlueGreen::builder()
        .validator(gates.accuracy(0.95))
        .validator(gates.sanity())
        .build("1", load(1, 2))
        .expect("build");
    bg.stage("3", load(3, 2)).expect("stage v3");
    assert!(bg.swap().is_err(), "v3 (shuffled labels) must be refused");
    assert_eq!(bg.active().version(), "1");
    bg.stage("2", load(2, 2)).expect("stage v2");
    bg.swap().expect("v2 passes accuracy ≥ 0.95 and sanity");
    assert_eq!(bg.active().version(), "2");
}
