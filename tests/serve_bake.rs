//! The service's bake window (`--bake-ms` and its limits) as a real process: a promoted
//! version that breaches a limit under traffic is rolled back by the service on its own,
//! and the status and metrics say so; one that passes becomes stable; the bundled slow
//! version (v6) passes every gate, which is why only a bake can catch it; bad bake flags
//! are usage errors. `scripts/loadtest.sh` relies on each of these.
#![cfg(feature = "onnx")]

mod serve_support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use serve_support::{Opts, Server, eventually, golden_request, repo_root, serve_binary};

const TOKEN: &str = "test-admin-token-0123456789";

fn status(s: &Server) -> Value {
    let r = s.admin("GET", "status", TOKEN, "");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["deployment"].clone()
}

fn ok(r: serve_support::Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// What version `v` answers for the first `n` golden rows (`label_v1`, `label_v2` in
/// golden.npz).
fn labels_of(v: &str, n: usize) -> Vec<i64> {
    let golden = bluegreen::GoldenSet::npz(repo_root().join("models/digits/golden.npz"))
        .inputs("inputs")
        .labels(format!("label_v{v}"))
        .load()
        .unwrap();
    golden.labels().unwrap().iter().take(n).copied().collect()
}

/// One prediction of four rows, answered 200 with the labels of the version that answered
/// (v1 or v2); returns that version.
fn predict(s: &Server) -> String {
    let (body, _) = golden_request(4);
    let v = ok(s.post("/v1/models/digits:predict", &body));
    let version = v["version"].as_str().unwrap().to_owned();
    assert_eq!(
        v["outputs"]["label"],
        serde_json::json!(labels_of(&version, 4)),
        "{v}"
    );
    version
}

#[test]
fn a_version_breaching_a_bake_limit_under_traffic_is_rolled_back_by_the_service_itself() {
    // Every model call takes longer than 1 µs, so the p99 limit is breached as soon as
    // the bake has its 20 samples: the breach comes from the limit, not from timing luck.
    let s = Server::start(
        Opts::args([
            "--version",
            "1",
            "--bake-ms",
            "600000",
            "--bake-max-p99-ms",
            "0.001",
            "--bake-min-samples",
            "20",
        ])
        .token(TOKEN),
    );
    s.wait_ready();
    ok(s.admin("POST", "stage", TOKEN, r#"{"version":"2"}"#));
    let swap = ok(s.admin("POST", "swap", TOKEN, ""));
    assert_eq!(
        (swap["from"].as_str(), swap["to"].as_str()),
        (Some("1"), Some("2"))
    );
    let baking = status(&s);
    assert_eq!(baking["active"]["state"], "baking", "{baking}");
    assert_eq!(baking["auto_rollbacks"], 0);

    // Traffic: every answer is correct, from v2 until the service rolls back, then v1.
    let rolled_back = eventually("the automatic rollback", Duration::from_secs(30), || {
        predict(&s);
        let st = status(&s);
        (st["auto_rollbacks"] == 1).then_some(st)
    });
    assert_eq!(rolled_back["active"]["version"], "1", "{rolled_back}");
    assert_eq!(rolled_back["bake"], Value::Null);
    let record = &rolled_back["last_auto_rollback"];
    assert_eq!(
        (record["from"].as_str(), record["to"].as_str()),
        (Some("2"), Some("1"))
    );
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("p99 latency ") && reason.ends_with(" exceeds the limit of 1µs"),
        "{reason}"
    );
    assert!(record["at"].as_f64().unwrap() > 1.7e9, "{record}");
    for _ in 0..10 {
        assert_eq!(predict(&s), "1");
    }
    // The rollback counter includes it (no manual rollback was made).
    assert_eq!(
        s.metric(r#"bluegreen_rollbacks_total{model="digits"}"#),
        Some(1.0)
    );
}

#[test]
fn a_version_within_its_bake_limits_becomes_stable_and_its_rollback_target_is_kept_meanwhile() {
    let s = Server::start(
        Opts::args([
            "--version",
            "1",
            "--bake-ms",
            "300",
            "--bake-max-error-rate",
            "0.5",
        ])
        .token(TOKEN),
    );
    s.wait_ready();
    ok(s.admin("POST", "stage", TOKEN, r#"{"version":"2"}"#));
    ok(s.admin("POST", "swap", TOKEN, ""));
    let st = status(&s);
    assert_eq!(st["bake"]["version"], "2", "{st}");
    // While it bakes, its way back (v1) may not be retired.
    let r = s.admin("POST", "unstage", TOKEN, "");
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        r.json()["error"],
        "2 is baking: wait for its bake window to pass, or roll back, first (this would retire its rollback target)"
    );
    let stable = eventually("the bake to pass", Duration::from_secs(30), || {
        predict(&s);
        let st = status(&s);
        st["bake"].is_null().then_some(st)
    });
    assert_eq!(stable["active"]["version"], "2", "{stable}");
    assert_eq!(stable["active"]["state"], "active", "{stable}");
    assert_eq!(stable["auto_rollbacks"], 0);
    assert_eq!(stable["last_auto_rollback"], Value::Null);
    assert_eq!(predict(&s), "2");
}

#[test]
fn the_slow_version_passes_every_gate_so_only_a_bake_window_can_catch_it() {
    let s = Server::start(Opts::default().token(TOKEN));
    s.wait_ready();
    ok(s.admin("POST", "stage", TOKEN, r#"{"version":"6"}"#));
    let report = ok(s.admin("POST", "validate", TOKEN, ""));
    assert_eq!(report["candidate"], "6");
    assert_eq!(report["passed"], true, "{report}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["schema", "accuracy", "sanity"]);
    // Without a bake window it is promoted, and answers.
    ok(s.admin("POST", "swap", TOKEN, ""));
    let (body, _) = golden_request(4);
    let v = ok(s.post("/v1/models/digits:predict", &body));
    assert_eq!(v["version"], "6");
    assert_eq!(
        v["outputs"]["label"].as_array().map(Vec::len),
        Some(4),
        "{v}"
    );
}

#[test]
fn bake_limits_without_a_bake_window_or_out_of_range_are_usage_errors() {
    for args in [
        &["--bake-max-p99-ms", "5"][..],
        &["--bake-ms", "1000", "--bake-max-error-rate", "1.5"],
        &["--bake-ms", "1000", "--bake-max-p99-ms", "0"],
        &["--bake-ms", "1000", "--bake-max-p99-ratio", "0"],
        &["--bake-ms", "0"],
        &["--bake-ms", "1000", "--bake-min-samples", "0"],
    ] {
        let out = Command::new(serve_binary())
            .current_dir(repo_root())
            .args(["--port", "0"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(args[args.len() - 2]), "{args:?}: {stderr}");
    }
}
