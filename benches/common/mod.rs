//! Shared in-process harness for the benches (`benches/*.rs`) and `examples/quickbench.rs`.
//! Keeping one copy here means the criterion benches and the quick mode measure exactly the
//! same thing. One file per concern:
//!
//! - `models.rs`: the models measured, [`Trivial`] (`x + 1`, out of line) and [`Weights`]
//!   (a resident 1 MiB allocation, counted by a [`Census`]).
//! - `read_paths.rs`: the read paths bluegreen is compared against ([`ReadPath`]: a direct
//!   call, raw `ArcSwap`, std and parking_lot `RwLock`, `Mutex` + clone, `ArcSwap` plus a
//!   shared counter, `BlueGreen::predict`), named and built by [`PathKind`], run as an
//!   [`AnyPath`].
//! - `runner.rs`: the multi-threaded runner: readers released together by a barrier for
//!   every chunk, an optional writer replacing the model on a fixed schedule ([`Load`]);
//!   [`run_chunks`], [`run_chunks_with`] for paths with per-thread state such as a bare
//!   ONNX Runtime session, [`calibrate`].
//! - `chunks.rs`: what a run measured: [`Chunk`], which chunks count
//!   ([`Chunk::concurrent`]), [`RunResult`], and [`charged_with`] for criterion's
//!   `iter_custom`.
//! - `cpu_time.rs`: CPU accounting from Linux procfs: how long this thread waited for a
//!   CPU, how much other processes used.
//! - `admin.rs`: the admin-operation timers: one timed stage + swap (+ rollback) cycle and
//!   the parts reported ([`CYCLE_PARTS`]).
//! - `busy_readers.rs`: untimed reader threads kept busy while something else is measured.
//! - `memory.rs`: the memory cycle driver: stage + swap cycles of [`Weights`], RSS at
//!   checkpoints, models alive.
//! - `shadow.rs`: the shadow-traffic set-ups on [`Trivial`]: none, saturated, 1 %.
//! - `stats.rs`: median, nearest-rank percentile, durations in nanoseconds.
//! - `onnx/` (feature `onnx`): the real digits models — read paths, first calls after a
//!   swap, validation throughput, shadowing; its `mod.rs` lists its files.
//!
//! Included by the benches as `mod common;` and by the example through
//! `#[path = "../benches/common/mod.rs"] mod common;`.

// Each bench compiles this folder on its own and uses only part of it (overhead the read
// paths, memory the memory driver, …): what one of them leaves unused is not dead.
#![allow(dead_code)]

mod admin;
mod busy_readers;
mod chunks;
mod cpu_time;
mod memory;
mod models;
mod read_paths;
mod runner;
mod shadow;
mod stats;

// The shared API, flat (`common::Load`, `common::median`, …). Each bench names only some of
// it, so a re-export one of them leaves unused is not a mistake.
#[allow(unused_imports)]
pub use self::{
    admin::{CYCLE_PARTS, CycleTimes, Pick, admin_cycle, trivial_deployment},
    busy_readers::{with_busy_readers, with_readers_running},
    chunks::{Chunk, MAX_ATTEMPTS, MAX_STALL, MIN_CPU_SHARE, MIN_OVERLAP, RunResult, charged_with},
    cpu_time::{thread_run_delay_ns, with_other_load},
    memory::{MemoryRun, Staging, memory_cycles, rss_bytes},
    models::{Census, Trivial, WEIGHTS_BYTES, Weights},
    read_paths::{
        AnyPath, ArcSwapLoad, ArcSwapLoadFull, ArcSwapSharedCounter, BlueGreenPredict, Direct,
        ParkingLotRwLock, PathKind, ReadPath, StdMutexClone, StdRwLock,
    },
    runner::{DEFAULT_CHUNK_CALLS, Load, WRITER_PERIOD, calibrate, run_chunks, run_chunks_with},
    shadow::{SHADOW_QUEUE, SHADOW_SLOW, ShadowMode, ShadowPath},
    stats::{median, nanos, percentile},
};

#[cfg(feature = "onnx")]
pub mod onnx;
