//! `OnnxModel` in quarantine, out of the box: [`OnnxTrial`] (what the child checks) and
//! the built-in `onnx` loader the child's hook knows.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::binding::OnnxBinding;
use super::config::OnnxConfig;
use super::model::OnnxModel;
use crate::validation::GoldenSet;
use crate::validation::gates::GoldenGates;
use crate::validation::quarantine::{Hook, Job, Quarantine, Trial};

/// The name of the built-in loader in the child.
pub(crate) const LOADER: &str = "onnx";

/// What a quarantine child checks on an ONNX candidate: it loads (one session, one
/// thread), warms up (on golden rows, or zeros shaped by the declared inputs), and — with
/// a golden set — passes the [sanity](crate::gates::GoldenGates::sanity) gate and, when
/// set, a minimum [accuracy](crate::gates::GoldenGates::accuracy).
///
/// ```
/// use bluegreen::onnx::OnnxTrial;
/// use bluegreen::quarantine::Quarantine;
///
/// let q = Quarantine::onnx(OnnxTrial::new().golden("models/digits/golden.npz").min_accuracy(0.9))
///     .memory_limit(1 << 30);
/// assert_eq!(q.loader(), "onnx");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxTrial {
    golden: Option<PathBuf>,
    inputs: String,
    labels: String,
    classes: Option<usize>,
    min_accuracy: Option<f64>,
    sanity: bool,
}

impl Default for OnnxTrial {
    fn default() -> Self {
        Self {
            golden: None,
            inputs: "inputs".to_owned(),
            labels: "labels".to_owned(),
            classes: None,
            min_accuracy: None,
            sanity: true,
        }
    }
}

impl OnnxTrial {
    /// Load and warm up only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Judge on the golden set at `path` (`.npz`; made absolute, so the child finds it
    /// wherever it runs).
    #[must_use]
    pub fn golden(mut self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        self.golden = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        self
    }

    /// The golden set's input array (default `inputs`).
    #[must_use]
    pub fn inputs(mut self, name: impl Into<String>) -> Self {
        self.inputs = name.into();
        self
    }

    /// The golden set's label array (default `labels`).
    #[must_use]
    pub fn labels(mut self, name: impl Into<String>) -> Self {
        self.labels = name.into();
        self
    }

    /// How many classes the labels index (default: not checked in the child).
    #[must_use]
    pub fn classes(mut self, classes: usize) -> Self {
        self.classes = Some(classes);
        self
    }

    /// The candidate's golden-set accuracy must be at least `min` in the child.
    #[must_use]
    pub fn min_accuracy(mut self, min: f64) -> Self {
        self.min_accuracy = Some(min);
        self
    }

    /// Whether the sanity gate runs in the child (default on, with a golden set).
    #[must_use]
    pub fn sanity(mut self, on: bool) -> Self {
        self.sanity = on;
        self
    }

    /// The trial, in the child.
    fn build(&self, job: &Job) -> Result<Trial<OnnxModel>, String> {
        let model = OnnxConfig::new()
            .pool_size(1)
            .load(&job.candidate)
            .map_err(|e| e.to_string())?;
        let mut trial = Trial::new(model);
        if let Some(path) = &self.golden {
            let mut spec = GoldenSet::npz(path)
                .inputs(&self.inputs)
                .labels(&self.labels);
            if let Some(classes) = self.classes {
                spec = spec.classes(classes);
            }
            let golden = spec
                .load()
                .map_err(|e| format!("the golden set cannot be used: {e}"))?;
            let gates = GoldenGates::new(golden, OnnxBinding::classifier());
            if self.sanity {
                trial = trial.gate(gates.sanity());
            }
            if let Some(min) = self.min_accuracy {
                trial = trial.gate(gates.accuracy(min));
            }
        }
        Ok(trial)
    }
}

impl Quarantine<OnnxModel> {
    /// Quarantine for ONNX candidates: the child runs `trial` with the built-in `onnx`
    /// loader; a candidate that passed is loaded into the serving process with
    /// [`OnnxConfig::default`].
    pub fn onnx(trial: OnnxTrial) -> Self {
        Self::onnx_with(trial, OnnxConfig::default())
    }

    /// Like [`onnx`](Self::onnx), loading a candidate that passed with `config` (pool
    /// size, threads) in the serving process.
    pub fn onnx_with(trial: OnnxTrial, config: OnnxConfig) -> Self {
        Quarantine::new(LOADER, trial, move |path: &Path| config.load(path))
    }
}

/// Adds the `onnx` loader to a hook (called by `Hook::new`).
pub(crate) fn register_quarantine_loader(hook: Hook) -> Hook {
    hook.register(LOADER, |job: &Job| {
        let trial: OnnxTrial = job
            .settings()
            .map_err(|e| format!("the onnx loader's settings are not an OnnxTrial: {e}"))?;
        trial.build(job)
    })
}
