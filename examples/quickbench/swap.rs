//! Section `swap`: p50 and p99 of each part of a stage + swap + rollback cycle, idle and
//! with 1 or 2 busy readers, and a raw `ArcSwap::swap` as the floor.

use std::time::Instant;

use crate::common::{self, nanos};
use crate::{Opts, Out};

/// Admin latencies over many stage + swap + rollback cycles (100 µs apart): p50 and p99 of
/// each part, idle and with 1 or 2 threads calling `predict` flat out.
pub fn swap(opts: &Opts, out: &mut Out) {
    let cycles = (opts.rounds * 100).max(200);
    // With 2 busy readers both cores are saturated: admin threads (and the retirer) then
    // wait for the scheduler, so fewer cycles suffice to see it.
    for (readers, suffix, cycles) in [
        (0usize, "idle", cycles),
        (1, "1reader", cycles),
        (2, "2readers", cycles / 4),
    ] {
        let bg = common::trivial_deployment();
        let times = common::with_busy_readers(&bg, readers, &1, || {
            for seq in 1..=50 {
                common::admin_cycle(&bg, seq, true); // warm-up, not recorded
            }
            (0..cycles as u64)
                .map(|i| {
                    // Like the overhead section's writer: the admin thread sleeps between
                    // cycles, so under saturation it must be scheduled back each time.
                    std::thread::sleep(common::WRITER_PERIOD);
                    common::admin_cycle(&bg, 1000 + i, true)
                })
                .collect::<Vec<_>>()
        });
        for (name, _, pick) in common::CYCLE_PARTS {
            let xs: Vec<f64> = times.iter().map(|t| nanos(pick(t))).collect();
            out.ns(&format!("{name}_p50_{suffix}"), common::median(&xs));
            out.ns(
                &format!("{name}_p99_{suffix}"),
                common::percentile(&xs, 99.0),
            );
        }
    }
    // The floor for the flip: a bare `ArcSwap::swap` timed the same way, idle.
    let cell = arc_swap::ArcSwap::from_pointee(common::Trivial { tag: 0 });
    let xs: Vec<f64> = (0..cycles as u64)
        .map(|tag| {
            let new = std::sync::Arc::new(common::Trivial { tag });
            let started = Instant::now();
            let old = cell.swap(new);
            let t = nanos(started.elapsed());
            drop(old);
            t
        })
        .collect();
    out.ns("raw_arcswap_swap_p50_idle", common::median(&xs));
}
