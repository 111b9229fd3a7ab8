//! Feature `metrics`: a deployment publishes through the `metrics` facade into the
//! application's recorder — here metrics-exporter-prometheus, installed once for this test
//! binary, read back as the Prometheus text a scrape would get. Each test names its own
//! deployment, so their series never mix.
//!
//! What is proven: calls, errors and panics per version come out of the per-thread lanes
//! exactly (no double counting across publishes, nothing lost at retirement); latency
//! reaches a histogram; slot, in-flight, canary and shadow gauges say what the deployment
//! holds now; swaps, rollbacks, automatic rollbacks (with the limit), refusals and each
//! gate's verdict are counted when they happen; faults are counted by kind; the collector
//! thread publishes on its own.
#![cfg(feature = "metrics")]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use bluegreen::{Bake, BlueGreen, Comparison, Error, Shadow, validate};
use common::{Behavior, Tracked, Tracker, wait_until};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const PATIENCE: Duration = Duration::from_secs(20);

/// The process-wide recorder, installed on first use.
fn scrape() -> String {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("bluegreen_prediction_duration_seconds".to_owned()),
                    &[0.001, 0.01, 0.1, 1.0],
                )
                .unwrap()
                .install_recorder()
                .unwrap()
        })
        .render()
}

/// The value of the series `series` (name and labels, exactly as rendered), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// [`value`] in a fresh scrape, or a panic naming what is missing.
fn read(series: &str) -> f64 {
    let text = scrape();
    value(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn quiet(name: &str) -> bluegreen::Builder<Tracked> {
    scrape(); // the recorder exists before the deployment counts anything
    BlueGreen::builder().name(name).metrics_interval(None)
}

#[test]
fn calls_errors_and_panics_are_published_per_version_from_the_lanes() {
    let t = Tracker::new();
    let bg = quiet("calls")
        .track_latency(true)
        .build("v1", t.model(1))
        .unwrap();
    for i in 0..3 {
        bg.predict(&i).unwrap();
    }
    bg.publish_metrics();
    assert_eq!(
        read(r#"bluegreen_predictions_total{model="calls",version="v1"}"#),
        3.0
    );
    assert_eq!(
        read(r#"bluegreen_prediction_duration_seconds_count{model="calls",version="v1"}"#),
        3.0
    );
    assert_eq!(
        read(
            r#"bluegreen_prediction_duration_seconds_bucket{model="calls",version="v1",le="+Inf"}"#
        ),
        3.0
    );

    bg.stage("v2", t.model_with(2, Behavior::Failing)).unwrap();
    bg.swap().unwrap();
    for i in 0..4 {
        assert!(bg.predict(&i).is_err());
    }
    bg.stage("v3", t.model_with(3, Behavior::Panicking))
        .unwrap();
    bg.swap().unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bg.predict(&9)));
    assert!(panicked.is_err(), "the model's panic reaches the caller");
    bg.publish_metrics();

    let text = scrape();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        v(r#"bluegreen_predictions_total{model="calls",version="v1"}"#),
        3.0
    );
    assert_eq!(
        v(r#"bluegreen_predictions_total{model="calls",version="v2"}"#),
        4.0
    );
    assert_eq!(
        v(r#"bluegreen_prediction_errors_total{model="calls",version="v2"}"#),
        4.0
    );
    assert_eq!(
        v(r#"bluegreen_predictions_total{model="calls",version="v3"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_prediction_errors_total{model="calls",version="v3"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_prediction_panics_total{model="calls",version="v3"}"#),
        1.0
    );
    assert_eq!(v(r#"bluegreen_swaps_total{model="calls"}"#), 2.0);
    assert_eq!(
        v(r#"bluegreen_in_flight{model="calls",slot="active"}"#),
        0.0
    );
    assert_eq!(
        v(r#"bluegreen_slot_info{model="calls",slot="active",state="active",version="v3"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_slot_info{model="calls",slot="previous",state="previous",version="v2"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_slot_info{model="calls",slot="active",state="active",version="v1"}"#),
        0.0,
        "a slot that changed hands is set to 0, not left at 1"
    );
    // v1 left the previous slot when v3 came in: retired after draining.
    assert_eq!(v(r#"bluegreen_retired_total{model="calls"}"#), 1.0);
    let status = bg.status();
    assert_eq!(
        status.active.requests, 1,
        "publishing never resets the lanes"
    );
    assert_eq!(status.standby.unwrap().requests, 4);
}

#[test]
fn publishing_again_adds_only_what_happened_in_between() {
    let t = Tracker::new();
    let bg = quiet("deltas").build("v1", t.model(1)).unwrap();
    let series = r#"bluegreen_predictions_total{model="deltas",version="v1"}"#;
    for _ in 0..5 {
        bg.publish_metrics();
    }
    assert_eq!(value(&scrape(), series), None, "no calls, no counter yet");
    for round in 1..=4u64 {
        for i in 0..round {
            bg.predict(&i).unwrap();
        }
        bg.publish_metrics();
        bg.publish_metrics();
        assert_eq!(read(series), (round * (round + 1) / 2) as f64);
    }
}

#[test]
fn calls_made_after_the_last_publish_are_published_when_the_model_is_retired() {
    let t = Tracker::new();
    let bg = quiet("retired").build("v1", t.model(1)).unwrap();
    bg.predict(&0).unwrap();
    bg.publish_metrics();
    for i in 0..6 {
        bg.predict(&i).unwrap();
    }
    bg.stage("v2", t.model(2)).unwrap();
    bg.swap().unwrap();
    bg.stage("v3", t.model(3)).unwrap();
    bg.swap().unwrap(); // v1, the previous model, is retired to make room
    assert_eq!(read(r#"bluegreen_retired_total{model="retired"}"#), 1.0);
    assert_eq!(
        read(r#"bluegreen_predictions_total{model="retired",version="v1"}"#),
        7.0,
        "the six calls after the last publish were published at retirement"
    );
}

#[test]
fn the_collector_thread_publishes_without_being_asked() {
    scrape();
    let t = Tracker::new();
    let bg = BlueGreen::builder()
        .name("ticking")
        .metrics_interval(Some(Duration::from_millis(5)))
        .build("v1", t.model(1))
        .unwrap();
    for i in 0..11 {
        bg.predict(&i).unwrap();
    }
    let series = r#"bluegreen_predictions_total{model="ticking",version="v1"}"#;
    assert!(
        wait_until(PATIENCE, || value(&scrape(), series) == Some(11.0)),
        "the collector never published 11 calls:\n{}",
        scrape()
    );
    drop(bg); // stops the collector (joins it) without hanging
}

#[test]
fn gate_verdicts_refusals_and_gate_panics_are_counted_per_gate() {
    let t = Tracker::new();
    let pass = validate::from_fn("always", |_: &validate::Context<Tracked>| {
        Ok::<(), String>(())
    });
    let fail = validate::from_fn("even_tag", |cx: &validate::Context<Tracked>| {
        if cx.candidate().tag.is_multiple_of(2) {
            Ok(())
        } else {
            Err("odd tag")
        }
    });
    let bg = quiet("gates")
        .validator(pass)
        .validator(fail)
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v3", t.model(3)).unwrap();
    assert!(matches!(bg.swap(), Err(Error::ValidationFailed(_))));
    bg.stage("v4", t.model(4)).unwrap();
    bg.swap().unwrap();

    let text = scrape();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        v(r#"bluegreen_gate_results_total{model="gates",gate="always",result="passed"}"#),
        2.0
    );
    assert_eq!(
        v(r#"bluegreen_gate_results_total{model="gates",gate="even_tag",result="failed"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_gate_results_total{model="gates",gate="even_tag",result="passed"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_validations_total{model="gates",result="failed"}"#),
        1.0
    );
    assert_eq!(
        v(r#"bluegreen_validations_total{model="gates",result="passed"}"#),
        1.0
    );
    assert_eq!(v(r#"bluegreen_rejections_total{model="gates"}"#), 1.0);
    assert_eq!(v(r#"bluegreen_swaps_total{model="gates"}"#), 1.0);

    // A gate that panics: its verdict, and the fault by kind once published.
    let t = Tracker::new();
    let boom = validate::from_fn(
        "boom",
        |_: &validate::Context<Tracked>| -> Result<(), String> {
            panic!("gate exploded on purpose")
        },
    );
    let bg = quiet("gate_panics")
        .validator(boom)
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    assert!(bg.swap().is_err());
    bg.publish_metrics();
    assert_eq!(
        read(r#"bluegreen_gate_results_total{model="gate_panics",gate="boom",result="panicked"}"#),
        1.0
    );
    assert_eq!(
        read(r#"bluegreen_faults_total{model="gate_panics",kind="gate_panicked"}"#),
        1.0
    );
    assert_eq!(
        bg.predict(&5).unwrap(),
        (1, 5),
        "the live model kept serving"
    );
}

#[test]
fn an_automatic_rollback_is_counted_with_the_limit_it_breached() {
    let t = Tracker::new();
    let bg = quiet("bake")
        .bake(
            Bake::for_duration(Duration::from_secs(60))
                .max_error_rate(0.05)
                .check_every(Duration::from_millis(2)),
        )
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model_with(2, Behavior::Failing)).unwrap();
    bg.swap().unwrap();
    assert!(
        wait_until(PATIENCE, || {
            for i in 0..10 {
                let _ = bg.predict(&i);
            }
            bg.status().auto_rollbacks == 1
        }),
        "no automatic rollback: {}",
        bg.status()
    );
    let record = bg.status().last_auto_rollback.unwrap();
    assert_eq!(record.limit, bluegreen::BakeLimit::ErrorRate);
    assert_eq!(
        read(r#"bluegreen_auto_rollbacks_total{model="bake",reason="error_rate"}"#),
        1.0
    );
    assert_eq!(read(r#"bluegreen_rollbacks_total{model="bake"}"#), 1.0);
    bg.publish_metrics();
    assert_eq!(read(r#"bluegreen_baking{model="bake"}"#), 0.0);
    assert_eq!(
        read(
            r#"bluegreen_slot_info{model="bake",slot="previous",state="rolled-back",version="v2"}"#
        ),
        1.0
    );
}

#[test]
fn shadow_agreement_and_canary_share_are_published() {
    let t = Tracker::new();
    let bg = quiet("shadow")
        .shadow(Shadow::new(1.0, |cand: &(u64, u64), live: &(u64, u64)| {
            Comparison {
                agree: cand.1 == live.1,
                abs_diff: 0.0,
            }
        }))
        .build("v1", t.model(1))
        .unwrap();
    bg.stage("v2", t.model(2)).unwrap();
    assert!(
        wait_until(PATIENCE, || {
            let _ = bg.predict(&1);
            bg.status().shadow.is_some_and(|s| s.compared >= 20)
        }),
        "the shadow compared nothing: {}",
        bg.status()
    );
    bg.publish_metrics();
    let compared = read(r#"bluegreen_shadow_compared_total{model="shadow"}"#);
    assert!(compared >= 20.0, "{compared}");
    assert_eq!(
        read(r#"bluegreen_shadow_agreed_total{model="shadow"}"#),
        compared
    );
    assert_eq!(read(r#"bluegreen_shadow_agreement{model="shadow"}"#), 1.0);

    bg.start_canary(25.0).unwrap();
    bg.publish_metrics();
    assert_eq!(read(r#"bluegreen_canary_ratio{model="shadow"}"#), 0.25);
    assert_eq!(
        read(r#"bluegreen_slot_info{model="shadow",slot="candidate",state="canary",version="v2"}"#),
        1.0
    );
    bg.abort_canary().unwrap();
    bg.publish_metrics();
    assert_eq!(read(r#"bluegreen_canary_ratio{model="shadow"}"#), 0.0);
}

#[test]
fn a_deployment_name_is_checked_like_a_version_label() {
    let t = Tracker::new();
    for (bad, reason) in [
        ("", "must not be empty"),
        ("a\nb", "must not contain control characters"),
    ] {
        match BlueGreen::builder().name(bad).build("v1", t.model(1)) {
            Err(Error::InvalidName { name, reason: why }) => {
                assert_eq!((name.as_str(), why), (bad, reason));
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    let long = "n".repeat(257);
    assert!(matches!(
        BlueGreen::builder().name(long).build("v1", t.model(1)),
        Err(Error::InvalidName {
            reason: "must be at most 256 bytes",
            ..
        })
    ));
}
