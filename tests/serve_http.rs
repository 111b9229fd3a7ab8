//! The HTTP service (`examples/serve.rs`) as a real process on a free loopback port: predict,
//! bad requests, admin authentication, stage/swap/rollback/validate, health, readiness and
//! metrics, against the bundled digits models.
#![cfg(feature = "onnx")]

mod onnx_graphs;
mod serve_support;

use serde_json::Value;
use serve_support::{Opts, Server, golden_request};

const TOKEN: &str = "test-admin-token-0123456789";

fn server() -> Server {
    let s = Server::start(Opts::default().token(TOKEN));
    s.wait_ready();
    s
}

/// A server whose candidates are not quarantined: for the tests of the gates' own refusals
/// at swap time (with quarantine on, the default, a bad version is refused at stage).
fn server_without_quarantine() -> Server {
    let s = Server::start(Opts::args(["--quarantine", "off"]).token(TOKEN));
    s.wait_ready();
    s
}

fn predict(s: &Server, body: &str) -> serve_support::Reply {
    s.post("/v1/models/digits:predict", body)
}

fn answering_version(s: &Server) -> String {
    let (body, _) = golden_request(1);
    let r = predict(s, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["version"].as_str().unwrap().to_owned()
}

#[test]
fn healthz_answers_ok_while_the_process_lives() {
    let s = Server::start(Opts::default());
    let r = s.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
}

#[test]
fn readyz_is_200_once_the_initial_model_passed_its_gates() {
    let s = server();
    let r = s.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["ready"], true);
    assert_eq!(r.json()["version"], "2");
    let status = s.admin("GET", "status", TOKEN, "").json();
    assert_eq!(status["startup_check"]["passed"], true, "{status}");
    let checks = status["startup_check"]["report"]["checks"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["schema", "accuracy", "sanity"]);
}

#[test]
fn readyz_stays_503_while_the_active_model_has_not_passed_its_gates_until_a_good_swap() {
    // v3 was trained on shuffled labels: it loads and answers, but fails the accuracy gate.
    let s = Server::start(Opts::args(["--version", "3"]).token(TOKEN));
    s.wait_started();
    let r = s.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text);
    let reason = r.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("accuracy"), "{reason}");
    assert_eq!(
        answering_version(&s),
        "3",
        "it still answers, for debugging"
    );

    assert_eq!(
        s.admin("POST", "stage", TOKEN, r#"{"version":"2"}"#).status,
        200
    );
    let swap = s.admin("POST", "swap", TOKEN, "");
    assert_eq!(swap.status, 200, "{}", swap.text);
    assert_eq!(s.get("/readyz").status, 200);
    // Rolling back to the model that never passed makes the replica unready again.
    assert_eq!(s.admin("POST", "rollback", TOKEN, "").status, 200);
    assert_eq!(s.get("/readyz").status, 503);
}

#[test]
fn predict_returns_labels_probabilities_and_the_version_that_answered() {
    let s = server();
    let (body, expected) = golden_request(5);
    let r = predict(&s, &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["model"], "digits");
    assert_eq!(v["version"], "2");
    let labels: Vec<i64> = v["outputs"]["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_i64().unwrap())
        .collect();
    assert_eq!(labels, expected, "the labels model v2 gives for these rows");
    let probs = v["outputs"]["probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), 5);
    for row in probs {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), 10);
        let sum: f64 = row.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");
    }
}

#[test]
fn predict_accepts_inputs_named_after_the_model_input() {
    let s = server();
    let (body, expected) = golden_request(2);
    let rows: Value = serde_json::from_str::<Value>(&body).unwrap()["inputs"].clone();
    let named = serde_json::json!({ "inputs": { "input": rows } }).to_string();
    let r = predict(&s, &named);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["outputs"]["label"], serde_json::json!(expected));
}

#[test]
fn malformed_json_is_a_400_with_the_parser_message() {
    let s = server();
    for body in [r#"{"inputs": [[1, 2"#, "not json", ""] {
        let r = predict(&s, body);
        assert_eq!(r.status, 400, "{body:?}: {}", r.text);
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("malformed JSON") || msg.contains("empty body"),
            "{msg}"
        );
    }
}

#[test]
fn wrong_width_is_a_400_naming_the_declared_shape() {
    let s = server();
    let r = predict(&s, r#"{"inputs": [[0.0, 1.0, 2.0]]}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    let msg = r.json()["error"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("dimension 1 must be 64") && msg.contains("[batch, 64]"),
        "{msg}"
    );
    // The version that refused the input is named too.
    assert_eq!(r.json()["version"], "2");
}

#[test]
fn wrong_types_ragged_arrays_wrong_rank_and_unknown_names_are_400s_with_messages() {
    let s = server();
    let row = format!("[{}]", vec!["0.5"; 64].join(","));
    let cases = [
        (
            format!(r#"{{"inputs": [{row}, "x"]}}"#),
            "expected an array",
        ),
        (
            r#"{"inputs": [["a", 1.0]]}"#.to_owned(),
            "is a string; expected a number",
        ),
        (format!(r#"{{"inputs": [{row}, [1.0]]}}"#), "ragged array"),
        (format!(r#"{{"inputs": {row}}}"#), "expected 2 dimensions"),
        (
            format!(r#"{{"inputs": {{"pixels": [{row}]}}}}"#),
            "unknown input `pixels`",
        ),
        (format!(r#"{{"instances": [{row}]}}"#), "unknown field"),
        (r#"{"inputs": []}"#.to_owned(), "empty array"),
        (r#"{"inputs": "zeros"}"#.to_owned(), "must be an array"),
        (r#"[1, 2, 3]"#.to_owned(), "must be a JSON object"),
        (r#"{"inputs": [[1e39]]}"#.to_owned(), "does not fit in f32"),
    ];
    for (body, expect) in cases {
        let r = predict(&s, &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        let msg = r.json()["error"].as_str().unwrap().to_owned();
        assert!(msg.contains(expect), "{body}: {msg:?} lacks {expect:?}");
    }
    // Still serving normally afterwards.
    assert_eq!(answering_version(&s), "2");
}

#[test]
fn an_unknown_model_name_or_route_is_a_404() {
    let s = server();
    let (body, _) = golden_request(1);
    let r = s.post("/v1/models/cats:predict", &body);
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("digits"));
    assert_eq!(s.post("/v1/models/digits:explain", &body).status, 404);
    assert_eq!(s.get("/nope").status, 404);
    let info = s.get("/v1/models/digits").json();
    assert_eq!(info["version"], "2");
    assert_eq!(info["inputs"][0]["name"], "input");
    assert_eq!(info["inputs"][0]["shape"], serde_json::json!(["batch", 64]));
}

#[test]
fn admin_without_a_token_or_with_a_wrong_one_is_401() {
    let s = server();
    let r = s.post("/admin/models/digits/swap", "");
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("missing credentials")
    );
    let r = s.admin("POST", "rollback", "wrong-token", "");
    assert_eq!(r.status, 401);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("invalid bearer token")
    );
    let r = s.admin("GET", "status", "", "");
    assert_eq!(r.status, 401);
    // Nothing happened.
    assert_eq!(
        s.admin("GET", "status", TOKEN, "").json()["deployment"]["swaps"],
        0
    );
}

#[test]
fn admin_is_disabled_with_403_when_no_token_is_configured() {
    let s = Server::start(Opts::default());
    s.wait_ready();
    for op in ["status", "stage", "swap", "rollback", "validate", "unstage"] {
        let method = if op == "status" { "GET" } else { "POST" };
        let r = s.admin(method, op, "anything", r#"{"version":"1"}"#);
        assert_eq!(r.status, 403, "{op}: {}", r.text);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("BLUEGREEN_ADMIN_TOKEN"),
            "{}",
            r.text
        );
    }
    assert_eq!(answering_version(&s), "2");
}

#[test]
fn stage_swap_and_rollback_through_the_admin_api_move_traffic() {
    let s = server();
    let r = s.admin("POST", "stage", TOKEN, r#"{"version": "1"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["version"], "1");
    assert_eq!(answering_version(&s), "2", "staging does not move traffic");

    let r = s.admin("POST", "swap", TOKEN, "");
    assert_eq!(r.status, 200, "{}", r.text);
    let swap = r.json();
    assert_eq!(
        (swap["from"].as_str(), swap["to"].as_str()),
        (Some("2"), Some("1"))
    );
    assert_eq!(swap["validation"]["passed"], true);
    assert_eq!(answering_version(&s), "1");

    let r = s.admin("POST", "rollback", TOKEN, "");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["to"], "2");
    assert_eq!(answering_version(&s), "2");

    let status = s.admin("GET", "status", TOKEN, "").json();
    let d = &status["deployment"];
    assert_eq!(
        (d["swaps"].as_u64(), d["rollbacks"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(d["active"]["version"], "2");
    assert_eq!(d["standby"]["version"], "1");
    assert_eq!(d["standby"]["state"], "rolled-back");
    // A second rollback has nothing to go back to: 409 with the reason.
    let r = s.admin("POST", "rollback", TOKEN, "");
    assert_eq!(r.status, 409, "{}", r.text);
}

#[test]
fn validate_is_a_dry_run_and_a_failing_swap_is_422_while_the_live_model_keeps_serving() {
    let s = server_without_quarantine();
    assert_eq!(
        s.admin("POST", "stage", TOKEN, r#"{"version":"3"}"#).status,
        200
    );
    let r = s.admin("POST", "validate", TOKEN, "");
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    assert_eq!(report["passed"], false);
    assert_eq!(report["candidate"], "3");
    let accuracy = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "accuracy")
        .unwrap();
    assert_eq!(accuracy["passed"], false);
    assert!(accuracy["measured"].as_f64().unwrap() < 0.5);

    let status = s.admin("GET", "status", TOKEN, "").json();
    assert_eq!(
        status["deployment"]["standby"]["state"], "staged",
        "dry run changed nothing"
    );
    assert_eq!(status["deployment"]["swaps"], 0);

    let r = s.admin("POST", "swap", TOKEN, "");
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["validation"]["passed"], false);
    assert_eq!(answering_version(&s), "2");
    let status = s.admin("GET", "status", TOKEN, "").json();
    assert_eq!(status["deployment"]["standby"]["state"], "failed");
    assert_eq!(status["deployment"]["rejections"], 1);
}

#[test]
fn staging_a_missing_invalid_corrupt_or_incompatible_version_is_refused_with_its_reason() {
    let s = server_without_quarantine();
    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"9"}"#);
    assert_eq!(r.status, 404, "{}", r.text);
    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"../digits/2"}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.admin("POST", "stage", TOKEN, r#"{"version": }"#);
    assert_eq!(r.status, 400, "{}", r.text);
    let r = s.admin("POST", "stage", TOKEN, r#"{"name":"2"}"#);
    assert_eq!(r.status, 400, "{}", r.text);
    // v5 is a truncated file: loading fails.
    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"5"}"#);
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("invalid ONNX model")
    );
    // v4 takes 32 features: the schema gate names the mismatch.
    assert_eq!(
        s.admin("POST", "stage", TOKEN, r#"{"version":"4"}"#).status,
        200
    );
    let r = s.admin("POST", "swap", TOKEN, "");
    assert_eq!(r.status, 422, "{}", r.text);
    let schema = r.json()["validation"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "schema")
        .cloned()
        .unwrap();
    assert!(
        schema["detail"].as_str().unwrap().contains("pixels"),
        "{schema}"
    );
    assert_eq!(answering_version(&s), "2");
}

#[test]
fn metrics_export_requests_errors_latency_swaps_rollbacks_failures_and_in_flight() {
    let s = server_without_quarantine();
    let (body, _) = golden_request(2);
    assert_eq!(predict(&s, &body).status, 200);
    assert_eq!(predict(&s, r#"{"inputs": [[1.0]]}"#).status, 400);
    assert_eq!(
        s.admin("POST", "stage", TOKEN, r#"{"version":"1"}"#).status,
        200
    );
    assert_eq!(s.admin("POST", "swap", TOKEN, "").status, 200);
    assert_eq!(predict(&s, &body).status, 200);
    assert_eq!(s.admin("POST", "rollback", TOKEN, "").status, 200);
    assert_eq!(
        s.admin("POST", "stage", TOKEN, r#"{"version":"3"}"#).status,
        200
    );
    assert_eq!(s.admin("POST", "swap", TOKEN, "").status, 422);

    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text;
    for series in [
        r#"bluegreen_requests_total{model="digits",version="2"} 2"#,
        r#"bluegreen_requests_total{model="digits",version="1"} 1"#,
        r#"bluegreen_request_errors_total{kind="input",model="digits",version="2"} 1"#,
        // bluegreen's own series (feature `metrics`), published at the scrape: the model's
        // calls (the 400 above is the model's own input check, so it counts as a failed
        // call) and their latency.
        r#"bluegreen_predictions_total{model="digits",version="2"} 2"#,
        r#"bluegreen_prediction_errors_total{model="digits",version="2"} 1"#,
        r#"bluegreen_prediction_duration_seconds_count{model="digits",version="1"} 1"#,
        r#"bluegreen_request_duration_seconds_bucket{model="digits",version="2",le="+Inf"} 2"#,
        r#"bluegreen_request_duration_seconds_count{model="digits",version="1"} 1"#,
        r#"bluegreen_swaps_total{model="digits"} 1"#,
        r#"bluegreen_rollbacks_total{model="digits"} 1"#,
        r#"bluegreen_rejections_total{model="digits"} 1"#,
        r#"bluegreen_validations_total{model="digits",result="failed"} 1"#,
        r#"bluegreen_gate_results_total{model="digits",gate="accuracy",result="failed"} 1"#,
        r#"bluegreen_in_flight{model="digits",slot="active"} 0"#,
        r#"bluegreen_in_flight{model="digits",slot="candidate"} 0"#,
        r#"bluegreen_slot_info{model="digits",slot="active",state="active",version="2"} 1"#,
        r#"bluegreen_slot_info{model="digits",slot="candidate",state="failed",version="3"} 1"#,
        // staging v3 retired v1, the model rolled back from
        r#"bluegreen_retired_total{model="digits"} 1"#,
        r#"bluegreen_predictions_total{model="digits",version="1"} 1"#,
        r#"bluegreen_ready{model="digits"} 1"#,
        "bluegreen_queue_capacity 128",
        "bluegreen_shed_total 0",
        "bluegreen_skipped_total 0",
        r#"bluegreen_http_requests_total{code="422",route="/admin/models/{name}/swap"} 1"#,
        "# TYPE bluegreen_request_duration_seconds histogram",
    ] {
        assert!(text.contains(series), "missing {series:?} in:\n{text}");
    }
}

/// With quarantine on (the default), a bad version is refused at stage, in a capped child,
/// with its cause — an endless loop at the CPU cap, a failing gate, a truncated file — and
/// never loaded into the service, which keeps answering; a good one then goes through.
#[test]
fn quarantine_refuses_hostile_and_bad_versions_at_stage_with_their_cause_while_serving() {
    let repo = tempfile::tempdir().unwrap();
    let digits = serve_support::repo_root().join("models/digits");
    std::fs::copy(digits.join("golden.npz"), repo.path().join("golden.npz")).unwrap();
    for v in ["1", "2", "3", "5"] {
        std::fs::create_dir_all(repo.path().join(v)).unwrap();
        std::fs::copy(
            digits.join(v).join("model.onnx"),
            repo.path().join(v).join("model.onnx"),
        )
        .unwrap();
    }
    std::fs::create_dir_all(repo.path().join("6")).unwrap();
    std::fs::write(
        repo.path().join("6/model.onnx"),
        onnx_graphs::endless_loop(),
    )
    .unwrap();
    let root = repo.path().display().to_string();
    let s = Server::start(
        Opts::args([
            "--repo",
            &root,
            "--name",
            "digits",
            "--quarantine-cpu-ms",
            "1000",
            "--quarantine-wall-ms",
            "10000",
        ])
        .token(TOKEN),
    );
    s.wait_ready();

    for (version, cause) in [("6", "cpu"), ("3", "refused"), ("5", "load")] {
        let r = s.admin(
            "POST",
            "stage",
            TOKEN,
            &format!(r#"{{"version":"{version}"}}"#),
        );
        assert_eq!(r.status, 422, "{version}: {}", r.text);
        let q = &r.json()["quarantine"];
        assert_eq!(q["cause"], cause, "{version}: {}", r.text);
        assert_eq!(q["passed"], false);
        assert!(
            !r.text.contains(&root),
            "the answer names no server path: {}",
            r.text
        );
        assert_eq!(answering_version(&s), "2");
    }
    let status = s.admin("GET", "status", TOKEN, "").json();
    assert_eq!(status["deployment"]["quarantine_refusals"], 3);
    assert_eq!(status["deployment"]["standby"], serde_json::Value::Null);
    assert_eq!(
        s.metric("bluegreen_quarantine_refusals_total{model=\"digits\"}"),
        Some(3.0)
    );

    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"1"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    let q = &r.json()["quarantine"];
    assert_eq!(q["passed"], true, "{}", r.text);
    assert!(
        q["peak_memory_bytes"].as_u64().is_some_and(|b| b > 0),
        "{}",
        r.text
    );
    assert_eq!(s.admin("POST", "swap", TOKEN, "").status, 200);
    assert_eq!(answering_version(&s), "1");
}
