//! Read-path overhead: what `BlueGreen::predict` adds to a model call, side by side with
//! the alternatives people hand-roll.
//!
//! A trivial out-of-line model (`x + 1`, `u64`) is reached through: a direct call (the
//! limit), `ArcSwap::load()` (guard), `ArcSwap::load_full()`, std `RwLock<Arc<M>>`,
//! parking_lot `RwLock<Arc<M>>`, std `Mutex<Arc<M>>` + clone, `ArcSwap::load()` plus a
//! shared in-flight counter (the design bluegreen's per-thread stat lanes avoid), and
//! `BlueGreen::predict`. Each runs with 1 and 2 reader threads, without and with a writer
//! that replaces the model every 100 µs (raw paths: one `store`; bluegreen: `stage` +
//! `swap`, the full admin cycle, which is heavier — see `benches/common/read_paths.rs`).
//!
//! Criterion's `iter_custom` drives a concurrent run per sample: the reader threads are
//! spawned, and the sample's `iters` calls per reader are split into chunks of 50 000 calls
//! that all readers start together (spin barrier). The reported time per iteration is
//! **ns per call per reader thread**, the median over the chunks in which the readers
//! really ran at the same time, each on its own CPU (`Chunk::concurrent`: no reader
//! preempted, per Linux schedstat; timed windows coincide; each reader saw the others make
//! progress throughout, which also catches a virtual CPU taken away by the hypervisor). On
//! a shared 2-core machine another process often holds a core, and two readers time-sliced
//! on one core show no contention at all; a sample without a concurrent chunk is rerun, up
//! to 10 times, then falls back to all chunks. Time is charged as wall time minus time
//! spent preempted, so neither the writer's own CPU use nor other processes' is billed to
//! the read path (time blocked in a lock still is).
//!
//! `cargo bench --no-default-features --bench overhead` (add `-- --quick` for a short run;
//! `examples/quickbench.rs` is more robust to a busy machine).

mod common;

use std::time::Duration;

use common::{Load, PathKind};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn overhead(c: &mut Criterion) {
    for load in Load::ALL {
        let mut group = c.benchmark_group(format!("read_path/{}", load.label()));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for kind in PathKind::ALL {
            if load.writer.is_some() && !kind.supports_writer() {
                continue;
            }
            let path = kind.build();
            group.bench_function(BenchmarkId::from_parameter(kind.name()), |b| {
                b.iter_custom(|iters| path.charged(load, iters));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, overhead);
criterion_main!(benches);
