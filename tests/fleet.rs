//! A fleet, simulated on one machine: three `serve` processes (replicas) follow one
//! desired-version manifest, laid out exactly as Kubernetes mounts a ConfigMap (the file is a
//! symlink through `..data`, and an update swaps that link atomically). Each replica has its
//! own model repository, as each pod would.
//!
//! 1. The manifest moves from 1 to 2: all three converge to 2.
//! 2. It moves to 3, but replica C's copy of 3 is a degraded model: C refuses it in
//!    quarantine (before loading it), keeps serving 2 and reports the refusal in its
//!    status; A and B move to 3. Replica A is killed (SIGKILL) and restarted mid-rollout:
//!    it comes back and converges to 3.
//! 3. With a journal (`--journal`, feature `journal`), C is restarted after its refusal: it
//!    comes back on 2 — what it served, not the manifest's 3 — refuses 3 again as banned,
//!    stays ready, and reports the skew (`bluegreen_version_skew` 1, A and B 0).
#![cfg(all(feature = "watch", feature = "onnx"))]

mod serve_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use serve_support::{Opts, Server, eventually, golden_request, repo_root};

const TOKEN: &str = "fleet-admin-token-0123456789";
const CONVERGE: Duration = Duration::from_secs(45);

/// A ConfigMap volume: `desired-version -> ..data/desired-version`, `..data -> ..<stamp>`.
struct ConfigMap {
    dir: PathBuf,
    generation: u32,
}

impl ConfigMap {
    fn new(dir: &Path, version: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut cm = ConfigMap {
            dir: dir.to_owned(),
            generation: 0,
        };
        cm.set(version);
        std::os::unix::fs::symlink("..data/desired-version", dir.join("desired-version")).unwrap();
        cm
    }

    fn file(&self) -> PathBuf {
        self.dir.join("desired-version")
    }

    /// Publishes a new value the way the kubelet does: a new timestamped directory, then an
    /// atomic rename of a fresh `..data` link over the old one.
    fn set(&mut self, version: &str) {
        self.generation += 1;
        let stamp = format!(
            "..2026_11_26_00_00_{:02}.{}",
            self.generation,
            std::process::id()
        );
        let data = self.dir.join(&stamp);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(
            data.join("desired-version"),
            format!("# rollout {}\n{version}\n", self.generation),
        )
        .unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

/// Copies digits model `from` into `repo/<to>/`, then writes the completion marker.
fn publish(repo: &Path, from: &str, to: &str) {
    let digits = repo_root().join("models/digits");
    let d = repo.join(to);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(digits.join(from).join("model.onnx"), d.join("model.onnx")).unwrap();
    bluegreen::Repository::new(repo).mark_complete(to).unwrap();
}

fn replica_repo(root: &Path, name: &str) -> PathBuf {
    let repo = root.join(name).join("digits");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(
        repo_root().join("models/digits/golden.npz"),
        repo.join("golden.npz"),
    )
    .unwrap();
    publish(&repo, "1", "1");
    publish(&repo, "2", "2");
    repo
}

fn status(s: &Server) -> Value {
    let r = s.admin("GET", "status", TOKEN, "");
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

fn active(s: &Server) -> String {
    status(s)["deployment"]["active"]["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn answering(s: &Server) -> String {
    let (body, _) = golden_request(1);
    let r = s.post("/v1/models/digits:predict", &body);
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["version"].as_str().unwrap().to_owned()
}

#[test]
fn three_replicas_follow_the_manifest_and_one_refuses_its_broken_candidate() {
    let root = tempfile::tempdir().unwrap();
    let mut config = ConfigMap::new(&root.path().join("config"), "1");
    let repos: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|n| replica_repo(root.path(), n))
        .collect();
    let manifest = config.file();
    let start = |repo: &PathBuf| {
        let mut args = vec![
            "--repo".to_owned(),
            repo.display().to_string(),
            "--desired".to_owned(),
            manifest.display().to_string(),
        ];
        if cfg!(feature = "journal") {
            args.push("--journal".to_owned());
            args.push(repo.with_extension("journal.db").display().to_string());
        }
        Server::start(Opts::args(args).token(TOKEN))
    };
    let mut replicas: Vec<Server> = repos.iter().map(start).collect();
    for r in &replicas {
        r.wait_ready();
        assert_eq!(active(r), "1", "started on the manifest's version");
        // The watcher thread reports the manifest once it has read it.
        eventually(
            "the watcher to report the desired version",
            CONVERGE,
            || (status(r)["watch"]["desired"] == "1").then_some(()),
        );
    }

    // 1. Roll the fleet forward: 1 → 2.
    config.set("2");
    for (i, r) in replicas.iter().enumerate() {
        eventually(&format!("replica {i} on 2"), CONVERGE, || {
            (active(r) == "2").then_some(())
        });
        assert_eq!(answering(r), "2");
        assert_eq!(r.get("/readyz").status, 200);
    }

    // 2. Version 3 reaches every replica's repository, but C's copy is the degraded model
    //    (trained on shuffled labels). Each copy is complete (marker written last).
    publish(&repos[0], "2", "3");
    publish(&repos[1], "2", "3");
    publish(&repos[2], "3", "3");
    config.set("3");
    // Replica A dies mid-rollout (SIGKILL) and is started again.
    drop(std::mem::replace(&mut replicas[0], start(&repos[0])));
    replicas[0].wait_ready();

    for (i, r) in replicas[..2].iter().enumerate() {
        eventually(&format!("replica {i} on 3"), CONVERGE, || {
            (active(r) == "3").then_some(())
        });
        assert_eq!(answering(r), "3");
    }
    let c = &replicas[2];
    let refusal = eventually("replica C to refuse 3", CONVERGE, || {
        let st = status(c);
        st["watch"]["refused"]
            .as_array()
            .and_then(|v| v.iter().find(|r| r["version"] == "3").cloned())
    });
    // Refused in its quarantine child (on by default in serve), before it was loaded.
    assert_eq!(refusal["kind"], "quarantine", "{refusal}");
    assert!(
        refusal["reason"].as_str().unwrap().contains("accuracy"),
        "{refusal}"
    );
    let st = status(c);
    assert_eq!(
        st["deployment"]["active"]["version"], "2",
        "C keeps serving 2"
    );
    // 3 never entered C's process: the standby is still the previous model, 1.
    assert_eq!(st["deployment"]["standby"]["version"], "1");
    assert_eq!(st["deployment"]["standby"]["state"], "previous");
    assert_eq!(st["deployment"]["quarantine_refusals"], 1);
    assert_eq!(st["deployment"]["last_quarantine"]["cause"], "refused");
    assert_eq!(st["deployment"]["rejections"], 0);
    assert_eq!(
        st["watch"]["desired"], "3",
        "C reports what it was asked for"
    );
    assert_eq!(answering(c), "2");
    assert_eq!(c.get("/readyz").status, 200, "C still serves a gated model");
    let metrics = c.get("/metrics").text;
    assert!(
        metrics.contains(r#"bluegreen_watch_refusals_total{model="digits"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bluegreen_quarantine_refusals_total{model="digits"} 1"#),
        "{metrics}"
    );
}
