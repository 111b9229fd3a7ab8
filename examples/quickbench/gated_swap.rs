//! Section `gated_swap` (feature `onnx`): `swap()` with five gates over the digits golden
//! set, idle and with two readers calling `predict` flat out on both cores.

use crate::common;
use crate::{Opts, Out};

/// `swap()` with five gates: idle, with 1 and with 2 busy readers, configurations
/// interleaved per round (order rotated); the ratio is the median of per-round ratios.
pub fn gated_swap(opts: &Opts, out: &mut Out) {
    use common::onnx::{GATES, GatedSwap};

    let mut bench = GatedSwap::new();
    // Untimed: the first evaluation of the live model, the gate worker's start.
    for _ in 0..2 {
        bench.round(0);
    }
    const LOADS: [usize; 3] = [0, 1, 2];
    let mut ms: [Vec<f64>; 3] = Default::default();
    let (mut ratio_1, mut ratio_2) = (Vec::new(), Vec::new());
    for round in 0..2 * opts.rounds.max(5) {
        let mut this = [0.0; 3];
        for k in 0..LOADS.len() {
            let i = (round + k) % LOADS.len();
            this[i] = bench.round(LOADS[i]).as_secs_f64() * 1e3;
            ms[i].push(this[i]);
        }
        ratio_1.push(this[1] / this[0]);
        ratio_2.push(this[2] / this[0]);
    }
    out.count("gated_swap_gates", GATES as u64);
    for (i, name) in ["idle", "1reader", "2readers"].iter().enumerate() {
        out.ms(&format!("gated_swap_{name}"), common::median(&ms[i]));
    }
    out.ratio("gated_swap_1reader_over_idle", common::median(&ratio_1));
    let busy = common::median(&ratio_2);
    out.ratio("gated_swap_2readers_over_idle", busy);
    out.target("gated_swap_2readers_le_4x_idle", busy <= 4.0);
}
