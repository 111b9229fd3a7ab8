//! Shadow traffic: what mirroring live calls to a staged candidate costs the caller.
//!
//! `shadow/1t`: one thread calls `BlueGreen::predict` on the trivial model of
//! `benches/common` (`x + 1`) with a candidate staged, and
//! - `none`: no shadow configured;
//! - `saturated`: every call mirrored (fraction 1.0) through a queue of 4 to a worker held
//!   200 µs per mirror (a slow candidate): the queue is always full and nearly every mirror
//!   is dropped and counted — the caller pays for the sampling decision, the copies and a
//!   failed non-blocking enqueue;
//! - `1pct`: 1 % of calls mirrored, same worker and queue.
//!
//! `shadow_onnx/1t` (with the `onnx` feature): the real digits models, v1 live and v2
//! staged (both warmed), every call mirrored through a queue of 4 (`Shadow::summarized`
//! keeping the live labels, since `Outputs` is not `Clone`): `none`; `saturated` (the worker
//! held 200 µs per mirror, so it sleeps instead of competing for a core: the caller's own
//! cost); `real` (the worker runs v2 flat out on the other core).
//!
//! Time per call, as in `overhead`: chunks of calls, counted only when the thread was not
//! preempted. After the groups, the shadow counters are printed (dropped must be > 0 to show
//! the queue was saturated). `examples/quickbench.rs` (section `shadow`) prints the ratios.
//!
//! `cargo bench --bench shadow` (`--no-default-features` for the trivial model only).

mod common;

use std::time::Duration;

use common::{DEFAULT_CHUNK_CALLS, Load, ShadowMode, ShadowPath, charged_with, run_chunks};
use criterion::{BenchmarkId, Criterion};

fn trivial(c: &mut Criterion) {
    let mut group = c.benchmark_group("shadow/1t");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut counters = Vec::new();
    for mode in ShadowMode::ALL {
        let path = ShadowPath::new(mode);
        group.bench_function(BenchmarkId::from_parameter(mode.name()), |b| {
            b.iter_custom(|iters| {
                charged_with(iters, DEFAULT_CHUNK_CALLS, |chunks, calls| {
                    run_chunks(&path, Load::ONE, chunks, calls)
                })
            });
        });
        counters.push((mode, path.shadow()));
    }
    group.finish();
    for (mode, status) in counters {
        if let Some(s) = status {
            println!(
                "shadow/1t/{}: mirrored {}, dropped {}, compared {}",
                mode.name(),
                s.mirrored,
                s.dropped,
                s.compared
            );
        }
    }
}

#[cfg(feature = "onnx")]
fn onnx(c: &mut Criterion) {
    use common::onnx::{OnnxShadow, OnnxShadowMode, environment};

    environment();
    let mut group = c.benchmark_group("shadow_onnx/1t");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut counters = Vec::new();
    for mode in [
        OnnxShadowMode::None,
        OnnxShadowMode::Saturated,
        OnnxShadowMode::Real,
    ] {
        let name = mode.name();
        let shadow = OnnxShadow::new(mode);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                charged_with(iters, 500, |chunks, calls| shadow.run(chunks, calls))
            });
        });
        counters.push((name, shadow.shadow()));
    }
    group.finish();
    for (name, status) in counters {
        if let Some(s) = status {
            println!(
                "shadow_onnx/1t/{name}: mirrored {}, dropped {}, compared {}, agreement {:.3}",
                s.mirrored, s.dropped, s.compared, s.agreement
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    trivial(&mut c);
    #[cfg(feature = "onnx")]
    onnx(&mut c);
    c.final_summary();
}
