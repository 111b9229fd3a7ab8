//! What a child used — [`Usage`] — as the parent sees it from outside (`/proc` on Linux)
//! and as the child reports it (`getrusage`).
//!
//! On Linux the parent samples the child's peak resident memory (`VmHWM` in
//! `/proc/<pid>/status`) and its CPU time (`utime + stime` in `/proc/<pid>/stat`) every
//! few milliseconds while it runs, and once more after it exited but before it is reaped
//! (the CPU time of a zombie is still there). A child that finishes also reports its own
//! `getrusage` figures; the larger of the two is kept. Elsewhere only the child's own
//! report and the wall time are known.

use std::time::Duration;

use super::protocol::ChildUsage;

/// What a quarantine child used.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Usage {
    /// Peak resident memory of the child, bytes (when known).
    pub peak_memory: Option<u64>,
    /// CPU time the child used, user + system (when known).
    #[serde(serialize_with = "crate::serde_util::opt_secs")]
    pub cpu: Option<Duration>,
    /// Wall time from spawning the child to its end.
    #[serde(serialize_with = "crate::serde_util::secs")]
    pub elapsed: Duration,
}

impl Usage {
    /// Takes the larger of each figure.
    pub(crate) fn merge(&mut self, peak: Option<u64>, cpu: Option<Duration>) {
        self.peak_memory = self.peak_memory.max(peak);
        self.cpu = self.cpu.max(cpu);
    }

    /// Merges what the child said about itself.
    pub(crate) fn merge_child(&mut self, child: &ChildUsage) {
        let cpu = child
            .cpu_secs
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        self.merge(child.peak_rss, cpu);
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.peak_memory {
            Some(b) => write!(f, "peak {:.1} MB", b as f64 / 1e6)?,
            None => f.write_str("peak memory unknown")?,
        }
        match self.cpu {
            Some(c) => write!(f, ", CPU {:.2} s", c.as_secs_f64())?,
            None => f.write_str(", CPU unknown")?,
        }
        write!(f, ", {:.2} s", self.elapsed.as_secs_f64())
    }
}

/// Samples a running (or exited, unreaped) child from `/proc`.
pub(crate) struct Sampler {
    pid: u32,
    ticks_per_sec: u64,
}

impl Sampler {
    pub(crate) fn new(pid: u32) -> Self {
        Self {
            pid,
            ticks_per_sec: ticks_per_sec(),
        }
    }

    /// Peak resident memory (bytes), when readable.
    pub(crate) fn peak_memory(&self) -> Option<u64> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kb.checked_mul(1024)
    }

    /// CPU time (user + system), when readable.
    pub(crate) fn cpu(&self) -> Option<Duration> {
        if !cfg!(target_os = "linux") {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace();
        // Fields 3.. follow; utime is field 14, stime field 15.
        let utime: u64 = fields.nth(11)?.parse().ok()?;
        let stime: u64 = fields.next()?.parse().ok()?;
        let ticks = utime.checked_add(stime)?;
        Some(Duration::from_secs_f64(
            ticks as f64 / self.ticks_per_sec as f64,
        ))
    }
}

#[cfg(unix)]
fn ticks_per_sec() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

#[cfg(not(unix))]
fn ticks_per_sec() -> u64 {
    100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_from_proc() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let s = Sampler::new(std::process::id());
        assert!(s.peak_memory().is_some_and(|b| b > 0));
        assert!(s.cpu().is_some());
    }

    #[test]
    fn merge_keeps_the_larger_figure() {
        let mut u = Usage::default();
        u.merge(Some(10), Some(Duration::from_secs(2)));
        u.merge(Some(5), None);
        u.merge_child(&ChildUsage {
            peak_rss: Some(20),
            cpu_secs: Some(-1.0),
        });
        assert_eq!(u.peak_memory, Some(20));
        assert_eq!(u.cpu, Some(Duration::from_secs(2)));
    }
}
