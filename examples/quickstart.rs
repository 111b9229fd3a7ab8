//! Quick start: replace the model inside a running service, under live traffic.
//!
//! Two client threads call `predict` nonstop while this thread, the operator, deploys:
//! v2 is validated, warmed and swapped in, rolled back instantly and swapped in again;
//! v3 (garbage accuracy) and v4 (another input schema) are refused by the gates; v5 (a
//! truncated file) fails to load. No client call fails at any point.
//!
//! ```text
//! bash scripts/demo.sh                      # provisions ONNX Runtime, then runs this
//! cargo run --release --example quickstart -- [--models DIR]    # default models/digits
//! RUST_LOG=bluegreen=debug cargo run --release --example quickstart
//! ```

use std::collections::BTreeMap;
use std::error::Error as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use bluegreen::gates::{GoldenGates, SchemaGate};
use bluegreen::onnx::ndarray::s;
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxModel};
use bluegreen::{BlueGreen, Error, GoldenSet};
use tracing_subscriber::EnvFilter;

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

fn main() -> Result<ExitCode> {
    // bluegreen logs every stage, swap, rollback and refusal (target `bluegreen`).
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ort=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_target(false)
        .without_time()
        .init();
    let dir = models_dir()?;
    let path = |v: u32| dir.join(format!("{v}/model.onnx"));

    // Held-out examples with true labels: the gates judge every candidate on them.
    let golden = GoldenSet::npz(dir.join("golden.npz"))
        .labels("labels")
        .load()?;
    let gates = GoldenGates::new(golden.clone(), OnnxBinding::classifier());
    let bg = BlueGreen::builder()
        .validator(SchemaGate::like_live().same_metadata_as_live("feature_schema"))
        .validator(gates.sanity())
        .validator(gates.accuracy(0.95)) // v2 scores 0.976, v3 0.098
        .validator(gates.regression(0.01)) // shown not worse than live by more than 1 point (95%)
        .validator(gates.agreement(0.85)) // v2 gives v1's answer on 91% of examples
        .warmup_samples((0..8).map(|i| row(&golden, i)).collect())
        .build("v1", OnnxModel::load(path(1))?)?;
    println!("==> serving v1 (logistic regression) to two client threads");

    let stop = AtomicBool::new(false);
    let (outcome, tallies) = thread::scope(|s| {
        let (bg, golden, stop) = (&bg, &golden, &stop);
        let clients: Vec<_> = (0..2)
            .map(|seed| s.spawn(move || client(bg, golden, stop, seed)))
            .collect();
        let outcome = operate(bg, &path);
        stop.store(true, Ordering::Relaxed);
        let tallies: Vec<Tally> = clients
            .into_iter()
            .map(|c| c.join().unwrap_or_else(|_| Tally::failed(1)))
            .collect();
        (outcome, tallies)
    });
    outcome?;

    println!("\n==> traffic while all this happened");
    let mut total = Tally::default();
    for tally in tallies {
        total.failed += tally.failed;
        for (version, (calls, correct)) in tally.answers {
            let entry = total.answers.entry(version).or_default();
            (entry.0, entry.1) = (entry.0 + calls, entry.1 + correct);
        }
    }
    let answered: u64 = total.answers.values().map(|(calls, _)| calls).sum();
    println!("calls {}, failed {}", answered + total.failed, total.failed);
    for (version, (calls, correct)) in &total.answers {
        let accuracy = 100.0 * *correct as f64 / *calls as f64;
        println!("  answered by {version}: {calls} calls, {accuracy:.1}% correct");
    }
    println!("\n==> status\n{}", bg.status());
    Ok(if total.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The operator's script. Each step lets traffic flow for a moment first.
fn operate(bg: &BlueGreen<OnnxModel>, path: &dyn Fn(u32) -> PathBuf) -> Result<()> {
    let settle = || thread::sleep(Duration::from_millis(300));
    settle();
    println!("\n==> staging v2 (neural network) and swapping it in");
    bg.stage("v2", OnnxModel::load(path(2))?)?;
    let swap = bg.swap()?;
    print!("{}", swap.validation);
    println!(
        "swapped {} -> {}: warm-up {:.1?}, flip {:.1?}; calls still finishing on {}: {}",
        swap.from, swap.to, swap.warm_up, swap.flip, swap.from, swap.old_holders
    );

    settle();
    println!("\n==> rolling back (instant: v1 stayed loaded in standby)");
    let back = bg.rollback()?;
    println!(
        "rolled back {} -> {} in {:.1?}",
        back.from, back.to, back.flip
    );

    settle();
    println!("\n==> staging v2 again and swapping it in (validated again)");
    bg.stage("v2", OnnxModel::load(path(2))?)?;
    let swap = bg.swap()?;
    let passed = swap.validation.checks.len();
    println!(
        "swapped {} -> {}: {passed} gates passed",
        swap.from, swap.to
    );

    for (version, file, story) in [
        ("v3", 3, "trained on shuffled labels"),
        (
            "v4",
            4,
            "expects 32 `pixels`, the service sends 64 `input` features",
        ),
    ] {
        settle();
        println!("\n==> staging {version} ({story})");
        bg.stage(version, OnnxModel::load(path(file))?)?;
        let Err(Error::ValidationFailed(report)) = bg.swap() else {
            return Err(format!("{version} should have been refused").into());
        };
        print!("{report}");
        let failed: Vec<&str> = report.failures().map(|c| c.name.as_str()).collect();
        let live = bg.active().version().to_owned();
        println!("REFUSED by {}; {live} keeps serving", failed.join(", "));
    }

    settle();
    println!("\n==> staging v5 (file truncated in half)");
    let Err(e @ Error::Load { .. }) = bg.stage_with("v5", || OnnxModel::load(path(5))) else {
        return Err("v5 should have failed to load".into());
    };
    let cause = e.source().map(ToString::to_string).unwrap_or_default();
    println!("LOAD FAILED (OnnxError): {cause}");
    println!("{} keeps serving", bg.active().version());
    settle();
    Ok(())
}

/// What one client saw: per answering version (calls, correct answers), and failures.
#[derive(Default)]
struct Tally {
    answers: BTreeMap<String, (u64, u64)>,
    failed: u64,
}

impl Tally {
    fn failed(failed: u64) -> Self {
        Tally {
            failed,
            ..Tally::default()
        }
    }
}

/// A client: one golden example per call, pinning the active model to know who answered.
fn client(bg: &BlueGreen<OnnxModel>, golden: &GoldenSet, stop: &AtomicBool, seed: usize) -> Tally {
    let truth = golden.labels().expect("loaded with labels");
    let mut tally = Tally::default();
    let mut i = seed;
    while !stop.load(Ordering::Relaxed) {
        i = (i + 7) % golden.len();
        let pinned = bg.active();
        let answer = pinned.predict(&row(golden, i));
        match answer.and_then(|out| Ok(out.i64("label")?.iter().any(|&l| l == truth[i]))) {
            Ok(correct) => {
                let entry = tally
                    .answers
                    .entry(pinned.version().to_owned())
                    .or_default();
                (entry.0, entry.1) = (entry.0 + 1, entry.1 + u64::from(correct));
            }
            Err(e) => {
                eprintln!("call on {} failed: {e}", pinned.version());
                tally.failed += 1;
            }
        }
    }
    tally
}

/// Golden example `i` as a one-row model input.
fn row(golden: &GoldenSet, i: usize) -> Inputs {
    Inputs::single(golden.inputs().slice(s![i..i + 1, ..]).to_owned())
}

/// `--models DIR`, else `models/digits` here or in the crate's own directory.
fn models_dir() -> Result<PathBuf> {
    /// The quick start: load, gate, swap, refuse and roll back the bundled digits models.
    #[derive(clap::Parser)]
    #[command(name = "quickstart")]
    struct Flags {
        /// The digits model repository (default: models/digits).
        #[arg(long)]
        models: Option<PathBuf>,
    }
    let flags = <Flags as clap::Parser>::parse();
    Ok(flags.models.unwrap_or_else(|| {
        let here = PathBuf::from("models/digits");
        let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits");
        if here.is_dir() { here } else { crate_dir }
    }))
}
