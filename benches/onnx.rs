//! The real ONNX model (digits v2: MLP 64 → 64 → 10, from `models/digits`) behind bluegreen,
//! side by side with a bare ONNX Runtime session.
//!
//! - `onnx_read_path/1t`: one thread, one row per call, through a bare ort `Session::run`
//!   loop (the session built like `OnnxModel` builds its pooled ones: same environment,
//!   1 intra-op thread, all graph optimizations), `OnnxModel::predict`, and
//!   `BlueGreen<OnnxModel>::predict`. Target: bluegreen ≤ 1.03 × bare.
//! - `onnx_throughput`: `OnnxModel` (pool of 2 sessions) and bare sessions (one per thread)
//!   at 1 and 2 threads; time per call per thread, throughput in calls/s over all threads.
//!   Target: `OnnxModel` at 2 threads ≥ 1.7 × its 1-thread throughput.
//! - `after_swap`: each iteration loads v1 into a deployment, stages a freshly loaded v2
//!   with `stage_with`, swaps and times the first 100 single-row calls; the reported time is
//!   their p99 (nearest rank), with 16 golden rows configured as warm-up samples and without,
//!   and the same model's steady-state p99 (median over windows of 100 calls of each
//!   window's p99). Target: first-100 p99 ≤ 1.5 × steady p99 with warm-up.
//! - `validation`: golden-set evaluation (450 rows, batches of 256) through `GoldenGates`'
//!   accuracy gate, run by `bg.validate()` on a freshly staged v2, against raw
//!   `OnnxModel::predict` over the same batches on another fresh v2 (cold, then warm);
//!   throughput in rows/s; and the same gate inside `swap()` (after the candidate's
//!   warm-up, in the same hand-off) against raw predict on a fresh v2 given that warm-up.
//! - `gated_swap`: `swap()` of a freshly staged v2 through five gates (schema, sanity,
//!   accuracy, regression, agreement) over the golden set, with 0, 1 and 2 readers
//!   calling `predict` flat out. Goal: 2 readers ≤ 4 × idle.
//! - `qualification` (feature `quarantine`): qualifying a freshly loaded v2 — load, warm
//!   up on 16 golden rows, sanity and accuracy gates — in this process, the same trial in a
//!   quarantine child (this bench binary, re-executed), a child that loads nothing (the
//!   process floor) and one that only starts ONNX Runtime (the floor of an ONNX child).
//!   Goal: quarantine ≤ 1.5 × (in process + the ONNX child's floor).
//!
//! Read-path samples use the chunk runner of `benches/common/runner.rs`: chunks of 500 calls
//! (~2 ms), counted only if no reader was preempted (and, with 2 threads, both really ran at
//! once); model loads and staging are not timed. `examples/quickbench.rs` (section `onnx`)
//! prints the same figures as ratios.
//!
//! `cargo bench --bench onnx` (needs ONNX Runtime: `bash scripts/setup-ort.sh`).

mod common;

use std::time::Duration;

use common::charged_with;
use common::onnx::{
    GatedSwap, OnnxBench, OnnxPath, ValidationBench, after_swap, environment, golden_inputs,
};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};

/// Calls per timed chunk (~2 ms at a few µs per call).
const CHUNK_CALLS: u64 = 500;

fn read_path(c: &mut Criterion, bench: &mut OnnxBench) {
    let mut group = c.benchmark_group("onnx_read_path/1t");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for path in OnnxPath::ALL {
        group.bench_function(BenchmarkId::from_parameter(path.name()), |b| {
            b.iter_custom(|iters| {
                charged_with(iters, CHUNK_CALLS, |chunks, calls| {
                    bench.run(path, 1, chunks, calls)
                })
            });
        });
    }
    group.finish();
}

fn throughput(c: &mut Criterion, bench: &mut OnnxBench) {
    let mut group = c.benchmark_group("onnx_throughput");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for path in [OnnxPath::Model, OnnxPath::Bare] {
        for readers in [1usize, 2] {
            // One iteration = one call on each thread.
            group.throughput(Throughput::Elements(readers as u64));
            let id = BenchmarkId::new(path.name(), format!("{readers}t"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    charged_with(iters, CHUNK_CALLS, |chunks, calls| {
                        bench.run(path, readers, chunks, calls)
                    })
                });
            });
        }
    }
    group.finish();
}

/// A group of whole-round measurements (each iteration loads models, stages, swaps): 10
/// flat samples, a short warm-up, `measure` long.
fn rounds_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    measure: Duration,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(measure);
    group
}

/// Which part of a round's times a bench reports.
type Pick<R> = fn(&R) -> Duration;

/// One bench per `(name, pick)`: the part `pick` times of each `round()`.
fn bench_picks<R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    cases: &[(&str, Pick<R>)],
    mut round: impl FnMut() -> R,
) {
    for (name, pick) in cases {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| pick(&round())).sum());
        });
    }
}

fn first_requests(c: &mut Criterion) {
    let rows = golden_inputs();
    let mut group = rounds_group(c, "after_swap", Duration::from_secs(3));
    type PickNs = fn(&common::onnx::AfterSwap) -> f64;
    let cases: [(&str, bool, PickNs); 3] = [
        ("first100_p99_warm", true, |r| r.first_p99),
        ("first100_p99_cold", false, |r| r.first_p99),
        ("steady_p99", true, |r| r.steady_p99),
    ];
    for (name, warm, pick) in cases {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| Duration::from_nanos(pick(&after_swap(warm, &rows, 3)) as u64))
                    .sum()
            });
        });
    }
    group.finish();
}

fn validation(c: &mut Criterion) {
    let mut bench = ValidationBench::new();
    let mut group = rounds_group(c, "validation", Duration::from_secs(3));
    group.throughput(Throughput::Elements(bench.rows() as u64));
    let cases: [(&str, Pick<common::onnx::ValidationRound>); 5] = [
        ("validate_accuracy_gate", |r| r.validate),
        ("raw_predict_cold", |r| r.raw_cold),
        ("raw_predict_warm", |r| r.raw_warm),
        ("in_swap_accuracy_gate", |r| r.in_swap),
        ("raw_predict_warmed", |r| r.raw_warmed),
    ];
    bench_picks(&mut group, &cases, || bench.round());
    group.finish();
}

fn gated_swap(c: &mut Criterion) {
    let mut bench = GatedSwap::new();
    bench.round(0); // the live model's evaluation, the gate worker's start
    let mut group = rounds_group(c, "gated_swap", Duration::from_secs(3));
    for readers in [0usize, 1, 2] {
        group.bench_with_input(BenchmarkId::new("readers", readers), &readers, |b, &r| {
            b.iter_custom(|iters| (0..iters).map(|_| bench.round(r)).sum());
        });
    }
    group.finish();
}

#[cfg(feature = "quarantine")]
fn qualification(c: &mut Criterion) {
    let mut bench = common::onnx::Qualify::new();
    let mut group = rounds_group(c, "qualification", Duration::from_secs(5));
    let cases: [(&str, Pick<common::onnx::QualifyRound>); 4] = [
        ("in_process", |r| r.in_process),
        ("quarantine", |r| r.quarantine),
        ("empty_child", |r| r.process_start),
        ("runtime_child", |r| r.runtime_start),
    ];
    bench_picks(&mut group, &cases, || bench.round());
    group.finish();
}

fn main() {
    // First: a quarantine child (the `qualification` group's) runs its job and exits here.
    #[cfg(feature = "quarantine")]
    common::onnx::hook().enter();
    // Before any model is loaded: the bare sessions share bluegreen's environment.
    environment();
    let mut c = Criterion::default().configure_from_args();
    let mut bench = OnnxBench::new(2);
    read_path(&mut c, &mut bench);
    throughput(&mut c, &mut bench);
    drop(bench);
    first_requests(&mut c);
    validation(&mut c);
    gated_swap(&mut c);
    #[cfg(feature = "quarantine")]
    qualification(&mut c);
    c.final_summary();
}
