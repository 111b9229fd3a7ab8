//! The deployment journal (issue #15), in one process: a "restart" is dropping the
//! deployment and building a new one on the same file. What survives — the version last
//! live, the bans, content identities — and what happens when the file cannot be written
//! (another writer holds the lock, the file was removed): the admin operation is refused
//! whole, the live model keeps serving, facts stay pending and are written later.
//! Crashes with real processes killed by SIGKILL are in `journal_crash.rs`.
#![cfg(feature = "journal")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bluegreen::journal::{EventKind, Journal, JournalError};
use bluegreen::{Actor, Bake, BlueGreen, Builder, ContentHash, Error, Identity, SlotState};
use common::{Behavior, Tracked, Tracker, tag_is_good, wait_until};

const PATIENCE: Duration = Duration::from_secs(20);

fn journal_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("journal.db")
}

fn builder(path: &Path) -> Builder<Tracked> {
    BlueGreen::builder()
        .name("digits")
        .validator(tag_is_good())
        .journal(path)
}

/// `version` with the hash of `bytes`, as a repository would identify it.
fn id(version: &str, bytes: &str) -> Identity {
    Identity::new(version).with_content(ContentHash::of_bytes(bytes.as_bytes()))
}

fn kinds(bg: &BlueGreen<Tracked>) -> Vec<EventKind> {
    bg.history(1000).unwrap().iter().map(|e| e.kind).collect()
}

fn failing_bake() -> Bake {
    Bake::for_duration(Duration::from_secs(60))
        .max_error_rate(0.05)
        .min_samples(10)
        .check_every(Duration::from_millis(2))
}

/// Calls `predict` until `done` holds, bounded.
fn drive(bg: &BlueGreen<Tracked>, mut done: impl FnMut(&BlueGreen<Tracked>) -> bool) {
    let ok = wait_until(PATIENCE, || {
        for i in 0..10 {
            let _ = bg.predict(&i);
        }
        done(bg)
    });
    assert!(ok, "condition not reached: {}", bg.status());
}

#[test]
fn a_restart_resumes_on_the_version_last_committed_as_live_and_keeps_its_bans() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    {
        let mut b = builder(&path);
        let resume = b.resume().unwrap();
        assert_eq!(resume.live, None, "a new journal knows nothing");
        assert_eq!(resume.events, 0);
        let bg = b.build(id("1", "one"), t.model(1)).unwrap();
        bg.stage(id("2", "two"), t.model(2)).unwrap();
        bg.swap().unwrap();
        bg.stage(id("3", "three"), t.model(3).bad()).unwrap();
        assert!(matches!(bg.swap(), Err(Error::ValidationFailed(_))));
        assert_eq!(bg.bans().len(), 1);
        assert_eq!(bg.predict(&5).unwrap(), (2, 5));
    }
    let mut b = builder(&path);
    let resume = b.resume().unwrap();
    let live = resume.live.clone().expect("a live version");
    assert_eq!(live.identity, id("2", "two"));
    assert_eq!(live.since, EventKind::Swap);
    assert!(!live.baking, "no bake configured");
    assert_eq!(resume.live_history, [id("2", "two"), id("1", "one")]);
    assert_eq!(resume.bans.len(), 1);
    let ban = &resume.bans[0];
    assert_eq!(
        (&ban.identity, ban.kind, ban.actor.as_str()),
        (&id("3", "three"), EventKind::Refusal, "application")
    );
    assert!(ban.reason.contains("tag_is_good"), "{}", ban.reason);
    assert_eq!(resume.last_pid, Some(std::process::id()));

    let bg = b.build(live.identity, t.model(2)).unwrap();
    // The refused bytes stay refused — by anyone, after the restart …
    let err = bg
        .acting_as(Actor::admin("alice"))
        .stage(id("3", "three"), t.model(3))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Banned { version, content: Some(_), .. } if version == "3"),
        "{err:?}"
    );
    assert!(err.to_string().contains("unban"), "{err}");
    assert!(bg.status().standby.is_none(), "nothing was staged");
    // … while new bytes under the same label are a new candidate.
    bg.stage(id("3", "three, fixed"), t.model(33)).unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.predict(&1).unwrap(), (33, 1));
}

#[test]
fn a_restart_after_an_automatic_rollback_comes_back_on_the_rolled_back_to_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    {
        let bg = builder(&path)
            .bake(failing_bake())
            .build(id("1", "one"), t.model(1))
            .unwrap();
        bg.stage(id("2", "two"), t.model_with(2, Behavior::Failing))
            .unwrap();
        bg.swap().unwrap();
        drive(&bg, |bg| bg.status().auto_rollbacks == 1);
        let j = bg.status().journal.unwrap();
        assert_eq!((j.pending, j.healthy), (0, true), "{j:?}");
    }
    let mut b = builder(&path).bake(failing_bake());
    let resume = b.resume().unwrap();
    let live = resume.live.clone().unwrap();
    assert_eq!(live.identity, id("1", "one"));
    assert_eq!(live.since, EventKind::AutoRollback);
    assert_eq!(resume.bans.len(), 1);
    assert_eq!(resume.bans[0].identity, id("2", "two"));
    assert_eq!(resume.bans[0].kind, EventKind::AutoRollback);
    assert_eq!(resume.bans[0].actor, "bake");
    assert!(
        resume.bans[0].reason.starts_with("error rate"),
        "{}",
        resume.bans[0].reason
    );
    // Starting on the banned version itself is refused too.
    let err = builder(&path)
        .build(id("2", "two"), t.model(2))
        .unwrap_err();
    assert!(matches!(err, Error::Banned { .. }), "{err:?}");
    let bg = b.build(live.identity, t.model(1)).unwrap();
    assert_eq!(bg.predict(&3).unwrap(), (1, 3));
}

#[test]
fn unban_is_recorded_with_who_asked_and_lets_the_same_bytes_be_staged_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    let bg = builder(&path).build(id("1", "one"), t.model(1)).unwrap();
    bg.stage(id("2", "two"), t.model(2)).unwrap();
    bg.swap().unwrap();
    let bob = bg.acting_as(Actor::admin("bob"));
    bob.rollback().unwrap();
    assert!(matches!(
        bg.stage(id("2", "two"), t.model(2)),
        Err(Error::Banned { .. })
    ));
    assert_eq!(bg.acting_as(Actor::admin("carol")).unban("2").unwrap(), 1);
    assert_eq!(bg.unban("2").unwrap(), 0, "nothing left to lift");
    bg.stage(id("2", "two"), t.model(2)).unwrap();
    bg.swap().unwrap();

    let history = bg.history(100).unwrap();
    let rollback = history
        .iter()
        .find(|e| e.kind == EventKind::Rollback)
        .unwrap();
    assert_eq!(rollback.actor, "admin:bob");
    assert!(rollback.ban);
    assert_eq!(rollback.subject, Some(id("2", "two")));
    assert_eq!(rollback.from, Some(id("2", "two")));
    assert_eq!(rollback.live, id("1", "one"));
    let unban = history.iter().find(|e| e.kind == EventKind::Unban).unwrap();
    assert_eq!(unban.actor, "admin:carol");
    assert_eq!(unban.subject.as_ref().map(Identity::version), Some("2"));
    drop(bg);
    assert!(
        builder(&path).resume().unwrap().bans.is_empty(),
        "the unban survives a restart"
    );
}

#[test]
fn a_rollback_by_the_watcher_following_its_manifest_bans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tracker::new();
    let bg = builder(&journal_in(&dir))
        .build(id("1", "one"), t.model(1))
        .unwrap();
    bg.stage(id("2", "two"), t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.acting_as(Actor::Watcher).rollback().unwrap();
    assert!(bg.bans().is_empty());
    let rollback = bg
        .history(100)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == EventKind::Rollback)
        .unwrap();
    assert_eq!((rollback.actor.as_str(), rollback.ban), ("watcher", false));
}

#[test]
fn every_decision_is_one_row_with_versions_content_generation_actor_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    let bg = builder(&path).build(id("1", "one"), t.model(1)).unwrap();
    let ops = bg.acting_as(Actor::admin("ci"));
    let staged = ops.stage(id("2", "two"), t.model(2)).unwrap();
    ops.validate().unwrap();
    ops.start_canary(10.0).unwrap();
    ops.set_canary_percent(50.0).unwrap();
    ops.promote_canary().unwrap();
    ops.stage(id("3", "three"), t.model(3)).unwrap();
    ops.start_canary(5.0).unwrap();
    ops.abort_canary().unwrap();
    ops.unstage().unwrap();
    assert_eq!(
        kinds(&bg),
        [
            EventKind::Start,
            EventKind::Stage,
            EventKind::Validation,
            EventKind::CanaryStart,
            EventKind::CanaryStep,
            EventKind::CanaryPromote,
            EventKind::Stage,
            EventKind::CanaryStart,
            EventKind::CanaryAbort,
            EventKind::Retire,
        ]
    );
    let rows = bg.history(100).unwrap();
    let stage = &rows[1];
    assert_eq!(stage.subject, Some(id("2", "two")));
    assert_eq!(stage.generation, Some(staged.generation));
    assert_eq!(stage.live, id("1", "one"), "staging moves no traffic");
    assert_eq!(
        (stage.actor.as_str(), stage.pid),
        ("admin:ci", std::process::id())
    );
    let validation = &rows[2].detail.as_ref().unwrap()["report"];
    assert_eq!(validation["candidate"], "2");
    assert_eq!(validation["checks"][0]["name"], "tag_is_good");
    assert_eq!(rows[4].detail.as_ref().unwrap()["percent"], 50.0);
    let promote = &rows[5];
    assert_eq!(promote.from, Some(id("1", "one")));
    assert_eq!(promote.live, id("2", "two"));
    assert!(rows[8].ban, "an aborted canary is banned");
    assert_eq!(
        rows[9].subject,
        Some(id("3", "three")),
        "the aborted canary was retired"
    );
    assert!(
        rows.windows(2)
            .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at)
    );

    // The shell sees the same file: the views say what is live and what is banned.
    let db = rusqlite::Connection::open(&path).unwrap();
    let live: (String, String) = db
        .query_row(
            "SELECT version, content FROM live WHERE model = 'digits'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        live,
        ("2".to_owned(), ContentHash::of_bytes(b"two").to_string())
    );
    let banned: Vec<String> = db
        .prepare("SELECT version FROM bans WHERE model = 'digits'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(banned, ["3"]);
    let (mode, sync): (String, i64) = (
        db.query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap(),
        db.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap(),
    );
    assert_eq!((mode.as_str(), sync), ("wal", 1));
}

#[test]
fn a_version_replaced_in_place_is_reported_while_live_and_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    {
        let bg = builder(&path).build(id("1", "one"), t.model(1)).unwrap();
        // Its files now hash differently: reported, recorded, and nothing else changes.
        let err = bg.check_content(&id("1", "one, replaced")).unwrap_err();
        assert!(
            matches!(&err, Error::ContentChanged { version, at_start: false, .. } if version == "1"),
            "{err:?}"
        );
        let change = bg.status().content_changed.expect("reported in status");
        assert_eq!(change.loaded, ContentHash::of_bytes(b"one"));
        assert_eq!(change.found, ContentHash::of_bytes(b"one, replaced"));
        assert!(bg.status().to_string().contains("content changed"));
        // Asking again is not a second row.
        let _ = bg.check_content(&id("1", "one, replaced"));
        assert!(bg.check_content(&id("1", "one")).is_ok());
        assert!(bg.check_content(&id("7", "other")).is_ok(), "another label");
        assert_eq!(
            bg.predict(&1).unwrap(),
            (1, 1),
            "the loaded model keeps serving"
        );
        let changed = bg
            .history(100)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::ContentChanged)
            .count();
        assert_eq!(changed, 1);
    }
    // After a restart, the label the journal knows as live with other bytes is refused:
    // the new bytes are never loaded silently under the old name.
    let err = builder(&path)
        .build(id("1", "one, replaced"), t.model(11))
        .unwrap_err();
    assert!(
        matches!(&err, Error::ContentChanged { at_start: true, expected, found, .. }
            if *expected == ContentHash::of_bytes(b"one") && *found == ContentHash::of_bytes(b"one, replaced")),
        "{err:?}"
    );
    let journal = Journal::open(&path).unwrap();
    let last = journal.history("digits", 1).unwrap().pop().unwrap();
    assert_eq!(last.kind, EventKind::ContentChanged);
    assert_eq!(last.subject, Some(id("1", "one, replaced")));
    // The same bytes start as before.
    builder(&path).build(id("1", "one"), t.model(1)).unwrap();
}

#[test]
fn a_writer_holding_the_lock_refuses_decisions_whole_while_the_model_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    let bg = builder(&path)
        .journal_lock_timeout(Duration::from_millis(50))
        .bake(failing_bake())
        .build(id("1", "one"), t.model(1))
        .unwrap();
    bg.stage(id("2", "two"), t.model(2)).unwrap();

    // An operator's sqlite3 shell left inside a write transaction.
    let shell = rusqlite::Connection::open(&path).unwrap();
    shell.execute_batch("BEGIN IMMEDIATE").unwrap();

    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::Journal(JournalError::Sqlite { .. })),
        "{err:?}"
    );
    let s = bg.status();
    assert_eq!(s.active.version, "1", "traffic did not move");
    assert_eq!(
        s.candidate.as_ref().map(|c| (c.version.as_str(), c.state)),
        Some(("2", SlotState::Staged)),
        "the validated candidate stays staged, unharmed"
    );
    let j = s.journal.unwrap();
    assert!(!j.healthy && j.pending == 0, "{j:?}");
    assert!(j.last_error.unwrap().contains("locked"));
    // Staging retires the earlier candidate first; that fact cannot be written, so it
    // stays pending and the stage stops there, before loading anything.
    let loaded = std::cell::Cell::new(false);
    let err = bg
        .stage_with(id("3", "three"), || {
            loaded.set(true);
            Ok::<_, std::io::Error>(t.model(3))
        })
        .unwrap_err();
    assert!(matches!(err, Error::Journal(_)), "{err:?}");
    assert!(!loaded.get());
    let s = bg.status();
    assert!(s.candidate.is_none(), "2 was retired; 3 was not staged");
    assert_eq!(
        s.journal.unwrap().pending,
        1,
        "the retirement waits to be written"
    );
    // While it waits, every decision is refused: the journal never gets a hole.
    assert!(matches!(bg.rollback(), Err(Error::Journal(_))));
    assert_eq!(bg.predict(&9).unwrap(), (1, 9), "serving all along");

    shell.execute_batch("ROLLBACK").unwrap();
    bg.stage(id("3", "three"), t.model(3)).unwrap();
    bg.swap().unwrap();
    assert_eq!(bg.predict(&9).unwrap(), (3, 9));
    assert!(bg.status().journal.unwrap().healthy);
}

#[test]
fn an_automatic_rollback_happens_even_when_the_journal_cannot_record_it_and_is_written_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    let bg = builder(&path)
        .journal_lock_timeout(Duration::from_millis(50))
        .bake(failing_bake())
        .build(id("1", "one"), t.model(1))
        .unwrap();
    bg.stage(id("2", "two"), t.model_with(2, Behavior::Failing))
        .unwrap();
    bg.swap().unwrap();
    let shell = rusqlite::Connection::open(&path).unwrap();
    shell.execute_batch("BEGIN IMMEDIATE").unwrap();

    drive(&bg, |bg| bg.status().auto_rollbacks == 1);
    let s = bg.status();
    assert_eq!(s.active.version, "1", "rolled back regardless");
    let j = s.journal.unwrap();
    assert_eq!((j.pending, j.healthy, j.bans), (1, false, 1), "{j:?}");
    assert!(matches!(
        bg.stage(id("2", "two"), t.model(2)),
        Err(Error::Journal(_))
    ));

    shell.execute_batch("ROLLBACK").unwrap();
    // The next operation writes the pending row first, then its own.
    assert!(matches!(
        bg.stage(id("2", "two"), t.model(2)),
        Err(Error::Banned { .. })
    ));
    let tail: Vec<EventKind> = kinds(&bg).into_iter().rev().take(2).collect();
    assert_eq!(tail, [EventKind::Refusal, EventKind::AutoRollback]);
    drop(bg);
    let resume = builder(&path).resume().unwrap();
    assert_eq!(resume.live.unwrap().identity, id("1", "one"));
    assert_eq!(resume.bans.len(), 1);
}

#[test]
fn a_journal_file_removed_while_running_refuses_decisions_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    let bg = builder(&path).build(id("1", "one"), t.model(1)).unwrap();
    bg.stage(id("2", "two"), t.model(2)).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let err = bg.swap().unwrap_err();
    assert!(
        matches!(&err, Error::Journal(JournalError::Moved { path: p }) if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("restart"), "{err}");
    assert_eq!(bg.predict(&2).unwrap(), (1, 2));
    assert_eq!(bg.status().candidate.unwrap().state, SlotState::Staged);
    assert!(
        !path.exists(),
        "nothing re-created behind the operator's back"
    );
}

#[test]
fn files_that_are_not_this_journal_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let t = Tracker::new();
    // Another application's SQLite database.
    let other = dir.path().join("other.db");
    let db = rusqlite::Connection::open(&other).unwrap();
    db.execute_batch("CREATE TABLE orders (id INTEGER)")
        .unwrap();
    drop(db);
    let err = builder(&other).build("1", t.model(1)).unwrap_err();
    assert!(
        matches!(err, Error::Journal(JournalError::NotAJournal { .. })),
        "{err:?}"
    );
    // A journal written by a newer build.
    let newer = journal_in(&dir);
    drop(builder(&newer).build("1", t.model(1)).unwrap());
    let db = rusqlite::Connection::open(&newer).unwrap();
    db.execute_batch("PRAGMA user_version = 9").unwrap();
    drop(db);
    let err = builder(&newer).resume().unwrap_err();
    assert!(
        matches!(
            err,
            Error::Journal(JournalError::Schema {
                found: 9,
                known: 1,
                ..
            })
        ),
        "{err:?}"
    );
    // Not a database at all.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 4096]).unwrap();
    let err = builder(&junk).build("1", t.model(1)).unwrap_err();
    assert!(
        matches!(err, Error::Journal(JournalError::Sqlite { .. })),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&junk).unwrap(), vec![0x5a; 4096]);
}

#[test]
fn one_file_holds_several_deployments_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_in(&dir);
    let t = Tracker::new();
    let a = builder(&path).name("a").build("1", t.model(1)).unwrap();
    let b = builder(&path).name("b").build("7", t.model(7)).unwrap();
    a.stage("2", t.model(2)).unwrap();
    a.swap().unwrap();
    b.stage("8", t.model(8).bad()).unwrap();
    assert!(b.swap().is_err());
    drop((a, b));
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.models().unwrap(), ["a", "b"]);
    let (ra, rb) = (journal.resume("a").unwrap(), journal.resume("b").unwrap());
    assert_eq!(ra.live.unwrap().identity, Identity::new("2"));
    assert!(ra.bans.is_empty());
    assert_eq!(rb.live.unwrap().identity, Identity::new("7"));
    assert_eq!(rb.bans[0].identity, Identity::new("8"));
}
