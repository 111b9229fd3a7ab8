//! Prometheus metrics, through the `prometheus` crate (its text encoder, its registry).
//!
//! Request-path series (requests, errors, latency, HTTP codes) are updated as requests
//! finish. Deployment series (swaps, rollbacks, rejections, in-flight per slot, which
//! version is where) come from `BlueGreen::status()` at scrape time, so they also count what
//! happened without the HTTP API (the watcher, an automatic rollback).

use std::sync::Mutex;

use bluegreen::Status;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every series the service exports.
pub struct Metrics {
    registry: Registry,
    /// Predictions answered, by the version that answered.
    pub requests: IntCounterVec,
    /// Failed predictions, by version and kind (`input`: 400, `model`: 500).
    pub errors: IntCounterVec,
    /// Prediction latency as the service sees it (queueing + inference + JSON), by version.
    pub latency: HistogramVec,
    /// Every HTTP answer, by route template and status code.
    pub http: IntCounterVec,
    swaps: IntCounter,
    rollbacks: IntCounter,
    rejections: IntCounter,
    validation_failures: IntCounter,
    in_flight: IntGaugeVec,
    slot: IntGaugeVec,
    ready: IntGauge,
    /// Watcher promotions (and fleet-mode rollbacks to the desired version).
    pub watch_promotions: IntCounter,
    /// Candidates the watcher refused.
    pub watch_refusals: IntCounter,
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
                "Predictions answered, by the model version that answered.",
                &["version"],
            )?,
            errors: counter_vec(
                "bluegreen_request_errors_total",
                "Failed predictions by version and kind (input: bad request, model: model failure).",
                &["version", "kind"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "bluegreen_request_duration_seconds",
                    "Prediction latency seen by the service (queue + inference + JSON), by version.",
                )
                .buckets(BUCKETS.to_vec()),
                &["version"],
            )
            .map_err(err)?,
            http: counter_vec(
                "bluegreen_http_requests_total",
                "HTTP answers by route template and status code.",
                &["route", "code"],
            )?,
            swaps: counter("bluegreen_swaps_total", "Completed swaps.")?,
            rollbacks: counter(
                "bluegreen_rollbacks_total",
                "Completed rollbacks (manual and automatic).",
            )?,
            rejections: counter(
                "bluegreen_rejections_total",
                "Candidates refused by a swap (a gate or warm-up failed).",
            )?,
            validation_failures: counter(
                "bluegreen_validation_failures_total",
                "Failed validations: refused swaps plus failed dry runs and start-up checks.",
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new("bluegreen_in_flight", "Calls running on each slot's model now."),
                &["slot"],
            )
            .map_err(err)?,
            slot: IntGaugeVec::new(
                Opts::new(
                    "bluegreen_slot_info",
                    "1 for the version each slot holds and its state.",
                ),
                &["slot", "version", "state"],
            )
            .map_err(err)?,
            ready: IntGauge::new(
                "bluegreen_ready",
                "1 when the active model has passed its gates (readyz 200).",
            )
            .map_err(err)?,
            watch_promotions: counter(
                "bluegreen_watch_promotions_total",
                "Versions the repository watcher moved traffic to.",
            )?,
            watch_refusals: counter(
                "bluegreen_watch_refusals_total",
                "Candidates the repository watcher refused (load or gate failure).",
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
        r.register(Box::new(m.validation_failures.clone()))
            .map_err(err)?;
        r.register(Box::new(m.in_flight.clone())).map_err(err)?;
        r.register(Box::new(m.slot.clone())).map_err(err)?;
        r.register(Box::new(m.ready.clone())).map_err(err)?;
        if watching {
            r.register(Box::new(m.watch_promotions.clone()))
                .map_err(err)?;
            r.register(Box::new(m.watch_refusals.clone()))
                .map_err(err)?;
        }
        Ok(m)
    }

    /// Brings the deployment series up to date and renders everything.
    pub fn render(&self, status: Option<&Status>, ready: bool, dry_run_failures: u64) -> String {
        let _one_scrape_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.ready.set(i64::from(ready));
        if let Some(s) = status {
            advance(&self.swaps, s.swaps);
            advance(&self.rollbacks, s.rollbacks);
            advance(&self.rejections, s.rejections);
            advance(
                &self.validation_failures,
                s.rejections.saturating_add(dry_run_failures),
            );
            self.slot.reset();
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.in_flight
                .with_label_values(&["active"])
                .set(gauge(s.active.in_flight));
            self.slot
                .with_label_values(&["active", &s.active.version, &s.active.state.to_string()])
                .set(1);
            match &s.standby {
                Some(sb) => {
                    self.in_flight
                        .with_label_values(&["standby"])
                        .set(gauge(sb.in_flight));
                    self.slot
                        .with_label_values(&["standby", &sb.version, &sb.state.to_string()])
                        .set(1);
                }
                None => self.in_flight.with_label_values(&["standby"]).set(0),
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
