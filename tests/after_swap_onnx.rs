//! The after-the-switch features with the real ONNX digits models: shadowing v2 behind v1
//! measures exactly the agreement the Python reference outputs predict; a degraded v3
//! that slips through is rolled back by the bake window from reported outcomes; a canary
//! gets its share of keyed traffic.
#![cfg(feature = "onnx")]

use std::time::Duration;

use bluegreen::onnx::{Inputs, Outputs};
use bluegreen::{Bake, BlueGreen, Comparison, GoldenSet, OnnxModel, Shadow, SlotState};
use ndarray::{Array1, Axis};
use ndarray_npy::NpzReader;

fn model(v: u32) -> OnnxModel {
    OnnxModel::builder()
        .pool_size(2)
        .load(format!(
            "{}/models/digits/{v}/model.onnx",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
}

fn golden() -> GoldenSet {
    GoldenSet::from_npz(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/digits/golden.npz"
    ))
    .unwrap()
}

fn reference_labels(v: u32) -> Array1<i64> {
    let f = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/digits/golden.npz"
    ))
    .unwrap();
    NpzReader::new(f)
        .unwrap()
        .by_name(&format!("label_v{v}"))
        .unwrap()
}

/// One golden row as a single-example input.
fn row(g: &GoldenSet, i: usize) -> Inputs {
    Inputs::single(
        g.inputs()
            .index_axis(Axis(0), i)
            .insert_axis(Axis(0))
            .to_owned(),
    )
}

fn label(out: &Outputs) -> i64 {
    out.i64("label").unwrap()[0]
}

#[test]
fn shadowing_v2_behind_v1_measures_the_reference_agreement_exactly() {
    let g = golden();
    let bg = BlueGreen::builder()
        .shadow(Shadow::summarized(
            1.0,
            label,
            |cand: &Outputs, live: &i64| Comparison {
                agree: label(cand) == *live,
                abs_diff: 0.0,
            },
        ))
        .build("v1", model(1))
        .unwrap();
    bg.stage("v2", model(2)).unwrap();
    let (l1, l2) = (reference_labels(1), reference_labels(2));
    for i in 0..g.len() {
        assert_eq!(
            label(&bg.predict(&row(&g, i)).unwrap()),
            l1[i],
            "callers get v1's answer"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bg.status().shadow.unwrap().compared < g.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            bg.status().shadow
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = bg.status().shadow.unwrap();
    let expected = l1.iter().zip(&l2).filter(|(a, b)| a == b).count() as f64 / g.len() as f64;
    assert_eq!((s.compared, s.dropped, s.errors), (450, 0, 0));
    assert_eq!(s.agreement, expected);
}

#[test]
fn a_degraded_model_that_slips_through_is_rolled_back_by_its_outcomes() {
    let g = golden();
    let truth = g.labels().unwrap().clone();
    let bg = BlueGreen::builder()
        .bake(
            Bake::for_duration(Duration::from_secs(60))
                .min_outcome_success(0.8)
                .min_samples(50)
                .check_every(Duration::from_millis(2)),
        )
        .build("v2", model(2))
        .unwrap();
    bg.stage("v3", model(3)).unwrap(); // no gates configured: nothing stops it
    bg.swap().unwrap();
    let mut rolled_back_after = None;
    for i in 0..g.len() {
        let pin = bg.active();
        let answer = label(&pin.predict(&row(&g, i)).unwrap());
        // The delayed label arrives: tell bluegreen whether that version was right.
        bg.record_outcome(pin.version(), answer == truth[i])
            .unwrap();
        drop(pin);
        if bg.status().auto_rollbacks == 1 {
            rolled_back_after = Some(i);
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(rolled_back_after.is_some(), "{}", bg.status());
    let s = bg.status();
    assert_eq!(s.active.version, "v2");
    assert_eq!(s.standby.unwrap().state, SlotState::RolledBack);
    assert!(
        s.last_auto_rollback
            .unwrap()
            .reason
            .starts_with("good outcomes")
    );
    assert_eq!(
        label(&bg.predict(&row(&g, 0)).unwrap()),
        reference_labels(2)[0]
    );
}

#[test]
fn a_canary_of_v2_gets_its_share_of_keyed_traffic_with_correct_answers() {
    let g = golden();
    let (l1, l2) = (reference_labels(1), reference_labels(2));
    let bg = BlueGreen::new("v1", model(1)).unwrap();
    bg.stage("v2", model(2)).unwrap();
    bg.start_canary(20.0).unwrap();
    // 4 000 users, each sending one golden row; every answer is one of the two models'.
    for u in 0..4_000usize {
        let i = u % g.len();
        let answer = label(&bg.predict_keyed(format!("user-{u}"), &row(&g, i)).unwrap());
        assert!(answer == l1[i] || answer == l2[i], "row {i}: {answer}");
    }
    let s = bg.status();
    let canary = s.standby.unwrap();
    assert_eq!(
        (canary.version.as_str(), canary.state),
        ("v2", SlotState::Canary)
    );
    assert_eq!(s.active.requests + canary.requests, 4_000);
    let share = canary.requests as f64 / 4_000.0;
    assert!((0.18..=0.22).contains(&share), "canary share {share}");
}
