//! How a quarantine child ended, as a verdict: its report, and the refusal naming the
//! cause (a cap, a signal, a gate, a load failure, garbage, no hook).

use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use super::error::QuarantineError;
use super::limits::Limits;
use super::parent::{Kill, Seen};
use super::protocol::Frame;
use super::usage::Usage;
use crate::validation::validate::ValidationReport;

/// Words that say an allocation failed (Rust's alloc error handler, C++'s `bad_alloc`,
/// ONNX Runtime's allocators, glibc's `ENOMEM`).
const OUT_OF_MEMORY: &[&str] = &[
    "memory allocation of",
    "bad_alloc",
    "bad allocation",
    "failed to allocate",
    "cannot allocate memory",
    "out of memory",
];

fn out_of_memory(text: &str) -> bool {
    let lower = text.to_lowercase();
    OUT_OF_MEMORY.iter().any(|w| lower.contains(w))
}

/// How the child ended, as a verdict: the child's report (if any) and the refusal (if
/// any).
pub(super) fn classify(
    exe: &Path,
    limits: &Limits,
    usage: &Usage,
    status: Option<ExitStatus>,
    kill: Option<Kill>,
    seen: Seen,
    stderr: String,
) -> (Option<ValidationReport>, Option<QuarantineError>) {
    use QuarantineError as Q;
    let memory = |detail: String| Q::ExceededMemory {
        limit: limits.memory.unwrap_or(u64::MAX),
        detail,
    };
    let stderr = last_lines(&stderr);
    match kill {
        Some(Kill::Wall) => return (None, Some(Q::ExceededWallTime { limit: limits.wall })),
        Some(Kill::Cpu(used)) => {
            let limit = limits.cpu.unwrap_or_default();
            return (None, Some(Q::ExceededCpu { limit, used }));
        }
        Some(Kill::Garbage(reason)) => return (None, Some(Q::Garbage { reason })),
        Some(Kill::Silent) => {
            let detail = format!("no hello within {:?}", limits.handshake);
            let program = exe.to_path_buf();
            return (
                None,
                Some(Q::NoHook {
                    program,
                    detail,
                    stderr,
                }),
            );
        }
        Some(Kill::Done) | None => {}
    }
    // Garbage seen just before the child ended (it may exit, e.g. on SIGPIPE, before the
    // parent got to kill it).
    if let Some(reason) = seen.garbage {
        return (None, Some(Q::Garbage { reason }));
    }
    if !seen.hello {
        let detail = match status {
            Some(s) => format!("it {}", describe(s)),
            None => "it ended without a word".to_owned(),
        };
        let program = exe.to_path_buf();
        return (
            None,
            Some(Q::NoHook {
                program,
                detail,
                stderr,
            }),
        );
    }
    match seen.last {
        Some(Frame::Verdict { report, .. }) => {
            if report.passed() {
                return (Some(report), None);
            }
            let alloc = report
                .failures()
                .map(|c| c.detail.as_str())
                .find(|d| limits.memory.is_some() && out_of_memory(d))
                .map(str::to_owned);
            let refusal = match alloc {
                Some(detail) => memory(detail),
                None => Q::Refused(Box::new(report.clone())),
            };
            return (Some(report), Some(refusal));
        }
        Some(Frame::LoadFailed { reason, .. }) => {
            let refusal = if limits.memory.is_some() && out_of_memory(&reason) {
                memory(reason)
            } else {
                Q::FailedToLoad { reason }
            };
            return (None, Some(refusal));
        }
        Some(Frame::UnknownLoader { name, available }) => {
            return (None, Some(Q::UnknownLoader { name, available }));
        }
        Some(Frame::BadJob { reason }) => return (None, Some(Q::Setup { reason })),
        Some(Frame::Hello { .. } | Frame::Loaded { .. }) | None => {}
    }
    // No verdict: how did it end?
    let Some(status) = status else {
        return (
            None,
            Some(Q::Exited {
                status: "ended (not reaped: no exit status)".to_owned(),
                stderr,
            }),
        );
    };
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        let name = signal_name(signal);
        let cpu_cap_hit = match (limits.cpu, usage.cpu) {
            (Some(cap), Some(used)) => used + Duration::from_millis(50) >= cap,
            _ => false,
        };
        if name == "SIGXCPU" || (name == "SIGKILL" && cpu_cap_hit) {
            let limit = limits.cpu.unwrap_or_default();
            let used = usage.cpu.unwrap_or(limit).max(limit);
            return (None, Some(Q::ExceededCpu { limit, used }));
        }
        if limits.memory.is_some() && out_of_memory(&stderr) {
            return (None, Some(memory(stderr)));
        }
        return (
            None,
            Some(Q::Crashed {
                signal,
                name,
                stderr,
            }),
        );
    }
    if limits.memory.is_some() && out_of_memory(&stderr) {
        return (None, Some(memory(stderr)));
    }
    let status = describe(status);
    (None, Some(Q::Exited { status, stderr }))
}

fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return format!("was killed by signal {signal} ({})", signal_name(signal));
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => status.to_string(),
    }
}

#[cfg(unix)]
fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// The last few lines of a stderr tail, trimmed for an error message.
fn last_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = lines.len().saturating_sub(8);
    let text = lines[from..].join("\n");
    if text.len() > 1500 {
        let cut = text.len() - 1500;
        let start = (cut..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(cut);
        format!("…{}", &text[start..])
    } else {
        text
    }
}
