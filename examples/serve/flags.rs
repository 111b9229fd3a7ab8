//! Command-line flags, through clap's derive API: `--help`, the errors for bad or unknown
//! flags (exit status 2) and the `BLUEGREEN_HOST` / `BLUEGREEN_PORT` fallbacks come from
//! clap. The admin token is read from the environment only (`run` in serve.rs), never from
//! a flag, so that it does not show in `ps`.
//!
//! One model (`--repo`, `--name`, `--version`, `--golden`) or many (`--model NAME=DIR`,
//! repeated); the gate, watcher and limit flags apply to every model.

use std::path::PathBuf;
use std::time::Duration;

use bluegreen::repository::{Repository, check_version_name};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

use super::limits::Limits;

const ENVIRONMENT: &str = "\
Environment:
  BLUEGREEN_ADMIN_TOKEN  bearer token for /admin/...; unset or empty = admin API disabled
  RUST_LOG               log filter (default info)";

/// bluegreen example inference service
#[derive(Debug, Parser)]
#[command(name = "serve", after_help = ENVIRONMENT)]
struct Flags {
    /// Model repository: DIR/<version>/<model file> (the one-model case)
    #[arg(long, value_name = "DIR", default_value = "models/digits")]
    repo: PathBuf,
    /// Model name in URLs [default: the repository directory's name]
    #[arg(long, value_name = "NAME", conflicts_with = "models")]
    name: Option<String>,
    /// Version to serve at start [default: 2; with --desired, the manifest's]
    #[arg(long, value_name = "V", conflicts_with = "models")]
    version: Option<String>,
    /// Golden set .npz with `inputs` and `labels` [default: DIR/golden.npz]
    #[arg(long, value_name = "PATH", conflicts_with = "models")]
    golden: Option<PathBuf>,
    /// Serve model NAME from repository DIR (golden set DIR/golden.npz), starting on
    /// VERSION [default: the newest complete version, else the newest]. Repeat for many
    /// models; replaces --repo/--name/--version/--golden
    #[arg(
        long = "model",
        value_name = "NAME=DIR[@VERSION]",
        value_parser = model_arg,
        conflicts_with_all = ["repo", "desired"]
    )]
    models: Vec<ModelArg>,
    /// Model file inside a version directory
    #[arg(long, value_name = "NAME", default_value = "model.onnx")]
    model_file: String,
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
    /// Serve /admin/... and /metrics on this port only (same --host), not on --port;
    /// 0 = any free port [default: both on --port]. Lets a NetworkPolicy admit the
    /// public port to clients and this one to Prometheus and deployment tooling only
    #[arg(long, value_name = "N", env = "BLUEGREEN_ADMIN_PORT")]
    admin_port: Option<u16>,
    /// Inference threads = ONNX sessions per model [default: CPU count]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    workers: Option<usize>,
    /// Most rows per predict request
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = at_least_one)]
    max_batch: usize,
    /// Most predict requests queued or running at once; more are shed (503 + Retry-After)
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = at_least_one)]
    max_queue: usize,
    /// Most open client connections; further clients wait in the listen backlog
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = at_least_one)]
    max_connections: usize,
    /// Largest request body in bytes (413 above)
    #[arg(long, value_name = "BYTES", default_value_t = 2 * 1024 * 1024, value_parser = at_least_one)]
    max_body_bytes: usize,
    /// Time a client has to send a request's head (line and headers), counted from when the
    /// server starts waiting for it; also closes connections that send nothing
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = millis)]
    header_timeout_ms: u64,
    /// Time a client has to send a request's whole body, counted from its head (408 after)
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = millis)]
    body_timeout_ms: u64,
    /// A keep-alive connection with no request in progress for this long after its last
    /// answer is closed
    #[arg(long, value_name = "MS", default_value_t = 5_000, value_parser = millis)]
    idle_timeout_ms: u64,
    /// Longest a public request may take from its head to its answer, queue and body
    /// included (503 after); admin operations are not limited
    #[arg(long, value_name = "MS", default_value_t = 30_000, value_parser = millis)]
    request_timeout_ms: u64,
    /// Watch the repository for new complete versions: auto = swap to each, stage = stage
    /// and dry-run only (needs --features watch)
    #[arg(long, value_name = "MODE")]
    watch: Option<WatchMode>,
    /// Fleet mode: converge to the version named in FILE (needs --features watch; one model)
    #[arg(long, value_name = "FILE")]
    desired: Option<PathBuf>,
    /// Watcher poll interval in ms (with --watch or --desired)
    #[arg(long, value_name = "N", default_value_t = 2000)]
    poll_ms: u64,
    /// Bake window: watch every newly promoted model this long and roll back on its own
    /// when a --bake-max-* limit is breached [default: off]
    #[arg(long, value_name = "MS", value_parser = millis)]
    bake_ms: Option<u64>,
    /// Bake limit: roll back when more than this share (0..1) of the new model's calls fail
    #[arg(long, value_name = "F", value_parser = fraction, requires = "bake_ms")]
    bake_max_error_rate: Option<f64>,
    /// Bake limit: roll back when the new model's p99 call latency exceeds this (ms)
    #[arg(long, value_name = "MS", value_parser = positive_ms, requires = "bake_ms")]
    bake_max_p99_ms: Option<f64>,
    /// Bake limit: roll back when the new model's p99 call latency exceeds this multiple of
    /// the previous model's
    #[arg(long, value_name = "K", value_parser = positive, requires = "bake_ms")]
    bake_max_p99_ratio: Option<f64>,
    /// Bake limits are judged once the new model has served this many calls
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = at_least_one)]
    bake_min_samples: usize,
    /// Watcher: no file-system notifications, look every --poll-ms only (what a network
    /// volume such as NFS allows: inotify sees nothing there)
    #[arg(long)]
    poll_only: bool,
    /// Record every decision in the SQLite journal FILE and resume from it on restart: the
    /// version last live (not --version), the versions banned (needs --features journal)
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Qualify every candidate in a capped child process (this binary, re-executed) before
    /// it is loaded here: admin stages and watcher rollouts alike
    #[arg(long, value_name = "ON|OFF", default_value = "on")]
    quarantine: OnOff,
    /// Address-space cap of a quarantine child, MiB
    #[arg(long, value_name = "MIB", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    quarantine_memory_mib: u64,
    /// CPU-time cap of a quarantine child, ms
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = millis)]
    quarantine_cpu_ms: u64,
    /// Wall-clock deadline of a quarantine child, ms
    #[arg(long, value_name = "MS", default_value_t = 120_000, value_parser = millis)]
    quarantine_wall_ms: u64,
}

/// `--quarantine on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// The caps of a quarantine child (`--quarantine on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineCaps {
    pub memory_bytes: u64,
    pub cpu: Duration,
    pub wall: Duration,
}

/// `--model NAME=DIR[@VERSION]`, parsed.
#[derive(Debug, Clone)]
struct ModelArg {
    name: String,
    repo: PathBuf,
    version: Option<String>,
}

/// What the watcher does with a new complete version (`--watch`; the flag's doc says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WatchMode {
    Auto,
    Stage,
}

/// One model to serve, defaults resolved.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub repo: PathBuf,
    /// The version to start on; `None` = the fleet manifest's (`--desired`).
    pub version: Option<String>,
    pub golden: PathBuf,
}

/// Command-line settings, defaults resolved.
#[derive(Debug, Clone)]
pub struct Args {
    pub models: Vec<ModelSpec>,
    pub model_file: String,
    pub min_accuracy: f64,
    pub max_drop: Option<f64>,
    pub host: String,
    pub port: u16,
    /// Where /admin and /metrics are served, when not on `port`.
    pub admin_port: Option<u16>,
    pub workers: usize,
    pub max_batch: usize,
    pub limits: Limits,
    pub watch: Option<WatchMode>,
    pub desired: Option<PathBuf>,
    pub poll: Duration,
    /// The bake window every promotion goes through (`--bake-ms` and its limits).
    pub bake: Option<bluegreen::Bake>,
    /// The watcher polls only (`--poll-only`).
    pub poll_only: bool,
    pub journal: Option<PathBuf>,
    /// `None` with `--quarantine off`.
    pub quarantine: Option<QuarantineCaps>,
}

impl Args {
    /// Parses the command line. Exits 0 after printing `--help`, and 2 with clap's error and
    /// the usage for a bad flag, or for `--watch` / `--desired` in a build without `watch`.
    pub fn from_command_line() -> Args {
        let flags = Flags::parse();
        let usage_error = |kind: ErrorKind, message: String| -> ! {
            Flags::command().error(kind, message).exit()
        };
        if cfg!(not(feature = "watch")) && (flags.watch.is_some() || flags.desired.is_some()) {
            usage_error(
                ErrorKind::ArgumentConflict,
                "--watch and --desired need the `watch` feature: \
                 cargo run --features watch,metrics,tower --example serve"
                    .to_owned(),
            );
        }
        if flags.admin_port.is_some_and(|a| a != 0 && a == flags.port) {
            usage_error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--admin-port {} is --port: give the admin listener a port of its own",
                    flags.port
                ),
            );
        }
        if cfg!(not(feature = "journal")) && flags.journal.is_some() {
            usage_error(
                ErrorKind::ArgumentConflict,
                "--journal needs the `journal` feature: \
                 cargo run --features journal --example serve"
                    .to_owned(),
            );
        }
        let models = if flags.models.is_empty() {
            let repo = flags.repo;
            let name = flags.name.unwrap_or_else(|| {
                repo.canonicalize()
                    .unwrap_or_else(|_| repo.clone())
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("model")
                    .to_owned()
            });
            if let Err(why) = check_model_name(&name) {
                usage_error(ErrorKind::InvalidValue, format!("--name {name:?}: {why}"));
            }
            let golden = flags.golden.unwrap_or_else(|| repo.join("golden.npz"));
            let version = match (flags.version, &flags.desired) {
                (Some(v), _) => Some(v),
                (None, Some(_)) => None,
                (None, None) => Some("2".to_owned()),
            };
            vec![ModelSpec {
                name,
                golden,
                version,
                repo,
            }]
        } else {
            let mut specs: Vec<ModelSpec> = Vec::new();
            for m in flags.models {
                if specs.iter().any(|s| s.name == m.name) {
                    usage_error(
                        ErrorKind::ArgumentConflict,
                        format!("--model {}: the name is used twice", m.name),
                    );
                }
                let version = match m.version {
                    Some(v) => v,
                    None => newest_version(&m.repo).unwrap_or_else(|why| {
                        usage_error(
                            ErrorKind::InvalidValue,
                            format!("--model {}: {why}", m.name),
                        )
                    }),
                };
                specs.push(ModelSpec {
                    golden: m.repo.join("golden.npz"),
                    version: Some(version),
                    name: m.name,
                    repo: m.repo,
                });
            }
            specs
        };
        let workers = flags
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let ms = Duration::from_millis;
        Args {
            models,
            model_file: flags.model_file,
            min_accuracy: flags.min_accuracy,
            max_drop: flags.max_drop,
            host: flags.host,
            port: flags.port,
            admin_port: flags.admin_port,
            workers,
            max_batch: flags.max_batch,
            limits: Limits {
                max_connections: flags.max_connections,
                max_queue: flags.max_queue,
                max_body_bytes: flags.max_body_bytes,
                header_timeout: ms(flags.header_timeout_ms),
                body_timeout: ms(flags.body_timeout_ms),
                idle_timeout: ms(flags.idle_timeout_ms),
                request_timeout: ms(flags.request_timeout_ms),
            },
            watch: flags.watch,
            desired: flags.desired,
            poll: ms(flags.poll_ms),
            bake: flags.bake_ms.map(|bake_ms| {
                let mut bake = bluegreen::Bake::for_duration(ms(bake_ms))
                    .min_samples(flags.bake_min_samples as u64);
                if let Some(rate) = flags.bake_max_error_rate {
                    bake = bake.max_error_rate(rate);
                }
                if let Some(p99) = flags.bake_max_p99_ms {
                    bake = bake.max_p99(Duration::from_secs_f64(p99 / 1e3));
                }
                if let Some(k) = flags.bake_max_p99_ratio {
                    bake = bake.max_p99_ratio(k);
                }
                bake
            }),
            poll_only: flags.poll_only,
            journal: flags.journal,
            quarantine: (flags.quarantine == OnOff::On).then(|| QuarantineCaps {
                memory_bytes: flags.quarantine_memory_mib.saturating_mul(1 << 20),
                cpu: ms(flags.quarantine_cpu_ms),
                wall: ms(flags.quarantine_wall_ms),
            }),
        }
    }
}

/// Model names go into URLs (`/v1/models/<name>:predict`) and metric labels.
fn check_model_name(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
    if ok {
        Ok(())
    } else {
        Err("a model name is 1-64 characters from A-Z a-z 0-9 . _ -")
    }
}

fn model_arg(value: &str) -> Result<ModelArg, String> {
    let (name, rest) = value
        .split_once('=')
        .ok_or_else(|| "expected NAME=DIR or NAME=DIR@VERSION".to_owned())?;
    check_model_name(name).map_err(str::to_owned)?;
    let (dir, version) = match rest.rsplit_once('@') {
        Some((dir, v)) if !dir.is_empty() && check_version_name(v).is_ok() => {
            (dir, Some(v.to_owned()))
        }
        _ => (rest, None),
    };
    if dir.is_empty() {
        return Err("the repository directory is empty".to_owned());
    }
    Ok(ModelArg {
        name: name.to_owned(),
        repo: PathBuf::from(dir),
        version,
    })
}

/// The newest complete version of a repository, else its newest version.
fn newest_version(repo: &std::path::Path) -> Result<String, String> {
    let repo = Repository::new(repo);
    let versions = repo.versions().map_err(|e| e.to_string())?;
    versions
        .iter()
        .rev()
        .find(|v| v.is_complete())
        .or_else(|| versions.last())
        .map(|v| v.version.clone())
        .ok_or_else(|| "the repository has no version directory".to_owned())
}

fn fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

/// A latency in ms: finite, above zero, at most a day.
fn positive_ms(value: &str) -> Result<f64, String> {
    let f = positive(value)?;
    if f > 86_400_000.0 {
        return Err("must be at most a day (86400000 ms)".to_owned());
    }
    Ok(f)
}

/// A finite number above zero.
fn positive(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if f.is_finite() && f > 0.0 {
        Ok(f)
    } else {
        Err("must be a number above 0".to_owned())
    }
}

fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

fn millis(value: &str) -> Result<u64, String> {
    match value.parse() {
        Ok(0) => Err("must be at least 1 ms".to_owned()),
        Ok(n) if n > 86_400_000 => Err("must be at most a day (86400000 ms)".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}
