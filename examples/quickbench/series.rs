//! Interleaved rounds: [`Series`] (one configuration's chunked runs over rounds: per-round
//! medians, paired ratios), [`interleave`] (configurations run in rotated order each round)
//! and [`noise_band`] (the A/A spread a ratio is judged against).

use crate::common;

/// One configuration's chunked runs over interleaved rounds.
#[derive(Default)]
pub struct Series {
    /// Per round: median ns/call over that run's concurrent chunks (None if none was).
    rounds: Vec<Option<f64>>,
    /// Every concurrent chunk's ns/call, and every chunk's.
    concurrent: Vec<f64>,
    all: Vec<f64>,
}

impl Series {
    /// A round in which this configuration did not run.
    pub fn skip_round(&mut self) {
        self.rounds.push(None);
    }

    pub fn record(&mut self, r: &common::RunResult) {
        let good = r.concurrent_ns();
        self.rounds
            .push((!good.is_empty()).then(|| common::median(&good)));
        self.concurrent.extend(good);
        self.all.extend(r.all_ns());
    }

    /// ns per call per thread: median over concurrent chunks (all chunks if none was).
    pub fn ns(&self) -> f64 {
        common::median(if self.concurrent.is_empty() {
            &self.all
        } else {
            &self.concurrent
        })
    }

    pub fn concurrent_chunks(&self) -> usize {
        self.concurrent.len()
    }

    pub fn chunks(&self) -> usize {
        self.all.len()
    }

    #[cfg_attr(not(feature = "onnx"), allow(dead_code))]
    pub fn concurrent_share(&self) -> f64 {
        self.concurrent.len() as f64 / self.all.len().max(1) as f64
    }

    /// `f(self, other)` per round, over rounds where both had concurrent chunks.
    pub fn paired(&self, other: &Series, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
        self.rounds
            .iter()
            .zip(&other.rounds)
            .filter_map(|(a, b)| Some(f((*a)?, (*b)?)))
            .collect()
    }

    /// Median of the per-round ratios self/other (both sides ran in the same round); the
    /// ratio of the overall medians if no round paired.
    pub fn ratio(&self, other: &Series) -> f64 {
        let paired = self.paired(other, |a, b| a / b);
        if paired.is_empty() {
            self.ns() / other.ns()
        } else {
            common::median(&paired)
        }
    }
}

/// Runs `run(i)` for every configuration `i < n` per round, the order rotated each round,
/// for `rounds` rounds.
pub fn interleave(n: usize, rounds: usize, mut run: impl FnMut(usize)) {
    for round in 0..rounds {
        for k in 0..n {
            run((k + round) % n);
        }
    }
}

/// A band for "within noise": how far the same configuration measured twice (A/A) typically
/// strays from 1 (median of |A/A − 1| over paired rounds), at least 1 %.
pub fn noise_band(a: &Series, a_again: &Series) -> f64 {
    let dev: Vec<f64> = a_again.paired(a, |x, y| (x / y - 1.0).abs());
    if dev.is_empty() {
        f64::NAN
    } else {
        common::median(&dev).max(0.01)
    }
}
