//! Prometheus metrics, through the `prometheus` crate (its text encoder, its registry).
//!
//! Request-path series (requests, errors, latency, HTTP codes) are updated as requests
//! finish. Deployment series (swaps, rollbacks, rejections, in-flight per slot, which
//! version is where) come from `BlueGreen::status()` at scrape time, so they also count what
//! happened without the HTTP API (the watcher, an automatic rollback). Every model series
//! has a `model` label; the server's own series (connections, queue) have none.

use std::sync::Mutex;

use bluegreen::Status;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// One model's state at scrape time.
pub struct ModelSample<'a> {
    pub name: &'a str,
    pub status: Option<Status>,
    pub ready: bool,
    pub dry_run_failures: u64,
    /// This replica refuses the version it is asked to serve (`verdict.rs`).
    pub target_refused: bool,
    /// The watcher's view: the version it converges to, and whether the active one is it.
    pub target: Option<(String, bool)>,
}

/// The server's state at scrape time.
pub struct ServerSample {
    pub open_connections: usize,
    pub queue_depth: usize,
    pub queue_capacity: usize,
    pub shed: u64,
    pub skipped: u64,
    pub completed: u64,
}

/// Every series the service exports.
pub struct Metrics {
    registry: Registry,
    /// Predictions answered, by model and the version that answered.
    pub requests: IntCounterVec,
    /// Failed predictions, by model, version and kind (`input`: 400, `model`: 500).
    pub errors: IntCounterVec,
    /// Prediction latency as the service sees it (queueing + inference + JSON), by model
    /// and version.
    pub latency: HistogramVec,
    /// Every HTTP answer, by route template and status code.
    pub http: IntCounterVec,
    swaps: IntCounterVec,
    rollbacks: IntCounterVec,
    rejections: IntCounterVec,
    quarantine_refusals: IntCounterVec,
    validation_failures: IntCounterVec,
    in_flight: IntGaugeVec,
    slot: IntGaugeVec,
    ready: IntGaugeVec,
    /// 1 while the model refuses the version it is asked to serve.
    target_refused: IntGaugeVec,
    open_connections: IntGauge,
    queue_depth: IntGauge,
    queue_capacity: IntGauge,
    shed: IntCounter,
    skipped: IntCounter,
    completed: IntCounter,
    /// Watcher promotions (and fleet-mode rollbacks to the desired version), by model.
    pub watch_promotions: IntCounterVec,
    /// Candidates the watcher refused, by model.
    pub watch_refusals: IntCounterVec,
    skew: IntGaugeVec,
    desired: IntGaugeVec,
    journal_healthy: IntGaugeVec,
    journal_pending: IntGaugeVec,
    scrape: Mutex<()>,
}

/// Latency buckets, seconds: 50 µs … 2.5 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

impl Metrics {
    /// Registers every series; the watcher's only when a watcher runs.
    pub fn new(watching: bool) -> Result<Self, String> {
        let registry = Registry::new();
        let err = |e: prometheus::Error| format!("metrics: {e}");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map_err(err)
        };
        let counter = |name: &str, help: &str| IntCounter::new(name, help).map_err(err);
        let m = Metrics {
            requests: counter_vec(
                "bluegreen_requests_total",
                "Predictions answered, by model and the version that answered.",
                &["model", "version"],
            )?,
            errors: counter_vec(
                "bluegreen_request_errors_total",
                "Failed predictions by model, version and kind (input: bad request, model: model failure).",
                &["model", "version", "kind"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "bluegreen_request_duration_seconds",
                    "Prediction latency seen by the service (queue + inference + JSON), by model and version.",
                )
                .buckets(BUCKETS.to_vec()),
                &["model", "version"],
            )
            .map_err(err)?,
            http: counter_vec(
                "bluegreen_http_requests_total",
                "HTTP answers by route template and status code.",
                &["route", "code"],
            )?,
            swaps: counter_vec("bluegreen_swaps_total", "Completed swaps.", &["model"])?,
            rollbacks: counter_vec(
                "bluegreen_rollbacks_total",
                "Completed rollbacks (manual and automatic).",
                &["model"],
            )?,
            rejections: counter_vec(
                "bluegreen_rejections_total",
                "Candidates refused by a swap (a gate or warm-up failed).",
                &["model"],
            )?,
            quarantine_refusals: counter_vec(
                "bluegreen_quarantine_refusals_total",
                "Candidates refused in a quarantine child (crash, memory, CPU, wall time, gate, load).",
                &["model"],
            )?,
            validation_failures: counter_vec(
                "bluegreen_validation_failures_total",
                "Failed validations: refused swaps plus failed dry runs and start-up checks.",
                &["model"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new("bluegreen_in_flight", "Calls running on each slot's model now."),
                &["model", "slot"],
            )
            .map_err(err)?,
            slot: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_slot_info",
                    "1 for the version each slot holds and its state.",
                ),
                &["model", "slot", "version", "state"],
            )
            .map_err(err)?,
            skew: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_version_skew",
                    "1 while the active version is not the one the watcher converges to \
                     (fleet: the manifest's); summed over replicas, the replicas off target.",
                ),
                &["model"],
            )
            .map_err(err)?,
            desired: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_desired_version_info",
                    "1 for the version the watcher converges to (fleet: the manifest's).",
                ),
                &["model", "version"],
            )
            .map_err(err)?,
            journal_healthy: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_journal_healthy",
                    "1 when the journal is writable and nothing waits to be written (--journal).",
                ),
                &["model"],
            )
            .map_err(err)?,
            journal_pending: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_journal_pending",
                    "Journal rows waiting to be written; admin operations are refused meanwhile.",
                ),
                &["model"],
            )
            .map_err(err)?,
            ready: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_ready",
                    "1 when the model's active version has passed its gates.",
                ),
                &["model"],
            )
            .map_err(err)?,
            target_refused: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_target_refused",
                    "1 while this replica refuses the version it is asked to serve (the \
                     watcher's target, or without a watcher the start-up version): a fleet's \
                     controller aborts the rollout on it.",
                ),
                &["model"],
            )
            .map_err(err)?,
            open_connections: IntGauge::new(
                "bluegreen_open_connections",
                "Client connections open now (at most --max-connections).",
            )
            .map_err(err)?,
            queue_depth: IntGauge::new(
                "bluegreen_queue_depth",
                "Predict requests queued or running now (at most --max-queue).",
            )
            .map_err(err)?,
            queue_capacity: IntGauge::new(
                "bluegreen_queue_capacity",
                "The inference queue's bound (--max-queue).",
            )
            .map_err(err)?,
            shed: counter(
                "bluegreen_shed_total",
                "Predict requests refused with 503 because the inference queue was full.",
            )?,
            skipped: counter(
                "bluegreen_skipped_total",
                "Admitted predict requests not computed because their client had gone.",
            )?,
            completed: counter(
                "bluegreen_inference_jobs_total",
                "Predict jobs that ran to an answer on the inference pool.",
            )?,
            watch_promotions: counter_vec(
                "bluegreen_watch_promotions_total",
                "Versions the repository watcher moved traffic to.",
                &["model"],
            )?,
            watch_refusals: counter_vec(
                "bluegreen_watch_refusals_total",
                "Candidates the repository watcher refused (load or gate failure).",
                &["model"],
            )?,
            registry,
            scrape: Mutex::new(()),
        };
        let r = &m.registry;
        r.register(Box::new(m.requests.clone())).map_err(err)?;
        r.register(Box::new(m.errors.clone())).map_err(err)?;
        r.register(Box::new(m.latency.clone())).map_err(err)?;
        r.register(Box::new(m.http.clone())).map_err(err)?;
        r.register(Box::new(m.swaps.clone())).map_err(err)?;
        r.register(Box::new(m.rollbacks.clone())).map_err(err)?;
        r.register(Box::new(m.rejections.clone())).map_err(err)?;
        r.register(Box::new(m.quarantine_refusals.clone()))
            .map_err(err)?;
        r.register(Box::new(m.validation_failures.clone()))
            .map_err(err)?;
        r.register(Box::new(m.in_flight.clone())).map_err(err)?;
        r.register(Box::new(m.slot.clone())).map_err(err)?;
        r.register(Box::new(m.ready.clone())).map_err(err)?;
        r.register(Box::new(m.target_refused.clone()))
            .map_err(err)?;
        r.register(Box::new(m.open_connections.clone()))
            .map_err(err)?;
        r.register(Box::new(m.queue_depth.clone())).map_err(err)?;
        r.register(Box::new(m.queue_capacity.clone()))
            .map_err(err)?;
        r.register(Box::new(m.shed.clone())).map_err(err)?;
        r.register(Box::new(m.skipped.clone())).map_err(err)?;
        r.register(Box::new(m.completed.clone())).map_err(err)?;
        r.register(Box::new(m.journal_healthy.clone()))
            .map_err(err)?;
        r.register(Box::new(m.journal_pending.clone()))
            .map_err(err)?;
        if watching {
            r.register(Box::new(m.skew.clone())).map_err(err)?;
            r.register(Box::new(m.desired.clone())).map_err(err)?;
            r.register(Box::new(m.watch_promotions.clone()))
                .map_err(err)?;
            r.register(Box::new(m.watch_refusals.clone()))
                .map_err(err)?;
        }
        Ok(m)
    }

    /// Brings the deployment and server series up to date and renders everything.
    pub fn render(&self, models: &[ModelSample<'_>], server: &ServerSample) -> String {
        let _one_scrape_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let count = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.open_connections.set(count(server.open_connections));
        self.queue_depth.set(count(server.queue_depth));
        self.queue_capacity.set(count(server.queue_capacity));
        advance(&self.shed, server.shed);
        advance(&self.skipped, server.skipped);
        advance(&self.completed, server.completed);
        self.slot.reset();
        self.desired.reset();
        for m in models {
            let name = m.name;
            self.ready
                .with_label_values(&[name])
                .set(i64::from(m.ready));
            self.target_refused
                .with_label_values(&[name])
                .set(i64::from(m.target_refused));
            if let Some((target, converged)) = &m.target {
                self.skew
                    .with_label_values(&[name])
                    .set(i64::from(!converged));
                self.desired.with_label_values(&[name, target]).set(1);
            }
            let Some(s) = &m.status else {
                continue;
            };
            if let Some(j) = &s.journal {
                self.journal_healthy
                    .with_label_values(&[name])
                    .set(i64::from(j.healthy));
                self.journal_pending
                    .with_label_values(&[name])
                    .set(count(j.pending));
            }
            advance(&self.swaps.with_label_values(&[name]), s.swaps);
            advance(&self.rollbacks.with_label_values(&[name]), s.rollbacks);
            advance(&self.rejections.with_label_values(&[name]), s.rejections);
            advance(
                &self.quarantine_refusals.with_label_values(&[name]),
                s.quarantine_refusals,
            );
            advance(
                &self.validation_failures.with_label_values(&[name]),
                s.rejections.saturating_add(m.dry_run_failures),
            );
            self.in_flight
                .with_label_values(&[name, "active"])
                .set(gauge(s.active.in_flight));
            self.slot
                .with_label_values(&[
                    name,
                    "active",
                    &s.active.version,
                    &s.active.state.to_string(),
                ])
                .set(1);
            match &s.standby {
                Some(sb) => {
                    self.in_flight
                        .with_label_values(&[name, "standby"])
                        .set(gauge(sb.in_flight));
                    self.slot
                        .with_label_values(&[name, "standby", &sb.version, &sb.state.to_string()])
                        .set(1);
                }
                None => self.in_flight.with_label_values(&[name, "standby"]).set(0),
            }
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
    }
}

/// Moves a counter up to `total` (counters only go up; the deployment's totals do too).
fn advance(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}
