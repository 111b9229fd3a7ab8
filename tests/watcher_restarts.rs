//! The repository watcher and what it learned with the journal (issue #15): a "not now"
//! (a model still held) is waited out with backoff and without holding the operation lock,
//! reported once; a live version replaced in place is reported and never loaded; each
//! replica says what it was asked for, what it serves and why they differ; and after a
//! restart the watcher does not promote again a version the journal bans.
#![cfg(feature = "watch")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bluegreen::repository::{Repository, VersionDir};
use bluegreen::watch::{RefusalKind, WatchEvent, Watcher, WatcherBuilder};
use bluegreen::{BlueGreen, Builder, Model, validate};
use crossbeam_channel::{Receiver, unbounded};

const PATIENCE: Duration = Duration::from_secs(20);

/// y = factor · x, loaded from `model.txt`.
struct Scale(f64);

impl Model for Scale {
    type Input = f64;
    type Output = f64;
    type Error = std::convert::Infallible;
    fn predict(&self, x: &f64) -> Result<f64, Self::Error> {
        Ok(self.0 * x)
    }
}

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

struct Fixture {
    dir: tempfile::TempDir,
    repo: Repository,
    loads: Arc<AtomicUsize>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(dir.path().join("repo"));
        std::fs::create_dir(repo.root()).unwrap();
        let f = Fixture {
            dir,
            repo,
            loads: Arc::new(AtomicUsize::new(0)),
        };
        f.publish("1", "1.0");
        f
    }

    fn publish(&self, version: &str, factor: &str) {
        let d = self.repo.root().join(version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("model.txt"), factor).unwrap();
        self.repo.mark_complete(version).unwrap();
    }

    fn builder(&self) -> Builder<Scale> {
        BlueGreen::builder().name("scale").validator(positive())
    }

    /// The deployment on version 1, identified by its files as the watcher identifies
    /// what it stages.
    fn deployment(&self, builder: Builder<Scale>) -> Arc<BlueGreen<Scale>> {
        let one = self
            .repo
            .identity(&self.repo.version("1").unwrap())
            .unwrap();
        Arc::new(builder.build(one, Scale(1.0)).unwrap())
    }

    fn watcher(&self) -> WatcherBuilder {
        Watcher::builder(self.repo.clone())
            .poll_interval(Duration::from_millis(50))
            .debounce(Duration::from_millis(5))
    }

    fn spawn(
        &self,
        builder: WatcherBuilder,
        bg: &Arc<BlueGreen<Scale>>,
    ) -> (Watcher, Receiver<WatchEvent>) {
        let (tx, rx) = unbounded();
        let loads = Arc::clone(&self.loads);
        let w = builder
            .on_event(move |e| {
                let _ = tx.send(e.clone());
            })
            .spawn(Arc::clone(bg), move |v: &VersionDir| {
                loads.fetch_add(1, Ordering::SeqCst);
                let factor: f64 = std::fs::read_to_string(v.file("model.txt"))?
                    .trim()
                    .parse()?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Scale(factor))
            })
            .unwrap();
        (w, rx)
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

fn expect<T>(
    rx: &Receiver<WatchEvent>,
    what: &str,
    mut pick: impl FnMut(&WatchEvent) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(e) => match pick(&e) {
                Some(v) => return v,
                None => seen.push(e.to_string()),
            },
            Err(_) => panic!("no {what} event; saw {seen:#?}"),
        }
    }
}

fn settle(w: &Watcher, n: u64) {
    let target = w.status().scans + n;
    assert!(
        w.wait_for_scans(target, PATIENCE),
        "the watcher stopped looking"
    );
}

fn promoted(rx: &Receiver<WatchEvent>) -> String {
    expect(rx, "promoted", |e| match e {
        WatchEvent::Promoted(r) => Some(r.to.clone()),
        _ => None,
    })
}

#[test]
fn a_held_model_is_waited_out_with_backoff_never_holding_the_operation_lock() {
    let f = Fixture::new();
    let bg = f.deployment(f.builder());
    let op_lock = Arc::new(Mutex::new(()));
    let (w, rx) = f.spawn(f.watcher().operation_lock(Arc::clone(&op_lock)), &bg);
    // A request pinned to version 1 outlives the swap: 1 becomes the previous model and
    // cannot drain, so promoting 3 (which retires it) has to wait.
    let pin = bg.active();
    f.publish("2", "2.0");
    assert_eq!(promoted(&rx), "2");
    f.publish("3", "3.0");
    let reason = expect(&rx, "deferred", |e| match e {
        WatchEvent::Deferred { version, reason } if version == "3" => Some(reason.clone()),
        _ => None,
    });
    assert!(
        reason.contains("1 (previous) is still held by 1"),
        "{reason}"
    );
    for _ in 0..10 {
        settle(&w, 1);
        // Between and during its looks the watcher never sits on the lock.
        assert!(
            op_lock.try_lock().is_ok(),
            "the watcher holds the operation lock"
        );
    }
    assert_eq!(f.loads(), 1, "3 was not even loaded while 1 was held");
    let st = w.status();
    assert!(st.next_retry.is_some(), "{st:?}");
    assert!(!st.converged);
    assert!(
        st.divergence
            .as_deref()
            .unwrap()
            .starts_with("deferred: 1 (previous)"),
        "{st:?}"
    );
    let deferred = rx
        .try_iter()
        .filter(|e| matches!(e, WatchEvent::Deferred { .. }))
        .count();
    assert_eq!(deferred, 0, "reported once, not on every retry");

    // The version goes away and comes back: it is reported afresh (the watcher forgot it).
    std::fs::remove_dir_all(f.repo.root().join("3")).unwrap();
    settle(&w, 2);
    f.publish("3", "3.0");
    expect(&rx, "deferred again", |e| {
        matches!(e, WatchEvent::Deferred { version, .. } if version == "3").then_some(())
    });

    drop(pin);
    assert_eq!(promoted(&rx), "3");
    assert_eq!(bg.predict(&1.0).unwrap(), 3.0);
    settle(&w, 1);
    let st = w.status();
    assert!(
        st.converged && st.divergence.is_none() && st.next_retry.is_none(),
        "{st:?}"
    );
}

#[test]
fn a_live_version_replaced_in_place_is_reported_and_never_loaded() {
    let f = Fixture::new();
    let bg = f.deployment(f.builder());
    let (w, rx) = f.spawn(f.watcher(), &bg);
    f.publish("2", "2.0");
    assert_eq!(promoted(&rx), "2");
    let loaded = bg.active().content().unwrap();
    // Someone overwrites version 2's weights, and even marks it complete again.
    f.publish("2", "20.0");
    let (version, was, now) = expect(&rx, "content changed", |e| match e {
        WatchEvent::ContentChanged {
            version,
            loaded,
            found,
        } => Some((version.clone(), *loaded, *found)),
        _ => None,
    });
    assert_eq!((version.as_str(), was), ("2", loaded));
    let expected = f.repo.identity(&f.repo.version("2").unwrap()).unwrap();
    assert_eq!(Some(now), expected.content());
    settle(&w, 3);
    assert_eq!(f.loads(), 1, "the new bytes were not loaded");
    assert_eq!(
        bg.predict(&1.0).unwrap(),
        2.0,
        "the loaded model keeps serving"
    );
    let change = bg
        .status()
        .content_changed
        .expect("the deployment reports it");
    assert_eq!((change.loaded, change.found), (loaded, now));
    assert!(
        w.status()
            .content_changed
            .unwrap()
            .starts_with("2: files hash to")
    );
    assert_eq!(
        rx.try_iter()
            .filter(|e| matches!(e, WatchEvent::ContentChanged { .. }))
            .count(),
        0,
        "reported once per new hash"
    );
    // Put back, nothing is reported any more.
    f.publish("2", "2.0");
    settle(&w, 3);
    assert!(w.status().content_changed.is_none());
}

#[test]
fn a_replica_reports_what_it_was_asked_for_what_it_serves_and_why_they_differ() {
    let f = Fixture::new();
    let bg = f.deployment(f.builder());
    let manifest = f.dir.path().join("desired-version");
    std::fs::write(&manifest, "1").unwrap();
    f.publish("2", "-2.0"); // its gate refuses it
    let (w, rx) = f.spawn(f.watcher().follow_manifest(&manifest), &bg);
    settle(&w, 1);
    let st = w.status();
    assert_eq!(
        (st.desired.as_deref(), st.active.as_deref(), st.converged),
        (Some("1"), Some("1"), true)
    );

    std::fs::write(&manifest, "2").unwrap();
    expect(&rx, "refused", |e| {
        matches!(e, WatchEvent::Refused(_)).then_some(())
    });
    settle(&w, 1);
    let st = w.status();
    assert_eq!(
        (st.desired.as_deref(), st.active.as_deref()),
        (Some("2"), Some("1"))
    );
    assert!(!st.converged);
    let why = st.divergence.unwrap();
    assert!(
        why.starts_with("refused (validation)") && why.contains("positive"),
        "{why}"
    );

    std::fs::write(&manifest, "7").unwrap();
    settle(&w, 2);
    let why = w.status().divergence.unwrap();
    assert!(why.contains("not in this replica's repository"), "{why}");
}

/// With a journal: the operator rolled 2 back, the process restarts, and the watcher —
/// which sees 2 as the newest version again — must not promote it; new bytes may go.
#[cfg(feature = "journal")]
#[test]
fn after_a_restart_the_watcher_does_not_promote_a_version_rolled_back_before() {
    let f = Fixture::new();
    let journal = f.dir.path().join("journal.db");
    {
        let bg = f.deployment(f.builder().journal(&journal));
        let (w, rx) = f.spawn(f.watcher(), &bg);
        f.publish("2", "2.0");
        assert_eq!(promoted(&rx), "2");
        bg.acting_as(bluegreen::Actor::admin("oncall"))
            .rollback()
            .unwrap();
        drop(w);
    }
    let mut b = f.builder().journal(&journal);
    let resume = b.resume().unwrap();
    let live = resume.live_identity().unwrap().clone();
    assert_eq!(live.version(), "1");
    let bg = Arc::new(b.build(live, Scale(1.0)).unwrap());
    let loads = f.loads();
    let (w, rx) = f.spawn(f.watcher(), &bg);
    let refusal = expect(&rx, "refused", |e| match e {
        WatchEvent::Refused(r) => Some(r.clone()),
        _ => None,
    });
    assert_eq!(
        (refusal.version.as_str(), refusal.kind),
        ("2", RefusalKind::Banned)
    );
    assert!(
        refusal.reason.contains("rollback by admin:oncall"),
        "{}",
        refusal.reason
    );
    settle(&w, 3);
    assert_eq!(f.loads(), loads, "a banned version is not even loaded");
    assert_eq!(bg.predict(&1.0).unwrap(), 1.0);
    assert!(
        w.status()
            .divergence
            .unwrap()
            .starts_with("refused (banned)")
    );

    // A fixed upload under the same name is new content: promoted.
    f.publish("2", "2.5");
    assert_eq!(promoted(&rx), "2");
    assert_eq!(bg.predict(&1.0).unwrap(), 2.5);
    let history = bg.history(50).unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (bluegreen::journal::EventKind::Swap, "watcher")
    );
}
