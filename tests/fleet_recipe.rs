//! The in-place fleet recipe (deploy/k8s/in-place), run with real processes the way the
//! manifests run them: three `serve` replicas share ONE model repository directory (the
//! ReadOnlyMany volume), follow one desired-version manifest laid out as the kubelet mounts
//! a ConfigMap (`desired-version -> ..data/desired-version`, `..data -> ..<stamp>`; an
//! update renames a new `..data` link over the old one, then DELETES the old target
//! directory), watch by polling only (`--poll-only`: NFS gives inotify nothing), keep a
//! journal each, and serve `/admin` and `/metrics` on an admin port of their own.
//!
//! The test plays the controller: it scrapes each replica's `/metrics` — the series the
//! `digits-fleet-verdict` AnalysisTemplate queries — and decides as the template does.
//!
//! 1. The manifest moves 1 → 2: every replica converges; the verdict passes.
//! 2. Version 3 is published once, into the shared repository, and the manifest moves to
//!    3. Replica C runs a stricter gate (`--max-drop 0.02`: 3 is less accurate than 2), so
//!    C refuses 3 while A and B move to it: the fleet is mixed, and C says so
//!    (`bluegreen_target_refused` 1, `/status` `verdict.refused`).
//! 3. C is killed (SIGKILL) and restarted after its refusal: with its journal it comes
//!    back on 2, ready, and refuses 3 again as banned — not booting the refused version.
//! 4. The verdict aborts on the refusal; the manifest goes back to 2; A and B roll back and
//!    the whole fleet is on 2 again.
//!
//! The convergence bound is asserted by state, in the watcher's own looks (no clock): each
//! replica reads a manifest change in one of the first two looks that begin after it is
//! published, and is converged at the end of that same look
//! (`watch.target_since_scan`, `watch.converged_since_scan`). In time, that is at most two
//! poll intervals plus one swap after the kubelet projects the change (docs/serving.md).
//!
//! And the pod-level blue-green mode's signal: a pod whose start-up version fails its gates
//! reports the same refusal (no watcher there; the version is the pod's `--version`).
#![cfg(all(feature = "watch", feature = "onnx"))]

mod deploy_support;
mod serve_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use serve_support::{Opts, Server, eventually, golden_request, repo_root};

const TOKEN: &str = "fleet-recipe-admin-token-0123456789";
/// Generous: a bound on waiting, not a measured figure (the bound asserted is in looks).
const WAIT: Duration = Duration::from_secs(60);

/// A ConfigMap volume as the kubelet maintains it.
struct ConfigMap {
    dir: PathBuf,
    generation: u32,
    current: Option<PathBuf>,
}

impl ConfigMap {
    fn new(dir: &Path, version: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut cm = ConfigMap {
            dir: dir.to_owned(),
            generation: 0,
            current: None,
        };
        cm.set(version);
        std::os::unix::fs::symlink("..data/desired-version", dir.join("desired-version")).unwrap();
        cm
    }

    fn file(&self) -> PathBuf {
        self.dir.join("desired-version")
    }

    /// A new timestamped directory, an atomic rename of a fresh `..data` link over the old
    /// one, then the old directory removed — what the kubelet's atomic writer does.
    fn set(&mut self, version: &str) {
        self.generation += 1;
        let stamp = format!(
            "..2026_12_02_00_00_{:02}.{}",
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
        if let Some(old) = self.current.replace(data) {
            std::fs::remove_dir_all(&old).unwrap();
            assert!(!old.exists());
        }
    }
}

/// Copies digits model `from` into `repo/<to>/`, then writes the completion marker.
fn publish(repo: &Path, from: &str, to: &str) {
    let d = repo.join(to);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        repo_root()
            .join("models/digits")
            .join(from)
            .join("model.onnx"),
        d.join("model.onnx"),
    )
    .unwrap();
    bluegreen::Repository::new(repo).mark_complete(to).unwrap();
}

/// One replica: how it was started (to restart it the same way) and the process.
struct Replica {
    name: &'static str,
    args: Vec<String>,
    server: Server,
}

impl Replica {
    fn start(name: &'static str, args: Vec<String>) -> Replica {
        let server = Server::start(Opts::args(args.clone()).token(TOKEN));
        server.wait_ready();
        Replica { name, args, server }
    }

    /// SIGKILL, then the same command line again (same repository, manifest, journal).
    fn kill_and_restart(&mut self) {
        self.server.kill();
        self.server = Server::start(Opts::args(self.args.clone()).token(TOKEN));
        self.server.wait_ready();
    }

    fn status(&self) -> Value {
        let r = self.server.admin("GET", "status", TOKEN, "");
        assert_eq!(r.status, 200, "{}: {}", self.name, r.text);
        r.json()
    }

    fn active(&self) -> String {
        self.status()["deployment"]["active"]["version"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn scans(&self) -> u64 {
        self.status()["watch"]["scans"].as_u64().unwrap()
    }

    fn answering(&self) -> String {
        let (body, _) = golden_request(1);
        let r = self.server.post("/v1/models/digits:predict", &body);
        assert_eq!(r.status, 200, "{}: {}", self.name, r.text);
        r.json()["version"].as_str().unwrap().to_owned()
    }

    fn gauge(&self, series: &str) -> Option<f64> {
        self.server.metric(series)
    }
}

/// The series `digits-fleet-verdict` reads, as Prometheus would scrape them per replica.
struct Scrape {
    refused: f64,
    skew: f64,
    desired: Option<String>,
}

fn scrape(r: &Replica) -> Scrape {
    let text = r.server.metrics();
    let desired = text.lines().find_map(|l| {
        l.strip_prefix(r#"bluegreen_desired_version_info{model="digits",version=""#)
            .and_then(|rest| rest.split_once("\"}"))
            .filter(|(_, v)| v.trim() == "1")
            .map(|(version, _)| version.to_owned())
    });
    Scrape {
        refused: r
            .gauge(r#"bluegreen_target_refused{model="digits"}"#)
            .unwrap_or_else(|| panic!("{}: no bluegreen_target_refused:\n{text}", r.name)),
        skew: r
            .gauge(r#"bluegreen_version_skew{model="digits"}"#)
            .unwrap_or_else(|| panic!("{}: no bluegreen_version_skew:\n{text}", r.name)),
        desired,
    }
}

#[derive(Debug, PartialEq)]
enum Verdict {
    /// Any replica refuses: abort at once (`no-replica-refuses`).
    Abort,
    /// Every replica is on the version (`all-replicas-on-version`).
    Pass,
    /// Neither yet: measure again (until the template's deadline).
    Pending,
}

/// What `digits-fleet-verdict` decides from one measurement of every replica.
fn verdict(replicas: &[Replica], version: &str) -> Verdict {
    let scrapes: Vec<Scrape> = replicas.iter().map(scrape).collect();
    if scrapes.iter().map(|s| s.refused).sum::<f64>() > 0.0 {
        return Verdict::Abort;
    }
    let on_version = scrapes
        .iter()
        .filter(|s| s.skew == 0.0 && s.desired.as_deref() == Some(version))
        .count();
    if on_version == replicas.len() {
        Verdict::Pass
    } else {
        Verdict::Pending
    }
}

/// Publishes `version` in the manifest and asserts the bound on every replica that must
/// converge to it: the change is read within the first two looks begun after publishing,
/// and the replica is converged at the end of that look.
fn roll(config: &mut ConfigMap, replicas: &[Replica], version: &str, converging: &[usize]) {
    let before: Vec<u64> = replicas.iter().map(Replica::scans).collect();
    config.set(version);
    for &i in converging {
        let r = &replicas[i];
        let w = eventually(&format!("{} converged on {version}", r.name), WAIT, || {
            let st = r.status();
            // The look numbers describe the current target once a look that read it ended
            // (`target` itself changes as soon as a look reads the manifest).
            let w = &st["watch"];
            (w["target"] == version
                && w["target_since_scan"]
                    .as_u64()
                    .is_some_and(|t| t > before[i])
                && w["converged_since_scan"].is_u64())
            .then(|| w.clone())
        });
        let read = w["target_since_scan"].as_u64().unwrap();
        let converged = w["converged_since_scan"].as_u64().unwrap();
        assert!(
            read <= before[i] + 2,
            "{}: the change was read at look {read}, more than two looks after {}: {w}",
            r.name,
            before[i]
        );
        assert_eq!(
            converged, read,
            "{}: converged at look {converged}, not in the look that read the change ({read}): {w}",
            r.name
        );
        assert!(w["last_error"].is_null(), "{}: {w}", r.name);
        assert_eq!(r.active(), version);
        assert_eq!(r.answering(), version);
    }
}

#[cfg(feature = "journal")]
#[test]
fn a_fleet_on_one_shared_polled_repository_converges_and_aborts_as_one() {
    // The verdict this test plays is the one the manifests ship.
    let template =
        deploy_support::load_docs(&repo_root().join("deploy/k8s/in-place/analysis-template.yaml"))
            .remove(0);
    let read_by_template: std::collections::BTreeSet<String> =
        deploy_support::recipe::queries(&template)
            .iter()
            .flat_map(|(_, q)| {
                deploy_support::recipe::selectors(&promql_parser::parser::parse(q).unwrap())
            })
            .map(|s| s.name)
            .collect();
    assert_eq!(
        read_by_template,
        [
            "bluegreen_desired_version_info",
            "bluegreen_target_refused",
            "bluegreen_version_skew"
        ]
        .map(String::from)
        .into(),
        "the simulated controller reads what digits-fleet-verdict queries"
    );

    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("models/digits");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::copy(
        repo_root().join("models/digits/golden.npz"),
        repo.join("golden.npz"),
    )
    .unwrap();
    publish(&repo, "1", "1");
    publish(&repo, "2", "2");
    let mut config = ConfigMap::new(&root.path().join("config"), "1");

    let args = |name: &str, extra: &[&str]| {
        let mut a: Vec<String> = [
            "--repo",
            repo.to_str().unwrap(),
            "--desired",
            config.file().to_str().unwrap(),
            "--poll-only",
            "--admin-port",
            "0",
            "--journal",
        ]
        .map(String::from)
        .into();
        a.push(
            root.path()
                .join(format!("{name}.journal.db"))
                .display()
                .to_string(),
        );
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut replicas = vec![
        Replica::start("A", args("a", &[])),
        Replica::start("B", args("b", &[])),
        Replica::start("C", args("c", &["--max-drop", "0.02"])),
    ];
    for r in &replicas {
        assert_eq!(
            r.active(),
            "1",
            "{}: started on the manifest's version",
            r.name
        );
        let st = r.status();
        assert_eq!(st["watch"]["backend"], "poll", "{}: {st}", r.name);
        // /admin and /metrics are on the admin port only.
        assert_eq!(r.server.get("/metrics").status, 404, "{}", r.name);
        assert_eq!(
            r.server
                .request("GET", "/admin/models/digits/status", &[], b"")
                .status,
            404,
            "{}",
            r.name
        );
    }
    eventually("the verdict on 1", WAIT, || {
        (verdict(&replicas, "1") == Verdict::Pass).then_some(())
    });

    // 1. Forward, the whole fleet.
    roll(&mut config, &replicas, "2", &[0, 1, 2]);
    assert_eq!(verdict(&replicas, "2"), Verdict::Pass);

    // 2. Version 3 (less accurate than 2) published once, for everyone; C's stricter gate
    //    refuses it, A and B take it.
    publish(&repo, "1", "3");
    roll(&mut config, &replicas, "3", &[0, 1]);
    let c = &replicas[2];
    let refusal = eventually("C to refuse 3", WAIT, || {
        let st = c.status();
        (st["verdict"]["refused"] == true).then_some(st)
    });
    assert_eq!(refusal["verdict"]["version"], "3", "{refusal}");
    assert_eq!(
        refusal["watch"]["refused"][0]["kind"], "validation",
        "{refusal}"
    );
    assert_eq!(refusal["deployment"]["active"]["version"], "2", "{refusal}");
    assert_eq!(c.answering(), "2");
    assert_eq!(
        c.server.get("/readyz").status,
        200,
        "C still serves a gated model"
    );
    assert_eq!(scrape(c).refused, 1.0);
    assert_eq!(scrape(c).skew, 1.0);
    assert_eq!(scrape(&replicas[0]).refused, 0.0);

    // 3. C restarted after its refusal: back on 2 (its journal), ready, 3 refused as banned.
    replicas[2].kill_and_restart();
    let c = &replicas[2];
    assert_eq!(
        c.active(),
        "2",
        "C resumed on the version it served, not the manifest's 3"
    );
    let banned = eventually("C to refuse 3 again, banned", WAIT, || {
        let st = c.status();
        (st["verdict"]["refused"] == true).then_some(st)
    });
    assert_eq!(banned["watch"]["refused"][0]["kind"], "banned", "{banned}");
    assert_eq!(c.server.get("/readyz").status, 200);

    // 4. The fleet-level verdict: abort on C's refusal; the manifest goes back to 2.
    assert_eq!(verdict(&replicas, "3"), Verdict::Abort);
    roll(&mut config, &replicas, "2", &[0, 1, 2]);
    for r in &replicas {
        let st = r.status();
        assert_eq!(st["verdict"]["refused"], false, "{}: {st}", r.name);
        assert_eq!(scrape(r).refused, 0.0, "{}", r.name);
    }
    assert_eq!(
        verdict(&replicas, "2"),
        Verdict::Pass,
        "the fleet is whole on 2"
    );
    for r in &replicas[..2] {
        let st = r.status();
        assert_eq!(
            st["deployment"]["standby"]["version"], "3",
            "{}: rolled back to 2 with 3 kept in standby: {st}",
            r.name
        );
    }
}

#[test]
fn a_pod_whose_start_up_version_fails_its_gates_reports_the_refusal_until_a_gated_model_serves() {
    // Pod-level blue-green: each new pod is asked to serve its --version; 3 is degraded.
    let s = Server::start(Opts::args(["--version", "3", "--admin-port", "0"]).token(TOKEN));
    s.wait_started();
    assert_eq!(s.get("/readyz").status, 503);
    let st = s.admin("GET", "status", TOKEN, "").json();
    assert_eq!(st["verdict"]["refused"], true, "{st}");
    assert_eq!(st["verdict"]["version"], "3", "{st}");
    assert_eq!(st["verdict"]["kind"], "startup-check", "{st}");
    assert!(
        st["verdict"]["reason"]
            .as_str()
            .unwrap()
            .contains("accuracy"),
        "{st}"
    );
    assert_eq!(
        s.metric(r#"bluegreen_target_refused{model="digits"}"#),
        Some(1.0)
    );

    // A gated model swapped in: nothing refused any more.
    let r = s.admin("POST", "stage", TOKEN, r#"{"version":"2"}"#);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.admin("POST", "swap", TOKEN, "");
    assert_eq!(r.status, 200, "{}", r.text);
    s.wait_ready();
    let st = s.admin("GET", "status", TOKEN, "").json();
    assert_eq!(st["verdict"]["refused"], false, "{st}");
    assert!(st["verdict"]["version"].is_null(), "{st}");
    assert_eq!(
        s.metric(r#"bluegreen_target_refused{model="digits"}"#),
        Some(0.0)
    );
}
