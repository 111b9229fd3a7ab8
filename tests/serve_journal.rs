//! The service with a journal (`serve --journal FILE`, issue #15), as real processes killed
//! with SIGKILL: a restart comes back on the version last live, not on `--version`; a
//! version refused before stays refused for the same bytes until an admin unbans it; the
//! history names who asked; and a version folder replaced in place is not loaded again
//! under its name — the service starts on the version live before it.
#![cfg(all(feature = "onnx", feature = "journal"))]

mod serve_support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use serve_support::{Opts, Server, golden_request, repo_root};

const TOKEN: &str = "journal-admin-token-0123456789";

/// A copy of the digits repository (versions 1–3 and the golden set).
fn repository(root: &Path) -> PathBuf {
    let digits = repo_root().join("models/digits");
    let repo = root.join("digits");
    for v in ["1", "2", "3"] {
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

fn start(repo: &Path, journal: &Path) -> Server {
    let s = Server::start(
        Opts::args([
            "--repo".to_owned(),
            repo.display().to_string(),
            "--version".to_owned(),
            "2".to_owned(),
            "--journal".to_owned(),
            journal.display().to_string(),
            // Candidates are refused by the in-process gates at swap here; a refusal in
            // quarantine at stage, journalled and banned the same way, is tests/fleet.rs's.
            "--quarantine".to_owned(),
            "off".to_owned(),
        ])
        .token(TOKEN),
    );
    s.wait_started();
    s
}

/// An admin call in the name of `who`.
fn admin(s: &Server, method: &str, op: &str, who: &str, body: &str) -> serve_support::Reply {
    let auth = format!("Bearer {TOKEN}");
    s.request(
        method,
        &format!("/admin/models/digits/{op}"),
        &[("Authorization", &auth), ("X-Bluegreen-Actor", who)],
        body.as_bytes(),
    )
}

fn answering(s: &Server) -> String {
    let (body, _) = golden_request(1);
    let r = s.post("/v1/models/digits:predict", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["version"].as_str().unwrap().to_owned()
}

#[test]
fn a_restarted_service_resumes_on_the_last_live_version_and_keeps_refusing_what_it_refused() {
    let root = tempfile::tempdir().unwrap();
    let repo = repository(root.path());
    let journal = root.path().join("state/journal.db");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();

    let s = start(&repo, &journal);
    assert_eq!(answering(&s), "2");
    assert_eq!(
        admin(&s, "POST", "stage", "alice", r#"{"version":"1"}"#).status,
        200
    );
    assert_eq!(admin(&s, "POST", "swap", "alice", "").status, 200);
    assert_eq!(
        admin(&s, "POST", "stage", "bob", r#"{"version":"3"}"#).status,
        200
    );
    let refused = admin(&s, "POST", "swap", "bob", "");
    assert_eq!(
        refused.status, 422,
        "v3 fails its accuracy gate: {}",
        refused.text
    );
    assert_eq!(answering(&s), "1");

    let history = admin(&s, "GET", "history", "alice", "");
    assert_eq!(history.status, 200, "{}", history.text);
    let events = history.json()["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["start", "validation", "stage", "swap", "stage", "refusal"],
        "{events:#?}"
    );
    let swap = &events[3];
    assert_eq!(swap["actor"], "admin:alice");
    assert_eq!(swap["subject"]["version"], "1");
    assert_eq!(swap["from"]["version"], "2");
    assert_eq!(swap["subject"]["content"].as_str().unwrap().len(), 64);
    assert_eq!(swap["detail"]["report"]["candidate"], "1");
    let refusal = &events[5];
    assert_eq!(
        (refusal["actor"].as_str(), refusal["ban"].as_bool()),
        (Some("admin:bob"), Some(true))
    );
    let limited = admin(&s, "GET", "history?limit=2", "alice", "").json();
    assert_eq!(limited["events"].as_array().unwrap().len(), 2);
    assert_eq!(admin(&s, "GET", "history?limit=x", "alice", "").status, 400);

    // SIGKILL, and start again with the same `--version 2`: the journal wins.
    drop(s);
    let s = start(&repo, &journal);
    s.wait_ready();
    assert_eq!(answering(&s), "1", "back on the version last live");
    let status = admin(&s, "GET", "status", "alice", "").json();
    assert_eq!(status["deployment"]["journal"]["bans"], 1, "{status}");
    let again = admin(&s, "POST", "stage", "carol", r#"{"version":"3"}"#);
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(again.text.contains("banned"), "{}", again.text);
    let lifted = admin(&s, "POST", "unban", "carol", r#"{"version":"3"}"#);
    assert_eq!(
        (lifted.status, lifted.json()["lifted"].as_u64()),
        (200, Some(1)),
        "{}",
        lifted.text
    );
    assert_eq!(
        admin(&s, "POST", "stage", "carol", r#"{"version":"3"}"#).status,
        200
    );
    assert!(
        s.get("/metrics")
            .text
            .contains("bluegreen_journal_healthy{model=\"digits\"} 1")
    );

    // Version 1's folder is replaced in place (v2's bytes under the name 1). Restarted,
    // the service does not load those bytes as 1: it starts on 2, live before 1.
    drop(s);
    std::fs::copy(repo.join("2/model.onnx"), repo.join("1/model.onnx")).unwrap();
    let s = start(&repo, &journal);
    s.wait_ready();
    assert_eq!(answering(&s), "2");
    assert!(
        s.log().contains("was replaced in place since it was live"),
        "{}",
        s.log()
    );
    let last: Value = admin(&s, "GET", "history?limit=1", "alice", "").json()["events"][0].clone();
    assert_eq!(
        (last["kind"].as_str(), last["live"]["version"].as_str()),
        (Some("validation"), Some("2"))
    );
}
