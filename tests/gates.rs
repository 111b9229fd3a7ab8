//! Built-in gates with plain-Rust test models: each bad candidate is refused by exactly
//! the gate meant to catch it, with the measured value in the report, and the live model
//! keeps serving.

use std::time::Duration;

use bluegreen::gates::{Binding, GoldenGates, LatencyBudget, Predictions, SchemaGate};
use bluegreen::{
    BlueGreen, CheckStatus, Dim, ElementType, Error, GoldenSet, Model, ModelInfo, TensorSpec,
};
use ndarray::{Array1, Array2, ArrayView2};

const CLASSES: usize = 4;

/// How a [`Scorer`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    None,
    /// Predicts the next class: always wrong.
    OffByOne,
    /// NaN scores on rows 3, 13, 23, … of every call.
    Nan,
    /// Scores that are not probabilities.
    Unnormalized,
    /// Sleeps per call.
    Slow(Duration),
    /// Right on the first half of the classes only.
    HalfRight,
}

/// Scores each row one-hot on its largest feature (shifted by the flaw).
struct Scorer {
    flaw: Flaw,
    width: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("expected {expected} features, got {got}")]
struct WidthError {
    expected: usize,
    got: usize,
}

impl Model for Scorer {
    type Input = Array2<f32>;
    type Output = Array2<f32>;
    type Error = WidthError;

    fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>, WidthError> {
        if x.ncols() != self.width {
            return Err(WidthError {
                expected: self.width,
                got: x.ncols(),
            });
        }
        if let Flaw::Slow(d) = self.flaw {
            std::thread::sleep(d);
        }
        let mut out = Array2::<f32>::zeros((x.nrows(), CLASSES));
        for (i, row) in x.rows().into_iter().enumerate() {
            let best = row
                .iter()
                .enumerate()
                .fold((0, f32::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b })
                .0;
            let class = match self.flaw {
                Flaw::OffByOne => (best + 1) % CLASSES,
                Flaw::HalfRight if best >= CLASSES / 2 => (best + 1) % CLASSES,
                _ => best,
            };
            out[[i, class]] = 1.0;
            if self.flaw == Flaw::Nan && i % 10 == 3 {
                out[[i, 0]] = f32::NAN;
            }
            if self.flaw == Flaw::Unnormalized {
                out[[i, class]] = 3.0;
            }
        }
        Ok(out)
    }

    fn info(&self) -> ModelInfo {
        ModelInfo {
            inputs: vec![TensorSpec::new(
                "features",
                ElementType::F32,
                vec![Dim::Dynamic(None), Dim::Fixed(self.width)],
            )],
            outputs: vec![TensorSpec::new(
                "scores",
                ElementType::F32,
                vec![Dim::Dynamic(None), Dim::Fixed(CLASSES)],
            )],
            ..ModelInfo::default()
        }
    }
}

fn scorer(flaw: Flaw) -> Scorer {
    Scorer {
        flaw,
        width: CLASSES,
    }
}

struct Rows;

impl Binding<Scorer> for Rows {
    fn input(&self, rows: ArrayView2<'_, f32>) -> Array2<f32> {
        rows.to_owned()
    }
    fn read(&self, out: &Array2<f32>, _rows: usize) -> Result<Predictions, String> {
        Ok(Predictions::from_scores(out.clone()))
    }
}

/// 200 examples whose label is the position of their largest feature.
fn golden() -> GoldenSet {
    let n = 200;
    let inputs = Array2::from_shape_fn((n, CLASSES), |(i, j)| {
        if j == i % CLASSES {
            1.0
        } else {
            0.1 * j as f32
        }
    });
    let labels = Array1::from_iter((0..n).map(|i| (i % CLASSES) as i64));
    let mut expected = Array2::<f32>::zeros((n, CLASSES));
    for i in 0..n {
        expected[[i, i % CLASSES]] = 1.0;
    }
    GoldenSet::new(inputs)
        .unwrap()
        .with_labels(labels)
        .unwrap()
        .with_expected(expected)
        .unwrap()
}

fn deployment() -> (BlueGreen<Scorer>, GoldenGates<Scorer>) {
    let gates = GoldenGates::with_batch_size(golden(), Rows, 64);
    let bg = BlueGreen::builder()
        .validator(SchemaGate::like_live())
        .validator(gates.sanity())
        .validator(gates.accuracy(0.9))
        .validator(gates.expected_outputs(1e-6))
        .validator(gates.regression(0.02))
        .validator(gates.agreement(0.95))
        .build("v1", scorer(Flaw::None))
        .unwrap();
    (bg, gates)
}

/// Stages `candidate`, expects the swap refused, returns the names of the failed gates.
fn refused_by(
    bg: &BlueGreen<Scorer>,
    candidate: Scorer,
) -> (Vec<String>, bluegreen::ValidationReport) {
    bg.stage("candidate", candidate).unwrap();
    let err = bg.swap().unwrap_err();
    let Error::ValidationFailed(report) = err else {
        panic!("expected ValidationFailed, got {err}");
    };
    assert_eq!(
        bg.predict(&golden().inputs().to_owned()).unwrap().nrows(),
        200
    );
    assert_eq!(bg.active().version(), "v1", "live model keeps serving");
    let failed = report.failures().map(|c| c.name.clone()).collect();
    (failed, *report)
}

#[test]
fn a_healthy_candidate_passes_every_gate_with_measured_values() {
    let (bg, _) = deployment();
    bg.stage("v2", scorer(Flaw::None)).unwrap();
    let r = bg.swap().unwrap().validation;
    assert!(r.passed(), "{r}");
    assert_eq!(r.check("accuracy").unwrap().measured, Some(1.0));
    assert_eq!(r.check("agreement").unwrap().measured, Some(1.0));
    assert_eq!(r.check("regression").unwrap().measured, Some(0.0));
    assert_eq!(r.check("expected_outputs").unwrap().measured, Some(0.0));
    assert_eq!(r.check("sanity").unwrap().measured, Some(0.0));
    assert_eq!(r.check("schema").unwrap().measured, Some(0.0));
}

#[test]
fn a_wrong_candidate_is_refused_by_accuracy_regression_and_agreement() {
    let (bg, _) = deployment();
    let (failed, r) = refused_by(&bg, scorer(Flaw::OffByOne));
    assert_eq!(
        failed,
        ["accuracy", "expected_outputs", "regression", "agreement"]
    );
    assert_eq!(r.check("accuracy").unwrap().measured, Some(0.0));
    assert_eq!(r.check("regression").unwrap().measured, Some(-1.0));
    assert_eq!(r.check("sanity").unwrap().status, CheckStatus::Passed);
}

#[test]
fn a_partly_wrong_candidate_fails_regression_but_a_lenient_accuracy_bar_passes() {
    let gates = GoldenGates::new(golden(), Rows);
    let bg = BlueGreen::builder()
        .validator(gates.accuracy(0.4))
        .validator(gates.regression(0.1))
        .build("v1", scorer(Flaw::None))
        .unwrap();
    let (failed, r) = refused_by(&bg, scorer(Flaw::HalfRight));
    assert_eq!(failed, ["regression"]);
    assert_eq!(r.check("accuracy").unwrap().measured, Some(0.5));
    assert!(
        r.check("regression")
            .unwrap()
            .detail
            .contains("accuracy 0.5000 vs live v1 1.0000")
    );
}

#[test]
fn a_nan_producing_candidate_is_refused_by_the_sanity_gate() {
    let (bg, _) = deployment();
    let (failed, r) = refused_by(&bg, scorer(Flaw::Nan));
    assert!(failed.contains(&"sanity".to_owned()), "{r}");
    let sanity = r.check("sanity").unwrap();
    // Batches of 64, 64, 64 and 8 rows: 7 + 7 + 7 + 1 NaN rows.
    assert_eq!(sanity.measured, Some(22.0));
    assert!(
        sanity
            .detail
            .contains("first: non-finite score NaN at golden row 3"),
        "{}",
        sanity.detail
    );
    assert!(
        !failed.contains(&"accuracy".to_owned()),
        "NaN rows still predict their label"
    );
}

#[test]
fn scores_that_are_not_probabilities_fail_sanity_unless_declared_free_form() {
    let (bg, gates) = deployment();
    let (failed, r) = refused_by(&bg, scorer(Flaw::Unnormalized));
    assert!(failed.contains(&"sanity".to_owned()), "{r}");
    assert!(r.check("sanity").unwrap().detail.contains("out of 0..=1"));

    let lenient = BlueGreen::builder()
        .validator(gates.sanity().scores_are_not_probabilities())
        .build("v1", scorer(Flaw::None))
        .unwrap();
    lenient.stage("v2", scorer(Flaw::Unnormalized)).unwrap();
    assert!(lenient.swap().is_ok());
}

#[test]
fn a_slow_candidate_is_refused_by_the_latency_gate() {
    let gates = GoldenGates::new(golden(), Rows);
    let bg = BlueGreen::builder()
        .validator(
            gates
                .latency(LatencyBudget::RelativeToLive(3.0))
                .samples(40),
        )
        .validator(gates.accuracy(0.9))
        .build("v1", scorer(Flaw::None))
        .unwrap();
    let (failed, r) = refused_by(&bg, scorer(Flaw::Slow(Duration::from_millis(2))));
    assert_eq!(failed, ["latency"], "{r}");
    let ratio = r.check("latency").unwrap().measured.unwrap();
    assert!(ratio > 3.0, "{ratio}");
}

#[test]
fn latency_gate_with_an_absolute_budget_reports_microseconds() {
    let gates = GoldenGates::new(golden(), Rows);
    let bg = BlueGreen::builder()
        .validator(
            gates
                .latency(LatencyBudget::Absolute(Duration::from_millis(1)))
                .samples(20),
        )
        .build("v1", scorer(Flaw::None))
        .unwrap();
    let (failed, r) = refused_by(&bg, scorer(Flaw::Slow(Duration::from_millis(3))));
    assert_eq!(failed, ["latency"]);
    let c = r.check("latency").unwrap();
    assert!(c.measured.unwrap() >= 3000.0, "{c}");
    assert_eq!(c.bound, Some(bluegreen::validate::Bound::AtMost(1000.0)));
}

#[test]
fn a_candidate_with_another_input_width_fails_schema_and_every_golden_gate() {
    let (bg, _) = deployment();
    let (failed, r) = refused_by(
        &bg,
        Scorer {
            flaw: Flaw::None,
            width: 3,
        },
    );
    assert_eq!(
        failed,
        [
            "schema",
            "sanity",
            "accuracy",
            "expected_outputs",
            "regression",
            "agreement"
        ]
    );
    let schema = r.check("schema").unwrap();
    assert_eq!(
        schema.detail,
        "input \"features\" axis 1: the service feeds 4 but the candidate requires 3 (features: f32[?, 3])"
    );
    let acc = r.check("accuracy").unwrap();
    assert_eq!(
        acc.detail,
        "candidate: model failed on golden rows 0..64: expected 3 features, got 4"
    );
}

#[test]
fn gates_without_the_data_they_need_fail_with_a_reason() {
    let bare = GoldenSet::new(golden().inputs().to_owned()).unwrap();
    let gates = GoldenGates::new(bare, Rows);
    let bg = BlueGreen::builder()
        .validator(gates.accuracy(0.5))
        .validator(gates.expected_outputs(0.1))
        .validator(gates.agreement(0.5))
        .build("v1", scorer(Flaw::None))
        .unwrap();
    let (failed, r) = refused_by(&bg, scorer(Flaw::None));
    assert_eq!(failed, ["accuracy", "expected_outputs"]);
    assert_eq!(
        r.check("accuracy").unwrap().detail,
        "the golden set has no labels"
    );
    assert_eq!(
        r.check("expected_outputs").unwrap().detail,
        "the golden set has no expected outputs"
    );
}

#[test]
fn dry_run_validate_runs_the_gates_without_swapping() {
    let (bg, _) = deployment();
    bg.stage("v2", scorer(Flaw::OffByOne)).unwrap();
    let r = bg.validate().unwrap();
    assert!(!r.passed());
    assert_eq!(bg.active().version(), "v1");
    assert_eq!(
        bg.status().standby.unwrap().state,
        bluegreen::SlotState::Staged
    );
    let text = r.to_string();
    assert!(
        text.starts_with("validation of v2 against live v1: FAILED (6 gates"),
        "{text}"
    );
    assert!(
        text.contains("[FAIL] accuracy: 0.000000 (required >= 0.9)"),
        "{text}"
    );
}
