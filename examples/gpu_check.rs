//! GPU memory across hot swaps — the figure Triton users ask for
//! (triton-inference-server/server#3320: "unload does not free GPU memory").
//!
//! Loads two versions of a model on an execution provider, swaps between them `--cycles`
//! times in a memory-tight deployment (at most two models resident), and reads the GPU's
//! memory with `nvidia-smi` at each step:
//!
//! - **before**: the runtime is initialized, no model loaded;
//! - **one model**: the initial version loaded and warmed;
//! - per cycle, **during**: the next version staged beside the active one (two models);
//! - per cycle, **after retirement**: swapped, the old version retired — drained, dropped by
//!   bluegreen's retirer thread — and gone from `Status::retiring` (one model again).
//!
//! If retirement gives memory back, "after retirement" stays flat across cycles; if it
//! leaks, it climbs by about one model per cycle. Both the device total (`memory.used`,
//! which includes other processes) and this process's own use (`--query-compute-apps`) are
//! printed. `scripts/gpu-check.sh` provisions ONNX Runtime's GPU build and runs this.
//!
//! ```text
//! cargo run --release --features cuda --example gpu_check -- --cycles 50
//! cargo run --release --example gpu_check -- --provider cpu --cycles 3   # dry run, no GPU
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bluegreen::BlueGreen;
use bluegreen::onnx::ndarray::Array2;
use bluegreen::onnx::{ExecutionProvider, Inputs, OnnxConfig, OnnxModel, init_runtime};
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Provider {
    Cuda,
    Tensorrt,
    Cpu,
}

/// Hot-swap two model versions on a GPU and report its memory before, during and after
/// each retirement.
#[derive(Debug, Parser)]
struct Args {
    /// Execution provider (cpu: a dry run of the program without a GPU).
    #[arg(long, value_enum, default_value = "cuda")]
    provider: Provider,
    /// GPU index (CUDA device id and nvidia-smi's -i).
    #[arg(long, default_value_t = 0)]
    device: i32,
    /// Swap cycles (each: stage the other version, swap, retire the old one).
    #[arg(long, default_value_t = 50)]
    cycles: usize,
    /// Model repository with version folders holding `model.onnx`.
    #[arg(long, default_value = "models/digits")]
    repo: PathBuf,
    /// The two versions swapped between.
    #[arg(long, num_args = 2, default_values = ["1", "2"])]
    versions: Vec<String>,
    /// Sessions per model (default: the provider's default, 2 on a GPU).
    #[arg(long)]
    sessions: Option<usize>,
    /// Rows per warm-up and check call (64 features each, as the digits models take).
    #[arg(long, default_value_t = 256)]
    rows: usize,
    /// Longest wait for a retired model to be dropped.
    #[arg(long, default_value_t = 60)]
    retire_timeout_s: u64,
}

/// GPU memory in MiB: the device's total use, and this process's.
#[derive(Debug, Clone, Copy)]
struct Reading {
    device: Option<u64>,
    process: Option<u64>,
}

impl Reading {
    fn take(device: i32) -> Self {
        let query = |args: &[&str]| -> Option<String> {
            let out = Command::new("nvidia-smi").args(args).output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let id = device.to_string();
        let device_used = query(&[
            "--query-gpu=memory.used",
            "--format=csv,noheader,nounits",
            "-i",
            &id,
        ])
        .and_then(|s| s.trim().parse().ok());
        let pid = std::process::id().to_string();
        let process_used = query(&[
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
            "-i",
            &id,
        ])
        .map(|s| {
            s.lines()
                .filter_map(|l| l.split_once(','))
                .filter(|(p, _)| p.trim() == pid)
                .filter_map(|(_, m)| m.trim().parse::<u64>().ok())
                .sum()
        });
        Reading {
            device: device_used,
            process: process_used,
        }
    }

    fn show(self) -> String {
        let mib = |v: Option<u64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
        format!("{:>8} {:>8}", mib(self.device), mib(self.process))
    }
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("gpu_check: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let provider = match args.provider {
        Provider::Cuda => ExecutionProvider::Cuda {
            device_id: args.device,
        },
        Provider::Tensorrt => ExecutionProvider::TensorRt {
            device_id: args.device,
        },
        Provider::Cpu => ExecutionProvider::Cpu,
    };
    let mut config = OnnxConfig::new()
        .execution_provider(provider.clone())
        .cpu_fallback(false); // measuring the CPU by mistake would say nothing
    if let Some(n) = args.sessions {
        config = config.pool_size(n);
    }
    let [a, b] = [&args.versions[0], &args.versions[1]];
    let path = |v: &str| args.repo.join(v).join("model.onnx");
    let rows = Inputs::single(Array2::<f32>::from_shape_fn((args.rows, 64), |(r, c)| {
        ((r * 7 + c * 3) % 17) as f32
    }));
    let load = |v: &str| -> Result<OnnxModel, String> {
        let m = config
            .load(path(v))
            .map_err(|e| format!("version {v}: {e}"))?;
        Ok(m)
    };

    init_runtime().map_err(|e| e.to_string())?;
    let before = Reading::take(args.device);
    if before.device.is_none() {
        eprintln!("gpu_check: nvidia-smi gave no reading; memory columns will be n/a");
    }
    println!(
        "# provider {provider}, device {}, {} cycles between {a} and {b}",
        args.device, args.cycles
    );
    println!("# MiB: device total (all processes) and this process (nvidia-smi)");
    println!("{:<28} {:>8} {:>8}", "step", "device", "process");
    println!("{:<28} {}", "before", before.show());

    let bg = BlueGreen::builder()
        .memory_tight(true) // at most two models resident: the figure is per model
        .warmup_samples(vec![rows.clone()])
        .drain_timeout(Duration::from_secs(args.retire_timeout_s))
        .build(a.clone(), load(a)?)
        .map_err(|e| e.to_string())?;
    check(&bg, &rows)?;
    let one = Reading::take(args.device);
    println!(
        "{:<28} {}   ({} sessions)",
        "one model",
        one.show(),
        bg.active().model().pool_size()
    );

    let mut after_first = None;
    let mut after_last = one;
    let mut peak_during = None::<u64>;
    for cycle in 1..=args.cycles {
        let next = if cycle % 2 == 1 { b } else { a };
        bg.stage_with(next.clone(), || load(next))
            .map_err(|e| format!("cycle {cycle}: stage {next}: {e}"))?;
        let during = Reading::take(args.device);
        bg.swap()
            .map_err(|e| format!("cycle {cycle}: swap to {next}: {e}"))?;
        check(&bg, &rows)?;
        bg.unstage()
            .map_err(|e| format!("cycle {cycle}: retire the old version: {e}"))?;
        wait_retired(&bg, Duration::from_secs(args.retire_timeout_s))?;
        let after = Reading::take(args.device);
        println!(
            "{:<28} {}",
            format!("cycle {cycle:>3} during"),
            during.show()
        );
        println!(
            "{:<28} {}",
            format!("cycle {cycle:>3} after retirement"),
            after.show()
        );
        peak_during = peak_during.max(during.device);
        after_first.get_or_insert(after);
        after_last = after;
    }

    let s = bg.status();
    let diff = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) => Some(x as i64 - y as i64),
        _ => None,
    };
    let show = |v: Option<i64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:+}"));
    println!("gpu_memory_before_mib={}", opt(before.device));
    println!("gpu_memory_one_model_mib={}", opt(one.device));
    println!("gpu_memory_peak_during_swap_mib={}", opt(peak_during));
    println!(
        "gpu_memory_after_last_retirement_mib={}",
        opt(after_last.device)
    );
    let first = after_first.unwrap_or(one);
    let growth = diff(after_last.device, first.device);
    println!(
        "gpu_memory_growth_after_retirement_mib={} (cycle 1 -> {})",
        show(growth),
        args.cycles
    );
    println!(
        "process_memory_growth_after_retirement_mib={}",
        show(diff(after_last.process, first.process))
    );
    println!(
        "swaps={} faults={} active={}",
        s.swaps, s.faults.total, s.active.version
    );
    match (growth, diff(one.device, before.device)) {
        (Some(g), Some(model)) if model > 0 && g > model / 2 => println!(
            "verdict: GPU memory grew by {g} MiB over {} cycles (one model is ~{model} MiB): \
             retirement does not give it all back",
            args.cycles
        ),
        (Some(g), _) => println!(
            "verdict: GPU memory after retirement changed by {g:+} MiB over {} cycles",
            args.cycles
        ),
        _ => println!("verdict: no GPU readings (nvidia-smi missing, or --provider cpu)"),
    }
    Ok(())
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| v.to_string())
}

/// A real call on the active model, so its memory arena is in use when memory is read.
fn check(bg: &BlueGreen<OnnxModel>, rows: &Inputs) -> Result<(), String> {
    let out = bg.predict(rows).map_err(|e| format!("predict: {e}"))?;
    out.i64("label").map_err(|e| e.to_string())?;
    Ok(())
}

/// Waits until the retirer has dropped every retired model.
fn wait_retired(bg: &BlueGreen<OnnxModel>, limit: Duration) -> Result<(), String> {
    let started = Instant::now();
    while !bg.status().retiring.is_empty() {
        if started.elapsed() > limit {
            return Err(format!(
                "a retired model was not dropped within {limit:?}: {:?}",
                bg.status().retiring
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
