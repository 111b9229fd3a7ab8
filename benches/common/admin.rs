//! Admin-operation timers: a gate-less [`Trivial`] deployment and one timed stage + swap
//! (+ rollback) cycle ([`admin_cycle`]), with the parts that are reported
//! ([`CYCLE_PARTS`]).

use std::time::{Duration, Instant};

use bluegreen::BlueGreen;

use super::Trivial;

/// A deployment of [`Trivial`] with no gates and no warm-up: `swap` is the flip plus
/// bookkeeping, nothing spawned.
pub fn trivial_deployment() -> BlueGreen<Trivial> {
    BlueGreen::new("v0", Trivial { tag: 0 }).expect("deployment")
}

/// Times of one stage + swap + rollback cycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct CycleTimes {
    /// `stage()` wall time (retires the previous standby first).
    pub stage: Duration,
    /// `StageReport::drain_wait`: the part of `stage` spent waiting for the old standby's
    /// in-flight calls (the rest is mostly the hand-off to the retirer thread).
    pub stage_drain: Duration,
    /// `swap()` wall time, measured by the caller.
    pub swap: Duration,
    /// `SwapReport::flip`: the pointer store alone, measured inside bluegreen.
    pub swap_flip: Duration,
    /// `rollback()` wall time.
    pub rollback: Duration,
    /// `RollbackReport::flip`.
    pub rollback_flip: Duration,
}

/// Picks one part of a [`CycleTimes`].
pub type Pick = fn(&CycleTimes) -> Duration;

/// The parts of a cycle that are reported: name, whether it needs the rollback step, pick.
pub const CYCLE_PARTS: [(&str, bool, Pick); 6] = [
    ("stage", false, |t| t.stage),
    ("stage_drain_wait", false, |t| t.stage_drain),
    ("swap_total", false, |t| t.swap),
    ("swap_flip", false, |t| t.swap_flip),
    ("rollback_total", true, |t| t.rollback),
    ("rollback_flip", true, |t| t.rollback_flip),
];

/// Stages `v{seq}`, swaps to it, and (if `rollback`) rolls back, timing each step.
/// `seq` must be new for this deployment.
pub fn admin_cycle(bg: &BlueGreen<Trivial>, seq: u64, rollback: bool) -> CycleTimes {
    let mut t = CycleTimes::default();
    let started = Instant::now();
    let report = bg
        .stage(format!("v{seq}"), Trivial { tag: seq })
        .expect("stage");
    t.stage = started.elapsed();
    t.stage_drain = report.drain_wait;
    let started = Instant::now();
    let report = bg.swap().expect("swap");
    t.swap = started.elapsed();
    t.swap_flip = report.flip;
    if rollback {
        let started = Instant::now();
        let report = bg.rollback().expect("rollback");
        t.rollback = started.elapsed();
        t.rollback_flip = report.flip;
    }
    t
}
