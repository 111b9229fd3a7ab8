//! Events the deployment counts through the `metrics` facade where they happen — swaps,
//! rollbacks, automatic rollbacks by limit, refused candidates, validation and gate
//! results, retirements — and the names of every series it publishes.
//!
//! These happen on the admin path, the bake monitor or the retirer, never in `predict`, so
//! counting them is an ordinary facade call (a registry lookup and an atomic add in the
//! recorder). Figures that change on every request — calls, errors, latency, in-flight —
//! are not counted here: they stay in the per-thread lanes and are summed and published on
//! a collector tick or at scrape time (`publish.rs`). Without the `metrics` feature every
//! function here compiles to nothing.

use super::bluegreen::Inner;
use crate::model::Model;
use crate::traffic::bake::BakeLimit;
use crate::validation::validate::ValidationReport;

/// Something the deployment counts when it happens.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(super) enum Event<'a> {
    /// A swap (or canary promotion) moved traffic to a new model.
    Swapped,
    /// Traffic went back to the previous model (manual or automatic).
    RolledBack,
    /// The bake monitor rolled back because of this limit (also counted as `RolledBack`).
    AutoRolledBack(BakeLimit),
    /// A candidate failed its gates or its warm-up.
    Rejected,
    /// The gates ran (a swap, a canary start, a dry run or `validate_active`).
    Validated(&'a ValidationReport),
    /// A model was handed to the retirer after draining.
    Retired,
}

impl<M: Model> Inner<M> {
    /// Counts `event` under this deployment's name.
    #[inline]
    pub(super) fn count(&self, event: Event<'_>) {
        #[cfg(feature = "metrics")]
        facade::count(&self.config.name, &event);
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }
}

/// Every series bluegreen publishes: name, kind, and what it counts (also given to the
/// recorder as its description). Each has a `model` label, the deployment's
/// [name](crate::Builder::name).
#[cfg(feature = "metrics")]
pub(super) const SERIES: &[(&str, Kind, &str)] = &[
    (
        PREDICTIONS,
        Kind::Counter,
        "Calls a model finished (answer or error), by version.",
    ),
    (
        ERRORS,
        Kind::Counter,
        "Calls that returned an error or panicked, by version.",
    ),
    (
        PANICS,
        Kind::Counter,
        "Calls that panicked inside the model, by version.",
    ),
    (
        OUTCOMES,
        Kind::Counter,
        "Outcomes reported with record_outcome, by version and result.",
    ),
    (
        LATENCY,
        Kind::Histogram,
        "Model call latency in seconds, by version (timed calls only).",
    ),
    (
        IN_FLIGHT,
        Kind::Gauge,
        "Calls running now on the active, candidate and previous model.",
    ),
    (
        SLOT_INFO,
        Kind::Gauge,
        "1 for the version and state each slot holds now.",
    ),
    (
        CANARY_RATIO,
        Kind::Gauge,
        "Share of keyed traffic (0..1) going to the canary now.",
    ),
    (
        BAKING,
        Kind::Gauge,
        "1 while the active model is inside its bake window.",
    ),
    (
        RETIRING,
        Kind::Gauge,
        "Models draining, queued for the retirer, or being dropped.",
    ),
    (
        ABANDONED,
        Kind::Gauge,
        "Work abandoned past its deadline that still runs.",
    ),
    (
        FAULTS,
        Kind::Counter,
        "Panics and hangs caught on bluegreen's threads, by kind.",
    ),
    (
        SHADOW_MIRRORED,
        Kind::Counter,
        "Live calls copied to the shadowed candidate.",
    ),
    (
        SHADOW_DROPPED,
        Kind::Counter,
        "Shadow copies dropped because the queue was full.",
    ),
    (
        SHADOW_COMPARED,
        Kind::Counter,
        "Shadow answers compared with the live answer.",
    ),
    (
        SHADOW_AGREED,
        Kind::Counter,
        "Compared shadow answers that agreed with the live one.",
    ),
    (
        SHADOW_AGREEMENT,
        Kind::Gauge,
        "Share of compared shadow answers that agreed (0..1).",
    ),
    (
        SWAPS,
        Kind::Counter,
        "Completed swaps (and canary promotions).",
    ),
    (
        ROLLBACKS,
        Kind::Counter,
        "Completed rollbacks, manual and automatic.",
    ),
    (
        AUTO_ROLLBACKS,
        Kind::Counter,
        "Automatic rollbacks by the bake limit breached (reason).",
    ),
    (
        REJECTIONS,
        Kind::Counter,
        "Candidates refused by a gate or their warm-up.",
    ),
    (
        VALIDATIONS,
        Kind::Counter,
        "Runs of the gates, by result (passed, failed).",
    ),
    (
        GATE_RESULTS,
        Kind::Counter,
        "Gate verdicts, by gate and result.",
    ),
    (RETIRED, Kind::Counter, "Models retired after draining."),
];

/// What kind of series.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[cfg(feature = "metrics")]
pub(super) const PREDICTIONS: &str = "bluegreen_predictions_total";
#[cfg(feature = "metrics")]
pub(super) const ERRORS: &str = "bluegreen_prediction_errors_total";
#[cfg(feature = "metrics")]
pub(super) const PANICS: &str = "bluegreen_prediction_panics_total";
#[cfg(feature = "metrics")]
pub(super) const OUTCOMES: &str = "bluegreen_outcomes_total";
#[cfg(feature = "metrics")]
pub(super) const LATENCY: &str = "bluegreen_prediction_duration_seconds";
#[cfg(feature = "metrics")]
pub(super) const IN_FLIGHT: &str = "bluegreen_in_flight";
#[cfg(feature = "metrics")]
pub(super) const SLOT_INFO: &str = "bluegreen_slot_info";
#[cfg(feature = "metrics")]
pub(super) const CANARY_RATIO: &str = "bluegreen_canary_ratio";
#[cfg(feature = "metrics")]
pub(super) const BAKING: &str = "bluegreen_baking";
#[cfg(feature = "metrics")]
pub(super) const RETIRING: &str = "bluegreen_retiring";
#[cfg(feature = "metrics")]
pub(super) const ABANDONED: &str = "bluegreen_abandoned";
#[cfg(feature = "metrics")]
pub(super) const FAULTS: &str = "bluegreen_faults_total";
#[cfg(feature = "metrics")]
pub(super) const SHADOW_MIRRORED: &str = "bluegreen_shadow_mirrored_total";
#[cfg(feature = "metrics")]
pub(super) const SHADOW_DROPPED: &str = "bluegreen_shadow_dropped_total";
#[cfg(feature = "metrics")]
pub(super) const SHADOW_COMPARED: &str = "bluegreen_shadow_compared_total";
#[cfg(feature = "metrics")]
pub(super) const SHADOW_AGREED: &str = "bluegreen_shadow_agreed_total";
#[cfg(feature = "metrics")]
pub(super) const SHADOW_AGREEMENT: &str = "bluegreen_shadow_agreement";
#[cfg(feature = "metrics")]
const SWAPS: &str = "bluegreen_swaps_total";
#[cfg(feature = "metrics")]
const ROLLBACKS: &str = "bluegreen_rollbacks_total";
#[cfg(feature = "metrics")]
const AUTO_ROLLBACKS: &str = "bluegreen_auto_rollbacks_total";
#[cfg(feature = "metrics")]
const REJECTIONS: &str = "bluegreen_rejections_total";
#[cfg(feature = "metrics")]
const VALIDATIONS: &str = "bluegreen_validations_total";
#[cfg(feature = "metrics")]
const GATE_RESULTS: &str = "bluegreen_gate_results_total";
#[cfg(feature = "metrics")]
const RETIRED: &str = "bluegreen_retired_total";

#[cfg(feature = "metrics")]
mod facade {
    use std::sync::Arc;

    use metrics::{Label, counter};

    use super::*;
    use crate::validation::validate::CheckStatus;

    /// The `model` label and `extra` (static names; values static or not).
    pub(in crate::deployment) fn labels(
        name: &Arc<str>,
        extra: impl IntoIterator<Item = (&'static str, metrics::SharedString)>,
    ) -> Vec<Label> {
        std::iter::once(Label::new("model", Arc::clone(name)))
            .chain(extra.into_iter().map(|(k, v)| Label::new(k, v)))
            .collect()
    }

    pub(super) fn count(name: &Arc<str>, event: &Event<'_>) {
        let only_model = || labels(name, []);
        let fixed = |k, v: &'static str| labels(name, [(k, metrics::SharedString::const_str(v))]);
        match event {
            Event::Swapped => counter!(SWAPS, only_model()).increment(1),
            Event::RolledBack => counter!(ROLLBACKS, only_model()).increment(1),
            Event::AutoRolledBack(limit) => {
                counter!(AUTO_ROLLBACKS, fixed("reason", limit.as_str())).increment(1);
            }
            Event::Rejected => counter!(REJECTIONS, only_model()).increment(1),
            Event::Validated(report) => {
                let result = if report.passed() { "passed" } else { "failed" };
                counter!(VALIDATIONS, fixed("result", result)).increment(1);
                for check in &report.checks {
                    let l = labels(
                        name,
                        [
                            ("gate", check.name.clone().into()),
                            (
                                "result",
                                metrics::SharedString::const_str(check_result(check.status)),
                            ),
                        ],
                    );
                    counter!(GATE_RESULTS, l).increment(1);
                }
            }
            Event::Retired => counter!(RETIRED, only_model()).increment(1),
        }
    }

    fn check_result(status: CheckStatus) -> &'static str {
        match status {
            CheckStatus::Passed => "passed",
            CheckStatus::Failed => "failed",
            CheckStatus::Panicked => "panicked",
            CheckStatus::TimedOut => "timed_out",
        }
    }
}

#[cfg(feature = "metrics")]
pub(super) use facade::labels;

/// The event counters without labels of their own, registered at 0 by every publish, so a
/// deployment that never swapped shows `bluegreen_swaps_total 0` rather than nothing.
#[cfg(feature = "metrics")]
pub(super) const EVENT_COUNTERS: [&str; 4] = [SWAPS, ROLLBACKS, REJECTIONS, RETIRED];
