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
//! (`cargo run --features serde --example validate -- ... --json`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use bluegreen::gates::{GoldenGates, LatencyBudget, SchemaGate};
use bluegreen::onnx::{OnnxBinding, OnnxConfig};
use bluegreen::{BlueGreen, GoldenSet, ValidationReport};

const USAGE: &str = "\
usage: validate --candidate MODEL.onnx --baseline MODEL.onnx --golden GOLDEN.npz
                [--min-accuracy F] [--max-drop F] [--min-agreement F]
                [--latency-ratio F] [--inputs ARRAY] [--labels ARRAY] [--json]

  --min-accuracy F    candidate accuracy on the golden labels must be >= F (default 0.95)
  --max-drop F        candidate accuracy may be at most F below the baseline's (default 0.01)
  --min-agreement F   candidate and baseline must agree on >= F of the examples (default 0.9)
  --latency-ratio F   candidate p99 latency must be <= F x the baseline's (default: not checked)
  --inputs ARRAY      golden-set array of float32 inputs (default inputs)
  --labels ARRAY      golden-set array of int64 true labels (default labels)
  --json              print the report as JSON (needs the `serde` feature)

exit status: 0 all gates passed, 1 a gate failed, 2 usage error or unusable input";

struct Args {
    candidate: PathBuf,
    baseline: PathBuf,
    golden: PathBuf,
    inputs: String,
    labels: String,
    min_accuracy: f64,
    max_drop: f64,
    min_agreement: f64,
    latency_ratio: Option<f64>,
    json: bool,
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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

/// `Ok(None)` for `--help`.
fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Option<Args>, String> {
    let (mut candidate, mut baseline, mut golden) = (None, None, None);
    let mut parsed = Args {
        candidate: PathBuf::new(),
        baseline: PathBuf::new(),
        golden: PathBuf::new(),
        inputs: "inputs".to_owned(),
        labels: "labels".to_owned(),
        min_accuracy: 0.95,
        max_drop: 0.01,
        min_agreement: 0.9,
        latency_ratio: None,
        json: false,
    };
    while let Some(flag) = args.next() {
        let flag = flag
            .into_string()
            .map_err(|f| format!("unexpected argument {f:?}"))?;
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--candidate" => candidate = Some(PathBuf::from(value()?)),
            "--baseline" => baseline = Some(PathBuf::from(value()?)),
            "--golden" => golden = Some(PathBuf::from(value()?)),
            "--inputs" => parsed.inputs = text(&flag, value()?)?,
            "--labels" => parsed.labels = text(&flag, value()?)?,
            "--min-accuracy" => parsed.min_accuracy = fraction(&flag, value()?)?,
            "--max-drop" => parsed.max_drop = fraction(&flag, value()?)?,
            "--min-agreement" => parsed.min_agreement = fraction(&flag, value()?)?,
            "--latency-ratio" => {
                let ratio = number(&flag, value()?)?;
                if !(ratio > 0.0 && ratio.is_finite()) {
                    return Err(format!("{flag} must be a positive number, got {ratio}"));
                }
                parsed.latency_ratio = Some(ratio);
            }
            "--json" if cfg!(feature = "serde") => parsed.json = true,
            "--json" => return Err(JSON_NEEDS_SERDE.to_owned()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let missing = |name: &str| format!("--{name} is required");
    parsed.candidate = candidate.ok_or_else(|| missing("candidate"))?;
    parsed.baseline = baseline.ok_or_else(|| missing("baseline"))?;
    parsed.golden = golden.ok_or_else(|| missing("golden"))?;
    Ok(Some(parsed))
}

fn text(flag: &str, value: OsString) -> Result<String, String> {
    value
        .into_string()
        .map_err(|v| format!("{flag}: {v:?} is not valid UTF-8"))
}

fn number(flag: &str, value: OsString) -> Result<f64, String> {
    let value = text(flag, value)?;
    value
        .parse()
        .map_err(|_| format!("{flag} needs a number, got `{value}`"))
}

fn fraction(flag: &str, value: OsString) -> Result<f64, String> {
    let f = number(flag, value)?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("{flag} must be between 0 and 1, got {f}"))
    }
}
