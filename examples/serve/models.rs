//! The models one process serves, as TF Serving, Triton and MLServer do: each has its own
//! repository, `BlueGreen` deployment, gates on its own golden set, start-up check,
//! watcher, operation lock and metric labels. `--model NAME=DIR` (repeated) names them;
//! `--repo` alone is the one-model case.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bluegreen::gates::{GoldenGates, SchemaGate};
use bluegreen::onnx::ndarray::{Axis, Slice};
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxConfig, OnnxModel, OnnxTrial};
use bluegreen::quarantine::{Quarantine, QuarantineError};
use bluegreen::repository::Repository;
use bluegreen::{BlueGreen, GoldenSet, ValidationReport};

use super::flags::{Args, ModelSpec, QuarantineCaps};
use super::queue::{InferenceQueue, ModelService};

/// Where a model's start-up is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Loading and checking the initial model.
    Loading,
    /// Serving. `initial_passed` says whether the initial model passed its gates; a model
    /// that reached the active slot through a swap passed them by construction.
    Serving {
        initial_generation: u64,
        initial_passed: bool,
        report: Option<ValidationReport>,
        note: Option<String>,
    },
}

/// One served model.
pub struct Served {
    pub spec: ModelSpec,
    pub repo: Repository,
    pub onnx: OnnxConfig,
    pub bg: OnceLock<Arc<BlueGreen<OnnxModel>>>,
    /// The deployment's tower service on the shared inference pool (set with `bg`).
    pub service: OnceLock<ModelService>,
    pub phase: Mutex<Phase>,
    /// Serializes admin sequences with the watcher's (stage → swap must not interleave).
    pub op_lock: Arc<Mutex<()>>,
    model_file: String,
    #[cfg(feature = "watch")]
    pub watcher: OnceLock<bluegreen::watch::Watcher>,
}

impl Served {
    fn new(spec: ModelSpec, args: &Args) -> Self {
        Served {
            repo: Repository::new(&spec.repo),
            onnx: OnnxConfig::new().pool_size(args.workers).intra_threads(1),
            bg: OnceLock::new(),
            service: OnceLock::new(),
            phase: Mutex::new(Phase::Loading),
            op_lock: Arc::new(Mutex::new(())),
            model_file: args.model_file.clone(),
            #[cfg(feature = "watch")]
            watcher: OnceLock::new(),
            spec,
        }
    }

    /// The name in URLs and metric labels.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether this model should get traffic, and if not, why.
    pub fn readiness(&self) -> Result<String, String> {
        let Some(bg) = self.bg.get() else {
            return Err("loading the initial model".to_owned());
        };
        let active = bg.active();
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match phase {
            Phase::Loading => Err("loading the initial model".to_owned()),
            Phase::Serving {
                initial_generation,
                initial_passed,
                report,
                note,
            } => {
                if active.generation() != initial_generation || initial_passed {
                    Ok(active.version().to_owned())
                } else {
                    let why = match (report, note) {
                        (Some(r), _) => format!("failed: {}", r.failure_summary()),
                        (None, Some(n)) => n,
                        (None, None) => "was not checked".to_owned(),
                    };
                    Err(format!(
                        "the active model {} has not passed its gates: the start-up check {why}",
                        active.version()
                    ))
                }
            }
        }
    }

    /// The watcher's target and whether the active version is it (`None` without a
    /// watcher, or before its first look).
    pub fn target(&self) -> Option<(String, bool)> {
        #[cfg(feature = "watch")]
        if let Some(w) = self.watcher.get() {
            let st = w.status();
            return st.target.map(|t| (t, st.converged));
        }
        None
    }

    /// The model file inside a version directory.
    pub fn model_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.model_file)
    }

    /// `text` with this model's repository path replaced by `<NAME>`: answers name models
    /// and versions, never where they live on the server's disk.
    pub fn redact(&self, text: &str) -> String {
        let root = self.repo.root();
        let mut forms: Vec<String> = vec![root.display().to_string()];
        if let Ok(abs) = std::path::absolute(root) {
            forms.push(abs.display().to_string());
        }
        if let Ok(canonical) = root.canonicalize() {
            forms.push(canonical.display().to_string());
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        let mut out = text.to_owned();
        for form in forms.iter().filter(|f| !f.is_empty()) {
            out = out.replace(form.as_str(), &format!("<{}>", self.spec.name));
        }
        out
    }
}

/// Every served model, in the order given on the command line.
pub struct Models(Vec<Arc<Served>>);

impl Models {
    /// One entry per `--model` (or the one `--repo`).
    pub fn new(args: &Args) -> Self {
        Models(
            args.models
                .iter()
                .map(|spec| Arc::new(Served::new(spec.clone(), args)))
                .collect(),
        )
    }

    /// The model named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Served>> {
        self.0.iter().find(|m| m.spec.name == name)
    }

    /// Every model.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Served>> {
        self.0.iter()
    }

    /// The models, owned.
    #[cfg(feature = "watch")]
    pub fn into_vec(self) -> Vec<Arc<Served>> {
        self.0
    }

    /// The names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|m| m.name()).collect()
    }
}

/// Loads a model's initial version, builds its gated deployment, checks the initial model
/// against the gates, and starts its watcher if asked.
pub fn start(model: &Arc<Served>, args: &Args, queue: &InferenceQueue) -> Result<(), String> {
    let name = model.name().to_owned();
    let mut builder = BlueGreen::builder().name(name.clone());
    // With a journal, the version to start on is the one last live, not the flag's.
    #[cfg(feature = "journal")]
    let resumed = match &args.journal {
        Some(path) => {
            builder = builder.journal(path);
            let resume = builder
                .resume()
                .map_err(|e| format!("model {name}: journal: {e}"))?;
            resume_dir(model, &resume, args)
        }
        None => None,
    };
    #[cfg(not(feature = "journal"))]
    let resumed: Option<bluegreen::repository::VersionDir> = None;
    let dir = match resumed {
        Some(dir) => dir,
        None => {
            let version = initial_version(&model.spec, args)?;
            model
                .repo
                .version(&version)
                .map_err(|e| format!("model {name}: initial version: {e}"))?
        }
    };
    let version = dir.version.clone();
    if args.desired.is_some() && !dir.is_complete() {
        // Fleet mode follows the completion rule from the start: a replica whose repository
        // is still being synced must not load a half-copied model; it fails, and is
        // restarted, until the version is complete.
        return Err(format!(
            "initial version {version} is not complete yet: {} has no {} marker",
            dir.path.display(),
            model.repo.marker()
        ));
    }
    // Its name and the hash of its files: the watcher compares the live version's files
    // with it, and the journal records it.
    let identity = model
        .repo
        .identity(&dir)
        .map_err(|e| format!("model {name}: initial version {version}: {e}"))?;
    let golden = GoldenSet::npz(&model.spec.golden)
        .inputs("inputs")
        .labels("labels")
        .load()
        .map_err(|e| format!("model {name}: golden set: {e}"))?;
    let gates = GoldenGates::new(golden.clone(), OnnxBinding::classifier());
    let rows = |n: usize| {
        let n = n.min(golden.len());
        Inputs::single(
            golden
                .inputs()
                .slice_axis(Axis(0), Slice::from(0..n))
                .to_owned(),
        )
    };
    // Named (above) for its `model` metric label; published from the scrape handler (no
    // collector thread); model calls timed for `bluegreen_prediction_duration_seconds`.
    builder = builder
        .metrics_interval(None)
        .track_latency(true)
        .validator(SchemaGate::like_live().same_metadata_as_live("feature_schema"))
        .validator(gates.accuracy(args.min_accuracy))
        .validator(gates.sanity())
        .warmup_samples(vec![rows(1), rows(8)]);
    if let Some(max_drop) = args.max_drop {
        builder = builder.validator(gates.regression(max_drop));
    }
    if let Some(bake) = &args.bake {
        builder = builder.bake(bake.clone());
    }
    if let Some(caps) = args.quarantine {
        builder = builder.quarantine(quarantine(model, args, caps));
    }
    let path = model.model_path(&dir.path);
    if let Some(caps) = args.quarantine {
        // The initial version comes from the repository too: it must not be able to hang
        // or bomb this process either. A gate refusal is not fatal here — the model ran
        // safely in the child; the start-up check below reports it (not ready).
        let report = quarantine(model, args, caps).qualify(&version, &path);
        match &report.refusal {
            None => tracing::info!(model = %name, %version, "{report}"),
            Some(QuarantineError::Refused(_)) => {
                tracing::warn!(model = %name, %version, "{report}");
            }
            Some(_) => {
                return Err(format!(
                    "model {name}: initial model {version}: {}",
                    model.redact(&report.to_string())
                ));
            }
        }
    }
    let loaded = model
        .onnx
        .load(&path)
        .map_err(|e| format!("model {name}: initial model {version}: {e}"))?;
    let bg = Arc::new(
        builder
            .build(identity, loaded)
            .map_err(|e| format!("model {name}: initial model {version}: {e}"))?,
    );
    let initial_generation = bg.active().generation();

    // The gates judge candidates; the initial model never was one: run them on it now.
    let report = bg.validate_active();
    let initial_passed = report.passed();
    if initial_passed {
        tracing::info!(model = %name, %version, "initial model passed its gates; ready");
    } else {
        let why = report.failure_summary();
        tracing::error!(model = %name, %version, %why,
            "initial model failed its gates: serving it, but NOT ready (readyz 503)");
    }
    let _ = model.service.set(queue.service(Arc::clone(&bg)));
    if model.bg.set(Arc::clone(&bg)).is_err() {
        return Err(format!("model {name}: deployment started twice"));
    }
    *model.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Serving {
        initial_generation,
        initial_passed,
        report: Some(report),
        note: None,
    };
    start_watcher(model, bg, args)
}

/// With a journal: the newest version that was live and still has the bytes it had then
/// (a folder replaced in place is skipped, loudly), and that its watcher may start on.
#[cfg(feature = "journal")]
fn resume_dir(
    model: &Served,
    resume: &bluegreen::journal::Resume,
    args: &Args,
) -> Option<bluegreen::repository::VersionDir> {
    let name = model.name();
    for (i, live) in resume.live_history.iter().enumerate() {
        let Ok(dir) = model.repo.version(live.version()) else {
            tracing::warn!(model = %name, version = %live.version(),
                "was live, but is no longer in the repository");
            continue;
        };
        if args.desired.is_some() && !dir.is_complete() {
            continue;
        }
        match model.repo.identity(&dir) {
            Ok(found) if found == *live => {
                tracing::info!(model = %name, version = %live.version(),
                    last_live = i == 0, "resuming from the journal");
                return Some(dir);
            }
            Ok(found) => tracing::error!(model = %name, version = %live.version(),
                recorded = ?live.content(), found = ?found.content(),
                "was replaced in place since it was live; not loading it under that name"),
            Err(e) => tracing::warn!(model = %name, version = %live.version(), error = %e,
                "cannot read the version that was live"),
        }
    }
    None
}

/// The quarantine every candidate of `model` goes through first: load, warm up, sanity
/// and accuracy on its golden set, in a capped child.
fn quarantine(model: &Served, args: &Args, caps: QuarantineCaps) -> Quarantine<OnnxModel> {
    let trial = OnnxTrial::new()
        .golden(&model.spec.golden)
        .min_accuracy(args.min_accuracy);
    Quarantine::onnx_with(trial, model.onnx.clone())
        .memory_limit(caps.memory_bytes)
        .cpu_limit(caps.cpu)
        .wall_limit(caps.wall)
}

/// The version to start with: the model's own, else the fleet manifest's.
fn initial_version(spec: &ModelSpec, args: &Args) -> Result<String, String> {
    if let Some(v) = &spec.version {
        return Ok(v.clone());
    }
    #[cfg(feature = "watch")]
    if let Some(path) = &args.desired {
        return bluegreen::repository::read_desired_version(path).map_err(|e| e.to_string());
    }
    let _ = args;
    Ok("2".to_owned())
}

#[cfg(not(feature = "watch"))]
fn start_watcher(_: &Arc<Served>, _: Arc<BlueGreen<OnnxModel>>, _: &Args) -> Result<(), String> {
    Ok(())
}

#[cfg(feature = "watch")]
fn start_watcher(
    model: &Arc<Served>,
    bg: Arc<BlueGreen<OnnxModel>>,
    args: &Args,
) -> Result<(), String> {
    use bluegreen::watch::{WatchEvent, WatchPolicy, Watcher};

    use super::flags::WatchMode;

    if args.watch.is_none() && args.desired.is_none() {
        return Ok(());
    }
    let policy = match args.watch {
        Some(WatchMode::Stage) => WatchPolicy::StageOnly,
        _ => WatchPolicy::AutoPromote,
    };
    let name = model.name().to_owned();
    super::metrics::watcher_registered(&name);
    let mut builder = Watcher::builder(model.repo.clone())
        .policy(policy)
        .poll_interval(args.poll)
        .operation_lock(Arc::clone(&model.op_lock))
        .on_event(move |event| {
            tracing::info!(target: "serve::watch", model = %name, "{event}");
            match event {
                WatchEvent::Promoted(_) | WatchEvent::RolledBack(_) => {
                    super::metrics::watcher(&name, "promotions");
                }
                WatchEvent::Refused(_) => super::metrics::watcher(&name, "refusals"),
                _ => {}
            }
        });
    if let Some(manifest) = &args.desired {
        builder = builder.follow_manifest(manifest);
    }
    if args.poll_only {
        builder = builder.polling_only();
    }
    if args.quarantine.is_some() {
        builder = builder.quarantine(&args.model_file);
    }
    let onnx = model.onnx.clone();
    let model_file = args.model_file.clone();
    let watcher = builder
        .spawn(bg, move |v| onnx.load(v.file(&model_file)))
        .map_err(|e| format!("model {}: watcher: {e}", model.name()))?;
    let _ = model.watcher.set(watcher);
    Ok(())
}
