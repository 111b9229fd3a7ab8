//! `BlueGreen<OnnxModel>` end to end with the real digits models (`models/digits/MANIFEST.md`):
//! v1 weak (0.9067), v2 good (0.9756), v3 trained on shuffled labels (0.0978), v4 another
//! input schema (`pixels` [batch, 32]), v5 a truncated file.
//!
//! Needs ONNX Runtime 1.31.x: `bash scripts/setup-ort.sh` once, then
//! `cargo test --test real_models`.
#![cfg(feature = "onnx")]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bluegreen::gates::{GoldenGates, SchemaGate};
use bluegreen::onnx::ndarray::{Array1, Array2, s};
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxConfig, OnnxError, OnnxModel};
use bluegreen::{BlueGreen, CheckStatus, ElementType, Error, GoldenSet, SlotState};
use ndarray_npy::NpzReader;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn model_path(version: u32) -> PathBuf {
    repo().join(format!("models/digits/{version}/model.onnx"))
}

fn golden_path() -> PathBuf {
    repo().join("models/digits/golden.npz")
}

/// Golden inputs, true labels and the Python-recorded answer of each version.
struct Reference {
    inputs: Array2<f32>,
    labels: Array1<i64>,
    answers: BTreeMap<&'static str, Array1<i64>>, // "v1" -> label_v1, "v2" -> label_v2, …
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let file = File::open(golden_path()).expect("open golden.npz");
        let mut npz = NpzReader::new(file).expect("golden.npz is an npz archive");
        let mut answers = BTreeMap::new();
        for (version, array) in [("v1", "label_v1"), ("v2", "label_v2"), ("v3", "label_v3")] {
            answers.insert(version, npz.by_name(array).expect(array));
        }
        Reference {
            inputs: npz.by_name("inputs").expect("inputs"),
            labels: npz.by_name("labels").expect("labels"),
            answers,
        }
    })
}

fn load(version: u32) -> OnnxModel {
    OnnxModel::load(model_path(version)).unwrap_or_else(|e| panic!("load v{version}: {e}"))
}

fn load_pool(version: u32, sessions: usize) -> OnnxModel {
    OnnxConfig::new()
        .pool_size(sessions)
        .load(model_path(version))
        .unwrap_or_else(|e| panic!("load v{version}: {e}"))
}

fn golden() -> GoldenSet {
    GoldenSet::npz(golden_path())
        .labels("labels")
        .classes(10)
        .load()
        .expect("golden set loads")
}

/// Golden example `i` as a one-row input.
fn row(i: usize) -> Inputs {
    Inputs::single(reference().inputs.slice(s![i..i + 1, ..]).to_owned())
}

/// The label a one-row prediction returned.
fn label_of(out: &bluegreen::onnx::Outputs) -> i64 {
    let labels = out.i64("label").expect("label output");
    assert_eq!(labels.len(), 1, "one row in, one label out");
    labels.iter().copied().next().unwrap_or(-1)
}

/// The gates the quick start uses: v2 passes them against v1, v3 and v4 do not.
fn deployment(active: &str, model: OnnxModel) -> BlueGreen<OnnxModel> {
    let gates = GoldenGates::new(golden(), OnnxBinding::classifier());
    BlueGreen::builder()
        .validator(SchemaGate::like_live().same_metadata_as_live("feature_schema"))
        .validator(gates.sanity())
        .validator(gates.accuracy(0.95))
        .validator(gates.regression(0.01))
        .validator(gates.agreement(0.85))
        .warmup_samples((0..4).map(row).collect())
        .build(active, model)
        .expect("deployment starts")
}

/// Every golden example through the deployment's active model, batched.
fn live_answers(bg: &BlueGreen<OnnxModel>) -> Array1<i64> {
    let out = bg
        .predict(&Inputs::single(reference().inputs.clone()))
        .expect("live model answers the golden set");
    out.i64("label")
        .expect("label output")
        .iter()
        .copied()
        .collect()
}

/// Swaps the staged candidate expecting a refusal; returns the refused report.
fn refused(bg: &BlueGreen<OnnxModel>) -> bluegreen::ValidationReport {
    match bg.swap() {
        Err(Error::ValidationFailed(report)) => *report,
        other => panic!("expected the candidate to be refused, got {other:?}"),
    }
}

fn failed_gates(report: &bluegreen::ValidationReport) -> BTreeSet<&str> {
    report.failures().map(|c| c.name.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// gates on real models

#[test]
fn good_v2_passes_every_gate_against_v1_with_the_measured_accuracy_of_the_manifest() {
    let bg = deployment("v1", load(1));
    bg.stage("v2", load(2)).unwrap();
    let swap = bg.swap().expect("v2 passes every gate");
    let report = &swap.validation;
    assert_eq!((swap.from.as_str(), swap.to.as_str()), ("v1", "v2"));
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["schema", "sanity", "accuracy", "regression", "agreement"]
    );
    for check in &report.checks {
        assert_eq!(check.status, CheckStatus::Passed, "{check}");
    }
    let measured = |name: &str| report.check(name).unwrap().measured.unwrap();
    assert!((measured("accuracy") - 0.9756).abs() < 1e-4, "{report}");
    // v2 − v1 on the golden set: 439/450 − 408/450.
    assert!(
        (measured("regression") - 31.0 / 450.0).abs() < 1e-9,
        "{report}"
    );
    assert!(
        (measured("agreement") - 410.0 / 450.0).abs() < 1e-9,
        "{report}"
    );
    assert_eq!(measured("schema"), 0.0);
    assert_eq!(measured("sanity"), 0.0);

    assert_eq!(bg.active().version(), "v2");
    assert_eq!(live_answers(&bg), reference().answers["v2"]);
    let status = bg.status();
    assert_eq!(status.standby.unwrap().state, SlotState::Previous);
    assert_eq!(status.swaps, 1);
}

#[test]
fn degraded_v3_is_refused_by_exactly_accuracy_regression_and_agreement() {
    let bg = deployment("v2", load(2));
    bg.stage("v3", load(3)).unwrap();
    let report = refused(&bg);
    assert_eq!(
        failed_gates(&report),
        BTreeSet::from(["accuracy", "regression", "agreement"]),
        "{report}"
    );
    assert_eq!(report.check("schema").unwrap().status, CheckStatus::Passed);
    assert_eq!(report.check("sanity").unwrap().status, CheckStatus::Passed);
    let accuracy = report.check("accuracy").unwrap().measured.unwrap();
    assert!((accuracy - 0.0978).abs() < 1e-4, "{report}");

    // Nothing changed for traffic; the candidate is kept, marked failed.
    assert_eq!(bg.active().version(), "v2");
    assert_eq!(live_answers(&bg), reference().answers["v2"]);
    let status = bg.status();
    let standby = status.standby.expect("v3 stays staged");
    assert_eq!(
        (standby.version.as_str(), standby.state),
        ("v3", SlotState::Failed)
    );
    assert_eq!((status.swaps, status.rejections), (0, 1));
    assert!(matches!(bg.swap(), Err(Error::CandidateFailed { version }) if version == "v3"));
}

#[test]
fn incompatible_v4_is_refused_by_the_schema_gate_naming_both_inputs() {
    let bg = deployment("v2", load(2));
    bg.stage("v4", load(4)).unwrap();
    let report = refused(&bg);
    assert_eq!(
        failed_gates(&report),
        BTreeSet::from(["schema", "sanity", "accuracy", "regression", "agreement"]),
        "{report}"
    );
    let schema = report.check("schema").unwrap();
    assert!(
        schema
            .detail
            .contains(r#"the service feeds input "input" but the candidate declares only pixels: f32[batch, 32]"#),
        "{schema}"
    );
    assert!(
        schema.detail.contains(
            r#"metadata "feature_schema": expected "digits-8x8-f32", the candidate has "digits-4x8-f32""#
        ),
        "{schema}"
    );
    // The golden gates could not even run v4: each reports the model's typed input error.
    for gate in ["sanity", "accuracy", "regression", "agreement"] {
        let check = report.check(gate).unwrap();
        assert!(
            check.detail.contains(
                "input `pixels`: dimension 1 must be 32 (declared shape [batch, 32]), got 64"
            ),
            "{check}"
        );
    }
    assert_eq!(live_answers(&bg), reference().answers["v2"]);
}

// ---------------------------------------------------------------------------------------
// models that cannot be loaded

/// Stages with a failing loader; returns the `OnnxError` inside `Error::Load`, after checking
/// that the live v1 still answers every golden example as Python recorded.
fn stage_failure(
    bg: &BlueGreen<OnnxModel>,
    load: impl FnOnce() -> Result<OnnxModel, OnnxError>,
) -> OnnxError {
    let err = bg.stage_with("bad", load).expect_err("the loader fails");
    let Error::Load { version, source } = err else {
        panic!("expected Error::Load, got {err:?}");
    };
    assert_eq!(version, "bad");
    let onnx = source
        .downcast::<OnnxError>()
        .unwrap_or_else(|other| panic!("the source is not an OnnxError: {other}"));
    assert!(bg.status().standby.is_none(), "nothing stays staged");
    assert_eq!(bg.active().version(), "v1");
    assert_eq!(live_answers(bg), reference().answers["v1"]);
    *onnx
}

#[test]
fn corrupt_v5_file_fails_to_stage_with_invalid_model_naming_the_file() {
    let bg = deployment("v1", load(1));
    let path = model_path(5);
    let e = stage_failure(&bg, || OnnxModel::load(model_path(5)));
    assert!(
        matches!(&e, OnnxError::InvalidModel { path: Some(p), .. } if *p == path),
        "{e:?}"
    );
}

#[test]
fn truncated_bytes_in_memory_fail_to_stage_with_invalid_model_without_a_path() {
    let bg = deployment("v1", load(1));
    let bytes = std::fs::read(model_path(2)).unwrap();
    let truncated = &bytes[..bytes.len() / 3];
    let e = stage_failure(&bg, || OnnxModel::from_bytes(truncated));
    assert!(
        matches!(&e, OnnxError::InvalidModel { path: None, .. }),
        "{e:?}"
    );
}

#[test]
fn missing_file_fails_to_stage_with_model_not_found_and_a_good_candidate_still_swaps_in() {
    let bg = deployment("v1", load(1));
    let missing = repo().join("models/digits/404/model.onnx");
    let e = stage_failure(&bg, || OnnxModel::load(&missing));
    assert!(
        matches!(&e, OnnxError::ModelNotFound { path } if *path == missing),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("models/digits/404/model.onnx"),
        "{e}"
    );

    // A failed load leaves the deployment ready for the next candidate.
    bg.stage_with("v2", || OnnxModel::load(model_path(2)))
        .expect("v2 loads");
    bg.swap().expect("v2 passes");
    assert_eq!(live_answers(&bg), reference().answers["v2"]);
}

#[test]
fn a_directory_given_as_model_fails_to_stage_with_model_unreadable() {
    let bg = deployment("v1", load(1));
    let dir = repo().join("models/digits");
    let e = stage_failure(&bg, || OnnxModel::load(&dir));
    assert!(
        matches!(&e, OnnxError::ModelUnreadable { path, .. } if *path == dir),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// traffic during swap and rollback

/// Waits (bounded) until `done()`; the bound only prevents a hang, it asserts no timing.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Default)]
struct Tally {
    per_version: BTreeMap<String, u64>,
    failed: Vec<String>,
    wrong: Vec<String>,
}

#[test]
fn swap_and_rollback_under_concurrent_load_fail_no_call_and_each_answer_is_its_versions() {
    const CLIENTS: usize = 3;
    let bg = deployment("v1", load_pool(1, CLIENTS));
    let reference = reference();
    let n = reference.labels.len();
    let stop = AtomicBool::new(false);
    let v1_calls = AtomicU64::new(0);
    let v2_calls = AtomicU64::new(0);

    let tallies = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|t| {
                let (bg, stop, v1_calls, v2_calls) = (&bg, &stop, &v1_calls, &v2_calls);
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    let mut i = t * 131;
                    while !stop.load(Ordering::Relaxed) {
                        i = (i + 1) % n;
                        let pinned = bg.active();
                        let version = pinned.version().to_owned();
                        match pinned.predict(&row(i)) {
                            Ok(out) => {
                                let got = label_of(&out);
                                match reference.answers.get(version.as_str()) {
                                    Some(answers) if answers[i] == got => {}
                                    _ => tally.wrong.push(format!("{version} row {i}: {got}")),
                                }
                            }
                            Err(e) => tally.failed.push(format!("{version} row {i}: {e}")),
                        }
                        drop(pinned);
                        let counter = if version == "v2" { v2_calls } else { v1_calls };
                        counter.fetch_add(1, Ordering::Relaxed);
                        *tally.per_version.entry(version).or_default() += 1;
                    }
                    tally
                })
            })
            .collect();

        let at_least = |counter: &AtomicU64, more: u64| {
            let target = counter.load(Ordering::Relaxed) + more;
            wait_until("client calls", || counter.load(Ordering::Relaxed) >= target);
        };
        at_least(&v1_calls, 1000);
        bg.stage("v2", load_pool(2, CLIENTS)).unwrap();
        let swap = bg.swap().expect("v2 swaps in under load");
        assert_eq!(swap.to, "v2");
        at_least(&v2_calls, 1000);
        let back = bg.rollback().expect("rollback under load");
        assert_eq!((back.from.as_str(), back.to.as_str()), ("v2", "v1"));
        at_least(&v1_calls, 1000);
        stop.store(true, Ordering::Relaxed);
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .collect::<Vec<_>>()
    });

    let mut per_version = BTreeMap::<String, u64>::new();
    for t in &tallies {
        assert!(t.failed.is_empty(), "failed calls: {:?}", t.failed);
        assert!(
            t.wrong.is_empty(),
            "answers not matching their version: {:?}",
            t.wrong
        );
        for (v, calls) in &t.per_version {
            *per_version.entry(v.clone()).or_default() += calls;
        }
    }
    let versions: Vec<&str> = per_version.keys().map(String::as_str).collect();
    assert_eq!(versions, ["v1", "v2"]);

    // The deployment's own counters saw exactly the clients' calls, none failed.
    let status = bg.status();
    let standby = status.standby.expect("v2 stays for a new stage");
    assert_eq!(
        (status.active.version.as_str(), standby.version.as_str()),
        ("v1", "v2")
    );
    assert_eq!(standby.state, SlotState::RolledBack);
    assert_eq!((status.swaps, status.rollbacks), (1, 1));
    assert_eq!(status.active.requests, per_version["v1"]);
    assert_eq!(standby.requests, per_version["v2"]);
    assert_eq!((status.active.errors, standby.errors), (0, 0));
    assert_eq!((status.active.in_flight, standby.in_flight), (0, 0));
}

// ---------------------------------------------------------------------------------------
// bad input at predict time

#[test]
fn wrong_shape_dtype_or_rank_at_predict_is_a_typed_error_and_the_next_call_succeeds() {
    let bg = deployment("v1", load(1));

    let narrow = Inputs::single(Array2::<f32>::zeros((1, 63)));
    match bg.predict(&narrow) {
        Err(OnnxError::WrongDim {
            name,
            axis: 1,
            expected: 64,
            got: 63,
            ..
        }) => assert_eq!(name, "input"),
        other => panic!("expected WrongDim, got {other:?}"),
    }
    assert_eq!(
        label_of(&bg.predict(&row(0)).unwrap()),
        reference().answers["v1"][0]
    );

    let integers = Inputs::single(Array2::<i64>::zeros((1, 64)));
    match bg.predict(&integers) {
        Err(OnnxError::WrongDtype {
            name,
            expected: ElementType::F32,
            got: ElementType::I64,
        }) => assert_eq!(name, "input"),
        other => panic!("expected WrongDtype, got {other:?}"),
    }
    assert_eq!(
        label_of(&bg.predict(&row(1)).unwrap()),
        reference().answers["v1"][1]
    );

    let flat = Inputs::single(Array1::<f32>::zeros(64));
    match bg.predict(&flat) {
        Err(
            e @ OnnxError::WrongRank {
                expected: 2,
                got: 1,
                ..
            },
        ) => assert!(e.is_input_error()),
        other => panic!("expected WrongRank, got {other:?}"),
    }
    let misnamed = Inputs::new().with("pixels", Array2::<f32>::zeros((1, 64)));
    match bg.predict(&misnamed) {
        Err(OnnxError::UnknownInput { name, expected }) => {
            assert_eq!(
                (name.as_str(), expected),
                ("pixels", vec!["input".to_owned()])
            );
        }
        other => panic!("expected UnknownInput, got {other:?}"),
    }
    assert_eq!(
        label_of(&bg.predict(&row(2)).unwrap()),
        reference().answers["v1"][2]
    );

    let status = bg.status();
    assert_eq!((status.active.requests, status.active.errors), (7, 4));
}

// ---------------------------------------------------------------------------------------
// warm-up

#[test]
fn swap_warms_every_session_of_the_new_model_before_it_takes_traffic() {
    const SESSIONS: usize = 4;
    const SAMPLES: u64 = 4; // deployment() warms with 4 golden rows
    let bg = deployment("v1", load_pool(1, SESSIONS));
    let runs = bg.active().model().runs_per_session();
    assert_eq!(
        runs,
        vec![SAMPLES; SESSIONS],
        "the initial model is warmed too"
    );

    bg.stage("v2", load_pool(2, SESSIONS)).unwrap();
    let staged: u64 = bg
        .status()
        .standby
        .map(|s| s.generation)
        .expect("v2 staged");
    bg.swap().unwrap();
    let active = bg.active();
    assert_eq!(active.generation(), staged);
    // The gates ran v2 on one thread (one session); warm-up ran every sample on each.
    let runs = active.model().runs_per_session();
    assert_eq!(runs.len(), SESSIONS);
    assert!(runs.iter().all(|&r| r >= SAMPLES), "{runs:?}");
}

// Issue #12 item 7: without `warmup_samples` nothing was warmed (the README's gated quick
// start ran `runs_per_session` = [0, 0]).
#[test]
fn without_samples_the_golden_gates_warm_every_session_with_golden_rows() {
    const SESSIONS: usize = 3;
    let golden = GoldenSet::npz(golden_path())
        .labels("labels")
        .load()
        .unwrap();
    let gates = GoldenGates::new(golden, OnnxBinding::classifier());
    let bg = BlueGreen::builder()
        .validator(gates.accuracy(0.85))
        .build("v1", load_pool(1, SESSIONS))
        .unwrap();
    let runs = bg.active().model().runs_per_session();
    assert!(
        runs.iter().all(|&r| r == 2),
        "a batch and a single row on each: {runs:?}"
    );
    bg.stage("v2", load_pool(2, SESSIONS)).unwrap();
    let report = bg.swap().unwrap();
    assert_eq!(report.warm_up_calls, 2 * SESSIONS);
    let runs = bg.active().model().runs_per_session();
    assert!(runs.iter().all(|&r| r >= 2), "{runs:?}");
}

#[test]
fn without_samples_or_gates_an_onnx_model_warms_itself_from_its_declared_inputs() {
    const SESSIONS: usize = 2;
    let bg = BlueGreen::new("v1", load_pool(1, SESSIONS)).unwrap();
    assert_eq!(bg.active().model().runs_per_session(), [1, 1]);
    bg.stage("v2", load_pool(2, SESSIONS)).unwrap();
    assert_eq!(bg.swap().unwrap().warm_up_calls, SESSIONS);
    assert_eq!(bg.active().model().runs_per_session(), [1, 1]);
}

#[test]
fn a_candidate_that_cannot_run_the_warmup_samples_is_refused_and_v1_keeps_serving() {
    // No gates: only warm-up stands between v4 (other input schema) and traffic.
    let bg = BlueGreen::builder()
        .warmup_samples(vec![row(0)])
        .build("v1", load(1))
        .unwrap();
    bg.stage("v4", load(4)).unwrap();
    match bg.swap() {
        Err(Error::WarmupFailed { version, reason }) => {
            assert_eq!(version, "v4");
            assert!(
                reason.contains("input `pixels`: dimension 1 must be 32"),
                "{reason}"
            );
        }
        other => panic!("expected WarmupFailed, got {other:?}"),
    }
    assert_eq!(bg.active().version(), "v1");
    assert_eq!(bg.status().standby.unwrap().state, SlotState::Failed);
    assert_eq!(live_answers(&bg), reference().answers["v1"]);
}
