//! An HTTP inference service built on bluegreen: the starting point for a team that serves an
//! ONNX model and wants to replace it without downtime.
//!
//! ```text
//! bash scripts/setup-ort.sh                                 # ONNX Runtime, once
//! BLUEGREEN_ADMIN_TOKEN=s3cret cargo run --release --features metrics,tower --example serve
//! cargo run --release --features watch,metrics,tower --example serve -- --watch auto
//! cargo run --release --features watch,journal,metrics,tower --example serve -- --watch auto --journal state/journal.db
//! ```
//!
//! With `--journal FILE` every decision is recorded in SQLite and a restart resumes on the
//! version last live (rather than `--version`), skipping one whose folder was replaced in
//! place; versions rolled back or refused stay banned for the same bytes (`unban`).
//!
//! It serves one model repository (`models/<name>/<version>/model.onnx`, default
//! `models/digits`), or many (`--model NAME=DIR`, repeated), each with its own
//! [`BlueGreen<OnnxModel>`](bluegreen::BlueGreen) deployment gated by its repository's golden
//! set (`golden.npz`): schema, accuracy, numeric sanity.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /v1/models` | every served model, its active version and readiness |
//! | `POST /v1/models/<name>:predict` | `{"inputs": [[64 floats], …]}` or `{"inputs": {"input": […]}}` → outputs and the version that answered |
//! | `GET /v1/models/<name>` | active version, readiness, declared inputs and outputs |
//! | `GET /healthz` | the process is alive (liveness) |
//! | `GET /readyz` | 200 once every model's active version has passed its gates (readiness) |
//! | `GET /metrics` | Prometheus text format (bluegreen's `metrics` feature + the service's own series, via metrics-exporter-prometheus) |
//! | `POST /admin/models/<name>/stage` `{"version": "3"}` | load a version from the repository into standby |
//! | `POST /admin/models/<name>/validate` | dry-run every gate on the staged candidate |
//! | `POST /admin/models/<name>/swap` | validate, warm and switch traffic |
//! | `POST /admin/models/<name>/rollback` | switch back to the previous model |
//! | `POST /admin/models/<name>/unstage` | free the standby slot |
//! | `GET /admin/models/<name>/status` | deployment (and watcher) status as JSON |
//! | `GET /admin/models/<name>/history?limit=N` | the journal's newest rows about the model (`--journal`) |
//! | `POST /admin/models/<name>/unban` `{"version": "3"}` | lift the journal's bans on a version (`--journal`) |
//!
//! Admin endpoints need `Authorization: Bearer $BLUEGREEN_ADMIN_TOKEN`; when that variable is
//! unset or empty they answer 403 (admin disabled). With `--admin-port N`, `/admin/...` and
//! `/metrics` are served on port N only (the public port answers 404 for them), so that a
//! NetworkPolicy can keep them from the clients (deploy/k8s, docs/serving.md "Fleet
//! recipe"). Bad requests get a 400 with a message, never a panic or a 500. The service binds 127.0.0.1 unless told otherwise.
//!
//! # Hostile clients
//!
//! Every limit has a safe default and a flag (table in `serve/limits.rs` and
//! docs/serving.md): open connections, request-head, body, idle and request timeouts, body
//! size, rows per request, nesting depth, and a bounded inference queue that sheds with 503 +
//! `Retry-After`. Request parsing allocates only for what was received (`serve/json.rs`).
//!
//! # Where inference runs
//!
//! Inference is CPU-bound, so it never runs on the async runtime's threads. Each model is
//! served through bluegreen's tower service (`bluegreen::service::PredictService`, feature
//! `tower`) behind tower's `load_shed`; all models share one `InferencePool`, a fixed pool
//! with one thread per ONNX session (`--workers`, default: CPU count) admitting at most
//! `--max-queue` jobs (`serve/queue.rs`). The whole job — parsing the body against the
//! active model's inputs, inference, the JSON answer — runs on a worker, and its answer
//! comes back on a oneshot channel; a job whose client has gone is skipped. Why a fixed pool
//! rather than `tokio::task::spawn_blocking`: the blocking pool grows to hundreds of threads
//! under load, and all of them would queue on the model's few sessions; a fixed pool bounds
//! concurrent inference to the number of sessions, queues the rest in order, and keeps each
//! worker on its own session (`OnnxModel` gives every thread a "home" session, which works
//! best when the threads are few and long-lived). Admin operations — loading, validating,
//! draining — are rare and block for long, so they go to `spawn_blocking`.
//!
//! # Quarantine
//!
//! On by default (`--quarantine off` to disable): a model file from the repository is
//! untrusted until proven, so every candidate — staged through the admin API or rolled out
//! by the watcher — is first loaded, warmed and gated (accuracy, sanity) in a child process
//! under an address-space cap, a CPU-time cap and a wall-clock deadline
//! (`--quarantine-memory-mib`, `--quarantine-cpu-ms`, `--quarantine-wall-ms`). The child is
//! this binary, re-executed: `main()` calls `bluegreen::quarantine::enter()` first. An
//! endless loop, a memory bomb or a crash is refused (422, with its cause) and never touches
//! this process; the live model serves throughout.
//!
//! # Flags
//!
//! See `--help`. `--port 0` binds any free port; the bound address is printed on stdout as
//! `listening on http://ADDR` (tests read it).

mod serve {
    pub mod admin;
    pub mod api;
    pub mod auth;
    pub mod flags;
    pub mod json;
    pub mod limits;
    pub mod metrics;
    pub mod models;
    pub mod queue;
    pub mod reports;
    pub mod request_error;
    pub mod server;
    pub mod verdict;
}

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::{get, post};

use serve::auth::AdminToken;
use serve::flags::Args;
use serve::metrics::Metrics;
use serve::models::Models;
use serve::queue::InferenceQueue;
use serve::server::ConnectionGauge;

/// Everything the handlers share.
pub struct App {
    pub args: Args,
    pub admin_token: AdminToken,
    pub models: Models,
    pub queue: InferenceQueue,
    pub metrics: Arc<Metrics>,
    pub connections: Arc<ConnectionGauge>,
    pub shutting_down: AtomicBool,
}

fn main() {
    // First: in a quarantine child (a candidate being qualified), this runs the job and
    // exits; nothing below runs there.
    bluegreen::quarantine::enter();
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
    let admin_token = AdminToken::from_env_value(std::env::var("BLUEGREEN_ADMIN_TOKEN").ok())?;
    if !admin_token.is_set() {
        tracing::warn!("BLUEGREEN_ADMIN_TOKEN is not set: the admin API is disabled");
    }
    let queue = InferenceQueue::new(args.workers, args.limits.max_queue)?;
    // Before any deployment exists, so every series bluegreen publishes lands in it.
    let metrics = Arc::new(Metrics::install(
        args.desired.is_some() || args.watch.is_some(),
    )?);
    {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(serve::metrics::UPKEEP_EVERY);
            loop {
                every.tick().await;
                metrics.upkeep();
            }
        });
    }
    let app = Arc::new(App {
        models: Models::new(&args),
        admin_token,
        queue,
        metrics,
        connections: Arc::new(ConnectionGauge::default()),
        shutting_down: AtomicBool::new(false),
        args,
    });

    let listener = bind(&app.args.host, app.args.port).await?;
    let bound = local_addr(&listener)?;
    // `--admin-port`: /admin and /metrics on a listener of their own, off the public port.
    let admin_listener = match app.args.admin_port {
        Some(port) => Some(bind(&app.args.host, port).await?),
        None => None,
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Some(l) = &admin_listener {
            let _ = writeln!(out, "admin listening on http://{}", local_addr(l)?);
        }
        let _ = writeln!(out, "listening on http://{bound}");
        let _ = out.flush();
    }
    let names = app.models.names().join(",");
    tracing::info!(%bound, models = %names, limits = ?app.args.limits, "listening");

    // Load and check every initial model in the background: liveness answers meanwhile,
    // readiness says "loading".
    for model in app.models.iter() {
        let model = Arc::clone(model);
        let app = Arc::clone(&app);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = serve::models::start(&model, &app.args, &app.queue) {
                tracing::error!(error = %e, "cannot start a deployment; exiting");
                eprintln!("serve: {e}");
                std::process::exit(1);
            }
        });
    }

    // One signal stops every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown_app = Arc::clone(&app);
    tokio::spawn(async move {
        shutdown_signal().await;
        shutdown_app.shutting_down.store(true, Ordering::Relaxed);
        tracing::info!("shutting down: finishing requests in flight");
        drop(shutdown_app); // so that the watchers can be stopped below
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let (public, ops) = routers(Arc::clone(&app), admin_listener.is_some());
    let limits = app.args.limits;
    let gauge = Arc::clone(&app.connections);
    match admin_listener.zip(ops) {
        None => {
            serve::server::serve(listener, public, limits, gauge, stopped(stop_rx)).await;
        }
        Some((admin_listener, ops)) => {
            tokio::join!(
                serve::server::serve(
                    listener,
                    public,
                    limits,
                    Arc::clone(&gauge),
                    stopped(stop_rx.clone())
                ),
                serve::server::serve(admin_listener, ops, limits, gauge, stopped(stop_rx)),
            );
        }
    }
    // Stop the watchers (each finishes what it is doing) when nothing else holds them.
    #[cfg(feature = "watch")]
    if let Ok(app) = Arc::try_unwrap(app) {
        for model in app.models.into_vec() {
            if let Some(w) = Arc::try_unwrap(model)
                .ok()
                .and_then(|m| m.watcher.into_inner())
            {
                w.stop();
            }
        }
    }
    Ok(())
}

/// The public routes (probes, predict, model info) and the operators' routes (`/admin`,
/// `/metrics`): merged into one router (`split` false), or the operators' apart for a
/// listener of their own (`--admin-port`). Each router gets the body limits, the HTTP
/// counter and the 404 fallback (once: axum cannot merge two routers with fallbacks).
fn routers(app: Arc<App>, split: bool) -> (Router, Option<Router>) {
    use serve::{admin, api};
    let limits = app.args.limits;
    let public = Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/v1/models", get(api::list_models))
        .route(
            "/v1/models/{target}",
            post(api::predict).get(api::model_info),
        );
    let metrics = Router::new().route("/metrics", get(api::metrics));
    let admin = Router::new()
        .route("/admin/models/{name}/status", get(admin::status))
        .route("/admin/models/{name}/stage", post(admin::stage))
        .route("/admin/models/{name}/validate", post(admin::validate))
        .route("/admin/models/{name}/swap", post(admin::swap))
        .route("/admin/models/{name}/rollback", post(admin::rollback))
        .route("/admin/models/{name}/unstage", post(admin::unstage));
    #[cfg(feature = "journal")]
    let admin = admin
        .route("/admin/models/{name}/history", get(admin::history))
        .route("/admin/models/{name}/unban", post(admin::unban));
    let finish =
        |routes: Router<Arc<App>>| {
            limits
                .bodies(routes.fallback(api::not_found).layer(
                    axum::middleware::from_fn_with_state(Arc::clone(&app), api::track_http),
                ))
                .with_state(Arc::clone(&app))
        };
    let public = limits.public(public);
    let ops = limits.public(metrics).merge(admin);
    if split {
        (finish(public), Some(finish(ops)))
    } else {
        (finish(public.merge(ops)), None)
    }
}

async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener, String> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| {
            use std::net::ToSocketAddrs;
            (host, port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or(())
        })
        .map_err(|()| format!("cannot resolve --host {host:?}"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))
}

fn local_addr(listener: &tokio::net::TcpListener) -> Result<SocketAddr, String> {
    listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))
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
