//! The `timeline` example (the load test's picture) as `scripts/loadtest.sh` runs it: per
//! interval p50/p99 from every request record, rates over the time the load generator ran,
//! the phase selection, the event labels in the SVG, and malformed input refused with its
//! file and line (exit 1, no picture).
//!
//! The binary is `target/<profile>/examples/timeline`; as in `validate_cli.rs`, the first test
//! runs `cargo build --example timeline` with this test's features and profile (a no-op
//! when it is fresh), because `cargo test --test timeline` alone does not build examples.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// This package's features as this test binary was built with them (so that cargo does not
/// rebuild the library with other ones).
fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "onnx") {
        f.push("onnx");
    }
    if cfg!(feature = "serde") {
        f.push("serde");
    }
    if cfg!(feature = "watch") {
        f.push("watch");
    }
    if cfg!(feature = "journal") {
        f.push("journal");
    }
    if cfg!(feature = "quarantine") {
        f.push("quarantine");
    }
    f
}

fn timeline_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("path of this test binary");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let binary = profile_dir
            .join("examples")
            .join(format!("timeline{}", std::env::consts::EXE_SUFFIX));
        let target_dir = profile_dir.parent().expect("target directory");
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .current_dir(repo())
            .args(["build", "--quiet", "--example", "timeline"])
            .args(["--no-default-features", "--features", &features().join(",")])
            .arg("--target-dir")
            .arg(target_dir);
        match profile_dir.file_name().and_then(|p| p.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cargo.arg("--release");
            }
            Some(other) => {
                cargo.args(["--profile", other]);
            }
            None => panic!("unexpected profile directory {}", profile_dir.display()),
        }
        let out = cargo
            .output()
            .expect("run cargo to build the timeline example");
        assert!(
            out.status.success(),
            "building the timeline example failed ({cargo:?}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            binary.is_file(),
            "no timeline example at {}",
            binary.display()
        );
        binary
    })
}

struct Run {
    code: i32,
    stderr: String,
}

fn timeline(dir: &Path, extra: &[&str]) -> Run {
    let out = Command::new(timeline_binary())
        .arg("--requests")
        .arg(dir.join("requests"))
        .arg("--out")
        .arg(dir.join("out.svg"))
        .arg("--csv")
        .arg(dir.join("out.csv"))
        .args(extra)
        .output()
        .expect("run the timeline example");
    Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Interval 100 (10.0–10.1 s): 100 requests ending at 10 s + k ms + 500 µs with latencies
/// k+1 µs (k = 0..99), every tenth a 503, in two thread files of one baseline run. Then a
/// scenario run: 5 requests of 200 µs ending at 11.002 s, 11.012 s, ... 11.042 s (latencies
/// below 256 µs, which a 2-digit hdrhistogram holds exactly).
fn records(dir: &Path) {
    let requests = dir.join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    let mut threads = [String::new(), String::new()];
    for k in 0..100u64 {
        let status = if k % 10 == 9 { 503 } else { 200 };
        threads[(k % 2) as usize] +=
            &format!("{} {} {status}\n", 10_000_000 + k * 1000 + 500, k + 1);
    }
    std::fs::write(requests.join("01-baseline.1.tsv"), &threads[0]).unwrap();
    std::fs::write(requests.join("01-baseline.2.tsv"), &threads[1]).unwrap();
    let scenario: String = (0..5u64)
        .map(|k| format!("{} 200 200\n", 11_002_000 + k * 10_000))
        .collect();
    std::fs::write(requests.join("02-scenario.1.tsv"), scenario).unwrap();
    std::fs::write(
        dir.join("events.tsv"),
        "11010000\tswap\tscenario\t1 → 2\t\n\
         11030000\tauto-rollback\tservice\t2 → 1\tp99 latency 3ms exceeds the limit of 1ms\n\
         10050000\tswap\tchurn\t1 → 2\t\n",
    )
    .unwrap();
}

#[test]
fn percentiles_and_rates_per_interval_come_from_every_request_and_events_are_labelled() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path());
    let events = dir.path().join("events.tsv");
    let run = timeline(dir.path(), &["--events", events.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "t_s,requests_per_s,non2xx_per_s,p50_ms,p99_ms,phase"
    );
    // The baseline run generated load from 10.000499 s (10.0005 s - 1 µs) to 10.0995 s:
    // 99 001 µs of the interval. 100 requests and 10 non-2xx over that time; p50 and p99
    // of latencies 1..=100 µs. Time counts from the first request's start.
    assert_eq!(rows[1], "0.050,1010.1,101.0,0.050,0.099,baseline", "{csv}");
    // Intervals 101..=109 had no load: not drawn. Interval 110: five requests over the
    // 40.2 ms the scenario ran (11.0018 s to 11.042 s).
    assert_eq!(rows[2], "1.050,124.4,0.0,0.200,0.200,scenario", "{csv}");
    assert_eq!(rows.len(), 3, "{csv}");
    let svg = std::fs::read_to_string(dir.path().join("out.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg:.200}");
    assert!(
        svg.contains("swap 1 → 2"),
        "the scenario's swap is labelled"
    );
    assert!(
        svg.contains("auto-rollback 2 → 1"),
        "the automatic rollback is labelled"
    );
    assert_eq!(
        svg.matches("swap 1 → 2").count(),
        1,
        "a churn swap is a tick, not a label"
    );
}

#[test]
fn a_phase_alone_is_drawn_over_its_own_span() {
    let dir = tempfile::tempdir().unwrap();
    records(dir.path());
    let run = timeline(dir.path(), &["--phase", "scenario"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    // Time counts from the scenario's first request (11.0018 s): interval 110's middle is
    // 48.2 ms later.
    assert_eq!(rows, ["0.048,124.4,0.0,0.200,0.200,scenario"], "{csv}");

    let run = timeline(dir.path(), &["--phase", "churn"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.trim(),
        r#"timeline: no runs of phase "churn" in the request records"#
    );
}

#[test]
fn malformed_records_are_refused_with_their_file_and_line_and_no_picture() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "01-baseline.1.tsv",
            "1000 10 200\nabc 10 200\n",
            r#":2: end time "abc": invalid digit found in string"#,
        ),
        (
            "01-baseline.1.tsv",
            "1000 10 99\n",
            ":1: status 99 is not an HTTP status",
        ),
        ("01-baseline.1.tsv", "1000 10\n", ":1: missing status"),
        (
            "01-baseline.1.tsv",
            "10 1000 200\n",
            ":1: latency 1000 µs is longer than the clock",
        ),
        (
            "01-baseline.1.tsv",
            "1000 10 200 7\n",
            ":1: more than three fields",
        ),
        (
            "baseline.tsv",
            "1000 10 200\n",
            ": not a request file name (expected <NN>-<phase>.<thread>.tsv)",
        ),
    ];
    for (name, text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let requests = dir.path().join("requests");
        std::fs::create_dir_all(&requests).unwrap();
        std::fs::write(requests.join(name), text).unwrap();
        let run = timeline(dir.path(), &[]);
        assert_eq!(run.code, 1, "{name} {text:?}: {}", run.stderr);
        assert!(
            run.stderr.trim_end().ends_with(expected) && run.stderr.contains(name),
            "{name} {text:?}: {}",
            run.stderr
        );
        assert!(
            !dir.path().join("out.svg").exists(),
            "no picture from bad input"
        );
    }

    // A line longer than 4 KiB (a file that is not records) is refused, not read whole.
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests");
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::write(requests.join("01-baseline.1.tsv"), "1".repeat(1 << 20)).unwrap();
    let run = timeline(dir.path(), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(":1: line longer than 4096 bytes"),
        "{}",
        run.stderr
    );

    // An unknown event kind, and an event line without its five fields.
    for (events, expected) in [
        (
            "1000\tpromote\tscenario\t1\t\n",
            r#":1: unknown event kind "promote""#,
        ),
        ("1000\tswap\n", ":1: 2 fields; expected 5, tab-separated"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        records(dir.path());
        let path = dir.path().join("events.tsv");
        std::fs::write(&path, events).unwrap();
        let run = timeline(dir.path(), &["--events", path.to_str().unwrap()]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.trim_end().ends_with(expected), "{}", run.stderr);
        assert!(!dir.path().join("out.svg").exists());
    }
}
