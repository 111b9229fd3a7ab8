//! Command-line flags, through clap's derive API: `--help`, the errors for bad or unknown
//! flags (exit status 2) and the `BLUEGREEN_HOST` / `BLUEGREEN_PORT` fallbacks come from
//! clap. The admin token is read from the environment only (`run` in serve.rs), never from
//! a flag, so that it does not show in `ps`.

use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

const ENVIRONMENT: &str = "\
Environment:
  BLUEGREEN_ADMIN_TOKEN  bearer token for /admin/...; unset or empty = admin API disabled
  RUST_LOG               log filter (default info)";

/// bluegreen example inference service
#[derive(Debug, Parser)]
#[command(name = "serve", after_help = ENVIRONMENT)]
struct Flags {
    /// Model repository: DIR/<version>/<model file>
    #[arg(long, value_name = "DIR", default_value = "models/digits")]
    repo: PathBuf,
    /// Model name in URLs [default: the repository directory's name]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Version to serve at start [default: 2; with --desired, the manifest's]
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Model file inside a version directory
    #[arg(long, value_name = "NAME", default_value = "model.onnx")]
    model_file: String,
    /// Golden set .npz with `inputs` and `labels` [default: DIR/golden.npz]
    #[arg(long, value_name = "PATH")]
    golden: Option<PathBuf>,
    /// Accuracy gate on the golden set, 0..1
    #[arg(long, value_name = "F", default_value = "0.90", value_parser = fraction)]
    min_accuracy: f64,
    /// Also gate on accuracy drop vs the live model [default: off]
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    max_drop: Option<f64>,
    /// Address to bind
    #[arg(
        long,
        value_name = "ADDR",
        env = "BLUEGREEN_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// Port to bind, 0 = any free port
    #[arg(long, value_name = "N", env = "BLUEGREEN_PORT", default_value_t = 8080)]
    port: u16,
    /// Inference threads = ONNX sessions per model [default: CPU count]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    workers: Option<usize>,
    /// Most rows per predict request
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = at_least_one)]
    max_batch: usize,
    /// Watch the repository for new complete versions: auto = swap to each, stage = stage
    /// and dry-run only (needs --features watch)
    #[arg(long, value_name = "MODE")]
    watch: Option<WatchMode>,
    /// Fleet mode: converge to the version named in FILE (needs --features watch)
    #[arg(long, value_name = "FILE")]
    desired: Option<PathBuf>,
    /// Watcher poll interval in ms (with --watch or --desired)
    #[arg(long, value_name = "N", default_value_t = 2000)]
    poll_ms: u64,
}

/// What the watcher does with a new complete version (`--watch`; the flag's doc says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchMode {
    Auto,
    Stage,
}

/// Command-line settings, defaults resolved.
#[derive(Debug, Clone)]
pub struct Args {
    pub repo: PathBuf,
    pub name: String,
    pub version: Option<String>,
    pub model_file: String,
    pub golden: PathBuf,
    pub min_accuracy: f64,
    pub max_drop: Option<f64>,
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub max_batch: usize,
    pub watch: Option<WatchMode>,
    pub desired: Option<PathBuf>,
    pub poll: Duration,
}

impl Args {
    /// Parses the command line. Exits 0 after printing `--help`, and 2 with clap's error and
    /// the usage for a bad flag, or for `--watch` / `--desired` in a build without `watch`.
    pub fn from_command_line() -> Args {
        let flags = Flags::parse();
        if cfg!(not(feature = "watch")) && (flags.watch.is_some() || flags.desired.is_some()) {
            Flags::command()
                .error(
                    ErrorKind::ArgumentConflict,
                    "--watch and --desired need the `watch` feature: \
                     cargo run --features watch --example serve",
                )
                .exit();
        }
        let repo = flags.repo;
        let name = flags.name.unwrap_or_else(|| {
            repo.canonicalize()
                .unwrap_or_else(|_| repo.clone())
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("model")
                .to_owned()
        });
        let golden = flags.golden.unwrap_or_else(|| repo.join("golden.npz"));
        let workers = flags
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Args {
            repo,
            name,
            version: flags.version,
            model_file: flags.model_file,
            golden,
            min_accuracy: flags.min_accuracy,
            max_drop: flags.max_drop,
            host: flags.host,
            port: flags.port,
            workers,
            max_batch: flags.max_batch,
            watch: flags.watch,
            desired: flags.desired,
            poll: Duration::from_millis(flags.poll_ms),
        }
    }
}

fn fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}
