//! What a concurrent run measured: one [`Chunk`] per timed chunk, the rule for which
//! chunks count ([`Chunk::concurrent`]: the readers really ran at once, each on its own
//! CPU), the [`RunResult`] of a run, and [`charged_with`], which turns runs into the time
//! criterion's `iter_custom` is charged.

use std::time::Duration;

use super::median;

/// A chunk counts only if every reader was on a CPU for at least this share of its wall
/// time in it...
pub const MIN_CPU_SHARE: f64 = 0.85;
/// ...and the readers' timed windows coincided for at least this share of the longest...
pub const MIN_OVERLAP: f64 = 0.8;
/// ...and no reader saw the others stand still for more than this share of its progress
/// checks in a row (catches a virtual CPU taken away by the hypervisor, which the guest's
/// scheduler statistics do not show; 32 checks per chunk, so up to 3 in a row pass).
pub const MAX_STALL: f64 = 0.1;

/// One timed chunk: every reader made `calls` calls, starting together.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    /// Mean over readers of ns per call, charged as wall time minus time spent preempted
    /// (plain wall time where the kernel does not report it).
    pub ns_per_call: f64,
    /// Mean over readers of ns per call in wall time.
    pub wall_ns_per_call: f64,
    /// Lowest reader share of its wall time not spent preempted, in this chunk.
    pub cpu_share: Option<f64>,
    /// Time all readers were inside the chunk at once, over the longest reader's time.
    pub overlap: f64,
    /// Longest run of consecutive in-chunk progress checks at which some reader saw the
    /// others not advance, as a share of its checks (0.0 with one reader).
    pub stall: f64,
}

impl Chunk {
    /// Whether the readers really ran at the same time, each on its own CPU, for (nearly)
    /// the whole chunk. On a shared 2-core machine another process often takes one core;
    /// then "2 readers" would silently mean "2 readers time-sliced on 1 core" (no
    /// contention at all), so such chunks are set aside, not averaged in.
    pub fn concurrent(&self) -> bool {
        self.overlap >= MIN_OVERLAP
            && self.stall <= MAX_STALL
            && self.cpu_share.is_none_or(|s| s >= MIN_CPU_SHARE)
    }
}

/// What one concurrent run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub chunks: Vec<Chunk>,
    /// Calls per reader per chunk.
    pub chunk_calls: u64,
    /// Model replacements the writer made while readers ran.
    pub writes: u64,
    /// Wall time of the writer's loop (0 without a writer).
    pub writer_wall: Duration,
}

impl RunResult {
    /// ns per call of the chunks in which the readers really ran concurrently.
    pub fn concurrent_ns(&self) -> Vec<f64> {
        let good = self.chunks.iter().filter(|c| c.concurrent());
        good.map(|c| c.ns_per_call).collect()
    }
    /// ns per call of every chunk.
    pub fn all_ns(&self) -> Vec<f64> {
        self.chunks.iter().map(|c| c.ns_per_call).collect()
    }
    /// Achieved mean interval between writes, if a writer ran.
    pub fn writer_interval(&self) -> Option<Duration> {
        (self.writes > 0).then(|| self.writer_wall / self.writes as u32)
    }
}

/// Runs [`AnyPath::charged`] makes at most while waiting for a concurrent chunk.
pub const MAX_ATTEMPTS: usize = 10;

/// Time charged for `iters` calls per reader, for criterion's `iter_custom`: `run(chunks,
/// chunk_calls)` makes the calls in chunks of at most `max_chunk_calls`; the median ns/call
/// over concurrent chunks (see [`Chunk::concurrent`]) is scaled to `iters`. Reruns (a
/// bounded number of times) while no chunk was concurrent, so a sample taken while another
/// process held a core is not silently an uncontended one; falls back to all chunks if that
/// never succeeds.
pub fn charged_with(
    iters: u64,
    max_chunk_calls: u64,
    mut run: impl FnMut(usize, u64) -> RunResult,
) -> Duration {
    let chunk_calls = iters.clamp(1, max_chunk_calls.max(1));
    let chunks = iters.div_ceil(chunk_calls) as usize;
    let mut all = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let r = run(chunks, chunk_calls);
        let good = r.concurrent_ns();
        if !good.is_empty() {
            return per_call_to_total(median(&good), iters);
        }
        all.extend(r.all_ns());
    }
    per_call_to_total(median(&all), iters)
}

fn per_call_to_total(ns: f64, iters: u64) -> Duration {
    Duration::from_secs_f64(ns.max(0.0) * iters as f64 * 1e-9)
}
