//! Section `quarantine` (features `onnx` + `quarantine`): the time to qualify digits v2 in
//! this process and in a quarantine child, and the floors of a child — one that loads
//! nothing, one that only starts ONNX Runtime. The goal, quarantine ≤ 1.5 × (in-process
//! qualification + process start), is judged with the start of a process that can run an
//! ONNX model (the runtime floor); the ratio against a bare process is printed too.

use super::series::interleave;
use crate::common;
use crate::{Opts, Out};

pub fn quarantine(opts: &Opts, out: &mut Out) {
    let mut bench = common::onnx::Qualify::new();
    bench.round(); // untimed: the first load of each file, the child binary paged in
    let mut rounds = Vec::new();
    interleave(1, opts.rounds, |_| rounds.push(bench.round()));
    type Pick = fn(&common::onnx::QualifyRound) -> f64;
    let median = |pick: Pick| common::median(&rounds.iter().map(pick).collect::<Vec<_>>());
    let secs = |d: std::time::Duration| d.as_secs_f64();
    out.ms(
        "qualify_in_process",
        median(|r| r.in_process.as_secs_f64() * 1e3),
    );
    out.ms(
        "qualify_quarantine",
        median(|r| r.quarantine.as_secs_f64() * 1e3),
    );
    out.ms(
        "quarantine_empty_child",
        median(|r| r.process_start.as_secs_f64() * 1e3),
    );
    out.ms(
        "quarantine_runtime_child",
        median(|r| r.runtime_start.as_secs_f64() * 1e3),
    );
    let vs_runtime = common::median(
        &rounds
            .iter()
            .map(|r| secs(r.quarantine) / secs(r.in_process + r.runtime_start))
            .collect::<Vec<_>>(),
    );
    let vs_bare = common::median(
        &rounds
            .iter()
            .map(|r| secs(r.quarantine) / secs(r.in_process + r.process_start))
            .collect::<Vec<_>>(),
    );
    out.ratio("quarantine_vs_in_process_plus_runtime_start", vs_runtime);
    out.ratio("quarantine_vs_in_process_plus_bare_start", vs_bare);
    out.ratio(
        "quarantine_vs_in_process",
        common::median(
            &rounds
                .iter()
                .map(|r| secs(r.quarantine) / secs(r.in_process))
                .collect::<Vec<_>>(),
        ),
    );
    out.target(
        "quarantine_le_1.5x_in_process_plus_start",
        vs_runtime <= 1.5,
    );
}
