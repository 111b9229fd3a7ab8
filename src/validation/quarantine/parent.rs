//! The parent's side: start the child, feed it the job, watch it against its caps, read
//! its frames, and turn how it ended into a [`QuarantineReport`].
//!
//! The calling thread watches: every few milliseconds it samples the child's memory and
//! CPU time, checks the deadlines, and takes the frames a reader thread parsed from the
//! child's stdout. A second thread keeps the tail of the child's stderr; a third writes
//! the job to its stdin. Nothing waits unbounded: the child is killed (SIGKILL) at its
//! wall-clock deadline, past its CPU cap, when it sends garbage, when it stays silent past
//! the handshake deadline, or as soon as its verdict is in (its teardown is not waited
//! for).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::error::QuarantineError;
use super::limits::Limits;
use super::protocol::{CHILD_ENV, Frame, FrameParser, Job, PROTOCOL};
use super::report::QuarantineReport;
use super::usage::{Sampler, Usage};
use super::verdict::classify;

/// How often the parent looks at the child.
const TICK: Duration = Duration::from_millis(2);
/// How long the rest of a child's output may take to arrive once it exited.
const GRACE: Duration = Duration::from_secs(1);
/// How long to wait for a killed child to be reaped before leaving it to a thread.
const REAP: Duration = Duration::from_secs(5);
/// How much of the child's stderr is kept (its end).
const STDERR_TAIL: usize = 4096;

/// The program the child runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    /// `None`: this very executable (`std::env::current_exe()`).
    pub(crate) path: Option<PathBuf>,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

impl Default for Program {
    fn default() -> Self {
        Self {
            path: None,
            // An application that forgot the hook sees an argument it does not know, and
            // (with any argument parser) exits at once instead of starting up.
            args: vec!["--bluegreen-quarantine-child".to_owned()],
            env: Vec::new(),
        }
    }
}

/// Why the parent killed the child.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kill {
    Wall,
    Cpu(Duration),
    Silent,
    Garbage(String),
    /// Its verdict is in: it is not needed any more, and its teardown (ONNX Runtime's
    /// included) is not waited for.
    Done,
}

/// Runs `job` in a child and reports.
pub(crate) fn run(program: &Program, limits: &Limits, job: &Job) -> QuarantineReport {
    let started = Instant::now();
    let mut report = QuarantineReport {
        version: job.version.clone(),
        candidate: job.candidate.clone(),
        refusal: None,
        validation: None,
        pid: None,
        usage: Usage::default(),
        content_hash: None,
        finished_at: SystemTime::now(),
    };
    let exe = match &program.path {
        Some(p) => p.clone(),
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => return setup_failed(report, format!("cannot find this executable: {e}")),
        },
    };
    let job_bytes = match serde_json::to_vec(job) {
        Ok(b) => b,
        Err(e) => return setup_failed(report, format!("cannot encode the job: {e}")),
    };
    let mut command = Command::new(&exe);
    command
        .args(&program.args)
        .env(CHILD_ENV, PROTOCOL.to_string())
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so that killing it also kills whatever it started.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    for (k, v) in &program.env {
        command.env(k, v);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return setup_failed(report, format!("cannot start {}: {e}", exe.display())),
    };
    let pid = child.id();
    report.pid = Some(pid);
    tracing::debug!(target: "bluegreen::quarantine", version = %job.version, pid,
        program = %exe.display(), "quarantine child started");

    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return setup_failed(report, "the child's pipes were not set up".to_owned());
    };
    let writer = std::thread::Builder::new()
        .name("bluegreen-quarantine-stdin".to_owned())
        .spawn(move || {
            let mut stdin = stdin;
            let _ = stdin.write_all(&job_bytes); // a child that does not read is judged by its output
        });
    let frames = spawn_reader(stdout, limits.max_output);
    let tail = spawn_tail(stderr);

    let sampler = Sampler::new(pid);
    let mut seen = Seen::default();
    let (status, kill) = watch(&mut child, &sampler, limits, started, &frames, &mut seen);
    if status.is_none() {
        // Killed but not gone yet (stuck in the kernel): reap it when it goes.
        let _ = std::thread::Builder::new()
            .name("bluegreen-quarantine-reaper".to_owned())
            .spawn(move || child.wait());
    }
    report.usage.elapsed = started.elapsed();
    report.finished_at = SystemTime::now();
    report.usage.merge(seen.peak, seen.cpu);
    if let Some(Frame::Verdict { usage, .. } | Frame::LoadFailed { usage, .. }) = &seen.last {
        report.usage.merge_child(usage);
    }
    if let Ok(w) = writer {
        let _ = w.join();
    }
    let stderr = tail.map(|t| t.take()).unwrap_or_default();

    let (validation, refusal) = classify(&exe, limits, &report.usage, status, kill, seen, stderr);
    report.validation = validation;
    report.refusal = refusal;
    report
}

/// What the parent saw of the child while it ran.
#[derive(Default)]
pub(super) struct Seen {
    pub(super) hello: bool,
    pub(super) garbage: Option<String>,
    pub(super) last: Option<Frame>,
    pub(super) peak: Option<u64>,
    pub(super) cpu: Option<Duration>,
}

/// Watches the child until it ended; returns its exit status (`None` when it could not be
/// reaped in time) and why it was killed, if it was.
fn watch(
    child: &mut Child,
    sampler: &Sampler,
    limits: &Limits,
    started: Instant,
    frames: &Receiver<Result<Frame, String>>,
    seen: &mut Seen,
) -> (Option<ExitStatus>, Option<Kill>) {
    let mut kill: Option<Kill> = None;
    let mut killed_at: Option<Instant> = None;
    let mut verdict_at: Option<Instant> = None;
    loop {
        seen.peak = seen.peak.max(sampler.peak_memory());
        seen.cpu = seen.cpu.max(sampler.cpu());
        if let Some(status) = exited(child, sampler, seen) {
            // What it wrote before it exited may still be in the pipe: read to its end.
            let deadline = Instant::now() + GRACE;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match frames.recv_timeout(left) {
                    Ok(frame) => take(frame, seen, &mut verdict_at, Instant::now()),
                    Err(_) => break, // end of output, or the grace is over
                }
            }
            return (Some(status), kill);
        }
        let now = Instant::now();
        if kill.is_none() {
            let why = if now.duration_since(started) >= limits.wall {
                Some(Kill::Wall)
            } else if let (Some(cap), Some(used)) = (limits.cpu, seen.cpu)
                && used > cap
            {
                Some(Kill::Cpu(used))
            } else if let Some(reason) = seen.garbage.clone() {
                Some(Kill::Garbage(reason))
            } else if !seen.hello && now.duration_since(started) >= limits.handshake {
                Some(Kill::Silent)
            } else if verdict_at.is_some() {
                Some(Kill::Done)
            } else {
                None
            };
            if let Some(why) = why {
                kill_group(child);
                let _ = child.kill();
                kill = Some(why);
                killed_at = Some(now);
            }
        } else if killed_at.is_some_and(|t| now.duration_since(t) >= REAP) {
            tracing::error!(target: "bluegreen::quarantine", pid = child.id(),
                "a killed quarantine child was not reaped in time; leaving it to a thread");
            return (None, kill);
        }
        match frames.recv_timeout(TICK) {
            Ok(frame) => take(frame, seen, &mut verdict_at, now),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
        }
    }
}

/// Takes one parsed frame (or the reader's garbage verdict) into what was seen.
fn take(
    frame: Result<Frame, String>,
    seen: &mut Seen,
    verdict_at: &mut Option<Instant>,
    now: Instant,
) {
    let frame = match frame {
        Ok(frame) => frame,
        Err(reason) => {
            seen.garbage.get_or_insert(reason);
            return;
        }
    };
    if !seen.hello {
        match &frame {
            Frame::Hello { protocol, .. } if *protocol == PROTOCOL => seen.hello = true,
            Frame::Hello { protocol, .. } => {
                seen.garbage = Some(format!("protocol {protocol}, not {PROTOCOL}"));
            }
            _ => seen.garbage = Some("a frame before its hello".to_owned()),
        }
    } else if frame.is_final() {
        if seen.last.as_ref().is_some_and(Frame::is_final) {
            seen.garbage = Some("a second verdict".to_owned());
        }
        verdict_at.get_or_insert(now);
    }
    if !matches!(frame, Frame::Hello { .. }) {
        seen.last = Some(frame);
    }
}

/// The child's exit status once it ended. On Linux the child is first seen exited without
/// being reaped (`waitid` with `WNOWAIT`), so its final CPU time can still be read.
fn exited(child: &mut Child, sampler: &Sampler, seen: &mut Seen) -> Option<ExitStatus> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(_) => {
                // Exited, not yet reaped: its pid (and group id) cannot be reused yet.
                seen.cpu = seen.cpu.max(sampler.cpu());
                kill_group(child);
            }
            Err(_) => {} // fall through to try_wait, which knows
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (sampler, &seen);
    child.try_wait().ok().flatten()
}

/// Kills the child's process group: the processes it started, if any (the child itself
/// is killed through its handle).
fn kill_group(child: &Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    #[cfg(not(unix))]
    let _ = child;
}

fn spawn_reader(
    mut stdout: impl Read + Send + 'static,
    limit: usize,
) -> Receiver<Result<Frame, String>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let spawned = std::thread::Builder::new()
        .name("bluegreen-quarantine-stdout".to_owned())
        .spawn(move || {
            let mut parser = FrameParser::new(limit);
            let mut chunk = [0u8; 8192];
            loop {
                let n = match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                match parser.push(&chunk[..n]) {
                    Ok(frames) => {
                        for f in frames {
                            if tx.send(Ok(f)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(reason) => {
                        let _ = tx.send(Err(reason));
                        return; // the child is killed; its pipe closes
                    }
                }
            }
        });
    if let Err(e) = spawned {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = tx.send(Err(format!("cannot start the reader thread: {e}")));
        return rx;
    }
    rx
}

/// The end of the child's stderr, collected by a thread. Taking it waits a moment for the
/// pipe to close, then takes what arrived: a process the child left behind may hold the
/// pipe open.
struct Tail {
    text: std::sync::Arc<parking_lot::Mutex<Vec<u8>>>,
    done: Receiver<()>,
}

impl Tail {
    fn take(self) -> String {
        let _ = self.done.recv_timeout(Duration::from_millis(200));
        let tail = self.text.lock();
        String::from_utf8_lossy(&tail).into_owned()
    }
}

fn spawn_tail(mut stderr: impl Read + Send + 'static) -> std::io::Result<Tail> {
    let text = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (tx, done) = crossbeam_channel::bounded(1);
    let kept = std::sync::Arc::clone(&text);
    std::thread::Builder::new()
        .name("bluegreen-quarantine-stderr".to_owned())
        .spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut tail = kept.lock();
                tail.extend_from_slice(&chunk[..n]);
                if tail.len() > STDERR_TAIL {
                    let excess = tail.len() - STDERR_TAIL;
                    tail.drain(..excess);
                }
            }
            let _ = tx.send(());
        })?;
    Ok(Tail { text, done })
}

fn setup_failed(mut report: QuarantineReport, reason: String) -> QuarantineReport {
    tracing::warn!(target: "bluegreen::quarantine", version = %report.version, %reason,
        "quarantine could not start");
    report.refusal = Some(QuarantineError::Setup { reason });
    report
}
