//! Qualifying digits v2 with and without quarantine ([`Qualify`]): in this process (load,
//! warm up on golden rows, sanity and accuracy gates), in a quarantine child (the same
//! trial, plus a process, ONNX Runtime's start and the golden set's load), and the floors
//! of a quarantine child: one that loads nothing ([`hook`]'s `noop` loader), and one that
//! only starts ONNX Runtime (`runtime`: what any process that runs an ONNX model pays
//! first — ONNX Runtime's environment creation registers every operator schema and
//! kernel, ~0.1 s here).
//!
//! The child is the benchmark binary itself: its `main()` must call [`hook`]`().enter()`
//! first.

use std::path::Path;
use std::time::{Duration, Instant};

use bluegreen::gates::GoldenGates;
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxModel, OnnxTrial};
use bluegreen::quarantine::{Hook, Quarantine, Trial};
use bluegreen::{BlueGreen, Model};

use super::{POOL, environment, golden, load_model, model_path};

/// Golden rows the in-process warm-up runs (the child's trial warms on its gates' rows).
const WARM_ROWS: usize = 16;

/// The quarantine hook of a benchmark binary: the built-in loaders plus `noop`.
pub fn hook() -> Hook {
    Hook::new()
        .register("noop", |_job| Ok::<_, String>(Trial::new(Noop)))
        .register("runtime", |_job| {
            bluegreen::onnx::init_runtime()?;
            Ok::<_, bluegreen::onnx::OnnxError>(Trial::new(Noop))
        })
}

/// A model that is nothing: what a quarantine child costs with no model in it.
pub struct Noop;

impl Model for Noop {
    type Input = ();
    type Output = ();
    type Error = std::convert::Infallible;
    fn predict(&self, _: &()) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Times of one qualification round.
#[derive(Debug, Clone, Copy)]
pub struct QualifyRound {
    /// Load v2 (one session) + warm-up + sanity and accuracy gates, in this process.
    pub in_process: Duration,
    /// The same trial in a quarantine child, from spawn to verdict.
    pub quarantine: Duration,
    /// A quarantine child that loads nothing: the process floor.
    pub process_start: Duration,
    /// A quarantine child that only starts ONNX Runtime: the floor of an ONNX child.
    pub runtime_start: Duration,
}

/// The deployment and quarantines the rounds use.
pub struct Qualify {
    bg: BlueGreen<OnnxModel>,
    rows: Vec<Inputs>,
    quarantine: Quarantine<OnnxModel>,
    noop: Quarantine<Noop>,
    runtime: Quarantine<Noop>,
    seq: u64,
}

impl Default for Qualify {
    fn default() -> Self {
        Self::new()
    }
}

impl Qualify {
    pub fn new() -> Self {
        environment();
        let gates = GoldenGates::new(golden(), OnnxBinding::classifier());
        let rows = gates
            .golden()
            .batches(1)
            .take(WARM_ROWS)
            .map(|(_, r)| Inputs::single(r.to_owned()))
            .collect();
        let bg = BlueGreen::builder()
            .validator(gates.sanity())
            .validator(gates.accuracy(0.9))
            .build("1", load_model(1, POOL))
            .expect("deployment");
        let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/digits/golden.npz");
        let quarantine = Quarantine::onnx(OnnxTrial::new().golden(golden_path).min_accuracy(0.9))
            .memory_limit(1 << 30)
            .wall_limit(Duration::from_secs(60));
        let noop = Quarantine::new("noop", (), |_: &Path| Ok::<_, String>(Noop));
        let runtime = Quarantine::new("runtime", (), |_: &Path| Ok::<_, String>(Noop));
        Self {
            bg,
            rows,
            quarantine,
            noop,
            runtime,
            seq: 0,
        }
    }

    /// One round of each, in this order.
    pub fn round(&mut self) -> QualifyRound {
        self.seq += 1;
        let version = format!("2-{}", self.seq);
        let v2 = model_path(2);

        let started = Instant::now();
        self.bg
            .stage_with(version.clone(), || {
                let model = bluegreen::onnx::OnnxConfig::new().pool_size(1).load(&v2)?;
                model.warm_up(&self.rows)?;
                Ok::<_, bluegreen::onnx::OnnxError>(model)
            })
            .expect("stage v2");
        let report = self.bg.validate().expect("validate");
        let in_process = started.elapsed();
        assert!(report.passed(), "{report}");
        self.bg.unstage().expect("unstage");

        let started = Instant::now();
        let q = self.quarantine.qualify(&version, &v2);
        let quarantine = started.elapsed();
        assert!(q.passed(), "{q}");

        let started = Instant::now();
        let n = self.noop.qualify("noop", &v2);
        let process_start = started.elapsed();
        assert!(n.passed(), "{n}");

        let started = Instant::now();
        let r = self.runtime.qualify("runtime", &v2);
        let runtime_start = started.elapsed();
        assert!(r.passed(), "{r}");
        QualifyRound {
            in_process,
            quarantine,
            process_start,
            runtime_start,
        }
    }
}
