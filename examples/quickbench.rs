//! Quick mode of the benchmarks: short, real measurements of the side-by-side comparisons,
//! one machine-readable line per figure, in well under a minute.
//!
//! ```text
//! cargo run --release --example quickbench                  # every section, ~20 s
//! cargo run --release --example quickbench -- overhead swap # some sections
//! cargo run --release --example quickbench -- --rounds 15 --budget-s 30 overhead
//! cargo run --release --example quickbench -- --list        # sections
//! # --no-default-features works too: nothing here needs the ONNX backend.
//! ```
//!
//! Output on stdout, one figure per line: `<unit> <name>=<value>`, units `ns`, `ratio`,
//! `bytes`, `count`, `ms`, plus `target <name>=met|missed|inconclusive` for the design
//! targets. Progress and notes go to stderr. Nothing is a constant: every figure is
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
//! Adding figures (e.g. ONNX: 1- vs 2-thread `OnnxModel` throughput, BlueGreen+OnnxModel
//! vs a bare session, first-100-after-swap p99 vs steady p99): write a
//! `fn(&Opts, &mut Out)` that measures and calls `out.ns(..)`, `out.ratio(..)`,
//! `out.target(..)`, and add it to [`sections`], behind `#[cfg(feature = "onnx")]` if it
//! needs the backend. `common::median` / `common::percentile` are available.

#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{AnyPath, Load, PathKind, Staging, nanos};

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
            name: "memory",
            about: "RSS after 10 vs 1000 stage+swap cycles of 1 MiB models; models alive",
            run: memory,
        },
        // #[cfg(feature = "onnx")]
        // Section { name: "onnx", about: "...", run: onnx_figures },
    ]
}

fn main() {
    let mut opts = Opts {
        rounds: 7,
        window: Duration::from_millis(16),
        chunk: Duration::from_millis(1),
        min_concurrent: 15,
        budget: Duration::from_secs(15),
    };
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{what} needs a number")))
        };
        match arg.as_str() {
            "--rounds" => opts.rounds = number("--rounds").max(1) as usize,
            "--window-ms" => opts.window = Duration::from_millis(number("--window-ms").max(1)),
            "--chunk-us" => opts.chunk = Duration::from_micros(number("--chunk-us").max(10)),
            "--min-concurrent" => opts.min_concurrent = number("--min-concurrent") as usize,
            "--budget-s" => opts.budget = Duration::from_secs(number("--budget-s")),
            "--list" => {
                for s in sections() {
                    eprintln!("{:<10} {}", s.name, s.about);
                }
                return;
            }
            "-h" | "--help" => usage(""),
            name if !name.starts_with('-') => only.push(name.to_owned()),
            other => usage(&format!("unknown option {other}")),
        }
    }
    let all = sections();
    if let Some(bad) = only.iter().find(|n| !all.iter().any(|s| s.name == **n)) {
        usage(&format!("unknown section {bad}"));
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

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("quickbench: {problem}");
    }
    eprintln!(
        "usage: quickbench [--rounds N] [--window-ms N] [--chunk-us N] [--min-concurrent N] \
         [--budget-s N] [--list] [SECTION...]"
    );
    std::process::exit(2)
}

// ---------------------------------------------------------------------------------------
// overhead
// ---------------------------------------------------------------------------------------

/// ns per call per reader thread for every (path, load), then ratios against `predict`.
fn overhead(opts: &Opts, out: &mut Out) {
    struct Config {
        kind: PathKind,
        load: Load,
        path: AnyPath,
        chunk_calls: u64,
        /// Per round: median ns/call over that run's concurrent chunks (None if none was).
        rounds: Vec<Option<f64>>,
        /// Every concurrent chunk's ns/call, and every chunk's.
        concurrent: Vec<f64>,
        all: Vec<f64>,
        writer_interval: Vec<f64>,
    }
    impl Config {
        fn ns(&self) -> f64 {
            common::median(if self.concurrent.is_empty() {
                &self.all
            } else {
                &self.concurrent
            })
        }
    }
    let chunks = (opts.window.as_nanos() / opts.chunk.as_nanos()).max(1) as usize;
    let mut configs: Vec<Config> = Load::ALL
        .into_iter()
        .flat_map(|load| PathKind::ALL.into_iter().map(move |kind| (kind, load)))
        .filter(|(kind, load)| load.writer.is_none() || kind.supports_writer())
        .map(|(kind, load)| {
            let path = kind.build();
            let chunk_calls = common::calibrate(&path, load, opts.chunk);
            Config {
                kind,
                load,
                path,
                chunk_calls,
                rounds: Vec::new(),
                concurrent: Vec::new(),
                all: Vec::new(),
                writer_interval: Vec::new(),
            }
        })
        .collect();

    // At least `opts.rounds` rounds; then more rounds for the loads where some
    // configuration still has too few concurrent chunks, within the time budget.
    let started = Instant::now();
    let n = configs.len();
    let needy = |configs: &[Config], load: Load| {
        configs
            .iter()
            .any(|c| c.load == load && c.concurrent.len() < opts.min_concurrent)
    };
    for round in 0.. {
        let loads: Vec<Load> = Load::ALL
            .into_iter()
            .filter(|l| round < opts.rounds || needy(&configs, *l))
            .collect();
        if loads.is_empty() || (round >= opts.rounds && started.elapsed() > opts.budget) {
            break;
        }
        for i in 0..n {
            let c = &mut configs[(i + round * 5) % n];
            if !loads.contains(&c.load) {
                c.rounds.push(None);
                continue;
            }
            let r = c.path.run_chunks(c.load, chunks, c.chunk_calls);
            let good: Vec<f64> = r
                .chunks
                .iter()
                .filter(|k| k.concurrent())
                .map(|k| k.ns_per_call)
                .collect();
            c.rounds
                .push((!good.is_empty()).then(|| common::median(&good)));
            c.concurrent.extend(good);
            c.all.extend(r.chunks.iter().map(|k| k.ns_per_call));
            if let Some(w) = r.writer_interval() {
                c.writer_interval.push(nanos(w));
            }
        }
    }

    let index: HashMap<(PathKind, Load), &Config> =
        configs.iter().map(|c| ((c.kind, c.load), c)).collect();
    for c in &configs {
        out.ns(&format!("{}_{}", c.kind.name(), c.load.label()), c.ns());
    }
    // Median of per-round ratios (both sides of a pair ran within the same round), over
    // rounds where both had concurrent chunks; else the ratio of the overall medians.
    let ratio = |a: PathKind, b: PathKind, load: Load| -> Option<f64> {
        let (a, b) = (index.get(&(a, load))?, index.get(&(b, load))?);
        let paired: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .filter_map(|(x, y)| Some((*x)? / (*y)?))
            .collect();
        Some(if paired.is_empty() {
            a.ns() / b.ns()
        } else {
            common::median(&paired)
        })
    };
    let bg = PathKind::BlueGreen;
    for load in Load::ALL {
        let l = load.label();
        if let Some(r) = ratio(bg, PathKind::ArcSwapLoad, load) {
            out.ratio(&format!("predict_vs_arcswap_{l}"), r);
        }
        if let Some(r) = ratio(bg, PathKind::Direct, load) {
            out.ratio(&format!("predict_vs_direct_{l}"), r);
        }
        for other in [
            PathKind::ArcSwapLoadFull,
            PathKind::StdRwLock,
            PathKind::ParkingLotRwLock,
            PathKind::StdMutexClone,
            PathKind::ArcSwapSharedCounter,
        ] {
            if let Some(r) = ratio(other, bg, load) {
                out.ratio(&format!("{}_vs_predict_{l}", other.name()), r);
            }
        }
    }
    for c in configs.iter().filter(|c| c.load == Load::TWO_WRITER) {
        out.ns(
            &format!("writer_interval_{}_{}", c.kind.name(), c.load.label()),
            common::median(&c.writer_interval),
        );
    }
    // How often the readers really ran at once, each on its own CPU (other processes on a
    // shared machine take cores away; those chunks are set aside, see `Chunk::concurrent`),
    // and the fewest concurrent chunks any figure of that load rests on (0: the figure
    // fell back to all chunks and is not a concurrent measurement).
    for load in Load::ALL {
        let of_load = || configs.iter().filter(|c| c.load == load);
        let (good, all) = of_load().fold((0, 0), |(g, a), c| {
            (g + c.concurrent.len(), a + c.all.len())
        });
        out.ratio(
            &format!("concurrent_share_{}", load.label()),
            good as f64 / all.max(1) as f64,
        );
        let fewest = of_load().map(|c| c.concurrent.len()).min().unwrap_or(0);
        out.count(
            &format!("concurrent_chunks_min_{}", load.label()),
            fewest as u64,
        );
    }
    // A 2-reader target is only judged on figures that rest on concurrent chunks.
    let tw = Load::TWO_WRITER;
    let mut judge = |name: &str, a: PathKind, b: PathKind, met: fn(f64) -> bool| {
        let fewest = [a, b]
            .iter()
            .filter_map(|k| index.get(&(*k, tw)))
            .map(|c| c.concurrent.len())
            .min()
            .unwrap_or(0);
        match ratio(a, b, tw) {
            Some(r) if fewest >= MIN_TO_JUDGE => out.target(name, met(r)),
            _ => out.inconclusive(
                name,
                &format!("only {fewest} concurrent chunks (other processes held a core)"),
            ),
        }
    };
    judge(
        "predict_le_2x_arcswap_2t_writer",
        bg,
        PathKind::ArcSwapLoad,
        |r| r <= 2.0,
    );
    judge(
        "predict_ge_5x_faster_than_rwlock_2t_writer",
        PathKind::StdRwLock,
        bg,
        |r| r >= 5.0,
    );
}

/// Concurrent chunks a 2-reader figure needs before a target is judged on it.
const MIN_TO_JUDGE: usize = 5;

// ---------------------------------------------------------------------------------------
// swap
// ---------------------------------------------------------------------------------------

/// Admin latencies over many stage + swap + rollback cycles (100 µs apart): p50 and p99 of
/// each part, idle and with 1 or 2 threads calling `predict` flat out.
fn swap(opts: &Opts, out: &mut Out) {
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

// ---------------------------------------------------------------------------------------
// memory
// ---------------------------------------------------------------------------------------

/// RSS growth over 1000 cycles and the most models ever alive.
fn memory(_opts: &Opts, out: &mut Out) {
    let run = common::memory_cycles(&[10, 1000], Staging::StageWith, 1);
    let (early, late) = (run.rss_at(10).unwrap_or(0), run.rss_at(1000).unwrap_or(0));
    out.bytes("rss_after_10", early);
    out.bytes("rss_after_1000", late);
    let growth = if early > 0 {
        late as f64 / early as f64
    } else {
        f64::NAN
    };
    out.ratio("rss_after_1000_over_10", growth);
    out.count("max_models_alive", run.max_alive as u64);
    out.count("models_alive_after_drop", run.alive_at_end as u64);
    out.target("rss_after_1000_le_1.05x_after_10", growth <= 1.05);
    out.target("max_models_alive_le_2", run.max_alive <= 2);

    // Plain `stage` builds the candidate before retiring the old standby: 3 for a moment.
    let plain = common::memory_cycles(&[100], Staging::Stage, 1);
    out.count("max_models_alive_plain_stage", plain.max_alive as u64);
}
