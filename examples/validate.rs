//! CI/CD gate: judge a candidate ONNX model against the baseline it would replace, on a
//! golden set, without serving anything (a dry run of the gates `swap()` would apply).
//!
//! ```text
//! cargo run --example validate -- \
//!     --candidate models/digits/3/model.onnx --baseline models/digits/2/model.onnx \
//!     --golden models/digits/golden.npz [--min-accuracy 0.95] [--max-drop 0.01] \
//!     [--policy non-inferior|not-worse|point] [--alpha 0.05] [--confidence 0.95] \
//!     [--min-agreement 0.9] [--share-bound measured|lower-bound] [--latency-ratio 3.0] \
//!     [--inputs inputs] [--labels labels] [--classes 10] \
//!     [--expected probabilities_v2 [--max-abs-error 1e-4]] [--json] \
//!     [--quarantine [--memory-limit 1024] [--cpu-limit 30] [--wall-limit 60]]
//! cargo run --example validate -- --calibrate \
//!     --baseline models/digits/2/model.onnx --golden models/digits/golden.npz
//! ```
//!
//! Gates: schema (the candidate takes the baseline's inputs and `feature_schema`), sanity,
//! accuracy, regression against the baseline (non-inferiority at `--max-drop` by default,
//! or `--policy not-worse` at `--alpha`, or the old point estimate), agreement with the
//! baseline, expected outputs when `--expected` names an array, and p99 latency relative
//! to the baseline when `--latency-ratio` is given. Every statistical line shows the
//! measured value, its interval and the bound; a bound the golden set is too small for is
//! warned about on stderr before anything runs, with the examples it needs.
//!
//! `--calibrate` runs only the baseline over the golden set and prints its figures with
//! intervals and a suggested bound for each gate (no `--candidate` needed).
//!
//! `--quarantine` first qualifies the candidate in a child process (this binary,
//! re-executed) under an address-space cap (`--memory-limit`, MiB), a CPU-time cap
//! (`--cpu-limit`, seconds) and a wall-clock deadline (`--wall-limit`, seconds): it must
//! load, warm up, and pass sanity and `--min-accuracy` on the golden set there before it is
//! loaded here for the full gates. An endless loop, a memory bomb or a crash is refused
//! with its cause (exit 1) and never touches this process; one that fails to load exits 2
//! as without quarantine. The child's peak memory, CPU time and duration are printed on
//! stderr.
//!
//! Golden labels are checked against the baseline's declared number of classes (or
//! `--classes`) before any gate runs.
//!
//! Exit status: 0 every gate passed (or calibrated), 1 a gate failed, 2 usage error or
//! unusable input (missing or corrupt model or golden set, labels out of range; the typed
//! error is printed on stderr). `--json` prints the report (or calibration) as JSON and
//! needs the `serde` feature (`cargo run --features serde --example validate -- ... --json`).
//! Flags are parsed by clap: `--help` lists them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bluegreen::gates::{
    GoldenGates, LatencyBudget, RegressionPolicy, SchemaGate, ShareRule, SizeAdvice,
};
use bluegreen::onnx::{OnnxBinding, OnnxConfig, OnnxModel, OnnxTrial};
use bluegreen::quarantine::{Quarantine, QuarantineError};
use bluegreen::{BlueGreen, GoldenSet, Model, ValidationReport};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

/// Judge a candidate ONNX model against the baseline it would replace, on a golden set.
#[derive(Debug, Parser)]
#[command(
    name = "validate",
    after_help = "Exit status: 0 all gates passed (or calibrated), 1 a gate failed, 2 usage error or unusable input"
)]
struct Args {
    /// The model that would replace the baseline (not needed with --calibrate)
    #[arg(long, value_name = "MODEL.onnx", required_unless_present = "calibrate")]
    candidate: Option<PathBuf>,
    /// The model it would replace
    #[arg(long, value_name = "MODEL.onnx")]
    baseline: PathBuf,
    /// The golden set (.npz archive)
    #[arg(long, value_name = "GOLDEN.npz")]
    golden: PathBuf,
    /// Run only the baseline over the golden set; print its figures with intervals and a
    /// suggested bound for each gate
    #[arg(long, conflicts_with = "candidate")]
    calibrate: bool,
    /// Candidate accuracy on the golden labels must be >= F
    #[arg(long, value_name = "F", default_value_t = 0.95, value_parser = fraction)]
    min_accuracy: f64,
    /// Largest accuracy drop against the baseline: the margin the golden set must show the
    /// drop is below (non-inferior), or the measured drop (point)
    #[arg(long, value_name = "F", default_value_t = 0.01, value_parser = fraction)]
    max_drop: f64,
    /// How the regression gate decides
    #[arg(long, value_enum, default_value_t = Policy::NonInferior)]
    policy: Policy,
    /// Significance level of --policy not-worse (exact McNemar test)
    #[arg(long, value_name = "F", default_value_t = 0.05, value_parser = open_fraction)]
    alpha: f64,
    /// Two-sided confidence of the intervals (and of --policy non-inferior)
    #[arg(long, value_name = "F", default_value_t = 0.95, value_parser = open_fraction)]
    confidence: f64,
    /// Candidate and baseline must agree on >= F of the examples
    #[arg(long, value_name = "F", default_value_t = 0.9, value_parser = fraction)]
    min_agreement: f64,
    /// What --min-accuracy and --min-agreement bound: the measured share, or the lower end
    /// of its Wilson interval
    #[arg(long, value_enum, default_value_t = ShareBound::Measured)]
    share_bound: ShareBound,
    /// Candidate p99 latency must be <= F x the baseline's [default: not checked]
    #[arg(long, value_name = "F", value_parser = positive)]
    latency_ratio: Option<f64>,
    /// Golden-set array of float32 inputs
    #[arg(long, value_name = "ARRAY", default_value = "inputs")]
    inputs: String,
    /// Golden-set array of int64 true labels
    #[arg(long, value_name = "ARRAY", default_value = "labels")]
    labels: String,
    /// Number of classes the labels index [default: the baseline's declared score width]
    #[arg(long, value_name = "N")]
    classes: Option<usize>,
    /// Golden-set array of float32 expected outputs (scores); adds the expected-outputs gate
    #[arg(long, value_name = "ARRAY")]
    expected: Option<String>,
    /// Largest absolute difference from --expected allowed
    #[arg(long, value_name = "F", default_value_t = 1e-4, value_parser = positive, requires = "expected")]
    max_abs_error: f64,
    /// Print the report as JSON (needs the `serde` feature)
    #[arg(long)]
    json: bool,
    /// Qualify the candidate in a capped child process first (see --memory-limit,
    /// --cpu-limit, --wall-limit)
    #[arg(long, conflicts_with = "calibrate")]
    quarantine: bool,
    /// Address-space cap of the quarantine child, MiB
    #[arg(long, value_name = "MIB", default_value_t = 2048, requires = "quarantine", value_parser = clap::value_parser!(u64).range(1..))]
    memory_limit: u64,
    /// CPU-time cap of the quarantine child, seconds
    #[arg(long, value_name = "SECS", default_value_t = 60.0, requires = "quarantine", value_parser = positive)]
    cpu_limit: f64,
    /// Wall-clock deadline of the quarantine child, seconds
    #[arg(long, value_name = "SECS", default_value_t = 120.0, requires = "quarantine", value_parser = positive)]
    wall_limit: f64,
}

/// `--policy`: how the regression gate decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Pass only when the golden set shows the drop is below --max-drop (safe for
    /// automatic promotion)
    NonInferior,
    /// Refuse only when the candidate is significantly worse at --alpha
    NotWorse,
    /// The measured drop must be <= --max-drop, noise ignored
    Point,
}

/// `--share-bound`: what the accuracy and agreement bounds apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ShareBound {
    /// The measured share
    Measured,
    /// The lower end of the share's Wilson interval at --confidence
    LowerBound,
}

fn main() -> ExitCode {
    // First: when this process is a quarantine child, this runs the job and exits.
    bluegreen::quarantine::enter();
    // Exits 0 after --help, 2 with clap's error and the usage for a bad flag.
    let args = Args::parse();
    if args.json && cfg!(not(feature = "serde")) {
        Args::command()
            .error(ErrorKind::ArgumentConflict, JSON_NEEDS_SERDE)
            .exit();
    }
    if args.quarantine
        && let Some(code) = quarantine(&args)
    {
        return code;
    }
    let outcome = if args.calibrate {
        calibrate(&args).map(|()| None)
    } else {
        run(&args).map(Some)
    };
    match outcome {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(report)) if report.passed() => ExitCode::SUCCESS,
        Ok(Some(report)) => {
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

type Failure = Box<dyn std::error::Error>;

/// Qualifies the candidate in a capped child process. `Some(exit code)` when it was
/// refused (or quarantine could not run); `None` when it passed and the gates run here.
fn quarantine(args: &Args) -> Option<ExitCode> {
    let candidate = args.candidate.as_ref()?;
    let mut trial = OnnxTrial::new()
        .golden(&args.golden)
        .inputs(&args.inputs)
        .labels(&args.labels)
        .min_accuracy(args.min_accuracy);
    if let Some(classes) = args.classes {
        trial = trial.classes(classes);
    }
    let q = Quarantine::onnx(trial)
        .memory_limit(args.memory_limit.saturating_mul(1 << 20))
        .cpu_limit(Duration::from_secs_f64(args.cpu_limit))
        .wall_limit(Duration::from_secs_f64(args.wall_limit));
    let report = q.qualify(&candidate.display().to_string(), candidate);
    eprintln!("{report}");
    let refusal = report.refusal.as_ref()?;
    if args.json {
        let _ = print_json(&report);
    }
    let code = match refusal {
        // As without quarantine: unusable input, or quarantine itself could not run.
        QuarantineError::FailedToLoad { .. }
        | QuarantineError::NoHook { .. }
        | QuarantineError::Setup { .. }
        | QuarantineError::UnknownLoader { .. } => 2,
        _ => 1,
    };
    eprintln!("candidate refused in quarantine ({})", refusal.cause());
    Some(ExitCode::from(code))
}

/// The golden set, the gates over it, and the baseline, with the labels checked against
/// the baseline's declared classes.
fn load(args: &Args) -> Result<(GoldenGates<OnnxModel>, OnnxModel), Failure> {
    let mut spec = GoldenSet::npz(&args.golden)
        .inputs(&args.inputs)
        .labels(&args.labels);
    if let Some(classes) = args.classes {
        spec = spec.classes(classes);
    }
    if let Some(expected) = &args.expected {
        spec = spec.expected(expected);
    }
    let golden = spec.load()?;
    let baseline = load_model("baseline", &args.baseline)?;
    let gates = GoldenGates::new(golden, OnnxBinding::classifier());
    if args.classes.is_none() {
        gates.check_labels_against(&baseline.info())?;
    }
    Ok((gates, baseline))
}

fn load_model(role: &str, path: &PathBuf) -> Result<OnnxModel, String> {
    // One session: the gates call the models from one thread at a time.
    OnnxConfig::new()
        .pool_size(1)
        .load(path)
        .map_err(|e| format!("cannot load the {role} model: {e}"))
}

/// Loads everything, runs the gates once, prints the report.
fn run(args: &Args) -> Result<ValidationReport, Failure> {
    let (gates, baseline) = load(args)?;
    let candidate_path = args.candidate.as_ref().ok_or("--candidate is required")?;
    let candidate = load_model("candidate", candidate_path)?;
    let examples = gates.golden().len();

    let share = |min: f64| match args.share_bound {
        ShareBound::Measured => ShareRule::Measured { min },
        ShareBound::LowerBound => ShareRule::LowerBound {
            min,
            confidence: args.confidence,
        },
    };
    let regression = gates.regression_with(match args.policy {
        Policy::NonInferior => RegressionPolicy::NonInferior {
            margin: args.max_drop,
            confidence: args.confidence,
        },
        Policy::NotWorse => RegressionPolicy::NotWorse { alpha: args.alpha },
        Policy::Point => RegressionPolicy::PointEstimate {
            max_drop: args.max_drop,
        },
    });
    let accuracy = gates.accuracy_with(share(args.min_accuracy));
    let agreement = gates.agreement_with(share(args.min_agreement));
    let advice: Vec<SizeAdvice> = [regression.advice(), accuracy.advice(), agreement.advice()]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    for a in &advice {
        eprintln!("warning: {a}");
    }

    let mut builder = BlueGreen::builder()
        .validator(SchemaGate::like_live().same_metadata_as_live("feature_schema"))
        .validator(gates.sanity())
        .validator(accuracy)
        .validator(regression)
        .validator(agreement);
    if args.expected.is_some() {
        builder = builder.validator(gates.expected_outputs(args.max_abs_error));
    }
    if let Some(ratio) = args.latency_ratio {
        builder = builder.validator(gates.latency(LatencyBudget::RelativeToLive(ratio)));
    }
    // The models' paths are their version labels in the report.
    let live = args.baseline.display().to_string();
    let mut staged = candidate_path.display().to_string();
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

/// Runs the baseline alone over the golden set and prints what bounds it supports.
fn calibrate(args: &Args) -> Result<(), Failure> {
    let (gates, baseline) = load(args)?;
    let label = args.baseline.display().to_string();
    let calibration = gates.calibrate(&label, &baseline, args.confidence)?;
    if args.json {
        print_json(&calibration)?;
    } else {
        print!("{calibration}");
    }
    Ok(())
}

const JSON_NEEDS_SERDE: &str =
    "--json needs the `serde` feature: cargo run --features serde --example validate -- ... --json";

#[cfg(feature = "serde")]
fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(not(feature = "serde"))]
fn print_json<T>(_: &T) -> Result<(), Failure> {
    Err(JSON_NEEDS_SERDE.into()) // refused earlier, while parsing the arguments
}

fn fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err("must be between 0 and 1".to_owned())
    }
}

fn open_fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value.parse().map_err(|e| format!("{e}"))?;
    if f > 0.0 && f < 1.0 {
        Ok(f)
    } else {
        Err("must be strictly between 0 and 1".to_owned())
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
