//! Prometheus metrics through the `metrics` facade and metrics-exporter-prometheus.
//!
//! The deployments publish their own series (bluegreen's feature `metrics`): calls, errors,
//! panics and model latency per version, in-flight per slot, which version each slot
//! holds, swaps, rollbacks, automatic rollbacks, refused candidates, validations and gate
//! verdicts, faults, retirements — each with the deployment's name as its `model` label
//! (`Builder::name`). Nothing here maps `status()` by hand: the scrape handler asks every
//! deployment to publish (`BlueGreen::publish_metrics`, so the figures are as of the
//! scrape; the deployments run no collector thread of their own) and renders.
//!
//! The service adds what only it sees, through the same facade: HTTP answers by route and
//! code; predictions as the service answered them (requests, input/model errors, and
//! latency including queueing and JSON, by model and version); readiness per model; open
//! connections; the inference queue (depth, bound, shed, skipped, computed); candidates
//! refused in quarantine; the journal's health (`--journal`); the watcher's promotions and
//! refusals, the version it converges to and whether this replica is on it (skew).

use std::time::{Duration, Instant};

use bluegreen::service::PoolStats;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::models::Served;

/// The server's state at scrape time.
pub struct ServerSample {
    pub open_connections: usize,
    pub queue: PoolStats,
    pub shed: u64,
}

/// The recorder, installed for the process.
pub struct Metrics {
    handle: PrometheusHandle,
    /// The (model, version) targets last published as desired.
    desired: std::sync::Mutex<Vec<(String, String)>>,
}

/// Latency buckets, seconds: 50 µs … 2.5 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5,
];

/// The service's own series: (name, description).
const REQUESTS: &str = "bluegreen_requests_total";
const REQUEST_ERRORS: &str = "bluegreen_request_errors_total";
const REQUEST_DURATION: &str = "bluegreen_request_duration_seconds";
const HTTP: &str = "bluegreen_http_requests_total";

impl Metrics {
    /// Installs the Prometheus recorder as the process's `metrics` recorder (once, before
    /// any deployment exists) and describes the service's series.
    pub fn install(watching: bool) -> Result<Self, String> {
        let err = |e: metrics_exporter_prometheus::BuildError| format!("metrics: {e}");
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), BUCKETS)
            .map_err(err)?
            .set_buckets_for_metric(
                Matcher::Full("bluegreen_prediction_duration_seconds".to_owned()),
                BUCKETS,
            )
            .map_err(err)?
            .install_recorder()
            .map_err(err)?;
        describe_counter!(
            REQUESTS,
            "Predictions answered, by model and the version that answered."
        );
        describe_counter!(
            REQUEST_ERRORS,
            "Failed predictions by model, version and kind (input: bad request, model: model failure)."
        );
        describe_histogram!(
            REQUEST_DURATION,
            metrics::Unit::Seconds,
            "Prediction latency seen by the service (queue + inference + JSON), by model and version."
        );
        describe_counter!(HTTP, "HTTP answers by route template and status code.");
        describe_gauge!(
            "bluegreen_ready",
            "1 when the model's active version has passed its gates."
        );
        describe_gauge!(
            "bluegreen_target_refused",
            "1 while this replica refuses the version it is asked to serve (the watcher's \
             target, or without a watcher the start-up version): a fleet's controller aborts \
             the rollout on it."
        );
        describe_gauge!(
            "bluegreen_open_connections",
            "Client connections open now (at most --max-connections)."
        );
        describe_gauge!(
            "bluegreen_queue_depth",
            "Predict requests queued or running now (at most --max-queue)."
        );
        describe_gauge!(
            "bluegreen_queue_capacity",
            "The inference queue's bound (--max-queue)."
        );
        describe_counter!(
            "bluegreen_shed_total",
            "Predict requests refused with 503 because the inference queue was full."
        );
        describe_counter!(
            "bluegreen_skipped_total",
            "Admitted predict requests not computed because their client had gone."
        );
        describe_counter!(
            "bluegreen_inference_jobs_total",
            "Predict jobs that ran to an answer on the inference pool."
        );
        describe_counter!(
            "bluegreen_quarantine_refusals_total",
            "Candidates refused in a quarantine child (crash, memory, CPU, wall time, gate, load)."
        );
        describe_gauge!(
            "bluegreen_journal_healthy",
            "1 when the journal is writable and nothing waits to be written (--journal)."
        );
        describe_gauge!(
            "bluegreen_journal_pending",
            "Journal rows waiting to be written; admin operations are refused meanwhile."
        );
        if watching {
            describe_gauge!(
                "bluegreen_version_skew",
                "1 while the active version is not the one the watcher converges to (fleet: the manifest's); summed over replicas, the replicas off target."
            );
            describe_gauge!(
                "bluegreen_desired_version_info",
                "1 for the version the watcher converges to (fleet: the manifest's)."
            );
            describe_counter!(
                "bluegreen_watch_promotions_total",
                "Versions the repository watcher moved traffic to."
            );
            describe_counter!(
                "bluegreen_watch_refusals_total",
                "Candidates the repository watcher refused (load or gate failure)."
            );
        }
        Ok(Metrics {
            handle,
            desired: std::sync::Mutex::default(),
        })
    }

    /// Sets `bluegreen_desired_version_info` to 1 for each model's target now and to 0 for
    /// a target it no longer has (the exporter keeps a series once set).
    fn set_desired(&self, now: Vec<(String, String)>) {
        let mut last = self.desired.lock().unwrap_or_else(|e| e.into_inner());
        for (model, version) in last.iter() {
            if !now.contains(&(model.clone(), version.clone())) {
                gauge!("bluegreen_desired_version_info", "model" => model.clone(), "version" => version.clone())
                    .set(0.0);
            }
        }
        for (model, version) in &now {
            gauge!("bluegreen_desired_version_info", "model" => model.clone(), "version" => version.clone())
                .set(1.0);
        }
        *last = now;
    }

    /// Drains the exporter's histogram samples into its buckets. The exporter keeps every
    /// sample recorded since the last render or upkeep; without a scrape that would grow
    /// without bound, so the service calls this on a timer (`install_recorder` starts no
    /// upkeep of its own).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Every deployment publishes, the server's gauges are set, everything is rendered.
    pub fn render<'a>(
        &self,
        models: impl Iterator<Item = &'a std::sync::Arc<Served>>,
        server: &ServerSample,
    ) -> String {
        let mut desired = Vec::new();
        for m in models {
            let name = m.name().to_owned();
            gauge!("bluegreen_ready", "model" => name.clone()).set(if m.readiness().is_ok() {
                1.0
            } else {
                0.0
            });
            let refused = super::verdict::Verdict::of(m).refused.is_some();
            gauge!("bluegreen_target_refused", "model" => name.clone()).set(if refused {
                1.0
            } else {
                0.0
            });
            if let Some((target, converged)) = m.target() {
                gauge!("bluegreen_version_skew", "model" => name.clone()).set(if converged {
                    0.0
                } else {
                    1.0
                });
                desired.push((name.clone(), target));
            }
            if let Some(bg) = m.bg.get() {
                bg.publish_metrics();
                let status = bg.status();
                counter!("bluegreen_quarantine_refusals_total", "model" => name.clone())
                    .absolute(status.quarantine_refusals);
                if let Some(j) = &status.journal {
                    gauge!("bluegreen_journal_healthy", "model" => name.clone())
                        .set(if j.healthy { 1.0 } else { 0.0 });
                    gauge!("bluegreen_journal_pending", "model" => name).set(j.pending as f64);
                }
            }
        }
        self.set_desired(desired);
        let q = &server.queue;
        gauge!("bluegreen_open_connections").set(server.open_connections as f64);
        gauge!("bluegreen_queue_depth").set(q.in_flight as f64);
        gauge!("bluegreen_queue_capacity").set(q.capacity as f64);
        counter!("bluegreen_shed_total").absolute(server.shed);
        counter!("bluegreen_skipped_total").absolute(q.skipped);
        counter!("bluegreen_inference_jobs_total").absolute(q.completed);
        self.handle.render()
    }
}

/// One prediction the service answered (labels in Prometheus' sorted order).
pub fn answered(model: &str, version: &str, error_kind: Option<&'static str>, started: Instant) {
    let (model, version) = (model.to_owned(), version.to_owned());
    counter!(REQUESTS, "model" => model.clone(), "version" => version.clone()).increment(1);
    if let Some(kind) = error_kind {
        counter!(REQUEST_ERRORS, "kind" => kind, "model" => model.clone(), "version" => version.clone())
            .increment(1);
    }
    histogram!(REQUEST_DURATION, "model" => model, "version" => version)
        .record(started.elapsed().as_secs_f64());
}

/// One HTTP answer.
pub fn http_answer(route: String, code: &str) {
    counter!(HTTP, "code" => code.to_owned(), "route" => route).increment(1);
}

/// A watcher event worth counting (`promotions` or `refusals`).
#[cfg(feature = "watch")]
pub fn watcher(model: &str, what: &'static str) {
    watcher_counter(model, what).increment(1);
}

/// A model's watcher started: its counters exist from now on, at 0.
#[cfg(feature = "watch")]
pub fn watcher_registered(model: &str) {
    for what in ["promotions", "refusals"] {
        watcher_counter(model, what).increment(0);
    }
}

#[cfg(feature = "watch")]
fn watcher_counter(model: &str, what: &'static str) -> metrics::Counter {
    let name = match what {
        "promotions" => "bluegreen_watch_promotions_total",
        _ => "bluegreen_watch_refusals_total",
    };
    counter!(name, "model" => model.to_owned())
}

/// How often the exporter's histogram samples are drained without a scrape.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);
