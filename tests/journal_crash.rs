//! The journal survives real crashes (issue #15): a child process — this test binary run
//! again in "child" mode — stages, swaps, rolls back and lets the bake window roll back
//! on its own against one journal file, and the test kills it with SIGKILL at random
//! moments (seeded), about 200 cycles in all. After every kill the journal must open
//! clean (`PRAGMA integrity_check`), tell a coherent story (every row's live model follows
//! from the one before; nothing banned at the time is promoted), hold every decision the
//! child had reported done, and the next child must resume on the version it names last.
//! A second test fills the disk (a file-size limit on the child) and checks that the
//! decision it could not record was refused whole.
#![cfg(feature = "journal")]

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bluegreen::{Bake, BlueGreen, Builder, ContentHash, Error, Identity};
use common::{Behavior, Tracked, Tracker, tag_is_good, wait_until};

const CHILD_ENV: &str = "BLUEGREEN_JOURNAL_CHILD";
const CYCLES: u64 = 200;
const BUDGET: Duration = Duration::from_secs(90);

/// splitmix64: a seeded, reproducible stream (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a version does, from its name: `g…` good, `b…` refused by its gate, `f…` fails
/// every call once live (the bake rolls it back). Its bytes are its name, so the same
/// version has the same content hash in every process.
fn identity(version: &str) -> Identity {
    Identity::new(version).with_content(ContentHash::of_bytes(version.as_bytes()))
}

fn model(t: &std::sync::Arc<Tracker>, version: &str) -> Tracked {
    let tag = version[1..].parse().unwrap_or(0);
    match &version[..1] {
        "b" => t.model(tag).bad(),
        "f" => t.model_with(tag, Behavior::Failing),
        _ => t.model(tag),
    }
}

fn deployment(path: &Path) -> Builder<Tracked> {
    BlueGreen::builder()
        .name("crash")
        .validator(tag_is_good())
        .bake(
            Bake::for_duration(Duration::from_millis(5))
                .min_requests(20)
                .max_error_rate(0.2)
                .min_samples(10)
                .check_every(Duration::from_millis(1)),
        )
        .journal(path)
}

fn run_child(path: &Path, seed: u64) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "journal_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, path)
    .env("BLUEGREEN_JOURNAL_SEED", seed.to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    cmd
}

/// The child: resume, then cycles until killed (or `BLUEGREEN_JOURNAL_CYCLES` are done).
/// Prints `RESUMED v`, then `LIVE v` after every decision that returned and moved traffic,
/// `SERVED v` the first time version `v` answers a request, `CYCLE` after each cycle.
#[test]
#[ignore = "run by the crash tests in a child process"]
fn journal_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seed: u64 = std::env::var("BLUEGREEN_JOURNAL_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let limit: u64 = std::env::var("BLUEGREEN_JOURNAL_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(u64::MAX);
    let mut rng = Rng(seed);
    let t = Tracker::new();
    let mut b = deployment(Path::new(&path));
    let resume = b.resume().unwrap();
    let start = resume
        .live_identity()
        .map_or_else(|| "g0".to_owned(), |i| i.version().to_owned());
    let bg = b.build(identity(&start), model(&t, &start)).unwrap();
    println!("RESUMED {start}");
    if std::env::var("BLUEGREEN_JOURNAL_DISK_FULL").is_ok() {
        return fill_the_disk(&bg, &t);
    }
    let mut banned: Vec<String> = resume
        .bans
        .iter()
        .map(|b| b.identity.version().to_owned())
        .collect();
    let served = std::cell::RefCell::new(HashSet::new());
    let drive = |bg: &BlueGreen<Tracked>, done: &dyn Fn(&BlueGreen<Tracked>) -> bool| {
        assert!(
            wait_until(Duration::from_secs(20), || {
                for i in 0..10 {
                    let answer = bg.predict_versioned(&i);
                    if served.borrow_mut().insert(answer.version.to_owned()) {
                        println!("SERVED {}", answer.version);
                    }
                }
                done(bg)
            }),
            "stuck: {}",
            bg.status()
        );
    };
    for cycle in 0..limit {
        // Now and then, try to bring a banned version back: always refused.
        if !banned.is_empty() && rng.below(6) == 0 {
            let v = banned[rng.below(banned.len() as u64) as usize].clone();
            let err = bg.stage(identity(&v), model(&t, &v)).unwrap_err();
            assert!(matches!(err, Error::Banned { .. }), "{v}: {err:?}");
        }
        let n = seed % 100_000 * 1000 + cycle + 1;
        let kind = ["g", "g", "g", "b", "f"][rng.below(5) as usize];
        let v = format!("{kind}{n}");
        bg.stage(identity(&v), model(&t, &v)).unwrap();
        match (kind, bg.swap()) {
            ("b", Err(Error::ValidationFailed(_))) => banned.push(v),
            ("g", Ok(_)) => {
                println!("LIVE {v}");
                drive(&bg, &|bg| bg.status().bake.is_none());
                if rng.below(4) == 0 {
                    let back = bg.rollback().unwrap();
                    println!("LIVE {}", back.to);
                    banned.push(v);
                }
            }
            ("f", Ok(_)) => {
                println!("LIVE {v}");
                let before = bg.status().auto_rollbacks;
                drive(&bg, &|bg| {
                    let s = bg.status();
                    s.auto_rollbacks > before && s.journal.is_some_and(|j| j.pending == 0)
                });
                println!("LIVE {}", bg.status().active.version);
                banned.push(v);
            }
            (kind, other) => panic!("{kind} {v}: unexpected {other:?}"),
        }
        println!("CYCLE");
    }
}

/// One row, as the invariants need it.
#[derive(Debug)]
struct Row {
    id: i64,
    kind: String,
    version: Option<String>,
    content: Option<String>,
    from_version: Option<String>,
    live: (String, Option<String>),
    ban: bool,
    pid: i64,
    detail: Option<String>,
}

/// Opens the journal as the `sqlite3` shell would and checks it; returns its rows.
fn check_journal(path: &Path) -> Vec<Row> {
    let db = rusqlite::Connection::open(path).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut q = db
        .prepare(
            "SELECT id, kind, version, content, from_version, live_version, live_content, ban,
                    pid, detail FROM events WHERE model = 'crash' ORDER BY id",
        )
        .unwrap();
    let rows: Vec<Row> = q
        .query_map([], |r| {
            Ok(Row {
                id: r.get(0)?,
                kind: r.get(1)?,
                version: r.get(2)?,
                content: r.get(3)?,
                from_version: r.get(4)?,
                live: (r.get(5)?, r.get(6)?),
                ban: r.get(7)?,
                pid: r.get(8)?,
                detail: r.get(9)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Replay: every row follows from the one before it.
    let mut live: Option<(String, Option<String>)> = None;
    let mut bans: HashSet<(String, Option<String>)> = HashSet::new();
    for (i, r) in rows.iter().enumerate() {
        let here = || format!("row {} ({}): {r:?}", r.id, r.kind);
        if let Some(d) = &r.detail {
            serde_json::from_str::<serde_json::Value>(d)
                .unwrap_or_else(|e| panic!("{e}: {}", here()));
        }
        if let Some(c) = r.live.1.as_ref().or(r.content.as_ref()) {
            assert_eq!(c.len(), 64, "{}", here());
        }
        let subject = r.version.clone().map(|v| (v, r.content.clone()));
        match r.kind.as_str() {
            "swap" | "canary_promote" => {
                let s = subject.clone().unwrap_or_else(|| panic!("{}", here()));
                assert_eq!(s, r.live, "a promotion makes its subject live: {}", here());
                assert!(
                    !bans.contains(&s),
                    "a banned version was promoted: {}",
                    here()
                );
            }
            "rollback" | "auto_rollback" => {
                assert_eq!(r.from_version, r.version, "{}", here());
                assert_ne!(Some(&r.live.0), r.version.as_ref(), "{}", here());
                assert_eq!(
                    live.as_ref().map(|l| &l.0),
                    r.version.as_ref(),
                    "rolls back the live model: {}",
                    here()
                );
            }
            "start" => {
                assert_eq!(subject.as_ref(), Some(&r.live), "{}", here());
                assert!(
                    !bans.contains(&r.live),
                    "started on a banned version: {}",
                    here()
                );
                if let Some(before) = &live {
                    assert_eq!(
                        before,
                        &r.live,
                        "a restart resumes on the last live version: {}",
                        here()
                    );
                }
            }
            _ => {
                if let Some(before) = &live {
                    assert_eq!(
                        before,
                        &r.live,
                        "only moves change what is live: {}",
                        here()
                    );
                }
            }
        }
        if r.ban {
            bans.insert(subject.clone().unwrap());
        }
        if r.kind == "unban" {
            bans.retain(|(v, _)| Some(v) != r.version.as_ref());
        }
        assert!(i == 0 || rows[i - 1].id < r.id);
        live = Some(r.live.clone());
    }
    rows
}

/// The traffic moves a process made, as the journal has them.
fn moves_of(rows: &[Row], pid: i64) -> Vec<String> {
    rows.iter()
        .filter(|r| r.pid == pid)
        .filter(|r| {
            matches!(
                r.kind.as_str(),
                "swap" | "rollback" | "auto_rollback" | "canary_promote"
            )
        })
        .map(|r| r.live.0.clone())
        .collect()
}

#[test]
fn sigkill_at_random_points_leaves_a_journal_that_resumes_on_the_last_committed_version() {
    let seed = std::env::var("BLUEGREEN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_u64);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let started = Instant::now();
    let (mut cycles, mut kills) = (0u64, 0u32);
    let mut expected_resume = "g0".to_owned();
    while cycles < CYCLES {
        assert!(
            started.elapsed() < BUDGET,
            "seed {seed}: only {cycles} cycles in {BUDGET:?}"
        );
        let mut child = run_child(&path, rng.next()).spawn().unwrap();
        let pid = i64::from(child.id());
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        // Wait for it to resume, then let it run a random while and kill it.
        // (libtest prints "test journal_child ... " before the child's first line.)
        let first = loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.contains("RESUMED ") => {
                    break l[l.find("RESUMED ").unwrap()..].to_owned();
                }
                Ok(_) => continue,
                Err(e) => panic!("seed {seed}: the child did not start: {e}"),
            }
        };
        assert_eq!(
            first,
            format!("RESUMED {expected_resume}"),
            "seed {seed}: resumed on the version the journal names last"
        );
        std::thread::sleep(Duration::from_millis(20 + rng.below(400)));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        reader.join().unwrap();
        assert!(
            !status.success(),
            "seed {seed}: the child finished before the kill"
        );
        kills += 1;
        let lines: Vec<String> = rx.try_iter().collect();
        cycles += lines.iter().filter(|l| *l == "CYCLE").count() as u64;
        let reported: Vec<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("LIVE ").map(str::to_owned))
            .collect();

        let rows = check_journal(&path);
        // Everything the child reported done is in the journal, in order; the journal
        // may hold one decision more (recorded, then killed before it returned).
        let journaled = moves_of(&rows, pid);
        assert!(
            journaled.len() >= reported.len() && journaled[..reported.len()] == reported[..],
            "seed {seed}, kill {kills}: reported {reported:?}, journal {journaled:?}"
        );
        assert!(
            journaled.len() <= reported.len() + 1,
            "seed {seed}: {journaled:?} vs {reported:?}"
        );
        // A version that answered a request was journaled as live before it did.
        for v in lines.iter().filter_map(|l| l.strip_prefix("SERVED ")) {
            assert!(
                rows.iter().any(|r| r.live.0 == v),
                "seed {seed}: {v} served without being journaled as live"
            );
        }
        expected_resume = rows.last().unwrap().live.0.clone();
    }
    // A last, clean run resumes where the journal says and finishes a few cycles.
    let out = run_child(&path, rng.next())
        .env("BLUEGREEN_JOURNAL_CYCLES", "3")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "seed {seed}: {text}");
    assert!(
        text.contains(&format!("RESUMED {expected_resume}")),
        "seed {seed}: {text}"
    );
    assert_eq!(text.matches("CYCLE").count(), 3, "{text}");
    check_journal(&path);
    eprintln!("{cycles} cycles, {kills} kills, {:?}", started.elapsed());
}

/// Child mode of the disk-full test: promote versions until the journal cannot record a
/// decision, then check that the decision was not taken and the model still serves.
fn fill_the_disk(bg: &BlueGreen<Tracked>, t: &std::sync::Arc<Tracker>) {
    let mut live = bg.status().active.version;
    for n in 1..10_000 {
        let v = format!("g{n}");
        let step = bg.stage(identity(&v), model(t, &v)).and_then(|_| bg.swap());
        match step {
            Ok(report) => {
                live = report.to;
                let passed = wait_until(Duration::from_secs(20), || {
                    for i in 0..10 {
                        let _ = bg.predict(&i);
                    }
                    bg.status().bake.is_none()
                });
                assert!(passed, "{}", bg.status());
            }
            Err(Error::Journal(e)) => {
                let s = bg.status();
                assert_eq!(s.active.version, live, "the refused decision was not taken");
                assert_eq!(
                    bg.predict_versioned(&1).version,
                    live,
                    "the live model serves"
                );
                let j = s.journal.unwrap();
                assert!(!j.healthy, "{j:?}");
                // Still full: the next decision is refused too.
                let again = bg
                    .stage(identity("g0x"), model(t, "g0x"))
                    .and_then(|_| bg.swap());
                assert!(matches!(again, Err(Error::Journal(_))), "{again:?}");
                assert_eq!(bg.predict_versioned(&1).version, live);
                println!("FULL live={live} after={n} error={e}");
                return;
            }
            Err(other) => panic!("{v}: {other:?}"),
        }
    }
    panic!("the disk never filled up");
}

#[test]
fn a_full_disk_refuses_the_decision_it_cannot_record_and_the_journal_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    // A file-size limit on the child (RLIMIT_FSIZE, in 512-byte blocks, set by `ulimit
    // -f`): writes past it fail with EFBIG, as on a full disk. SIGXFSZ is ignored, as
    // an ignored signal stays ignored across exec, so the write fails instead of killing.
    let child = run_child(&path, 1);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 1000; exec "$0" "$@""#)
        .arg(child.get_program())
        .args(child.get_args())
        .envs(child.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .env("BLUEGREEN_JOURNAL_DISK_FULL", "1")
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.find("FULL live=").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("{text}"));
    let live = line["FULL live=".len()..].split(' ').next().unwrap();
    let after: u64 = line
        .split("after=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        after > 1,
        "some decisions were recorded before the disk filled: {line}"
    );
    // Without the limit, the file opens clean and ends on the version that was live.
    let rows = check_journal(&path);
    assert_eq!(rows.last().unwrap().live.0, live, "{line}");
    eprintln!("{line}; {} rows", rows.len());
}
