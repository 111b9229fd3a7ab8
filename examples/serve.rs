//! An HTTP inference service built on bluegreen: the starting point for a team that serves an
//! ONNX model and wants to replace it without downtime.
//!
//! ```text
//! bash scripts/setup-ort.sh                                 # ONNX Runtime, once
//! BLUEGREEN_ADMIN_TOKEN=s3cret cargo run --release --example serve
//! cargo run --release --features watch --example serve -- --watch auto
//! ```
//!
//! It serves one model repository (`models/<name>/<version>/model.onnx`, default
//! `models/digits`) with a [`BlueGreen<OnnxModel>`](bluegreen::BlueGreen) deployment gated by
//! the repository's golden set (`golden.npz`): schema, accuracy, numeric sanity.
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /v1/models/<name>:predict` | `{"inputs": [[64 floats], …]}` or `{"inputs": {"input": […]}}` → outputs and the version that answered |
//! | `GET /v1/models/<name>` | active version, readiness, declared inputs and outputs |
//! | `GET /healthz` | the process is alive (liveness) |
//! | `GET /readyz` | 200 once the active model has passed its gates (readiness) |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /admin/models/<name>/stage` `{"version": "3"}` | load a version from the repository into standby |
//! | `POST /admin/models/<name>/validate` | dry-run every gate on the staged candidate |
//! | `POST /admin/models/<name>/swap` | validate, warm and switch traffic |
//! | `POST /admin/models/<name>/rollback` | switch back to the previous model |
//! | `POST /admin/models/<name>/unstage` | free the standby slot |
//! | `GET /admin/models/<name>/status` | deployment (and watcher) status as JSON |
//!
//! Admin endpoints need `Authorization: Bearer $BLUEGREEN_ADMIN_TOKEN`; when that variable is
//! unset or empty they answer 403 (admin disabled). Bad requests get a 400 with a message,
//! never a panic or a 500. The service binds 127.0.0.1 unless told otherwise.
//!
//! # Where inference runs
//!
//! Inference is CPU-bound, so it never runs on the async runtime's threads. Each request is
//! handed to a fixed rayon pool with one thread per ONNX session (`--workers`, default: CPU
//! count), and its answer comes back on a oneshot channel. Why a fixed pool rather than
//! `tokio::task::spawn_blocking`: the blocking pool grows to hundreds of threads under load,
//! and all of them would queue on the model's few sessions; a fixed pool bounds concurrent
//! inference to the number of sessions, queues the rest in order, and keeps each worker on its
//! own session (`OnnxModel` gives every thread a "home" session, which works best when the
//! threads are few and long-lived). Admin operations — loading, validating, draining — are
//! rare and block for long, so they go to `spawn_blocking`.
//!
//! # Flags
//!
//! See `--help`. `--port 0` binds any free port; the bound address is printed on stdout as
//! `listening on http://ADDR` (tests read it).

mod serve {
    pub mod admin;
    pub mod api;
    pub mod flags;
    pub mod json;
    pub mod metrics;
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::routing::{get, post};
use bluegreen::gates::{GoldenGates, SchemaGate};
use bluegreen::onnx::ndarray::{Axis, Slice};
use bluegreen::onnx::{Inputs, OnnxBinding, OnnxConfig, OnnxModel};
use bluegreen::repository::Repository;
use bluegreen::{BlueGreen, GoldenSet, ValidationReport};

use serve::flags::Args;
use serve::metrics::Metrics;

/// Where start-up is.
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

/// Everything the handlers share.
pub struct App {
    pub args: Args,
    pub repo: Repository,
    pub admin_token: Option<String>,
    pub onnx: OnnxConfig,
    pub bg: OnceLock<Arc<BlueGreen<OnnxModel>>>,
    pub phase: Mutex<Phase>,
    /// Serializes admin sequences with the watcher's (stage → swap must not interleave).
    pub op_lock: Arc<Mutex<()>>,
    pub pool: rayon::ThreadPool,
    pub metrics: Arc<Metrics>,
    /// Failed dry runs (admin validate, start-up check, watcher stage-only), for metrics.
    pub dry_run_failures: Arc<AtomicU64>,
    pub shutting_down: AtomicBool,
    #[cfg(feature = "watch")]
    pub watcher: OnceLock<bluegreen::watch::Watcher>,
}

impl App {
    /// Whether the service should get traffic, and if not, why.
    pub fn readiness(&self) -> Result<String, String> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("shutting down".to_owned());
        }
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

    /// The model file inside a version directory.
    pub fn model_path(&self, dir: &std::path::Path) -> PathBuf {
        dir.join(&self.args.model_file)
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::from_command_line();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("serve: cannot start the async runtime: {e}");
            std::process::exit(1);
        });
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("serve: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let admin_token = std::env::var("BLUEGREEN_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    if admin_token.is_none() {
        tracing::warn!("BLUEGREEN_ADMIN_TOKEN is not set: the admin API is disabled");
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.workers)
        .thread_name(|i| format!("inference-{i}"))
        .panic_handler(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %msg, "an inference job panicked");
        })
        .build()
        .map_err(|e| format!("cannot start the inference pool: {e}"))?;
    let metrics = Arc::new(Metrics::new(
        args.desired.is_some() || args.watch.is_some(),
    )?);
    let app = Arc::new(App {
        repo: Repository::new(&args.repo),
        onnx: OnnxConfig::new().pool_size(args.workers).intra_threads(1),
        admin_token,
        bg: OnceLock::new(),
        phase: Mutex::new(Phase::Loading),
        op_lock: Arc::new(Mutex::new(())),
        pool,
        metrics,
        dry_run_failures: Arc::new(AtomicU64::new(0)),
        shutting_down: AtomicBool::new(false),
        #[cfg(feature = "watch")]
        watcher: OnceLock::new(),
        args,
    });

    let addr: SocketAddr = format!("{}:{}", app.args.host, app.args.port)
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (app.args.host.as_str(), app.args.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| format!("cannot resolve --host {:?}", app.args.host))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{bound}");
        let _ = out.flush();
    }
    tracing::info!(%bound, model = %app.args.name, repo = %app.args.repo.display(), "listening");

    // Load and check the initial model in the background: liveness answers meanwhile,
    // readiness says "loading".
    let loader = Arc::clone(&app);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = start_deployment(&loader) {
            tracing::error!(error = %e, "cannot start the deployment; exiting");
            eprintln!("serve: {e}");
            std::process::exit(1);
        }
    });

    let router = router(Arc::clone(&app));
    let shutdown_app = Arc::clone(&app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            shutdown_app.shutting_down.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await
        .map_err(|e| format!("server error: {e}"))?;
    #[cfg(feature = "watch")]
    if let Some(w) = Arc::try_unwrap(app)
        .ok()
        .and_then(|a| a.watcher.into_inner())
    {
        w.stop();
    }
    Ok(())
}

fn router(app: Arc<App>) -> Router {
    use serve::{admin, api};
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route(
            "/v1/models/{target}",
            post(api::predict).get(api::model_info),
        )
        .route("/admin/models/{name}/status", get(admin::status))
        .route("/admin/models/{name}/stage", post(admin::stage))
        .route("/admin/models/{name}/validate", post(admin::validate))
        .route("/admin/models/{name}/swap", post(admin::swap))
        .route("/admin/models/{name}/rollback", post(admin::rollback))
        .route("/admin/models/{name}/unstage", post(admin::unstage))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            api::track_http,
        ))
        .with_state(app)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Loads the initial model, builds the gated deployment, checks the initial model against
/// the gates, and starts the watcher if asked.
fn start_deployment(app: &Arc<App>) -> Result<(), String> {
    let args = &app.args;
    let version = initial_version(args)?;
    let dir = app
        .repo
        .version(&version)
        .map_err(|e| format!("initial version: {e}"))?;
    if args.desired.is_some() && !dir.is_complete() {
        // Fleet mode follows the completion rule from the start: a replica whose repository
        // is still being synced must not load a half-copied model; it fails, and is
        // restarted, until the version is complete.
        return Err(format!(
            "initial version {version} is not complete yet: {} has no {} marker",
            dir.path.display(),
            app.repo.marker()
        ));
    }
    let golden = GoldenSet::npz(&args.golden)
        .inputs("inputs")
        .labels("labels")
        .load()
        .map_err(|e| format!("golden set: {e}"))?;
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
    let mut builder = BlueGreen::builder()
        .validator(SchemaGate::like_live().same_metadata_as_live("feature_schema"))
        .validator(gates.accuracy(args.min_accuracy))
        .validator(gates.sanity())
        .warmup_samples(vec![rows(1), rows(8)]);
    if let Some(max_drop) = args.max_drop {
        builder = builder.validator(gates.regression(max_drop));
    }
    let path = app.model_path(&dir.path);
    let model = app
        .onnx
        .load(&path)
        .map_err(|e| format!("initial model {version}: {e}"))?;
    let bg = Arc::new(
        builder
            .build(version.clone(), model)
            .map_err(|e| format!("initial model {version}: {e}"))?,
    );
    let initial_generation = bg.active().generation();

    // The gates judge candidates; the initial model never was one: run them on it now.
    let (initial_passed, report, note) = {
        let r = bg.validate_active();
        (r.passed(), Some(r), None::<String>)
    };
    if initial_passed {
        tracing::info!(%version, "initial model passed its gates; ready");
    } else {
        app.dry_run_failures.fetch_add(1, Ordering::Relaxed);
        let why = report
            .as_ref()
            .map(|r| r.failure_summary())
            .or_else(|| note.clone())
            .unwrap_or_default();
        tracing::error!(%version, %why,
            "initial model failed its gates: serving it, but NOT ready (readyz 503)");
    }
    if app.bg.set(Arc::clone(&bg)).is_err() {
        return Err("deployment started twice".to_owned());
    }
    *app.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase::Serving {
        initial_generation,
        initial_passed,
        report,
        note,
    };
    start_watcher(app, bg)
}

/// The version to start with: `--version`, else the manifest's, else 2.
fn initial_version(args: &Args) -> Result<String, String> {
    if let Some(v) = &args.version {
        return Ok(v.clone());
    }
    #[cfg(feature = "watch")]
    if let Some(path) = &args.desired {
        return bluegreen::repository::read_desired_version(path).map_err(|e| e.to_string());
    }
    Ok("2".to_owned())
}

#[cfg(not(feature = "watch"))]
fn start_watcher(_: &Arc<App>, _: Arc<BlueGreen<OnnxModel>>) -> Result<(), String> {
    Ok(())
}

#[cfg(feature = "watch")]
fn start_watcher(app: &Arc<App>, bg: Arc<BlueGreen<OnnxModel>>) -> Result<(), String> {
    use bluegreen::watch::{WatchEvent, WatchPolicy, Watcher};
    use serve::flags::WatchMode;

    let args = &app.args;
    if args.watch.is_none() && args.desired.is_none() {
        return Ok(());
    }
    let policy = match args.watch {
        Some(WatchMode::Stage) => WatchPolicy::StageOnly,
        _ => WatchPolicy::AutoPromote,
    };
    let metrics = Arc::clone(&app.metrics);
    let dry_run_failures = Arc::clone(&app.dry_run_failures);
    let mut builder = Watcher::builder(app.repo.clone())
        .policy(policy)
        .poll_interval(args.poll)
        .operation_lock(Arc::clone(&app.op_lock))
        .on_event(move |event| {
            tracing::info!(target: "serve::watch", "{event}");
            match event {
                WatchEvent::Promoted(_) | WatchEvent::RolledBack(_) => {
                    metrics.watch_promotions.inc();
                }
                WatchEvent::Refused(_) => metrics.watch_refusals.inc(),
                WatchEvent::Validated(r) if !r.passed() => {
                    dry_run_failures.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        });
    if let Some(manifest) = &args.desired {
        builder = builder.follow_manifest(manifest);
    }
    let onnx = app.onnx.clone();
    let model_file = args.model_file.clone();
    let watcher = builder
        .spawn(bg, move |v| onnx.load(v.file(&model_file)))
        .map_err(|e| format!("watcher: {e}"))?;
    let _ = app.watcher.set(watcher);
    Ok(())
}
