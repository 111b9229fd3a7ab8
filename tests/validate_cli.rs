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
    let mut f = vec!["onnx"];
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

    // v3 against itself loses nothing, but its accuracy is still refused.
    let run = candidate_vs_baseline(3, 3, &["--max-drop", "0"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(gates_with(&run, "FAIL"), ["accuracy"], "{run}");
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
        (vec![], "not provided:\n  --candidate <MODEL.onnx>"),
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

#[cfg(not(feature = "serde"))]
#[test]
fn json_without_the_serde_feature_exits_2_saying_how_to_enable_it() {
    let run = candidate_vs_baseline(2, 1, &["--json"]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--features serde"), "{run}");
}
