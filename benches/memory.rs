//! Memory across many model replacements: resident set size after 10 and after 1000
//! stage + swap cycles of a model holding a real 1 MiB allocation, and the largest number
//! of models alive at once (counted through `Drop`).
//!
//! Design targets: RSS after 1000 cycles ≤ 1.05 × RSS after 10 (retired models are really
//! freed, nothing accumulates per swap), and never more than 2 models alive with
//! `stage_with` (the old standby is dropped before the candidate is loaded). Plain `stage`
//! is reported too: its candidate exists before the old standby is retired, so 3 models
//! are alive for a moment, as documented on `BlueGreen::stage`. One thread calls `predict`
//! throughout, so draining and the per-thread stat lanes are exercised.
//!
//! Not criterion (a figure, not a timing): `cargo bench --no-default-features --bench memory`.
//! Without `--bench` (e.g. `cargo test --benches`) it runs a short version.

mod common;

use common::{MemoryRun, Staging, WEIGHTS_BYTES, memory_cycles};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (early, late) = if full { (10, 1000) } else { (10, 100) };

    let run = memory_cycles(&[early, late], Staging::StageWith, 1);
    print_run("stage_with", &run, early, late);
    let stage = memory_cycles(&[early, late], Staging::Stage, 1);
    print_run("stage", &stage, early, late);

    let ratio = run.rss_growth(early, late);
    let ok_rss = ratio <= 1.05;
    let ok_alive = run.max_alive <= 2;
    println!(
        "targets: rss_after_{late}_over_{early} = {ratio:.3} (≤ 1.05: {}), \
         max_models_alive with stage_with = {} (≤ 2: {})",
        verdict(ok_rss),
        run.max_alive,
        verdict(ok_alive),
    );
}

fn print_run(name: &str, run: &MemoryRun, early: usize, late: usize) {
    let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / (1 << 20) as f64);
    println!(
        "{name:>10}: model {} KiB | RSS after {early}: {:.2} MiB, after {late}: {:.2} MiB \
         (×{:.3}) | models created {}, max alive {}, alive after drop {} | {:.2?}",
        WEIGHTS_BYTES / 1024,
        mib(run.rss_at(early)),
        mib(run.rss_at(late)),
        run.rss_growth(early, late),
        run.created,
        run.max_alive,
        run.alive_at_end,
        run.elapsed,
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
