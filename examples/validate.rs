//! CI/CD gate: judge a candidate ONNX model against the baseline it would replace, on a
//! golden set, without serving anything (a dry run of the gates `swap()` would apply).
//!
//! ```text
//! cargo run --example validate -- \
//!     --candidate models/digits/3/model.onnx --baseline models/digits/2/model.onnx \
//!     --golden models/digits/golden.npz [--min-accuracy 0.95] [--max-drop 0.01] \
//!     [--min-agreement 0.9] [--latency-ratio 3.0] [--json]
//! ```
//!
//! Gates: schema (the candidate takes the baseline's inputs and `feature_schema`), sanity,
//! accuracy, regression against the baseline, agreement with the baseline, and — only when
//! `--latency-ratio` is given — p99 latency relative to the baseline.
//!
//! Exit status: 0 every gate passed, 1 a gate failed, 2 usage error or unusable input
//! (missing or corrupt model or golden set; the typed error is printed on stderr).
//! `--json` prints the report as JSON and needs the `serde` feature
//! (`cargo run --features serde --example validate -- ... --json`). Flags are parsed by
//! clap: `--help` lists them.

use std::path::PathBuf;
use std::process::ExitCode;

use bluegreen::gates::{GoldenGates, LatencyBudget, SchemaGate};
use bluegreen::onnx::{OnnxBinding, OnnxConfig};
use bluegreen::{BlueGreen, GoldenSet, ValidationReport};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// Judge a candidate ONNX model against the baseline it would replace, on a golden set.
#[derive(Debug, Parser)]
#[command(
    name = "validate",
    after_help = "Exit status: 0 all gates passed, 1 a gate failed, 2 usage error or unusable input"
)]
struct Args {
    /// The model that would replace the baseline
    #[arg(long, value_name = "MODEL.onnx")]
    candidate: PathBuf,
    /// The model it would replace
    #[arg(long, value_name = "MODEL.onnx")]
    baseline: PathBuf,
    /// The golden set (.npz archive)
    #[arg(long, value_name = "GOLDEN.npz")]
    golden: PathBuf,
    /// Candidate accuracy on the golden labels must be >= F
    #[arg(long, value_name = "F", default_value_t = 0.95, value_parser = fraction)]
    min_accuracy: f64,
    /// Candidate accuracy may be at most F below the baseline's
    #[arg(long, value_name = "F", default_value_t = 0.01, value_parser = fraction)]
    max_drop: f64,
    /// Candidate and baseline must agree on >= F of the examples
    #[arg(long, value_name = "F", default_value_t = 0.9, value_parser = fraction)]
    min_agreement: f64,
    /// Candidate p99 latency must be <= F x the baseline's [default: not checked]
    #[arg(long, value_name = "F", value_parser = positive)]
    latency_ratio: Option<f64>,
    /// Golden-set array of float32 inputs
    #[arg(long, value_name = "ARRAY", default_value = "inputs")]
    inputs: String,
    /// Golden-set array of int64 true labels
    #[arg(long, value_name = "ARRAY", default_value = "labels")]
    labels: String,
    /// Print the report as JSON (needs the `serde` feature)
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // Exits 0 after --help, 2 with clap's error and the usage for a bad flag.
    let args = Args::parse();
    if args.json && cfg!(not(feature = "serde")) {
        Args::command()
            .error(ErrorKind::ArgumentConflict, JSON_NEEDS_SERDE)
            .exit();
    }
    match run(&args) {
        Ok(report) if report.passed() => ExitCode::SUCCESS,
        Ok(report) => {
            let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
            eprintln!("candidate refused by: {}", failed.join(", "));
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

/// Loads everything, runs the gates once, prints the report.
fn run(args: &Args) -> Result<ValidationReport, Box<dyn std::error::Error>> {
    let golden = GoldenSet::npz(&args.golden)
        .inputs(&args.inputs)
        .labels(&args.labels)
        .load()?;
    // One session each: the gates call the models from one thread at a time.
    let config = OnnxConfig::new().pool_size(1);
    let load = |role: &str, path: &PathBuf| {
        config
            .load(path)
            .map_err(|e| format!("cannot load the {role} model: {e}"))
    };
    let baseline = load("baseline", &args.baseline)?;
    let candidate = load("candidate", &args.candidate)?;

    let examples = golden.len();
    let gates = GoldenGates::new(golden, OnnxBinding::classifier());
    let mut builder = BlueGreen::builder()
        .validator(SchemaGate::like_live().same_metadata_as_live("feature_schema"))
        .validator(gates.sanity())
        .validator(gates.accuracy(args.min_accuracy))
        .validator(gates.regression(args.max_drop))
        .validator(gates.agreement(args.min_agreement));
    if let Some(ratio) = args.latency_ratio {
        builder = builder.validator(gates.latency(LatencyBudget::RelativeToLive(ratio)));
    }
    // The models' paths are their version labels in the report.
    let live = args.baseline.display().to_string();
    let mut staged = args.candidate.display().to_string();
    if staged == live {
        staged.push_str(" (candidate)");
    }
    let bg = builder.build(live, baseline)?;
    bg.stage(staged, candidate)?;
    let report = bg.validate()?;

    if args.json {
        print_json(&report)?;
    } else {
        println!("golden set {} ({examples} examples)", args.golden.display());
        print!("{report}");
    }
    Ok(report)
}

const JSON_NEEDS_SERDE: &str =
    "--json needs the `serde` feature: cargo run --features serde --example validate -- ... --json";

#[cfg(feature = "serde")]
fn print_json(report: &ValidationReport) -> Result<(), &'static str> {
    println!("{}", report.to_json());
    Ok(())
}

#[cfg(not(feature = "serde"))]
fn print_json(_: &ValidationReport) -> Result<(), &'static str> {
    Err(JSON_NEEDS_SERDE) // refused earlier, while parsing the arguments
}

fn fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

fn positive(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if f > 0.0 && f.is_finite() {
        Ok(f)
    } else {
        Err("must be a positive number".to_owned())
    }
}
