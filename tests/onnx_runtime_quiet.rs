//! A missing ONNX Runtime is a typed error and nothing else: no panic text on stderr, and
//! the application's own panic hook is not called — while panics on the application's
//! other threads still reach that hook (or, in the instants std needs to swap hooks, std's
//! default hook), none silenced.
//!
//! The runtime is process-wide, so each case runs in a fresh copy of this test binary
//! (`quiet_child`), started with the environment it needs.
#![cfg(feature = "onnx")]

use std::panic;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bluegreen::onnx::{OnnxError, OnnxModel, init_runtime};

/// How many panics the child's other thread raises while the runtime init is retried.
const OTHER_PANICS: usize = 200;

struct Child {
    stdout: String,
    stderr: String,
}

fn run_child(mode: &str, dylib: &str) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([
            "quiet_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BLUEGREEN_QUIET_CHILD", mode)
        .env("ORT_DYLIB_PATH", dylib)
        .output()
        .expect("spawn child test");
    let child = Child {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success() && child.stdout.contains(&format!("CHILD-OK {mode}")),
        "child `{mode}` failed:\n{}\n{}",
        child.stdout,
        child.stderr
    );
    child
}

/// A bare library name that the dynamic loader cannot find: bluegreen cannot check it
/// before ort (the loader's search is ort's), so ort's loader panics inside.
const NOT_ON_THE_LOADER_PATH: &str = "libbluegreen-no-such-onnxruntime.so";

#[test]
fn missing_runtime_prints_no_panic_and_does_not_call_the_applications_hook() {
    let child = run_child("missing", NOT_ON_THE_LOADER_PATH);
    assert!(
        !child.stderr.contains("panicked at") && !child.stderr.contains("Failed to load"),
        "panic text on stderr:\n{}",
        child.stderr
    );
    assert!(
        child.stdout.contains("APP-HOOK-CALLS 1"),
        "{}",
        child.stdout
    );
}

#[test]
fn other_threads_panics_still_reach_a_hook_while_the_runtime_init_is_retried() {
    let child = run_child("concurrent", NOT_ON_THE_LOADER_PATH);
    // Every panic of the other thread was reported: by the application's hook (counted
    // in the child), or by std's default hook in a swap instant (printed on stderr).
    let by_app: usize = child
        .stdout
        .split("OTHER-PANICS-SEEN ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in:\n{}", child.stdout));
    let by_default = child.stderr.matches("other-thread panic").count();
    assert_eq!(
        by_app + by_default,
        OTHER_PANICS,
        "a panic of another thread was silenced:\n{}",
        child.stderr
    );
    // ort's own panics were never reported anywhere.
    assert!(!child.stderr.contains("Failed to load"), "{}", child.stderr);
}

/// Messages the application's hook saw, in the child.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn install_app_hook() {
    panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Unexpected panics (a failed assertion in the child) are shown to the parent.
        if !message.starts_with("other-thread panic") {
            eprintln!("APP-HOOK: {message}");
        }
        SEEN.lock().unwrap().push(message);
    }));
}

fn seen() -> Vec<String> {
    SEEN.lock().unwrap().clone()
}

fn assert_runtime_unavailable() {
    match init_runtime() {
        Err(OnnxError::RuntimeUnavailable { reason }) => {
            assert!(reason.contains(NOT_ON_THE_LOADER_PATH), "{reason}");
        }
        other => panic!("expected RuntimeUnavailable, got {other:?}"),
    }
}

/// The child half. Does nothing unless started by `run_child`.
#[test]
#[ignore = "run by the tests above in a child process"]
fn quiet_child() {
    let Ok(mode) = std::env::var("BLUEGREEN_QUIET_CHILD") else {
        return;
    };
    install_app_hook();
    match mode.as_str() {
        "missing" => {
            assert_runtime_unavailable();
            // A model load retries the init and fails the same way, quietly.
            assert!(matches!(
                OnnxModel::from_bytes(b"not a model"),
                Err(OnnxError::RuntimeUnavailable { .. })
            ));
            assert!(seen().is_empty(), "the app hook saw {:?}", seen());
            // The application's hook is back in place: a real panic reaches it.
            let _ = std::thread::spawn(|| panic!("a real panic")).join();
            assert_eq!(seen(), ["a real panic"]);
            println!("APP-HOOK-CALLS {}", seen().len());
        }
        "concurrent" => {
            static STOP: AtomicBool = AtomicBool::new(false);
            let other = std::thread::spawn(|| {
                for i in 0..OTHER_PANICS {
                    let _ = panic::catch_unwind(|| panic!("other-thread panic {i}"));
                    std::thread::sleep(Duration::from_micros(200));
                }
                STOP.store(true, Ordering::SeqCst);
            });
            let mut attempts = 0;
            while !STOP.load(Ordering::SeqCst) {
                assert_runtime_unavailable();
                attempts += 1;
            }
            other.join().expect("other thread");
            assert!(attempts > 0);
            let seen = seen();
            assert!(
                seen.iter().all(|m| m.starts_with("other-thread panic")),
                "the app hook saw ort's panic: {seen:?}"
            );
            println!("OTHER-PANICS-SEEN {}", seen.len());
        }
        other => panic!("unknown child mode {other}"),
    }
    println!("CHILD-OK {mode}");
}
