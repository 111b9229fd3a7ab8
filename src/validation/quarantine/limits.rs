//! The caps on a quarantine child: [`Limits`] as configured, and how the child applies
//! them to itself.
//!
//! | cap | enforced by | refusal |
//! |---|---|---|
//! | memory | the kernel: `RLIMIT_AS` (address space) set by the child on itself before it touches the candidate; allocations past it fail | [`ExceededMemory`](super::QuarantineError::ExceededMemory) |
//! | CPU time | the parent, which reads the child's CPU time every few milliseconds and kills it past the cap (Linux); the kernel's `RLIMIT_CPU` as a backstop on every Unix, at the cap rounded up to whole seconds plus one | [`ExceededCpu`](super::QuarantineError::ExceededCpu) |
//! | wall clock | the parent, which kills the child's process group (SIGKILL) at the deadline; the child also exits by itself two seconds past it, should the parent be gone | [`ExceededWallTime`](super::QuarantineError::ExceededWallTime) |
//! | output | the parent, which reads at most `max_output` bytes of the child's stdout and keeps only the tail of its stderr | [`Garbage`](super::QuarantineError::Garbage) |
//!
//! The memory cap is on **address space**, not resident memory: that is what an
//! unprivileged process can cap without cgroups. ONNX Runtime reserves address space it
//! does not touch (thread stacks, allocator arenas); measured here, a child that loaded
//! and ran a digits model used ~115 MB of address space for ~35 MB resident. The child
//! runs with `MALLOC_ARENA_MAX=2`, so glibc does not reserve 64 MB of address space per
//! thread. Size the cap at a few times the model's size plus ~200 MB. Core dumps are off
//! in the child (`RLIMIT_CORE` = 0): a crash costs no disk and no time.

use std::time::Duration;

use super::protocol::ChildLimits;

/// The caps on a quarantine child; see the [module docs](self) for how each is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) memory: Option<u64>,
    pub(crate) cpu: Option<Duration>,
    pub(crate) wall: Duration,
    pub(crate) handshake: Duration,
    pub(crate) max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: Some(2 << 30),
            cpu: Some(Duration::from_secs(60)),
            wall: Duration::from_secs(120),
            handshake: Duration::from_secs(10),
            max_output: 1 << 20,
        }
    }
}

impl Limits {
    /// What the child sets on itself.
    pub(crate) fn for_child(&self) -> ChildLimits {
        ChildLimits {
            memory: self.memory,
            // One second past the cap: the parent, which measures in milliseconds, acts
            // first where it can read the child's CPU time.
            cpu_secs: self.cpu.map(|c| {
                let whole = c.as_secs() + u64::from(c.subsec_nanos() > 0);
                whole.max(1) + 1
            }),
            wall: self.wall,
        }
    }
}

/// Applies the caps to this process (the child), before the candidate is touched.
#[cfg(unix)]
pub(crate) fn apply(limits: &ChildLimits) -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};

    let set = |resource: Resource, name: &str, soft: u64, hard: u64| {
        // Never above the hard limit this process already has (raising it needs privileges).
        let (_, current_hard) =
            getrlimit(resource).map_err(|e| format!("getrlimit {name}: {e}"))?;
        let hard = hard.min(current_hard);
        setrlimit(resource, soft.min(hard), hard).map_err(|e| format!("setrlimit {name}: {e}"))
    };
    set(Resource::RLIMIT_CORE, "RLIMIT_CORE", 0, 0)?;
    if let Some(bytes) = limits.memory {
        set(Resource::RLIMIT_AS, "RLIMIT_AS", bytes, bytes)?;
    }
    if let Some(secs) = limits.cpu_secs {
        // SIGXCPU at the soft limit, SIGKILL a second later.
        set(
            Resource::RLIMIT_CPU,
            "RLIMIT_CPU",
            secs,
            secs.saturating_add(1),
        )?;
    }
    Ok(())
}

/// Without setrlimit, the child cannot cap itself: it refuses to run the candidate.
#[cfg(not(unix))]
pub(crate) fn apply(_limits: &ChildLimits) -> Result<(), String> {
    Err("quarantine caps need setrlimit (Unix); this platform has none".to_owned())
}

/// What this process (the child) has used so far, by its own account (`getrusage`).
#[cfg(unix)]
pub(crate) fn own_usage() -> super::protocol::ChildUsage {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return Default::default();
    };
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    // Linux reports ru_maxrss in KiB, macOS in bytes.
    let scale = if cfg!(target_os = "macos") { 1 } else { 1024 };
    super::protocol::ChildUsage {
        peak_rss: u64::try_from(usage.max_rss())
            .ok()
            .map(|kb| kb.saturating_mul(scale)),
        cpu_secs: Some(secs(usage.user_time()) + secs(usage.system_time())),
    }
}

/// Not measured without getrusage.
#[cfg(not(unix))]
pub(crate) fn own_usage() -> super::protocol::ChildUsage {
    Default::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_cpu_backstop_is_a_whole_second_past_the_rounded_up_cap() {
        let l = |cpu| Limits {
            cpu: Some(cpu),
            ..Limits::default()
        };
        assert_eq!(l(Duration::from_millis(1500)).for_child().cpu_secs, Some(3));
        assert_eq!(l(Duration::from_secs(3)).for_child().cpu_secs, Some(4));
        assert_eq!(l(Duration::from_millis(10)).for_child().cpu_secs, Some(2));
    }
}
