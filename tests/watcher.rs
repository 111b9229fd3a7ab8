//! The repository watcher (`bluegreen::watch`) at library level: plain-Rust models read from
//! version folders in a temporary repository, and the real digits ONNX models.
//!
//! Waiting is bounded: a test waits for a specific event (or for the watcher to finish a
//! number of looks) with a generous deadline, and fails if it never comes. Nothing asserts on
//! how long anything took.
#![cfg(feature = "watch")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bluegreen::repository::{Repository, VersionDir};
use bluegreen::watch::{Backend, RefusalKind, WatchEvent, WatchPolicy, Watcher, WatcherBuilder};
use bluegreen::{BlueGreen, Model, SlotState, validate};
use crossbeam_channel::{Receiver, unbounded};

/// Deadline for anything the watcher is expected to do.
const PATIENCE: Duration = Duration::from_secs(20);

/// y = factor · x. Loaded from `model.txt` (the factor as text) in a version folder.
#[derive(Debug)]
struct Scale(f64);

impl Model for Scale {
    type Input = f64;
    type Output = f64;
    type Error = std::convert::Infallible;
    fn predict(&self, x: &f64) -> Result<f64, Self::Error> {
        Ok(self.0 * x)
    }
}

/// A gate: the factor must be positive.
fn positive() -> impl bluegreen::Validator<Scale> {
    validate::from_fn("positive", |cx: &validate::Context<Scale>| {
        let y = cx.candidate().predict(&1.0).unwrap();
        if y > 0.0 {
            Ok(())
        } else {
            Err(format!("f(1) = {y}"))
        }
    })
}

/// A repository in a temp dir, a deployment on version 1 (factor 1), and a loader that
/// counts its calls.
struct Fixture {
    dir: tempfile::TempDir,
    repo: Repository,
    bg: Arc<BlueGreen<Scale>>,
    loads: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(dir.path());
        let f = Fixture {
            dir,
            repo,
            bg: Arc::new(
                BlueGreen::builder()
                    .validator(positive())
                    .build("1", Scale(1.0))
                    .unwrap(),
            ),
            loads: Arc::new(AtomicUsize::new(0)),
        };
        f.publish("1", "1.0");
        f
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a version completely: the model file, then the marker.
    fn publish(&self, version: &str, factor: &str) {
        self.write_model(version, factor);
        self.repo.mark_complete(version).unwrap();
    }

    fn write_model(&self, version: &str, factor: &str) {
        let d = self.root().join(version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("model.txt"), factor).unwrap();
    }

    fn builder(&self) -> WatcherBuilder {
        Watcher::builder(self.repo.clone())
            .poll_interval(Duration::from_millis(100))
            .debounce(Duration::from_millis(10))
    }

    /// Starts the watcher; every event also goes to the returned channel.
    fn spawn(&self, builder: WatcherBuilder) -> (Watcher, Receiver<WatchEvent>) {
        let (tx, rx) = unbounded();
        let loads = Arc::clone(&self.loads);
        let watcher = builder
            .on_event(move |e| {
                let _ = tx.send(e.clone());
            })
            .spawn(Arc::clone(&self.bg), move |v: &VersionDir| {
                loads.fetch_add(1, Ordering::SeqCst);
                let text = std::fs::read_to_string(v.file("model.txt"))?;
                assert_ne!(text.trim(), "panic", "the loader exploded");
                let factor: f64 = text.trim().parse()?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Scale(factor))
            })
            .unwrap();
        (watcher, rx)
    }

    fn answer(&self) -> f64 {
        self.bg.predict(&1.0).unwrap()
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

/// Waits for the first event `pick` accepts; fails with the events seen if none comes.
fn expect<T>(
    rx: &Receiver<WatchEvent>,
    what: &str,
    mut pick: impl FnMut(&WatchEvent) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => {
                if let Some(v) = pick(&e) {
                    return v;
                }
                seen.push(e.to_string());
            }
            Err(_) => panic!("no {what} event; saw {seen:#?}"),
        }
    }
}

/// Lets the watcher finish `n` more looks (so a negative assertion means something).
fn settle(w: &Watcher, n: u64) {
    let target = w.status().scans + n;
    assert!(
        w.wait_for_scans(target, PATIENCE),
        "the watcher stopped looking"
    );
}

#[test]
fn a_half_copied_version_without_its_marker_is_never_loaded() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder());
    settle(&w, 1);
    // Version 2 is being copied: its model file is there (truncated), its marker is not.
    f.write_model("2", "2.");
    let waiting = expect(&rx, "waiting", |e| match e {
        WatchEvent::Waiting { version, reason } if version == "2" => Some(reason.clone()),
        _ => None,
    });
    assert!(waiting.contains("READY"), "{waiting}");
    settle(&w, 3);
    assert_eq!(
        f.loads(),
        0,
        "the loader never ran for an incomplete version"
    );
    assert_eq!(f.answer(), 1.0);
    assert!(f.bg.status().standby.is_none());
    let st = w.status();
    assert_eq!(st.incomplete, ["2"]);
    assert_eq!(st.target.as_deref(), Some("1"));
}

#[test]
fn writing_the_marker_stages_validates_and_swaps_under_auto_promote() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder().policy(WatchPolicy::AutoPromote));
    assert_eq!(w.status().backend, Backend::Notify, "inotify works here");
    f.write_model("2", "2.0");
    settle(&w, 1);
    assert_eq!(f.loads(), 0);
    f.repo.mark_complete("2").unwrap();

    let staged = expect(&rx, "staged", |e| match e {
        WatchEvent::Staged(r) => Some(r.version.clone()),
        _ => None,
    });
    assert_eq!(staged, "2");
    let promoted = expect(&rx, "promoted", |e| match e {
        WatchEvent::Promoted(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!((promoted.from.as_str(), promoted.to.as_str()), ("1", "2"));
    assert!(promoted.validation.passed());
    assert_eq!(promoted.validation.checks[0].name, "positive");
    assert_eq!(f.answer(), 2.0);
    assert_eq!(f.loads(), 1);
    let s = f.bg.status();
    assert_eq!(s.swaps, 1);
    assert_eq!(
        s.standby.unwrap().state,
        SlotState::Previous,
        "1 kept for rollback"
    );
    assert_eq!(w.status().promoted, 1);
}

#[test]
fn stage_only_stages_and_dry_runs_but_never_swaps() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder().policy(WatchPolicy::StageOnly));
    f.publish("2", "2.0");
    let report = expect(&rx, "validated", |e| match e {
        WatchEvent::Validated(r) => Some(r.clone()),
        _ => None,
    });
    assert!(report.passed());
    assert_eq!(report.candidate, "2");
    settle(&w, 2);
    assert_eq!(f.answer(), 1.0, "traffic did not move");
    let s = f.bg.status();
    assert_eq!(s.swaps, 0);
    let standby = s.standby.unwrap();
    assert_eq!(
        (standby.version.as_str(), standby.state),
        ("2", SlotState::Staged)
    );
    assert_eq!(f.loads(), 1, "staged once, not again on later looks");
    // The operator decides.
    f.bg.swap().unwrap();
    assert_eq!(f.answer(), 2.0);
}

#[test]
fn a_failing_candidate_is_refused_reported_and_the_live_model_keeps_serving() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder());
    f.publish("2", "-1.0");
    let refusal = expect(&rx, "refused", |e| match e {
        WatchEvent::Refused(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(refusal.version, "2");
    assert_eq!(refusal.kind, RefusalKind::Validation);
    let report = refusal.report.expect("the gates' report");
    assert!(!report.passed());
    assert!(
        report.failure_summary().contains("positive"),
        "{}",
        report.failure_summary()
    );
    assert_eq!(f.answer(), 1.0, "the live model keeps serving");

    // Reported in the watcher's status and the deployment's.
    let ws = w.status();
    assert_eq!((ws.refusals, ws.refused.len()), (1, 1));
    assert_eq!(ws.refused[0].version, "2");
    let s = f.bg.status();
    assert_eq!(s.rejections, 1);
    assert_eq!(s.standby.unwrap().state, SlotState::Failed);

    // Not retried in a loop…
    settle(&w, 3);
    assert_eq!(f.loads(), 1);
    // …but retried once the version is published again (fixed file, new marker).
    f.publish("2", "3.0");
    let promoted = expect(&rx, "promoted", |e| match e {
        WatchEvent::Promoted(r) => Some(r.to.clone()),
        _ => None,
    });
    assert_eq!(promoted, "2");
    assert_eq!(f.answer(), 3.0);
}

#[test]
fn a_version_that_fails_to_load_is_refused_with_the_loader_error() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder());
    f.publish("2", "not a number");
    let refusal = expect(&rx, "refused", |e| match e {
        WatchEvent::Refused(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(refusal.kind, RefusalKind::Load);
    assert!(
        refusal.reason.contains("invalid float"),
        "{}",
        refusal.reason
    );
    assert!(refusal.report.is_none());
    assert_eq!(f.answer(), 1.0);
    assert_eq!(w.status().refused[0].kind, RefusalKind::Load);
}

#[test]
fn a_panicking_loader_is_a_refusal_and_the_watcher_keeps_working() {
    let f = Fixture::new();
    let (_w, rx) = f.spawn(f.builder());
    f.publish("2", "panic");
    let refusal = expect(&rx, "refused", |e| match e {
        WatchEvent::Refused(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(refusal.kind, RefusalKind::Load);
    assert!(
        refusal.reason.contains("the loader panicked"),
        "{}",
        refusal.reason
    );
    assert_eq!(f.answer(), 1.0);
    f.publish("3", "3.0");
    expect(&rx, "promoted", |e| {
        matches!(e, WatchEvent::Promoted(_)).then_some(())
    });
    assert_eq!(f.answer(), 3.0);
}

#[test]
fn polling_alone_finds_and_promotes_new_versions() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder().polling_only());
    assert_eq!(w.status().backend, Backend::Poll);
    f.publish("2", "2.0");
    expect(&rx, "promoted", |e| {
        matches!(e, WatchEvent::Promoted(_)).then_some(())
    });
    assert_eq!(f.answer(), 2.0);
}

#[test]
fn newest_version_mode_never_downgrades_nor_repromotes_after_a_manual_rollback() {
    let f = Fixture::new();
    let (w, rx) = f.spawn(f.builder());
    f.publish("2", "2.0");
    expect(&rx, "promoted", |e| {
        matches!(e, WatchEvent::Promoted(_)).then_some(())
    });
    f.bg.rollback().unwrap();
    assert_eq!(f.answer(), 1.0);
    settle(&w, 3);
    assert_eq!(f.answer(), 1.0, "the operator's rollback stands");
    assert_eq!(f.loads(), 1);
    // An older version published later is not a target either.
    f.publish("0", "5.0");
    settle(&w, 3);
    assert_eq!(f.answer(), 1.0);
    assert_eq!(f.loads(), 1);
}

#[test]
fn desired_version_manifest_converges_rolls_back_instantly_and_waits_for_missing_versions() {
    let f = Fixture::new();
    f.publish("2", "2.0");
    let manifest_dir = tempfile::tempdir().unwrap();
    let manifest = manifest_dir.path().join("desired-version");
    std::fs::write(&manifest, "1\n").unwrap();
    let (w, rx) = f.spawn(f.builder().follow_manifest(&manifest));
    settle(&w, 2);
    assert_eq!(
        f.answer(),
        1.0,
        "newer versions are ignored in manifest mode"
    );
    assert_eq!(f.loads(), 0);

    std::fs::write(&manifest, "version: 2\n").unwrap();
    expect(&rx, "promoted", |e| {
        matches!(e, WatchEvent::Promoted(_)).then_some(())
    });
    assert_eq!(f.answer(), 2.0);

    // Back to 1: it is the previous model, still loaded, so it is a rollback, no load.
    std::fs::write(&manifest, "1").unwrap();
    let back = expect(&rx, "rolled back", |e| match e {
        WatchEvent::RolledBack(r) => Some(r.to.clone()),
        _ => None,
    });
    assert_eq!(back, "1");
    assert_eq!(f.answer(), 1.0);
    assert_eq!(f.loads(), 1);

    // A version this replica does not have: reported, nothing changes.
    std::fs::write(&manifest, "7").unwrap();
    let why = expect(&rx, "waiting", |e| match e {
        WatchEvent::Waiting { version, reason } if version == "7" => Some(reason.clone()),
        _ => None,
    });
    assert!(why.contains("not in this replica's repository"), "{why}");
    let ws = w.status();
    assert_eq!(ws.desired.as_deref(), Some("7"));
    assert!(ws.waiting.unwrap().contains('7'));
    assert_eq!(f.answer(), 1.0);

    // A broken manifest is reported as a scan failure; the model keeps serving.
    std::fs::write(&manifest, "../../etc").unwrap();
    let error = expect(&rx, "scan failed", |e| match e {
        WatchEvent::ScanFailed { error } => Some(error.clone()),
        _ => None,
    });
    assert!(error.contains("not a valid version name"), "{error}");
    assert_eq!(f.answer(), 1.0);
}

#[test]
fn the_watchers_own_reads_do_not_wake_it_again() {
    // Listing the repository, reading the manifest and loading a model open files, which
    // inotify reports; the watcher must not take its own reads for changes (a busy loop).
    let f = Fixture::new();
    let manifest_dir = tempfile::tempdir().unwrap();
    let manifest = manifest_dir.path().join("desired-version");
    std::fs::write(&manifest, "1").unwrap();
    let (w, rx) = f.spawn(
        f.builder()
            .poll_interval(Duration::from_secs(3600))
            .follow_manifest(&manifest),
    );
    assert_eq!(w.status().backend, Backend::Notify);
    f.publish("2", "2.0");
    std::fs::write(&manifest, "2").unwrap();
    expect(&rx, "promoted", |e| {
        matches!(e, WatchEvent::Promoted(_)).then_some(())
    });
    let scans = w.status().scans;
    // No poll is due for an hour and nothing changes: no further look may happen.
    assert!(
        !w.wait_for_scans(scans + 3, Duration::from_secs(1)),
        "the watcher keeps waking itself: {} looks",
        w.status().scans
    );
}

#[test]
fn a_missing_repository_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bg = Arc::new(BlueGreen::new("1", Scale(1.0)).unwrap());
    let missing = dir.path().join("nope");
    let err = Watcher::builder(missing.as_path())
        .spawn(bg, |_: &VersionDir| Ok::<_, std::io::Error>(Scale(2.0)))
        .unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// The real thing: digits ONNX models copied into a repository, gated by the golden set.
#[cfg(feature = "onnx")]
#[test]
fn real_onnx_versions_are_promoted_when_good_and_refused_when_degraded() {
    use bluegreen::gates::GoldenGates;
    use bluegreen::{GoldenSet, OnnxBinding, OnnxModel};

    let digits = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits");
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::new(dir.path());
    let copy = |from: &str, to: &str| {
        std::fs::create_dir_all(dir.path().join(to)).unwrap();
        std::fs::copy(
            digits.join(from).join("model.onnx"),
            dir.path().join(to).join("model.onnx"),
        )
        .unwrap();
        repo.mark_complete(to).unwrap();
    };
    copy("1", "1");
    let golden = GoldenSet::npz(digits.join("golden.npz"))
        .labels("labels")
        .load()
        .unwrap();
    let gates = GoldenGates::new(golden, OnnxBinding::classifier());
    let load = |v: &VersionDir| OnnxModel::builder().pool_size(1).load(v.file("model.onnx"));
    let bg = Arc::new(
        BlueGreen::builder()
            .validator(gates.accuracy(0.9))
            .build("1", load(&repo.version("1").unwrap()).unwrap())
            .unwrap(),
    );
    let (tx, rx) = unbounded();
    let _w = Watcher::builder(repo.clone())
        .poll_interval(Duration::from_millis(100))
        .on_event(move |e| {
            let _ = tx.send(e.clone());
        })
        .spawn(Arc::clone(&bg), load)
        .unwrap();

    copy("2", "2");
    let to = expect(&rx, "promoted", |e| match e {
        WatchEvent::Promoted(r) => Some(r.to.clone()),
        _ => None,
    });
    assert_eq!(to, "2");
    // v3 was trained on shuffled labels.
    copy("3", "3");
    let refusal = expect(&rx, "refused", |e| match e {
        WatchEvent::Refused(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(
        (refusal.version.as_str(), refusal.kind),
        ("3", RefusalKind::Validation)
    );
    assert!(refusal.reason.contains("accuracy"), "{}", refusal.reason);
    assert_eq!(bg.active().version(), "2");
}
