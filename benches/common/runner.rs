//! The chunked concurrent runner: reader threads released together for every timed chunk
//! (spin barrier), an optional writer replacing the model on a fixed schedule, each chunk
//! timed per reader with its preemption and progress noted. [`run_chunks`] drives a
//! [`ReadPath`], [`run_chunks_with`] paths with per-reader state (a bare ONNX Runtime
//! session); [`calibrate`] sizes chunks. What a run returns, and which of its chunks count,
//! is in `chunks.rs`.

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::{AnyPath, Chunk, ReadPath, RunResult, nanos, thread_run_delay_ns};

/// The period the writer aims for ("a new model every 100 µs").
pub const WRITER_PERIOD: Duration = Duration::from_micros(100);

/// Calls per timed chunk when the caller does not choose (criterion's `iters`).
pub const DEFAULT_CHUNK_CALLS: u64 = 50_000;

/// How many readers run, and whether a writer replaces the model meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Load {
    pub readers: usize,
    pub writer: Option<Duration>,
}

impl Load {
    pub const ONE: Load = Load {
        readers: 1,
        writer: None,
    };
    pub const TWO: Load = Load {
        readers: 2,
        writer: None,
    };
    pub const ONE_WRITER: Load = Load {
        readers: 1,
        writer: Some(WRITER_PERIOD),
    };
    pub const TWO_WRITER: Load = Load {
        readers: 2,
        writer: Some(WRITER_PERIOD),
    };
    pub const ALL: [Load; 4] = [Load::ONE, Load::TWO, Load::ONE_WRITER, Load::TWO_WRITER];

    /// `1t`, `2t`, `1t_writer`, `2t_writer`.
    pub fn label(self) -> String {
        match self.writer {
            None => format!("{}t", self.readers),
            Some(_) => format!("{}t_writer", self.readers),
        }
    }
}

/// One reader's record of one chunk.
#[derive(Debug, Clone, Copy)]
struct Span {
    started: Instant,
    ended: Instant,
    /// Time spent preempted during the chunk, where the kernel reports it.
    delay: Option<u64>,
    /// Longest run of checks without the others advancing, over the number of checks.
    stall: f64,
}

/// Readers meet here before every chunk. Spins (the point is to start together), yielding
/// now and then in case the reader being waited for shares this CPU.
struct SpinBarrier {
    arrived: AtomicUsize,
    parties: usize,
}

impl SpinBarrier {
    fn wait(&self, round: usize) {
        let target = self.parties * (round + 1);
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < target {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Runs `load.readers` threads that each call `path` `chunks × chunk_calls` times, in
/// chunks all readers start together (spin barrier), while an optional writer thread
/// replaces the model on a fixed schedule (deadline-based, so timer slack does not stretch
/// the average period). Each reader times each chunk in wall time and notes how long it
/// was preempted meanwhile ([`thread_run_delay_ns`]); thread start-up
/// and barriers are outside the timed regions. See [`Chunk::concurrent`] for which chunks
/// count.
pub fn run_chunks<P: ReadPath>(path: &P, load: Load, chunks: usize, chunk_calls: u64) -> RunResult {
    let mut states = vec![(); load.readers];
    run_chunks_with(
        load,
        chunks,
        chunk_calls,
        &mut states,
        |_, x| path.call(x),
        || path.replace(),
    )
}

/// [`run_chunks`] for read paths that need per-reader state (e.g. a bare ONNX Runtime
/// session, whose `run` takes `&mut self`): reader `i` calls `call(&mut states[i], x)`;
/// the writer, if any, calls `replace()`. `states.len()` must equal `load.readers`.
pub fn run_chunks_with<S, C, W>(
    load: Load,
    chunks: usize,
    chunk_calls: u64,
    states: &mut [S],
    call: C,
    replace: W,
) -> RunResult
where
    S: Send,
    C: Fn(&mut S, u64) -> u64 + Sync,
    W: Fn() + Sync,
{
    assert_eq!(states.len(), load.readers, "one state per reader");
    let (call, replace) = (&call, &replace);
    let start = Barrier::new(load.readers + usize::from(load.writer.is_some()));
    let meet = SpinBarrier {
        arrived: AtomicUsize::new(0),
        parties: load.readers,
    };
    let stop = AtomicBool::new(false);
    // Each reader bumps its own progress counter every `block` calls and, at the same
    // points, checks whether the others' counters moved since its last check: proof that
    // they were really running meanwhile, which the guest kernel cannot give when the
    // hypervisor takes a virtual CPU away. One cross-core read per block: negligible.
    let progress: Vec<CachePadded<AtomicU64>> =
        (0..load.readers).map(|_| Default::default()).collect();
    // 32 progress checks per chunk, whatever a call costs (a trivial read path's chunk is
    // thousands to millions of calls, an ONNX chunk a few hundred of microseconds each).
    let block = (chunk_calls / 32).max(1);
    std::thread::scope(|s| {
        let readers: Vec<_> = states
            .iter_mut()
            .enumerate()
            .map(|(me, state)| {
                let (start, meet, progress) = (&start, &meet, &progress);
                s.spawn(move || {
                    let others = || -> u64 {
                        let all = progress.iter().enumerate().filter(|(i, _)| *i != me);
                        all.map(|(_, p)| p.load(Ordering::Relaxed)).sum()
                    };
                    start.wait();
                    let mut spans: Vec<Span> = Vec::with_capacity(chunks);
                    let mut acc = 0u64;
                    for round in 0..chunks {
                        meet.wait(round);
                        let delay_before = thread_run_delay_ns();
                        let (mut checks, mut stall, mut longest) = (0u32, 0u32, 0u32);
                        let mut seen = others();
                        let started = Instant::now();
                        let mut i = 0;
                        while i < chunk_calls {
                            let end = (i + block).min(chunk_calls);
                            for j in i..end {
                                acc = acc.wrapping_add(call(state, black_box(j)));
                            }
                            i = end;
                            let mine = &progress[me];
                            mine.store(mine.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                            let now = others();
                            checks += 1;
                            stall = if now == seen { stall + 1 } else { 0 };
                            longest = longest.max(stall);
                            seen = now;
                        }
                        let ended = Instant::now();
                        let delay = thread_run_delay_ns().zip(delay_before).map(|(a, b)| a - b);
                        spans.push(Span {
                            started,
                            ended,
                            delay,
                            stall: if load.readers > 1 {
                                f64::from(longest) / f64::from(checks.max(1))
                            } else {
                                0.0
                            },
                        });
                    }
                    black_box(acc);
                    spans
                })
            })
            .collect();
        let writer = load.writer.map(|period| {
            let (start, stop) = (&start, &stop);
            s.spawn(move || {
                start.wait();
                let started = Instant::now();
                let mut next = started + period;
                let mut writes = 0u64;
                while !stop.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else if now - next > period * 10 {
                        next = now; // far behind (descheduled): don't burst to catch up
                    }
                    next += period;
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    replace();
                    writes += 1;
                }
                (writes, started.elapsed())
            })
        });
        let spans: Vec<Vec<Span>> = readers.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Release);
        let (writes, writer_wall) = writer.map_or((0, Duration::ZERO), |h| h.join().unwrap());
        let per_call = |d: Duration| d.as_nanos() as f64 / chunk_calls.max(1) as f64;
        let chunks = (0..chunks)
            .map(|k| {
                let row: Vec<Span> = spans.iter().map(|r| r[k]).collect();
                let n = row.len() as f64;
                let walls: Vec<Duration> = row.iter().map(|r| r.ended - r.started).collect();
                let longest = walls.iter().copied().max().unwrap_or_default();
                let last_start = row.iter().map(|r| r.started).max();
                let first_end = row.iter().map(|r| r.ended).min();
                let common = match (last_start, first_end) {
                    (Some(a), Some(b)) if b > a => b - a,
                    _ => Duration::ZERO,
                };
                let wall_ns = walls.iter().map(|w| per_call(*w)).sum::<f64>() / n;
                // Charged time: wall minus time spent preempted (still counts time blocked
                // in a lock, which is the lock's cost).
                let charged: Option<Vec<f64>> = row
                    .iter()
                    .zip(&walls)
                    .map(|(r, w)| r.delay.map(|d| (w.as_nanos() as f64 - d as f64).max(0.0)))
                    .collect();
                let (ns, share) = match &charged {
                    Some(c) => {
                        let ns = c.iter().sum::<f64>() / n / chunk_calls.max(1) as f64;
                        let share = c
                            .iter()
                            .zip(&walls)
                            .map(|(c, w)| c / (w.as_nanos() as f64).max(1.0))
                            .fold(f64::INFINITY, f64::min);
                        (ns, Some(share))
                    }
                    None => (wall_ns, None),
                };
                let stall = row.iter().map(|r| r.stall).fold(0.0, f64::max);
                Chunk {
                    ns_per_call: ns,
                    wall_ns_per_call: wall_ns,
                    cpu_share: share,
                    overlap: common.as_secs_f64() / longest.as_secs_f64().max(1e-12),
                    stall,
                }
            })
            .collect();
        RunResult {
            chunks,
            chunk_calls,
            writes,
            writer_wall,
        }
    })
}

/// Picks calls per chunk so that one chunk of `path` under `load` takes about `target`.
pub fn calibrate(path: &AnyPath, load: Load, target: Duration) -> u64 {
    let mut calls = 10_000u64;
    loop {
        let r = path.run_chunks(load, 1, calls);
        let wall = r.chunks[0].wall_ns_per_call * calls as f64;
        if wall >= nanos(target) / 8.0 || calls >= 1 << 32 {
            let per_call = r.chunks[0].wall_ns_per_call.max(1e-3);
            return ((nanos(target) / per_call) as u64).clamp(1_000, 1 << 34);
        }
        calls *= 8;
    }
}
