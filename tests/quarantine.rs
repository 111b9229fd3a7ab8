//! Quarantine: untrusted candidates are qualified in a capped child process, and each
//! hostile one is refused with its cause while the live model keeps answering correctly.
//!
//! The child is this test binary, re-executed into `quarantine_child` (which calls the
//! hook, as an application's `main()` would). Hostile models are written at test time
//! (`onnx_graphs`): an endless `Loop`, a `ConstantOfShape` memory bomb, a truncated file;
//! a model whose warm-up aborts the process stands in for a runtime crash. Shell programs
//! play children that flood, lie or never speak the protocol.
#![cfg(all(feature = "onnx", feature = "quarantine", target_os = "linux"))]

mod onnx_graphs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bluegreen::onnx::ndarray::{Array1, Array2, Axis};
use bluegreen::onnx::{Inputs, OnnxConfig, OnnxModel, OnnxTrial};
use bluegreen::quarantine::{Hook, Quarantine, QuarantineError, QuarantineReport, Trial};
use bluegreen::{BlueGreen, Error, Model};
use ndarray_npy::NpzReader;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn digits(version: u32) -> PathBuf {
    repo().join(format!("models/digits/{version}/model.onnx"))
}

fn golden_path() -> PathBuf {
    repo().join("models/digits/golden.npz")
}

/// Re-executes this test binary into `quarantine_child`.
fn in_test_child<M: Model>(q: Quarantine<M>) -> Quarantine<M> {
    q.program(std::env::current_exe().expect("test binary"))
        .args([
            "quarantine_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
}

/// The child half: what an application's `main()` does first.
#[test]
#[ignore = "the quarantine child: run by the tests in a child process"]
fn quarantine_child() {
    Hook::new()
        .register("aborts", |_job| Ok::<_, String>(Trial::new(Aborts)))
        .enter();
}

/// A model whose warm-up aborts the process (as a crash inside a native runtime would).
struct Aborts;

impl Model for Aborts {
    type Input = f32;
    type Output = f32;
    type Error = std::convert::Infallible;
    fn predict(&self, x: &f32) -> Result<f32, Self::Error> {
        Ok(*x)
    }
    fn warm_up(&self, _samples: &[f32]) -> Result<usize, Self::Error> {
        std::process::abort()
    }
}

fn generic(loader: &str) -> Quarantine<Aborts> {
    Quarantine::new(loader, (), |_p: &Path| Ok::<_, String>(Aborts))
}

fn refusal(report: &QuarantineReport) -> &QuarantineError {
    report
        .refusal
        .as_ref()
        .unwrap_or_else(|| panic!("expected a refusal, the candidate passed: {report}"))
}

/// The child is gone: reaped, no process with its pid left.
fn assert_gone(report: &QuarantineReport) {
    let pid = report.pid.expect("a child was started");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} still exists"
    );
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

struct Golden {
    rows: Array2<f32>,
    v1: Array1<i64>,
    v2: Array1<i64>,
}

fn golden() -> Golden {
    let mut npz = NpzReader::new(std::fs::File::open(golden_path()).unwrap()).unwrap();
    Golden {
        rows: npz.by_name("inputs").unwrap(),
        v1: npz.by_name("label_v1").unwrap(),
        v2: npz.by_name("label_v2").unwrap(),
    }
}

/// Predicts golden rows on `bg` until stopped; every answer is checked against the
/// labels of the version that gave it. Returns (answers, wrong answers).
fn reader(
    bg: Arc<BlueGreen<OnnxModel>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let g = golden();
        let answers = AtomicU64::new(0);
        let mut wrong = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let row = g
                .rows
                .index_axis(Axis(0), i % 64)
                .insert_axis(Axis(0))
                .to_owned();
            let answer = bg.predict_versioned(&Inputs::single(row));
            let label = answer
                .output
                .expect("the live model answers")
                .i64("label")
                .unwrap()[0];
            let expected = match answer.version {
                "1" => g.v1[i % 64],
                "2" => g.v2[i % 64],
                other => {
                    wrong.push(format!("answered by {other}"));
                    continue;
                }
            };
            if label != expected {
                wrong.push(format!(
                    "row {i} by {}: {label} != {expected}",
                    answer.version
                ));
            }
            answers.fetch_add(1, Ordering::Relaxed);
            i += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        (answers.into_inner(), wrong)
    })
}

#[test]
fn hostile_candidates_are_refused_by_cause_while_the_live_model_serves_and_a_good_one_is_promoted()
{
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let endless = write("loop.onnx", &onnx_graphs::endless_loop());
    let bomb = write("bomb.onnx", &onnx_graphs::memory_bomb(1 << 28)); // 1 GiB per call
    let v2 = std::fs::read(digits(2)).unwrap();
    let truncated = write("truncated.onnx", &v2[..v2.len() / 2]);

    // Far above the CPU cap: on a loaded machine a child gets a fraction of a core, and
    // the endless loop must reach its CPU cap before this deadline.
    let wall = Duration::from_secs(10);
    let memory = 512 << 20;
    let quarantine = in_test_child(Quarantine::onnx_with(
        OnnxTrial::new().golden(golden_path()).min_accuracy(0.9),
        OnnxConfig::new().pool_size(2),
    ))
    .memory_limit(memory)
    .cpu_limit(Duration::from_secs(1))
    .wall_limit(wall);
    let live = OnnxConfig::new().pool_size(2).load(digits(1)).unwrap();
    let bg = Arc::new(
        BlueGreen::builder()
            .quarantine(quarantine.clone())
            .build("1", live)
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reading = reader(Arc::clone(&bg), Arc::clone(&stop));

    let refused = |version: &str, path: &Path| -> (QuarantineReport, Duration) {
        let started = Instant::now();
        let err = bg.stage_quarantined(version, path).expect_err("refused");
        let elapsed = started.elapsed();
        let Error::Quarantined(report) = err else {
            panic!("expected Error::Quarantined, got {err:?}");
        };
        assert!(elapsed <= wall + Duration::from_secs(1), "{elapsed:?}");
        assert_gone(&report);
        // Operable at once: nothing staged, nothing wedged, the refusal recorded.
        assert!(matches!(bg.validate(), Err(Error::NothingStaged)));
        let status = bg.status();
        assert_eq!(status.active.version, "1");
        assert_eq!(status.last_quarantine.as_ref(), Some(&*report));
        (*report, elapsed)
    };

    // 1. An endless loop: stopped at the CPU cap.
    let (report, _) = refused("loop", &endless);
    assert!(
        matches!(refusal(&report), QuarantineError::ExceededCpu { limit, used }
            if *limit == Duration::from_secs(1) && *used > *limit),
        "{report}"
    );
    assert!(
        report
            .usage
            .cpu
            .is_some_and(|c| c >= Duration::from_secs(1))
    );

    // 2. The same loop with no CPU cap: killed at the wall-clock deadline.
    let uncapped = quarantine
        .clone()
        .uncapped()
        .wall_limit(Duration::from_secs(2));
    let started = Instant::now();
    let report = uncapped.qualify("loop-again", &endless);
    assert!(started.elapsed() <= Duration::from_secs(3));
    assert_eq!(
        refusal(&report),
        &QuarantineError::ExceededWallTime {
            limit: Duration::from_secs(2)
        }
    );
    assert_gone(&report);

    // 3. A memory bomb: refused at the memory cap, and this process did not grow.
    let before = vm_rss();
    let (report, _) = refused("bomb", &bomb);
    let grown = vm_rss().saturating_sub(before);
    assert!(
        matches!(refusal(&report), QuarantineError::ExceededMemory { limit, .. } if *limit == memory),
        "{report}"
    );
    assert!(
        grown < 50 << 20,
        "the serving process grew by {grown} bytes"
    );

    // 4. A truncated file: failed to load.
    let (report, _) = refused("truncated", &truncated);
    assert!(
        matches!(refusal(&report), QuarantineError::FailedToLoad { reason } if reason.contains("truncated.onnx")),
        "{report}"
    );
    assert_eq!(bg.status().quarantine_refusals, 4 - 1); // the wall-time run was not the deployment's

    // 5. A good candidate passes, is loaded, validated again here, and promoted.
    let staged = bg.stage_quarantined("2", digits(2)).expect("v2 passes");
    let q = staged.quarantine.expect("quarantine report");
    assert!(q.passed(), "{q}");
    assert!(q.usage.peak_memory.is_some_and(|b| b > 10 << 20), "{q}");
    assert!(q.usage.cpu.is_some());
    let accuracy = q.validation.as_ref().and_then(|v| v.check("accuracy"));
    assert!(accuracy.is_some_and(|c| c.passed()), "{q:?}");
    assert_gone(&q);
    bg.swap().expect("v2 promoted");
    assert_eq!(bg.active().version(), "2");

    stop.store(true, Ordering::Relaxed);
    let (answers, wrong) = reading.join().expect("reader");
    assert!(wrong.is_empty(), "wrong answers: {wrong:?}");
    assert!(answers > 0);
}

#[test]
fn a_candidate_that_aborts_the_child_is_refused_as_crashed_with_its_signal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("candidate");
    std::fs::write(&file, b"whatever").unwrap();
    let report = in_test_child(generic("aborts"))
        .wall_limit(Duration::from_secs(10))
        .qualify("aborts", &file);
    match refusal(&report) {
        QuarantineError::Crashed { signal, name, .. } => {
            assert_eq!((*signal, name.as_str()), (6, "SIGABRT"));
        }
        other => panic!("expected Crashed, got {other:?}"),
    }
    assert_gone(&report);
}

#[test]
fn a_gate_failing_in_the_child_refuses_the_candidate_with_the_gates_report() {
    // v3 was trained on shuffled labels: it loads and runs, and is wrong.
    let report = in_test_child(Quarantine::onnx(
        OnnxTrial::new().golden(golden_path()).min_accuracy(0.9),
    ))
    .wall_limit(Duration::from_secs(20))
    .qualify("3", &digits(3));
    let QuarantineError::Refused(validation) = refusal(&report) else {
        panic!("expected Refused, got {report}");
    };
    let accuracy = validation.check("accuracy").expect("accuracy gate ran");
    assert!(!accuracy.passed());
    assert!(validation.check("warm-up").is_some_and(|c| c.passed()));
    assert!(report.to_string().contains("REFUSED, refused"), "{report}");
}

fn sh(script: &str) -> Quarantine<Aborts> {
    generic("aborts").program("/bin/sh").args(["-c", script])
}

fn candidate() -> PathBuf {
    digits(2)
}

#[test]
fn a_child_that_floods_its_stdout_is_refused_as_garbage_within_the_output_limit() {
    let report = sh("exec yes")
        .output_limit(64 << 10)
        .wall_limit(Duration::from_secs(10))
        .qualify("flood", &candidate());
    assert!(
        matches!(refusal(&report), QuarantineError::Garbage { reason } if reason.contains("limit of 65536 bytes")),
        "{report}"
    );
    assert_gone(&report);
}

#[test]
fn a_malformed_frame_or_a_huge_declared_length_is_garbage_not_a_wait() {
    for (script, expected) in [
        (
            r#"printf '\nBLUEGREEN-QUARANTINE/1 7\n{bogus}\n'; sleep 30"#,
            "not a quarantine message",
        ),
        (
            r#"printf '\nBLUEGREEN-QUARANTINE/1 9999999999\n'; sleep 30"#,
            "past the limit",
        ),
    ] {
        let report = sh(script)
            .wall_limit(Duration::from_secs(20))
            .qualify("liar", &candidate());
        assert!(
            matches!(refusal(&report), QuarantineError::Garbage { reason } if reason.contains(expected)),
            "{script}: {report}"
        );
        assert_gone(&report);
    }
}

#[test]
fn a_program_without_the_hook_is_refused_with_what_to_add_to_main() {
    // The application binary itself, without the hook: it does not know the argument.
    let exe = std::env::current_exe().unwrap();
    let report = generic("aborts")
        .program(&exe)
        .wall_limit(Duration::from_secs(20))
        .qualify("no-hook", &candidate());
    let err = refusal(&report);
    assert!(
        matches!(err, QuarantineError::NoHook { program, detail, .. }
            if program == &exe && detail.starts_with("it exited with status")),
        "{err}"
    );
    assert!(
        err.to_string().contains("bluegreen::quarantine::enter()"),
        "{err}"
    );

    // A program that never says anything: refused at the handshake deadline.
    let report = sh("sleep 30")
        .handshake_limit(Duration::from_millis(500))
        .wall_limit(Duration::from_secs(20))
        .qualify("silent", &candidate());
    assert!(
        matches!(refusal(&report), QuarantineError::NoHook { detail, .. } if detail.contains("no hello within 500ms")),
        "{report}"
    );
    assert_gone(&report);
}

#[test]
fn a_loader_the_child_does_not_know_is_a_typed_refusal_naming_the_ones_it_has() {
    let report = in_test_child(generic("no-such-loader"))
        .wall_limit(Duration::from_secs(10))
        .qualify("x", &candidate());
    match refusal(&report) {
        QuarantineError::UnknownLoader { name, available } => {
            assert_eq!(name, "no-such-loader");
            assert!(
                available.contains(&"onnx".to_owned()) && available.contains(&"aborts".to_owned())
            );
        }
        other => panic!("expected UnknownLoader, got {other:?}"),
    }
}

#[test]
fn a_candidate_file_changed_after_quarantine_is_not_staged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::copy(digits(2), &path).unwrap();
    let bg = BlueGreen::builder()
        .quarantine(
            in_test_child(Quarantine::onnx(OnnxTrial::new())).wall_limit(Duration::from_secs(20)),
        )
        .build("1", OnnxConfig::new().pool_size(1).load(digits(1)).unwrap())
        .unwrap();
    // The loader runs after the child passed; it swaps the file under it first.
    let err = bg
        .stage_quarantined_with("2", &path, |p| {
            std::fs::copy(digits(3), p).unwrap();
            OnnxModel::load(p)
        })
        .expect_err("changed");
    let Error::Quarantined(report) = err else {
        panic!("expected Quarantined, got {err:?}");
    };
    assert_eq!(
        report.refusal,
        Some(QuarantineError::Changed { path: path.clone() })
    );
    assert!(bg.status().candidate.is_none());
    assert_eq!(bg.status().quarantine_refusals, 1);
}

#[test]
fn stage_quarantined_without_a_quarantine_is_a_typed_error() {
    let bg = BlueGreen::new("1", OnnxConfig::new().pool_size(1).load(digits(1)).unwrap()).unwrap();
    assert!(matches!(
        bg.stage_quarantined("2", digits(2)),
        Err(Error::NoQuarantine)
    ));
    assert!(!bg.has_quarantine());
}

#[cfg(feature = "watch")]
#[test]
fn the_watcher_quarantines_each_version_refusing_a_hostile_one_and_promoting_a_good_one() {
    use bluegreen::repository::{Repository, VersionDir};
    use bluegreen::watch::{RefusalKind, WatchEvent, Watcher};

    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::new(dir.path());
    let publish = |version: &str, bytes: &[u8]| {
        let d = dir.path().join(version);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("model.onnx"), bytes).unwrap();
        repo.mark_complete(version).unwrap();
    };
    // The wall limit far above the CPU cap (see the test above): the loop is refused at
    // the CPU cap even when the child gets a fraction of a core.
    let quarantine = in_test_child(Quarantine::onnx(OnnxTrial::new()))
        .cpu_limit(Duration::from_secs(1))
        .wall_limit(Duration::from_secs(20));
    let bg = Arc::new(
        BlueGreen::builder()
            .quarantine(quarantine)
            .build("1", OnnxConfig::new().pool_size(1).load(digits(1)).unwrap())
            .unwrap(),
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let loads = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&loads);
    let _watcher = Watcher::builder(repo.clone())
        .poll_interval(Duration::from_millis(100))
        .quarantine("model.onnx")
        .on_event(move |e| {
            let _ = tx.send(e.clone());
        })
        .spawn(Arc::clone(&bg), move |v: &VersionDir| {
            counted.fetch_add(1, Ordering::SeqCst);
            OnnxConfig::new().pool_size(1).load(v.file("model.onnx"))
        })
        .unwrap();
    let next = |what: &str, pick: &dyn Fn(&WatchEvent) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(e) if pick(&e) => return e,
                Ok(_) => {}
                Err(_) => panic!("no {what} event"),
            }
        }
    };

    publish("2", &onnx_graphs::endless_loop());
    let WatchEvent::Refused(refusal) = next("refused", &|e| matches!(e, WatchEvent::Refused(_)))
    else {
        unreachable!()
    };
    assert_eq!(
        (refusal.version.as_str(), refusal.kind),
        ("2", RefusalKind::Quarantine)
    );
    assert!(refusal.reason.contains("CPU cap"), "{}", refusal.reason);
    assert_eq!(
        loads.load(Ordering::SeqCst),
        0,
        "never loaded into this process"
    );
    assert_eq!(bg.active().version(), "1");

    publish("3", &std::fs::read(digits(2)).unwrap());
    next("promoted", &|e| matches!(e, WatchEvent::Promoted(_)));
    assert_eq!(bg.active().version(), "3");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let last = bg.status().last_quarantine.expect("recorded");
    assert!(last.passed() && last.version == "3", "{last}");
}
