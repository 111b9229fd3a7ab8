//! CPU-time accounting from Linux procfs: how long this thread waited for a CPU
//! ([`thread_run_delay_ns`], schedstat) and how much CPU other processes used meanwhile
//! ([`with_other_load`], `/proc/stat` against `/proc/self/stat`).

use std::time::Instant;

/// Nanoseconds the calling thread has spent runnable but waiting for a CPU (preempted by
/// another thread or process), from Linux schedstat (`run_delay`), if available.
///
/// Exact at any moment the thread itself is running: the kernel adds each wait when the
/// thread gets a CPU back. (Its on-CPU figure, by contrast, is only refreshed at ticks.)
/// Time the hypervisor steals is invisible here, as everywhere in the guest.
pub fn thread_run_delay_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time other processes used while `f` ran, as a share of one CPU: non-idle time of
/// all CPUs (`/proc/stat`, steal included) minus this process's own (`/proc/self/stat`),
/// over the wall time. Tick-based (10 ms), so only meaningful for runs of ~50 ms or more,
/// and only to tell a quiet machine from a busy one: on a 2-core machine a compile on the
/// other core slows a single-threaded model call by up to ~1.7× here (shared caches and
/// memory bandwidth, or hyperthreads of one host core), without preempting it.
pub fn with_other_load<R>(f: impl FnOnce() -> R) -> (R, Option<f64>) {
    let before = (machine_busy_ticks(), process_ticks());
    let started = Instant::now();
    let r = f();
    let wall_ticks = started.elapsed().as_secs_f64() * TICKS_PER_S;
    let after = (machine_busy_ticks(), process_ticks());
    let share = match (before, after) {
        ((Some(b0), Some(p0)), (Some(b1), Some(p1))) => {
            let others = b1.saturating_sub(b0) as f64 - p1.saturating_sub(p0) as f64;
            Some((others / wall_ticks.max(1.0)).max(0.0))
        }
        _ => None,
    };
    (r, share)
}

/// Linux's `USER_HZ` (the unit of `/proc/stat`), 100 on every mainstream configuration.
const TICKS_PER_S: f64 = 100.0;

/// Non-idle ticks of all CPUs (user, nice, system, irq, softirq, steal).
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal ...
    Some([0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum())
}

/// This process's user + system ticks, all threads.
fn process_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let v: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(3) ... utime(14) stime(15), 1-based over the whole line.
    Some(v.get(11)?.parse::<u64>().ok()? + v.get(12)?.parse::<u64>().ok()?)
}
