//! Quick mode of the benchmarks: short, real measurements of the side-by-side comparisons,
//! one machine-readable line per figure, in well under a minute.
//!
//! ```text
//! cargo run --release --example quickbench                  # every section, ~30 s
//! cargo run --release --example quickbench -- overhead swap # some sections
//! cargo run --release --example quickbench -- --rounds 15 --budget-s 30 overhead
//! cargo run --release --example quickbench -- --list        # sections
//! cargo run --release --features metrics --example quickbench -- metrics  # + `metrics`
//! # --no-default-features works too, without the `onnx` section (and the ONNX part of
//! # `shadow`), which need the ONNX backend and ONNX Runtime (scripts/setup-ort.sh).
//! ```
//!
//! Output on stdout, one figure per line: `<unit> <name>=<value>`, units `ns`, `ratio`,
//! `bytes`, `count`, `ms`, `per_s`, plus `target <name>=met|missed|inconclusive` for the
//! design targets. Progress and notes go to stderr. Nothing is a constant: every figure is
//! measured in this run, and every ratio compares configurations measured in the same run.
//! Timings use the same harness as `benches/` (`benches/common/mod.rs`): each
//! configuration is measured in several rounds (configurations interleaved, order rotated
//! per round) and the median is reported; a ratio is the median of the per-round ratios,
//! so slow moments caused by other processes on the machine hit both sides of it.
//!
//! Read-path runs are split into ~1 ms chunks that all readers start together; a chunk
//! counts only if the readers really ran at the same time, each on its own CPU
//! (`Chunk::concurrent`). On a shared 2-core machine another process often holds one core,
//! and "2 readers" then silently means two readers time-sliced on one core, with no
//! contention to measure. Extra rounds run (within `--budget-s`) until every figure rests
//! on `--min-concurrent` concurrent chunks; `concurrent_share_*` and
//! `concurrent_chunks_min_*` say how that went, and a 2-reader target whose figures rest on
//! fewer than 5 concurrent chunks is reported `inconclusive`. Time is charged as wall time
//! minus time spent preempted, where Linux reports it.
//!
//! The `onnx` section runs the real digits model (v2, one row per call) through a bare ort
//! session, `OnnxModel` and `BlueGreen<OnnxModel>` in ~2 ms chunks (same chunk rules), at
//! 1 and 2 threads; times the first 100 calls after swapping in a freshly loaded model, with
//! and without warm-up samples, against the same model's steady state; and compares golden-
//! set validation throughput with raw `predict` (a dry-run `validate()` on a cold
//! candidate, and the validation inside `swap()`, after the candidate's warm-up, against a
//! fresh model given the same warm-up). The `gated_swap` section times `swap()` with five
//! gates over the golden set, idle and with one or two readers busy on both cores. The
//! `metadata` section loads a model with 20 000 custom metadata entries (written in
//! memory by `tests/onnx_graphs`) against one with none. The `quarantine` section times qualifying
//! v2 in this process, in a quarantine child (this binary, re-executed) and in a child
//! that loads nothing. The `shadow` section measures what shadow
//! traffic costs the caller (trivial model, and the real models with the backend). The
//! `metrics` section (feature `metrics`) pairs `predict` on a deployment whose collector
//! publishes through the `metrics` facade with one that publishes nothing.
//!
//! This file holds the options, the output lines, the section table and `main`. Each
//! section is a file of `examples/quickbench/` (`overhead.rs`, `swap.rs`, `affinity.rs`,
//! `memory.rs`, `onnx.rs`, `gated_swap.rs`, `metadata.rs`, `quarantine.rs`, `shadow.rs`,
//! `metrics.rs`, `journal.rs` —
//! sections `journal` and `watch_lock` —, declared in `mod quickbench` below), and
//! `series.rs` there holds
//! the interleaved-rounds statistics they share. The folder has no `main.rs`, so cargo does
//! not take it for an example of its own.
//!
//! Adding figures: write a `fn(&Opts, &mut Out)` that measures and calls `out.ns(..)`,
//! `out.ratio(..)`, `out.target(..)`, and add it to [`sections`], behind
//! `#[cfg(feature = "onnx")]` if it needs the backend. `common::median` /
//! `common::percentile` and [`Series`](quickbench::series::Series) (per-round medians,
//! paired ratios) are available.

#[path = "../benches/common/mod.rs"]
mod common;
/// The tests' in-memory ONNX writer, for the `metadata` section's hostile model.
#[cfg(feature = "onnx")]
#[path = "../tests/onnx_graphs/mod.rs"]
mod onnx_graphs;

mod quickbench {
    pub mod affinity;
    #[cfg(feature = "onnx")]
    pub mod gated_swap;
    #[cfg(any(feature = "journal", feature = "watch"))]
    pub mod journal;
    pub mod memory;
    #[cfg(feature = "onnx")]
    pub mod metadata;
    #[cfg(feature = "metrics")]
    pub mod metrics;
    #[cfg(feature = "onnx")]
    pub mod onnx;
    pub mod overhead;
    #[cfg(all(feature = "onnx", feature = "quarantine"))]
    pub mod quarantine;
    pub mod series;
    pub mod shadow;
    pub mod swap;
}

use std::io::Write;
use std::time::{Duration, Instant};

#[cfg(feature = "onnx")]
use quickbench::gated_swap::gated_swap;
#[cfg(feature = "journal")]
use quickbench::journal::journal;
#[cfg(feature = "watch")]
use quickbench::journal::watch_lock;
#[cfg(feature = "onnx")]
use quickbench::metadata::metadata;
#[cfg(feature = "metrics")]
use quickbench::metrics::metrics;
#[cfg(feature = "onnx")]
use quickbench::onnx::onnx;
#[cfg(all(feature = "onnx", feature = "quarantine"))]
use quickbench::quarantine::quarantine;
use quickbench::{
    affinity::affinity, memory::memory, overhead::overhead, shadow::shadow, swap::swap,
};

/// Settings shared by every section.
pub struct Opts {
    /// Measurement rounds per configuration (the median is reported).
    pub rounds: usize,
    /// Target duration of one timed run of one configuration (several chunks).
    pub window: Duration,
    /// Target duration of one timed chunk (all readers start each chunk together).
    pub chunk: Duration,
    /// Concurrent chunks wanted per read-path figure before extra rounds stop.
    pub min_concurrent: usize,
    /// Time after which no extra rounds start (per section that uses it).
    pub budget: Duration,
}

/// Where figures go: stdout, one line each, flushed at once.
pub struct Out {
    lines: usize,
}

impl Out {
    fn line(&mut self, unit: &str, name: &str, value: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{unit} {name}={value}");
        let _ = stdout.flush();
        self.lines += 1;
    }
    pub fn ns(&mut self, name: &str, v: f64) {
        self.line("ns", name, &format!("{v:.1}"));
    }
    pub fn ratio(&mut self, name: &str, v: f64) {
        self.line("ratio", name, &format!("{v:.3}"));
    }
    pub fn bytes(&mut self, name: &str, v: u64) {
        self.line("bytes", name, &v.to_string());
    }
    pub fn count(&mut self, name: &str, v: u64) {
        self.line("count", name, &v.to_string());
    }
    pub fn ms(&mut self, name: &str, v: f64) {
        self.line("ms", name, &format!("{v:.1}"));
    }
    /// A rate (e.g. rows per second).
    pub fn per_s(&mut self, name: &str, v: f64) {
        self.line("per_s", name, &format!("{v:.0}"));
    }
    /// A design target: `met` or `missed` (never asserted: timings are too noisy to fail on).
    pub fn target(&mut self, name: &str, met: bool) {
        self.line("target", name, if met { "met" } else { "missed" });
    }
    /// A design target that could not be judged in this run (the reason goes to stderr).
    pub fn inconclusive(&mut self, name: &str, why: &str) {
        eprintln!("# {name}: inconclusive: {why}");
        self.line("target", name, "inconclusive");
    }
}

/// Concurrent chunks a 2-reader figure needs before a target is judged on it.
const MIN_TO_JUDGE: usize = 5;

/// One group of figures.
struct Section {
    name: &'static str,
    about: &'static str,
    run: fn(&Opts, &mut Out),
}

/// Every section, in run order. Add new measurements here.
fn sections() -> Vec<Section> {
    vec![
        Section {
            name: "overhead",
            about: "read path: predict vs arc-swap, locks, direct call; 1/2 readers, ± writer",
            run: overhead,
        },
        Section {
            name: "swap",
            about: "stage / swap / flip / rollback latency, idle and with 1-2 busy readers",
            run: swap,
        },
        Section {
            name: "affinity",
            about: "session affinity on a full table (1 M sessions): new key vs known key",
            run: affinity,
        },
        Section {
            name: "memory",
            about: "RSS after 10 vs 1000 stage+swap cycles of 1 MiB models; models alive",
            run: memory,
        },
        #[cfg(feature = "onnx")]
        Section {
            name: "onnx",
            about: "digits v2: bluegreen/OnnxModel vs bare session; 2 vs 1 thread; \
                    first 100 calls after a swap; validation vs raw throughput",
            run: onnx,
        },
        #[cfg(feature = "onnx")]
        Section {
            name: "gated_swap",
            about: "digits: swap() with 5 gates over the golden set, idle vs 1-2 busy readers",
            run: gated_swap,
        },
        #[cfg(feature = "onnx")]
        Section {
            name: "metadata",
            about: "loading a model with 20 000 custom metadata entries vs one with none",
            run: metadata,
        },
        #[cfg(feature = "metrics")]
        Section {
            name: "metrics",
            about: "feature metrics: predict with a collector publishing (1 s, 1 ms) vs none, 1/2 threads",
            run: metrics,
        },
        #[cfg(all(feature = "onnx", feature = "quarantine"))]
        Section {
            name: "quarantine",
            about: "qualifying digits v2: in process vs in a quarantine child vs an empty child",
            run: quarantine,
        },
        Section {
            name: "shadow",
            about: "caller cost of shadow traffic: none vs saturated vs 1 %, 1 thread",
            run: shadow,
        },
        #[cfg(feature = "journal")]
        Section {
            name: "journal",
            about: "stage + swap + rollback with a journal (3 fsynced commits) vs without",
            run: journal,
        },
        #[cfg(feature = "watch")]
        Section {
            name: "watch_lock",
            about: "share of time the watcher holds the operation lock while a held model blocks it",
            run: watch_lock,
        },
    ]
}

/// Quick mode of the benchmarks: one machine-readable line per figure on stdout.
#[derive(clap::Parser)]
#[command(name = "quickbench")]
struct Flags {
    /// Measurement rounds per configuration (the median is reported; at least 1).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Target duration of one timed run of one configuration, ms.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    window_ms: u64,
    /// Target duration of one timed chunk, µs (at least 10).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    chunk_us: u64,
    /// Concurrent chunks wanted per read-path figure before extra rounds stop.
    #[arg(long, default_value_t = 15)]
    min_concurrent: usize,
    /// Time after which no extra rounds start (per section that uses it), s.
    #[arg(long, default_value_t = 15)]
    budget_s: u64,
    /// List the sections and exit.
    #[arg(long)]
    list: bool,
    /// Sections to run (default: all).
    sections: Vec<String>,
}

fn main() {
    // First: a quarantine child (the `quarantine` section's) runs its job and exits here.
    #[cfg(all(feature = "onnx", feature = "quarantine"))]
    common::onnx::hook().enter();
    let flags = <Flags as clap::Parser>::parse();
    let opts = Opts {
        rounds: flags.rounds as usize,
        window: Duration::from_millis(flags.window_ms),
        chunk: Duration::from_micros(flags.chunk_us),
        min_concurrent: flags.min_concurrent,
        budget: Duration::from_secs(flags.budget_s),
    };
    if flags.list {
        for s in sections() {
            eprintln!("{:<10} {}", s.name, s.about);
        }
        return;
    }
    let only = flags.sections;
    let all = sections();
    if let Some(bad) = only.iter().find(|n| !all.iter().any(|s| s.name == **n)) {
        let names: Vec<&str> = all.iter().map(|s| s.name).collect();
        eprintln!(
            "quickbench: unknown section {bad} (sections: {})",
            names.join(", ")
        );
        std::process::exit(2);
    }

    let started = Instant::now();
    let mut out = Out { lines: 0 };
    for s in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name))
    {
        let t = Instant::now();
        eprintln!("# {}: {}", s.name, s.about);
        (s.run)(&opts, &mut out);
        eprintln!("# {} took {:.1?}", s.name, t.elapsed());
    }
    out.ms("quickbench_elapsed", started.elapsed().as_secs_f64() * 1e3);
}
