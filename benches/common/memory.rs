//! The memory cycle driver: many stage + swap cycles of 1 MiB [`Weights`] models with RSS
//! read at checkpoints ([`memory_cycles`], [`rss_bytes`]) and the models alive counted.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bluegreen::BlueGreen;

use super::{Census, Weights, with_busy_readers};

/// Resident set size of this process, from `/proc/self/status` (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How a candidate is handed to the deployment in [`memory_cycles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staging {
    /// `stage_with`: loaded only after the old standby is dropped (at most 2 alive).
    StageWith,
    /// `stage`: the candidate exists before the old standby is retired (3 for a moment).
    Stage,
}

/// What [`memory_cycles`] observed.
#[derive(Debug, Clone)]
pub struct MemoryRun {
    /// `(cycles done, RSS in bytes)` at each checkpoint.
    pub rss: Vec<(usize, u64)>,
    pub max_alive: usize,
    pub alive_at_end: usize,
    pub created: usize,
    pub elapsed: Duration,
}

impl MemoryRun {
    pub fn rss_at(&self, cycles: usize) -> Option<u64> {
        self.rss.iter().find(|(c, _)| *c == cycles).map(|(_, b)| *b)
    }

    /// RSS after `late` cycles over RSS after `early` (NaN unless both were recorded and
    /// the first is non-zero).
    pub fn rss_growth(&self, early: usize, late: usize) -> f64 {
        match (self.rss_at(early), self.rss_at(late)) {
            (Some(a), Some(b)) if a > 0 => b as f64 / a as f64,
            _ => f64::NAN,
        }
    }
}

/// Runs stage + swap cycles of 1 MiB [`Weights`] models (with `readers` threads calling
/// `predict` throughout) and records RSS after each checkpoint's number of cycles.
pub fn memory_cycles(checkpoints: &[usize], staging: Staging, readers: usize) -> MemoryRun {
    let census = Census::new();
    let started = Instant::now();
    let bg = BlueGreen::new("v0", Weights::new(&census, 0)).expect("deployment");
    let last = checkpoints.iter().copied().max().unwrap_or(0);
    let mut rss = Vec::new();
    with_busy_readers(&bg, readers, &7, || {
        for cycle in 1..=last {
            let version = format!("v{cycle}");
            match staging {
                Staging::StageWith => bg.stage_with(version, || {
                    Ok::<_, Infallible>(Weights::new(&census, cycle as u64))
                }),
                Staging::Stage => bg.stage(version, Weights::new(&census, cycle as u64)),
            }
            .expect("stage");
            bg.swap().expect("swap");
            if checkpoints.contains(&cycle) {
                rss.push((cycle, rss_bytes().unwrap_or(0)));
            }
        }
    });
    drop(bg);
    MemoryRun {
        rss,
        max_alive: census.max_alive(),
        alive_at_end: census.alive(),
        created: census.created(),
        elapsed: started.elapsed(),
    }
}
