//! Many models in one service process (`--model NAME=DIR`, repeated), as TF Serving, Triton
//! and MLServer serve them: each model has its own deployment, gates, admin routes and
//! metric labels, and is swapped and rolled back without touching the other.
#![cfg(feature = "onnx")]

mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use serve_support::{Opts, Server, golden_request, repo_root, serve_binary};

const TOKEN: &str = "many-models-admin-token-0123456789";

/// A model repository holding copies of the digits versions `versions`, and the golden set.
fn repository(root: &Path, name: &str, versions: &[&str]) -> PathBuf {
    let digits = repo_root().join("models/digits");
    let repo = root.join(name);
    for v in versions {
        std::fs::create_dir_all(repo.join(v)).unwrap();
        std::fs::copy(
            digits.join(v).join("model.onnx"),
            repo.join(v).join("model.onnx"),
        )
        .unwrap();
    }
    std::fs::copy(digits.join("golden.npz"), repo.join("golden.npz")).unwrap();
    repo
}

fn answering(s: &Server, model: &str) -> String {
    let (body, expected) = golden_request(4);
    let r = s.post(&format!("/v1/models/{model}:predict"), &body);
    assert_eq!(r.status, 200, "{model}: {}", r.text);
    let v = r.json();
    assert_eq!(v["model"], model);
    if v["version"] == "2" {
        assert_eq!(v["outputs"]["label"], serde_json::json!(expected));
    }
    v["version"].as_str().unwrap().to_owned()
}

fn ok(r: serve_support::Reply) -> Value {
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

#[test]
fn two_models_are_served_listed_swapped_and_rolled_back_independently() {
    let root = tempfile::tempdir().unwrap();
    let alpha = repository(root.path(), "alpha", &["1", "2"]);
    let beta = repository(root.path(), "beta", &["1", "2", "3"]);
    // alpha and beta name their starting version; gamma names none and starts on its
    // newest (no version is marked complete, so the newest directory).
    let gamma = repository(root.path(), "gamma", &["1", "2"]);
    let s = Server::start(
        Opts::args([
            "--model".to_owned(),
            format!("alpha={}@2", alpha.display()),
            "--model".to_owned(),
            format!("beta={}@2", beta.display()),
            "--model".to_owned(),
            format!("gamma={}", gamma.display()),
        ])
        .token(TOKEN),
    );
    s.wait_ready();

    let listed = ok(s.get("/v1/models"));
    let models: Vec<(String, String, bool)> = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["version"].as_str().unwrap().to_owned(),
                m["ready"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = |n: &str, v: &str| (n.to_owned(), v.to_owned(), true);
    assert_eq!(
        models,
        [
            expected("alpha", "2"),
            expected("beta", "2"),
            expected("gamma", "2")
        ],
        "gamma started on its newest version"
    );
    let ready = ok(s.get("/readyz"));
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["models"].as_array().unwrap().len(), 3);
    for m in ["alpha", "beta", "gamma"] {
        assert_eq!(answering(&s, m), "2");
        assert_eq!(ok(s.get(&format!("/v1/models/{m}")))["version"], "2");
    }

    // alpha: 2 → 1. beta keeps serving 2.
    ok(s.admin_model("alpha", "POST", "stage", TOKEN, r#"{"version":"1"}"#));
    assert_eq!(
        ok(s.admin_model("alpha", "POST", "swap", TOKEN, ""))["to"],
        "1"
    );
    assert_eq!(
        (answering(&s, "alpha"), answering(&s, "beta")),
        ("1".into(), "2".into())
    );

    // beta: its v3 is refused by beta's gates in its quarantine child (alpha unaffected),
    // then 2 → 1.
    let r = s.admin_model("beta", "POST", "stage", TOKEN, r#"{"version":"3"}"#);
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["quarantine"]["cause"], "refused", "{}", r.text);
    ok(s.admin_model("beta", "POST", "stage", TOKEN, r#"{"version":"1"}"#));
    assert_eq!(
        ok(s.admin_model("beta", "POST", "swap", TOKEN, ""))["to"],
        "1"
    );
    assert_eq!(
        (answering(&s, "alpha"), answering(&s, "beta")),
        ("1".into(), "1".into())
    );

    // Roll alpha back alone, then beta.
    assert_eq!(
        ok(s.admin_model("alpha", "POST", "rollback", TOKEN, ""))["to"],
        "2"
    );
    assert_eq!(
        (answering(&s, "alpha"), answering(&s, "beta")),
        ("2".into(), "1".into())
    );
    assert_eq!(
        ok(s.admin_model("beta", "POST", "rollback", TOKEN, ""))["to"],
        "2"
    );
    assert_eq!(
        (answering(&s, "alpha"), answering(&s, "beta")),
        ("2".into(), "2".into())
    );
    assert_eq!(answering(&s, "gamma"), "2", "gamma was never touched");

    // Each model's status and metrics count its own operations only.
    let counts = |m: &str| {
        let d = ok(s.admin_model(m, "GET", "status", TOKEN, ""))["deployment"].clone();
        (
            d["swaps"].as_u64(),
            d["rollbacks"].as_u64(),
            d["quarantine_refusals"].as_u64(),
        )
    };
    assert_eq!(counts("alpha"), (Some(1), Some(1), Some(0)));
    assert_eq!(counts("beta"), (Some(1), Some(1), Some(1)));
    assert_eq!(counts("gamma"), (Some(0), Some(0), Some(0)));
    let text = s.get("/metrics").text;
    for series in [
        r#"bluegreen_swaps_total{model="alpha"} 1"#,
        r#"bluegreen_swaps_total{model="beta"} 1"#,
        r#"bluegreen_swaps_total{model="gamma"} 0"#,
        r#"bluegreen_quarantine_refusals_total{model="beta"} 1"#,
        r#"bluegreen_quarantine_refusals_total{model="alpha"} 0"#,
        r#"bluegreen_rejections_total{model="beta"} 0"#,
        r#"bluegreen_slot_info{model="beta",slot="previous",state="rolled-back",version="1"} 1"#,
        r#"bluegreen_ready{model="gamma"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series:?} in:\n{text}");
    }

    // Unknown names are 404s that list what is served, on both APIs.
    let r = s.post("/v1/models/digits:predict", &golden_request(1).0);
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains(r#"[\"alpha\", \"beta\", \"gamma\"]"#),
        "{}",
        r.text
    );
    assert_eq!(
        s.admin_model("digits", "GET", "status", TOKEN, "").status,
        404
    );
}

#[test]
fn a_model_name_given_twice_or_mixed_with_repo_is_a_usage_error() {
    for args in [
        vec![
            "--model",
            "a=models/digits@2",
            "--model",
            "a=models/digits@1",
        ],
        vec!["--model", "a=models/digits@2", "--repo", "models/digits"],
        vec!["--model", "bad/name=models/digits"],
        vec!["--model", "models/digits"],
    ] {
        let out = Command::new(serve_binary())
            .current_dir(repo_root())
            .args(["--port", "0"])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: did not start serving");
    }
}
