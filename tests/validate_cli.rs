//! The `validate` example as CI runs it: exit status 0 (every gate passed), 1 (a gate
//! failed) or 2 (usage error, unusable input), and what it prints.
//!
//! The binary is `target/<profile>/examples/validate`. `cargo test` builds examples before
//! running tests, but not when the run is narrowed with `--test`, and a binary left from an
//! earlier build can be stale or built with other features; so the first test to need it
//! runs `cargo build --example validate` with this test's features and profile (a no-op when
//! it is up to date), and fails, saying why, if that does not produce it.
//!
//! Needs ONNX Runtime 1.31.x: `bash scripts/setup-ort.sh` once.
#![cfg(feature = "onnx")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

mod onnx_graphs;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn model(version: u32) -> String {
    repo()
        .join(format!("models/digits/{version}/model.onnx"))
        .display()
        .to_string()
}

fn golden() -> String {
    repo()
        .join("models/digits/golden.npz")
        .display()
        .to_string()
}

/// This package's features as this test binary was built with them.
fn features() -> Vec<&'static str> {
    let mut f = vec!["onnx", "quarantine"];
    if cfg!(feature = "serde") {
        f.push("serde");
    }
    f
}

fn validate_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of this test binary");
        // target/<profile>/deps/validate_cli-<hash>  →  target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let binary = profile_dir
            .join("examples")
            .join(format!("validate{}", std::env::consts::EXE_SUFFIX));
        let target_dir = profile_dir.parent().expect("target directory");
        let profile = profile_dir.file_name().and_then(|p| p.to_str());
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(repo())
            .args(["build", "--quiet", "--example", "validate"])
            .args(["--no-default-features", "--features", &features().join(",")])
            .arg("--target-dir")
            .arg(target_dir);
        match profile {
            Some("debug") => {}
            Some("release") => {
                cargo.arg("--release");
            }
            Some(other) => {
                cargo.args(["--profile", other]);
            }
            None => panic!("unexpected profile directory {}", profile_dir.display()),
        }
        let out = cargo
            .output()
            .expect("run cargo to build the validate example");
        assert!(
            out.status.success(),
            "building the validate example failed ({:?}):\n{}",
            cargo,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            binary.is_file(),
            "the validate example is not at {} after `cargo build --example validate`",
            binary.display()
        );
        binary
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn validate(args: &[&str]) -> Run {
    let out = Command::new(validate_binary())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run the validate example");
    Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn candidate_vs_baseline(candidate: u32, baseline: u32, extra: &[&str]) -> Run {
    let (c, b, g) = (model(candidate), model(baseline), golden());
    let mut args = vec!["--candidate", &c, "--baseline", &b, "--golden", &g];
    args.extend_from_slice(extra);
    validate(&args)
}

/// The report lines of the named gates with the given status (`pass`, `FAIL`).
fn gates_with(run: &Run, status: &str) -> Vec<String> {
    let prefix = format!("[{status}] ");
    run.stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(&prefix))
        .map(|rest| rest.split([':', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn good_v2_against_baseline_v1_exits_0_and_reports_passed() {
    let run = candidate_vs_baseline(2, 1, &[]);
    assert_eq!(run.code, 0, "{run}");
    let verdict = format!(
        "validation of {} against live {}: PASSED (5 gates",
        model(2),
        model(1)
    );
    assert!(run.stdout.contains(&verdict), "{run}");
    assert_eq!(
        gates_with(&run, "pass"),
        ["schema", "sanity", "accuracy", "regression", "agreement"],
        "{run}"
    );
    assert!(
        run.stdout
            .contains("[pass] accuracy: 0.975556 (required >= 0.95)"),
        "{run}"
    );
    assert!(run.stdout.contains("(450 examples)"), "{run}");
}

#[test]
fn degraded_v3_against_v2_exits_1_naming_accuracy_regression_and_agreement() {
    let run = candidate_vs_baseline(3, 2, &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains(": FAILED (5 gates"), "{run}");
    assert_eq!(
        gates_with(&run, "FAIL"),
        ["accuracy", "regression", "agreement"],
        "{run}"
    );
    assert_eq!(gates_with(&run, "pass"), ["schema", "sanity"], "{run}");
    assert!(
        run.stderr
            .contains("candidate refused by: accuracy, regression, agreement"),
        "{run}"
    );
}

#[test]
fn incompatible_v4_against_v2_exits_1_naming_the_schema_gate_and_the_inputs() {
    let run = candidate_vs_baseline(4, 2, &[]);
    assert_eq!(run.code, 1, "{run}");
    let fails = gates_with(&run, "FAIL");
    assert_eq!(fails.first().map(String::as_str), Some("schema"), "{run}");
    assert!(
        run.stdout
            .contains(r#"the service feeds input "input" but the candidate declares only pixels"#),
        "{run}"
    );
}

#[test]
fn thresholds_from_the_command_line_are_the_ones_applied() {
    // v2 scores 0.9756 and agrees with v1 on 0.9111: strict bars refuse it.
    let run = candidate_vs_baseline(2, 1, &["--min-accuracy", "0.99", "--min-agreement", "0.95"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(gates_with(&run, "FAIL"), ["accuracy", "agreement"], "{run}");
    assert!(run.stdout.contains("(required >= 0.99)"), "{run}");
    assert!(run.stdout.contains("(required >= 0.95)"), "{run}");

    // v3 against itself loses nothing, but its accuracy is still refused. (450 identical
    // answers show a drop below 0.0085 at most, so a 0.01 margin passes.)
    let run = candidate_vs_baseline(3, 3, &["--max-drop", "0.01"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(gates_with(&run, "FAIL"), ["accuracy"], "{run}");
}

#[test]
fn a_margin_no_golden_set_can_show_is_warned_about_before_running_and_refused() {
    // A zero margin: non-inferiority can never be shown for a candidate no better than
    // the baseline, not even for the baseline itself.
    let run = candidate_vs_baseline(3, 3, &["--max-drop", "0"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(
        gates_with(&run, "FAIL"),
        ["accuracy", "regression"],
        "{run}"
    );
    let warning = "warning: regression: with 450 golden examples, non-inferiority at margin 0 (95% confidence) can never pass a candidate that is not better than live, even one predicting exactly like it; no golden set is large enough";
    assert!(run.stderr.starts_with(warning), "{run}");

    // Half a point needs 765 examples (n > 3.841459 · 199 = 764.45); v2 passes anyway,
    // because it is better than v1 by more than the noise.
    let run = candidate_vs_baseline(2, 1, &["--max-drop", "0.005"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains("non-inferiority at margin 0.005 (95% confidence) can never pass a candidate that is not better than live, even one predicting exactly like it; it needs at least 765 examples"),
        "{run}"
    );
}

#[test]
fn every_statistical_report_line_shows_value_interval_and_bound() {
    let run = candidate_vs_baseline(2, 1, &[]);
    assert_eq!(run.code, 0, "{run}");
    let line = |gate: &str| {
        run.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("[pass] {gate}:")))
            .unwrap_or_else(|| panic!("no {gate} line\n{run}"))
            .to_owned()
    };
    // v2 gets 439 of 450 right: Wilson [0.956764, 0.986297].
    assert!(line("accuracy").contains("accuracy: 0.975556 (required >= 0.95) — 439 of 450 golden examples right; 95% Wilson interval [0.9568, 0.9863]"), "{run}");
    // v2 right alone on 35 examples, v1 on 4: difference +31/450, paired interval
    // [+0.044382, +0.098431] (independent profile-likelihood solve).
    let regression = line("regression");
    assert!(
        regression.contains("regression: 0.068889 (required >= -0.01)"),
        "{regression}"
    );
    assert!(regression.contains("difference +0.0689, 95% paired score interval [+0.0444, +0.0984]; right only for the candidate on 35, only for live on 4"), "{regression}");
    assert!(
        regression.contains("non-inferior at margin 0.01: shown"),
        "{regression}"
    );
    // 410 of 450 the same label: Wilson [0.881219, 0.934044].
    assert!(
        line("agreement").contains("agreement: 0.911111 (required >= 0.9) — same label as live"),
        "{run}"
    );
    assert!(
        line("agreement").contains("on 410 of 450 examples; 95% Wilson interval [0.8812, 0.9340]"),
        "{run}"
    );
}

#[test]
fn not_worse_policy_refuses_v1_against_v2_with_its_exact_mcnemar_p_value() {
    // v1 alone right on 4, v2 alone on 35: P(X ≥ 35 | Bin(39, ½)) = 92171/2³⁹ = 1.7e-7.
    let run = candidate_vs_baseline(1, 2, &["--policy", "not-worse", "--alpha", "0.01"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(
        gates_with(&run, "FAIL"),
        ["accuracy", "regression"],
        "{run}"
    );
    assert!(run.stdout.contains("(required >= 0.01)"), "{run}");
    assert!(run.stdout.contains("exact McNemar p = 1.7e-7 for 'candidate worse'); not-worse at alpha 0.01: significantly worse"), "{run}");
    // The interval shown is at 1 − 2·alpha.
    assert!(run.stdout.contains("98% paired score interval"), "{run}");
}

#[test]
fn point_policy_keeps_the_measured_difference_rule() {
    // The rule before intervals: v3 against itself measures exactly 0 ≥ −0.
    let run = candidate_vs_baseline(3, 3, &["--policy", "point", "--max-drop", "0"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(gates_with(&run, "FAIL"), ["accuracy"], "{run}");
}

#[test]
fn share_bound_lower_bound_holds_the_interval_not_the_measurement_to_the_bound() {
    // v2's accuracy 0.9756 has Wilson lower end 0.9568: enough for 0.95, not for 0.96
    // (which the measured value would pass); its agreement with v1, 0.9111, has lower end
    // 0.8812, enough for 0.85 but not for the default 0.9.
    let strict = ["--min-accuracy", "0.96", "--share-bound", "lower-bound"];
    let run = candidate_vs_baseline(2, 1, &strict);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(gates_with(&run, "FAIL"), ["accuracy", "agreement"], "{run}");
    assert!(
        run.stdout
            .contains("95% Wilson interval [0.9568, 0.9863]: its lower end is below 0.96"),
        "{run}"
    );
    assert!(
        run.stdout
            .contains("95% Wilson interval [0.8812, 0.9340]: its lower end is below 0.9"),
        "{run}"
    );
    let lenient = [
        "--min-accuracy",
        "0.95",
        "--min-agreement",
        "0.85",
        "--share-bound",
        "lower-bound",
    ];
    let run = candidate_vs_baseline(2, 1, &lenient);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("its lower end reaches 0.95"), "{run}");
    // Measured, 0.96 passes.
    let run = candidate_vs_baseline(2, 1, &["--min-accuracy", "0.96"]);
    assert_eq!(run.code, 0, "{run}");
}

#[test]
fn expected_flag_adds_the_expected_outputs_gate_on_the_named_array() {
    // v2 reproduces the scores Python's ONNX Runtime computed for it.
    let run = candidate_vs_baseline(2, 1, &["--expected", "probabilities_v2"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("(6 gates"), "{run}");
    assert!(
        run.stdout
            .contains("[pass] expected_outputs: 0.000000 (required <= 0.0001)"),
        "{run}"
    );
    // v1's scores are not v2's.
    let run = candidate_vs_baseline(
        1,
        2,
        &["--expected", "probabilities_v2", "--max-abs-error", "0.5"],
    );
    assert!(
        gates_with(&run, "FAIL").contains(&"expected_outputs".to_owned()),
        "{run}"
    );
    // --max-abs-error means nothing without --expected.
    let run = candidate_vs_baseline(2, 1, &["--max-abs-error", "0.5"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--expected <ARRAY>"), "{run}");
}

/// The digits golden set with label `label` at `row`, written to a temp dir.
fn golden_with_label(dir: &tempfile::TempDir, row: usize, label: i64) -> String {
    use ndarray_npy::{NpzReader, NpzWriter};
    let mut npz = NpzReader::new(std::fs::File::open(golden()).unwrap()).unwrap();
    let inputs: ndarray::Array2<f32> = npz.by_name("inputs").unwrap();
    let mut labels: ndarray::Array1<i64> = npz.by_name("labels").unwrap();
    labels[row] = label;
    let path = dir.path().join("golden.npz");
    let mut w = NpzWriter::new(std::fs::File::create(&path).unwrap());
    w.add_array("inputs", &inputs).unwrap();
    w.add_array("labels", &labels).unwrap();
    w.finish().unwrap();
    path.display().to_string()
}

#[test]
fn labels_beyond_the_baselines_declared_classes_exit_2_before_any_gate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden_with_label(&dir, 17, 10);
    let (c, b) = (model(2), model(1));
    let run = validate(&["--candidate", &c, "--baseline", &b, "--golden", &g]);
    assert_eq!(run.code, 2, "{run}");
    assert_eq!(
        run.stderr.trim_end(),
        format!("error: label 10 at row 17 of `labels` in {g} is out of range 0..10"),
        "{run}"
    );
    assert!(run.stdout.is_empty(), "{run}");
}

#[test]
fn classes_flag_refuses_labels_at_or_above_it() {
    // The digits labels run 0..=9: with --classes 9 every 9 is refused, the first by row.
    let labels: ndarray::Array1<i64> =
        ndarray_npy::NpzReader::new(std::fs::File::open(golden()).unwrap())
            .unwrap()
            .by_name("labels")
            .unwrap();
    let row = labels.iter().position(|&l| l == 9).unwrap();
    let run = candidate_vs_baseline(2, 1, &["--classes", "9"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "error: label 9 at row {row} of `labels` in {} is out of range 0..9",
            golden()
        )),
        "{run}"
    );
    let run = candidate_vs_baseline(2, 1, &["--classes", "10"]);
    assert_eq!(run.code, 0, "{run}");
}

#[test]
fn calibrate_prints_the_digits_baselines_figures_with_intervals_and_suggested_bounds() {
    // v2: 439 of 450 right. Wilson [0.956764, 0.986297] → accuracy(0.95). Identical
    // answers show a drop below z²/(n + z²) = 3.841459/453.841459 = 0.008464; an equally
    // accurate candidate differing on 12 examples (6 each way) shows 0.017189
    // (independent solve) → regression(0.02). A candidate passing accuracy(0.95) agrees
    // on at least 0.95 + 0.975556 − 1 = 0.925556 → agreement(0.92).
    let (b, g) = (model(2), golden());
    let run = validate(&[
        "--calibrate",
        "--baseline",
        &b,
        "--golden",
        &g,
        "--expected",
        "probabilities_v2",
    ]);
    assert_eq!(run.code, 0, "{run}");
    let expected = format!(
        "calibration of {b} on {g} (450 examples, 10 classes; 95% intervals)
  accuracy: 0.975556 (439 of 450), 95% Wilson interval [0.9568, 0.9863]
    suggested accuracy(0.95): a candidate as accurate as the baseline measures at least 0.9568 in about 97.5% of golden sets this size
  regression (non-inferior): a candidate predicting exactly like the baseline shows a drop below 0.0085; one as accurate but different on 12 examples (half each way) needs a margin above 0.0172
    suggested regression(0.02); margins up to 0.0085 can never pass a candidate that is not better than the baseline
  regression (not-worse, alpha 0.05): refuses only from 5 or more discordant examples all against the candidate
  agreement: a candidate passing accuracy(0.95) agrees with the baseline on at least 0.9256 of examples (they can disagree only where one is wrong)
    suggested agreement(0.92)
  expected outputs: max abs error 0 (identical) against the golden set's expected outputs
    suggested expected_outputs(1e-6)
"
    );
    assert_eq!(run.stdout, expected, "{run}");

    // v1: 408 of 450, Wilson [0.876241, 0.930208] → accuracy(0.87); 42 differing
    // examples → drop bound 0.029240 → regression(0.03); 0.87 + 0.906667 − 1 = 0.776667
    // → agreement(0.77).
    let b = model(1);
    let run = validate(&["--calibrate", "--baseline", &b, "--golden", &g]);
    assert_eq!(run.code, 0, "{run}");
    for line in [
        "  accuracy: 0.906667 (408 of 450), 95% Wilson interval [0.8762, 0.9302]",
        "    suggested accuracy(0.87): ",
        "different on 42 examples (half each way) needs a margin above 0.0292",
        "    suggested regression(0.03);",
        "    suggested agreement(0.77)",
        "  expected outputs: none in the golden set (or no scores)",
    ] {
        assert!(run.stdout.contains(line), "{line}\n{run}");
    }

    // The suggested bounds admit v2 against v1 (it is better) and refuse v3.
    let suggested = [
        "--min-accuracy",
        "0.87",
        "--max-drop",
        "0.03",
        "--min-agreement",
        "0.77",
    ];
    assert_eq!(candidate_vs_baseline(2, 1, &suggested).code, 0);
    assert_eq!(candidate_vs_baseline(3, 1, &suggested).code, 1);
}

#[test]
fn calibrate_needs_no_candidate_and_refuses_one() {
    let (c, b, g) = (model(2), model(1), golden());
    let run = validate(&[
        "--calibrate",
        "--candidate",
        &c,
        "--baseline",
        &b,
        "--golden",
        &g,
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("cannot be used with"), "{run}");
}

#[test]
fn latency_ratio_adds_the_latency_gate_relative_to_the_baseline() {
    let run = candidate_vs_baseline(2, 1, &["--latency-ratio", "1000"]);
    // Whether it passes depends on the machine; what is asserted is that it was checked.
    assert_ne!(run.code, 2, "{run}");
    assert!(run.stdout.contains("(6 gates"), "{run}");
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("] latency"))
        .unwrap_or_else(|| panic!("no latency line\n{run}"));
    assert!(line.contains("(required <= 1000)"), "{line}");
}

#[test]
fn missing_candidate_file_exits_2_naming_the_path() {
    let missing = repo().join("models/digits/404/model.onnx");
    let missing = missing.display().to_string();
    let (b, g) = (model(2), golden());
    let run = validate(&["--candidate", &missing, "--baseline", &b, "--golden", &g]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("cannot load the candidate model"),
        "{run}"
    );
    assert!(run.stderr.contains(&missing), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
}

#[test]
fn corrupt_candidate_model_exits_2_with_the_invalid_model_error() {
    let run = candidate_vs_baseline(5, 2, &[]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("invalid ONNX model"), "{run}");
    assert!(run.stderr.contains("models/digits/5/model.onnx"), "{run}");
}

#[test]
fn truncated_golden_file_exits_2_with_the_golden_set_error() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("golden.npz");
    let bytes = std::fs::read(golden()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let truncated = truncated.display().to_string();
    let (c, b) = (model(2), model(1));
    let run = validate(&["--candidate", &c, "--baseline", &b, "--golden", &truncated]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "golden set {truncated} is not a valid .npz archive"
        )),
        "{run}"
    );
}

#[test]
fn golden_file_without_the_named_labels_exits_2_listing_the_arrays() {
    let run = candidate_vs_baseline(2, 1, &["--labels", "truth"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("has no array `truth`"), "{run}");
    assert!(run.stderr.contains("label_v2"), "{run}");
}

#[test]
fn usage_errors_exit_2_naming_the_flag_and_pointing_to_the_usage() {
    let (c, b, g) = (model(2), model(1), golden());
    for (args, message) in [
        // --candidate is required unless --calibrate, so clap lists it after the others.
        (
            vec![],
            "not provided:\n  --baseline <MODEL.onnx>\n  --golden <GOLDEN.npz>\n  --candidate <MODEL.onnx>",
        ),
        (
            vec!["--candidate", &c, "--baseline", &b],
            "not provided:\n  --golden <GOLDEN.npz>",
        ),
        (vec!["--bogus"], "unexpected argument '--bogus' found"),
        (
            vec!["--candidate"],
            "a value is required for '--candidate <MODEL.onnx>'",
        ),
        (
            vec![
                "--candidate",
                &c,
                "--baseline",
                &b,
                "--golden",
                &g,
                "--min-accuracy",
                "high",
            ],
            "invalid value 'high' for '--min-accuracy <F>'",
        ),
        (
            vec![
                "--candidate",
                &c,
                "--baseline",
                &b,
                "--golden",
                &g,
                "--max-drop",
                "1.5",
            ],
            "invalid value '1.5' for '--max-drop <F>': must be between 0 and 1",
        ),
        (
            vec![
                "--candidate",
                &c,
                "--baseline",
                &b,
                "--golden",
                &g,
                "--latency-ratio",
                "0",
            ],
            "invalid value '0' for '--latency-ratio <F>': must be a positive number",
        ),
    ] {
        let run = validate(&args);
        assert_eq!(run.code, 2, "{args:?}\n{run}");
        assert!(run.stderr.contains(message), "{args:?}\n{run}");
        // clap prints the usage, or for a flag missing its value points to --help.
        assert!(
            run.stderr.contains("Usage: validate") || run.stderr.contains("try '--help'"),
            "{args:?}\n{run}"
        );
    }
}

#[test]
fn help_exits_0_with_the_usage() {
    let run = validate(&["--help"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("Usage: validate"), "{run}");
    for flag in [
        "--calibrate",
        "--classes <N>",
        "--expected <ARRAY>",
        "--policy <POLICY>",
        "--share-bound",
    ] {
        assert!(run.stdout.contains(flag), "{flag}\n{run}");
    }
}

#[cfg(feature = "serde")]
#[test]
fn json_report_is_valid_json_naming_each_gate_and_its_status() {
    let run = candidate_vs_baseline(3, 2, &["--json"]);
    assert_eq!(run.code, 1, "{run}");
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{run}"));
    assert_eq!(report["candidate"].as_str(), Some(model(3).as_str()));
    assert_eq!(report["live"].as_str(), Some(model(2).as_str()));
    let checks: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("schema", "Passed"),
            ("sanity", "Passed"),
            ("accuracy", "Failed"),
            ("regression", "Failed"),
            ("agreement", "Failed"),
        ]
    );
    let accuracy = report["checks"][2]["measured"].as_f64().unwrap();
    assert!((accuracy - 0.0978).abs() < 1e-4, "{accuracy}");
}

#[cfg(feature = "serde")]
#[test]
fn calibrate_json_carries_the_figures_and_suggested_bounds() {
    let (b, g) = (model(2), golden());
    let run = validate(&["--calibrate", "--json", "--baseline", &b, "--golden", &g]);
    assert_eq!(run.code, 0, "{run}");
    let cal: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{run}"));
    assert_eq!(cal["accuracy"]["count"].as_u64(), Some(439));
    assert_eq!(
        cal["accuracy"]["interval"]["method"].as_str(),
        Some("Wilson")
    );
    assert_eq!(cal["suggested"]["min_accuracy"].as_f64(), Some(0.95));
    assert_eq!(cal["suggested"]["max_drop"].as_f64(), Some(0.02));
}

#[cfg(not(feature = "serde"))]
#[test]
fn json_without_the_serde_feature_exits_2_saying_how_to_enable_it() {
    let run = candidate_vs_baseline(2, 1, &["--json"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--features serde"), "{run}");
}

// ----------------------------------------------------------------------------------------
// --quarantine: the candidate is qualified in a capped child (this binary, re-executed)

#[test]
fn quarantine_passes_good_v2_in_the_child_then_runs_every_gate_here() {
    let run = candidate_vs_baseline(2, 1, &["--quarantine", "--wall-limit", "60"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stderr.contains(": PASSED (peak "), "{run}");
    assert!(
        run.stdout.contains("PASSED"),
        "the gates ran here too:\n{run}"
    );
}

#[test]
fn quarantine_refuses_an_endless_loop_at_the_cpu_cap_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let endless = dir.path().join("loop.onnx");
    std::fs::write(&endless, onnx_graphs::endless_loop()).unwrap();
    let (c, b, g) = (endless.display().to_string(), model(1), golden());
    let run = validate(&[
        "--candidate",
        &c,
        "--baseline",
        &b,
        "--golden",
        &g,
        "--quarantine",
        "--cpu-limit",
        "1",
        "--wall-limit",
        "10",
    ]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("exceeded the CPU cap of 1s"), "{run}");
    assert!(run.stderr.contains("refused in quarantine (cpu)"), "{run}");
    assert!(run.stdout.is_empty(), "no gate ran in this process:\n{run}");
}

#[test]
fn quarantine_refuses_a_truncated_candidate_as_unloadable_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let bytes = std::fs::read(model(2)).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let (c, b, g) = (truncated.display().to_string(), model(1), golden());
    let run = validate(&[
        "--candidate",
        &c,
        "--baseline",
        &b,
        "--golden",
        &g,
        "--quarantine",
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("failed to load in quarantine"), "{run}");
}

#[test]
fn quarantine_caps_without_quarantine_are_a_usage_error() {
    let run = candidate_vs_baseline(2, 1, &["--cpu-limit", "3"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--quarantine"), "{run}");
}
