//! Admin-operation latency: how long a swap and a rollback take, and how much of that is
//! the flip readers actually observe.
//!
//! On a deployment with no gates and no warm-up (so nothing is spawned), measures:
//! `stage` (includes retiring the previous standby: drain check + drop on the retirer
//! thread), the whole `swap()`, the flip alone (`SwapReport::flip`: one pointer store as
//! bluegreen times it), the whole `rollback()` and its flip (`RollbackReport::flip`), and a
//! raw `ArcSwap::swap` as the floor. Each idle, with one, and with two threads calling
//! `predict` in a tight loop (with two, both cores are saturated and the admin and retirer
//! threads must wait for the scheduler, as in a fully loaded service).
//!
//! `cargo bench --no-default-features --bench swap -- --quick`

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use common::{
    CYCLE_PARTS, Trivial, admin_cycle, trivial_deployment, with_busy_readers, with_readers_running,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn swap(c: &mut Criterion) {
    for readers in [0usize, 1, 2] {
        let mut group = c.benchmark_group(format!("admin/{readers}_busy_readers"));
        group
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (name, rollback, pick) in CYCLE_PARTS {
            let bg = trivial_deployment();
            let mut seq = 1u64;
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    with_busy_readers(&bg, readers, &1, || {
                        (0..iters)
                            .map(|_| {
                                seq += 1;
                                pick(&admin_cycle(&bg, seq, rollback))
                            })
                            .sum()
                    })
                });
            });
        }
        let cell = ArcSwap::from_pointee(Trivial { tag: 0 });
        group.bench_function("raw_arcswap_swap", |b| {
            b.iter_custom(|iters| raw_swaps(&cell, readers, iters));
        });
        group.finish();
    }
}

/// Times `iters` raw `ArcSwap::swap` calls while `readers` threads `load()` the cell.
fn raw_swaps(cell: &ArcSwap<Trivial>, readers: usize, iters: u64) -> Duration {
    let read = || {
        black_box(cell.load().tag);
    };
    with_readers_running(readers, read, || {
        let mut total = Duration::ZERO;
        for tag in 0..iters {
            let new = Arc::new(Trivial { tag });
            let started = Instant::now();
            let old = cell.swap(new);
            total += started.elapsed();
            drop(old);
        }
        total
    })
}

criterion_group!(benches, swap);
criterion_main!(benches);
