//! Gates that know their noise, through real deployments of plain-Rust models: the two
//! regression policies over a grid of candidate/live pairs differing on k of n rows
//! (verdicts checked against criteria computed independently in this file), the issue's
//! 54-example case, power guidance at build time, labels a model cannot predict, and
//! calibration.

use std::io::Write;
use std::sync::Arc;

use bluegreen::gates::{
    Binding, GoldenGates, Predictions, RegressionPolicy, ShareRule, SizeProblem,
};
use bluegreen::{
    BlueGreen, Dim, ElementType, GoldenError, GoldenSet, Model, ModelInfo, TensorSpec,
    ValidationReport,
};
use ndarray::{Array1, Array2, ArrayView2};
use parking_lot::Mutex;

const Z95: f64 = 1.959_963_984_540_054;

/// Answers a fixed label per golden row; each row's only feature is its index.
struct Answers(Arc<Vec<i64>>);

impl Model for Answers {
    type Input = Array2<f32>;
    type Output = Array1<i64>;
    type Error = std::convert::Infallible;

    fn predict(&self, x: &Array2<f32>) -> Result<Array1<i64>, Self::Error> {
        Ok(x.column(0).iter().map(|&i| self.0[i as usize]).collect())
    }
}

struct ByIndex;

impl Binding<Answers> for ByIndex {
    fn input(&self, rows: ArrayView2<'_, f32>) -> Array2<f32> {
        rows.to_owned()
    }
    fn read(&self, out: &Array1<i64>, _rows: usize) -> Result<Predictions, String> {
        Ok(Predictions {
            labels: out.clone(),
            scores: None,
        })
    }
}

/// `n` examples of 3 classes; example `i` has label `i % 3`.
fn golden(n: usize) -> GoldenSet {
    let inputs = Array2::from_shape_fn((n, 1), |(i, _)| i as f32);
    let labels = Array1::from_iter((0..n).map(|i| (i % 3) as i64));
    GoldenSet::new(inputs).unwrap().with_labels(labels).unwrap()
}

/// Live and candidate answers over `n` examples: only live right on rows `0..b`, only the
/// candidate right on rows `b..b + c`, both right elsewhere.
fn pair(n: usize, b: usize, c: usize) -> (Answers, Answers) {
    let truth = |i: usize| (i % 3) as i64;
    let wrong = |i: usize| ((i + 1) % 3) as i64;
    let live = (0..n)
        .map(|i| {
            if (b..b + c).contains(&i) {
                wrong(i)
            } else {
                truth(i)
            }
        })
        .collect();
    let cand = (0..n)
        .map(|i| if i < b { wrong(i) } else { truth(i) })
        .collect();
    (Answers(Arc::new(live)), Answers(Arc::new(cand)))
}

/// Dry-runs `gates` (built from one `GoldenGates` over `n` examples) on the pair.
fn judge(
    n: usize,
    b: usize,
    c: usize,
    gates: impl FnOnce(&GoldenGates<Answers>) -> Vec<bluegreen::gates::RegressionGate<Answers>>,
) -> ValidationReport {
    let golden_gates = GoldenGates::new(golden(n), ByIndex);
    let (live, cand) = pair(n, b, c);
    let mut builder = BlueGreen::builder();
    for gate in gates(&golden_gates) {
        builder = builder.validator(gate);
    }
    let bg = builder.build("live", live).unwrap();
    bg.stage("candidate", cand).unwrap();
    bg.validate().unwrap()
}

// ---------------------------------------------------------------------------------------
// Independent criteria.

/// Exact one-sided McNemar, in integers: refuses at α = 1/20 exactly when
/// P(X ≥ b | Bin(b + c, ½)) < 1/20, i.e. 20 · Σ_{i ≥ b} C(m, i) < 2^m.
fn not_worse_refuses(b: u32, c: u32) -> bool {
    let m = b + c;
    let choose = |m: u32, i: u32| -> u128 {
        (0..i).fold(1u128, |acc, j| acc * u128::from(m - j) / u128::from(j + 1))
    };
    let tail: u128 = (b..=m).map(|i| choose(m, i)).sum();
    20 * tail < 1u128 << m
}

/// The paired score statistic at drop δ, with the nuisance parameter maximized
/// *numerically* (golden-section search on the constrained multinomial log-likelihood),
/// not by the closed form the crate uses.
fn score_at(b: f64, c: f64, n: f64, delta: f64) -> f64 {
    let ll = |q: f64| {
        let mut s = 0.0;
        for (count, p) in [(b, q + delta), (c, q), (n - b - c, 1.0 - 2.0 * q - delta)] {
            if count > 0.0 {
                if p <= 0.0 {
                    return f64::NEG_INFINITY;
                }
                s += count * p.ln();
            }
        }
        s
    };
    let (mut lo, mut hi) = ((-delta).max(0.0), (1.0 - delta) / 2.0);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..200 {
        let (x1, x2) = (hi - g * (hi - lo), lo + g * (hi - lo));
        if ll(x1) < ll(x2) {
            lo = x1;
        } else {
            hi = x2;
        }
    }
    let q = (lo + hi) / 2.0;
    (b - c - n * delta) / (n * (2.0 * q + delta - delta * delta)).sqrt()
}

/// Non-inferiority at `margin` passes exactly when the drop's upper 95 % bound is below
/// the margin; the score statistic decreases in δ and equals −z at that bound, so: when
/// the statistic at δ = margin is below −z.
fn non_inferior_passes(b: usize, c: usize, n: usize, margin: f64) -> bool {
    score_at(b as f64, c as f64, n as f64, margin) < -Z95
}

/// With c = 0 the upper bound is Wilson's for b of n, so the same verdict follows from
/// (b − n·m)² > z² n m (1 − m) with b < n·m — no root-finding at all.
fn non_inferior_passes_by_wilson(b: usize, n: usize, margin: f64) -> bool {
    let (b, n) = (b as f64, n as f64);
    b < n * margin && (b - n * margin).powi(2) > Z95 * Z95 * n * margin * (1.0 - margin)
}

// ---------------------------------------------------------------------------------------

#[test]
fn both_regression_policies_give_the_independently_computed_verdict_across_a_k_of_n_grid() {
    let mut outcomes = std::collections::BTreeMap::new();
    for n in [20usize, 54, 171, 450, 1000] {
        for b in [0usize, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20] {
            for c in [0usize, 2, 5] {
                if b + c > n {
                    continue;
                }
                let r = judge(n, b, c, |g| {
                    vec![g.regression(0.01), g.regression(0.05), g.not_worse(0.05)]
                });
                let got: Vec<bool> = r.checks.iter().map(|c| c.passed()).collect();
                let want = vec![
                    non_inferior_passes(b, c, n, 0.01),
                    non_inferior_passes(b, c, n, 0.05),
                    !not_worse_refuses(b as u32, c as u32),
                ];
                assert_eq!(got, want, "n={n} b={b} c={c}\n{r}");
                if c == 0 {
                    assert_eq!(
                        (want[0], want[1]),
                        (
                            non_inferior_passes_by_wilson(b, n, 0.01),
                            non_inferior_passes_by_wilson(b, n, 0.05)
                        ),
                        "n={n} b={b}"
                    );
                }
                // The measured difference is (c − b)/n under every policy but not-worse,
                // which measures its p-value.
                let diff = r.checks[0].measured.unwrap();
                assert!((diff - (c as f64 - b as f64) / n as f64).abs() < 1e-12);
                for (i, passed) in got.into_iter().enumerate() {
                    *outcomes.entry((i, passed)).or_insert(0) += 1;
                }
            }
        }
    }
    // Every policy both passed and refused somewhere in the grid.
    for policy in 0..3 {
        assert!(outcomes.contains_key(&(policy, true)), "{outcomes:?}");
        assert!(outcomes.contains_key(&(policy, false)), "{outcomes:?}");
    }
}

#[test]
fn grid_landmarks_computed_by_hand() {
    let verdicts = |n, b, c| -> Vec<bool> {
        judge(n, b, c, |g| vec![g.regression(0.01), g.not_worse(0.05)])
            .checks
            .iter()
            .map(|c| c.passed())
            .collect()
    };
    // 5 of 20 against the candidate, none for it: p = ½⁵ = 0.03125 < 0.05 → refused;
    // 4 of 20: p = ½⁴ = 0.0625 → not significantly worse.
    assert!(!verdicts(20, 5, 0)[1]);
    assert!(verdicts(20, 4, 0)[1]);
    // 1000 identical answers: the drop's upper bound is z²/(n + z²) = 3.8415/1003.84 =
    // 0.0038 < 0.01 → non-inferior.
    assert_eq!(verdicts(1000, 0, 0), [true, true]);
    // 2 of 1000 against: Wilson upper bound of 2/1000 = (2 + 1.9207 + 1.96·√(2·0.998 +
    // 0.9604))/1003.84 = (3.9207 + 3.3698)/1003.84 = 0.0073 < 0.01 → non-inferior; p = ¼.
    assert_eq!(verdicts(1000, 2, 0), [true, true]);
    // 5 of 1000 against: (6.9207 + 1.96·√(4.975 + 0.9604))/1003.84 = 0.0117 > 0.01 →
    // not shown non-inferior, and p = 1/32 → significantly worse.
    assert_eq!(verdicts(1000, 5, 0), [false, false]);
}

#[test]
fn one_extra_mistake_in_54_examples_is_noise_to_not_worse_and_unprovable_at_a_1_point_margin() {
    // The case: live 53/54, candidate 52/54 (−1.85 points).
    let (n, b, c) = (54, 1, 0);
    let r = judge(n, b, c, |g| {
        vec![
            g.regression(0.01),
            g.not_worse(0.05),
            g.regression_with(RegressionPolicy::PointEstimate { max_drop: 0.01 }),
        ]
    });
    let [non_inferior, not_worse, point] = &r.checks[..] else {
        panic!("{r}")
    };
    // Not-worse: one discordant example is no evidence, p = ½.
    assert!(not_worse.passed(), "{r}");
    assert_eq!(not_worse.measured, Some(0.5));
    assert!(
        not_worse
            .detail
            .contains("not-worse at alpha 0.05: not significantly worse")
    );
    // Non-inferior at 1 point: 54 examples cannot show it (needs 381), and says so.
    assert!(!non_inferior.passed(), "{r}");
    let line = non_inferior.to_string();
    // Value, interval and bound on the line; the interval is the paired score interval
    // (−0.097714, +0.049125 by an independent profile-likelihood solve).
    assert!(
        line.starts_with("[FAIL] regression: -0.018519 (required >= -0.01) — "),
        "{line}"
    );
    assert!(
        line.contains("difference -0.0185, 95% paired score interval [-0.0977, +0.0491]"),
        "{line}"
    );
    assert!(line.contains("right only for the candidate on 0, only for live on 1 (exact McNemar p = 0.5000 for 'candidate worse')"), "{line}");
    assert!(
        line.contains("non-inferior at margin 0.01: not shown"),
        "{line}"
    );
    assert!(line.contains("it needs at least 381 examples"), "{line}");
    // The old point estimate refuses it outright, and its advice says one example decides.
    assert!(!point.passed());
    assert!(
        point
            .detail
            .contains("one example is 0.0185 of accuracy, more than max_drop 0.01"),
        "{}",
        point.detail
    );
}

#[test]
fn the_live_model_passes_regression_against_itself_at_its_readiness_check() {
    // 54 examples cannot show non-inferiority at 1 point, but the live model compared
    // with itself has nothing to show.
    let gates = GoldenGates::new(golden(54), ByIndex);
    let (live, _) = pair(54, 0, 0);
    let bg = BlueGreen::builder()
        .validator(gates.regression(0.01))
        .build("v1", live)
        .unwrap();
    let r = bg.validate_active();
    assert!(r.passed(), "{r}");
    assert_eq!(
        r.checks[0].detail,
        "the candidate v1 is the live model itself: nothing to compare"
    );
}

/// Collects what `tracing` prints while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().clone()).unwrap();
    (out, text)
}

#[test]
fn power_guidance_is_given_when_the_gates_are_built_with_the_examples_needed() {
    let gates = GoldenGates::new(golden(54), ByIndex);
    let (gate, log) = logged(|| gates.regression(0.01));
    let advice = gate
        .advice()
        .expect("54 examples cannot show a 1-point margin");
    assert_eq!(
        (advice.gate, advice.problem, advice.examples, advice.needed),
        ("regression", SizeProblem::NeverPasses, 54, Some(381))
    );
    let message = "regression: with 54 golden examples, non-inferiority at margin 0.01 (95% confidence) can never pass a candidate that is not better than live, even one predicting exactly like it; it needs at least 381 examples";
    assert_eq!(advice.to_string(), message);
    assert!(log.contains("WARN") && log.contains(message), "{log}");

    let tiny = GoldenGates::new(golden(4), ByIndex);
    let advice = tiny.not_worse(0.05).advice().cloned().unwrap();
    assert_eq!(
        (advice.problem, advice.needed),
        (SizeProblem::NeverFails, Some(5))
    );
    assert_eq!(
        advice.message,
        "regression: with 4 golden examples, not-worse at alpha 0.05 can never refuse a candidate: even one wrong on every example live gets right has p = 0.0625; it needs at least 5 examples"
    );

    let strict = gates.accuracy_with(ShareRule::LowerBound {
        min: 0.95,
        confidence: 0.95,
    });
    assert_eq!(
        strict
            .advice()
            .map(|a| (a.problem, a.needed, a.message.as_str())),
        Some((
            SizeProblem::NeverPasses,
            Some(73),
            "accuracy: with 54 golden examples, the lower end of the 95% Wilson interval stays below 0.95 even with every example right; it needs at least 73 examples"
        ))
    );
    let point = gates.regression_with(RegressionPolicy::PointEstimate { max_drop: 0.01 });
    assert_eq!(
        point.advice().map(|a| (a.problem, a.needed)),
        Some((SizeProblem::BelowOneExample, Some(100)))
    );

    // Bounds the set can resolve get no advice and log nothing.
    let large = GoldenGates::new(golden(450), ByIndex);
    let (quiet, log) = logged(|| {
        (
            large.regression(0.01),
            large.accuracy(0.95),
            large.not_worse(0.05),
        )
    });
    assert!(quiet.0.advice().is_none() && quiet.1.advice().is_none() && quiet.2.advice().is_none());
    assert!(log.is_empty(), "{log}");
}

#[test]
fn a_share_rule_on_the_lower_bound_refuses_what_a_small_set_cannot_show() {
    // Every one of 200 examples right: measured 1.0, but the Wilson lower end is
    // 200/(200 + z²) = 200/203.84 = 0.9812 < 0.99.
    let gates = GoldenGates::new(golden(200), ByIndex);
    let (live, cand) = pair(200, 0, 0);
    let bg = BlueGreen::builder()
        .validator(gates.accuracy(0.99))
        .validator(gates.accuracy_with(ShareRule::LowerBound {
            min: 0.99,
            confidence: 0.95,
        }))
        .build("v1", live)
        .unwrap();
    bg.stage("v2", cand).unwrap();
    let r = bg.validate().unwrap();
    let (measured, lower) = (&r.checks[0], &r.checks[1]);
    assert!(measured.passed(), "{r}");
    assert_eq!(
        measured.to_string().split(" [").next().unwrap(),
        "[pass] accuracy: 1.000000 (required >= 0.99) — 200 of 200 golden examples right; 95% Wilson interval"
    );
    assert!(!lower.passed(), "{r}");
    assert!(
        lower.detail.starts_with("200 of 200 golden examples right; 95% Wilson interval [0.9812, 1.0000]: its lower end is below 0.99; accuracy: with 200 golden examples"),
        "{}",
        lower.detail
    );
    // The interval is also a field of the check, for JSON and dashboards.
    let iv = lower
        .interval
        .expect("the accuracy gate reports its interval");
    assert_eq!(
        (iv.confidence, iv.method),
        (0.95, bluegreen::gates::IntervalMethod::Wilson)
    );
    assert!(
        (iv.low - 200.0 / (200.0 + 1.959_963_984_540_054_f64.powi(2))).abs() < 1e-9,
        "{iv:?}"
    );
    assert_eq!(iv.high, 1.0);
}

// ---------------------------------------------------------------------------------------
// Labels a model cannot predict.

/// One-hot scores over `width` classes on the row's index mod `width`; declares its
/// scores' shape when `declares`.
struct Scores {
    width: usize,
    declares: bool,
}

impl Model for Scores {
    type Input = Array2<f32>;
    type Output = Array2<f32>;
    type Error = std::convert::Infallible;

    fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>, Self::Error> {
        Ok(Array2::from_shape_fn((x.nrows(), self.width), |(r, k)| {
            f32::from(x[[r, 0]] as usize % self.width == k)
        }))
    }

    fn info(&self) -> ModelInfo {
        if !self.declares {
            return ModelInfo::default();
        }
        ModelInfo {
            outputs: vec![TensorSpec::new(
                "scores",
                ElementType::F32,
                vec![Dim::Dynamic(None), Dim::Fixed(self.width)],
            )],
            ..ModelInfo::default()
        }
    }
}

struct ScoreRows;

impl Binding<Scores> for ScoreRows {
    fn input(&self, rows: ArrayView2<'_, f32>) -> Array2<f32> {
        rows.to_owned()
    }
    fn read(&self, out: &Array2<f32>, _rows: usize) -> Result<Predictions, String> {
        Ok(Predictions::from_scores(out.clone()))
    }
}

/// 8 examples labelled `i % 4`, except row 5, labelled 7.
fn golden_with_label_7() -> GoldenSet {
    let inputs = Array2::from_shape_fn((8, 1), |(i, _)| i as f32);
    let labels = Array1::from_iter((0..8).map(|i| if i == 5 { 7 } else { (i % 4) as i64 }));
    GoldenSet::new(inputs).unwrap().with_labels(labels).unwrap()
}

#[test]
fn labels_the_candidate_cannot_predict_fail_accuracy_and_regression_without_classes_given() {
    for (declares, who) in [
        (true, "the model declares 4 classes"),
        (false, "the model returns 4 scores per example"),
    ] {
        let gates = GoldenGates::new(golden_with_label_7(), ScoreRows);
        let bg = BlueGreen::builder()
            .validator(gates.accuracy(0.5))
            .validator(gates.regression(0.9))
            .validator(gates.agreement(0.5))
            .build("v1", Scores { width: 4, declares })
            .unwrap();
        bg.stage("v2", Scores { width: 4, declares }).unwrap();
        let r = bg.validate().unwrap();
        let expected = format!(
            "label 7 at row 5 of `labels` in <in memory> is out of range 0..4: {who}, so no answer can match it"
        );
        assert_eq!(r.checks[0].detail, expected, "{r}");
        assert_eq!(r.checks[1].detail, expected, "{r}");
        assert!(!r.checks[0].passed() && !r.checks[1].passed());
        assert!(r.checks[2].passed(), "agreement does not read labels: {r}");
    }
}

#[test]
fn labels_are_checked_against_the_declared_classes_at_build_time() {
    let gates = GoldenGates::new(golden_with_label_7(), ScoreRows);
    let declared = Scores {
        width: 4,
        declares: true,
    };
    let err = gates.check_labels_against(&declared.info()).unwrap_err();
    assert!(
        matches!(
            err,
            GoldenError::LabelOutOfRange {
                row: 5,
                label: 7,
                classes: 4,
                ..
            }
        ),
        "{err:?}"
    );
    let wide = Scores {
        width: 8,
        declares: true,
    };
    assert_eq!(gates.check_labels_against(&wide.info()).unwrap(), Some(8));
    let silent = Scores {
        width: 4,
        declares: false,
    };
    assert_eq!(gates.check_labels_against(&silent.info()).unwrap(), None);
}

// ---------------------------------------------------------------------------------------

#[test]
fn calibration_reports_the_baselines_figures_and_bounds_derived_from_them() {
    // 200 examples, the baseline wrong on the first 10.
    let n = 200;
    let inputs = Array2::from_shape_fn((n, 1), |(i, _)| i as f32);
    let labels = Array1::from_iter((0..n).map(|i| (i % 3) as i64));
    let golden = GoldenSet::new(inputs).unwrap().with_labels(labels).unwrap();
    let gates = GoldenGates::new(golden, ByIndex);
    let answers = (0..n)
        .map(|i| ((i + usize::from(i < 10)) % 3) as i64)
        .collect();
    let cal = gates
        .calibrate("v1", &Answers(Arc::new(answers)), 0.95)
        .unwrap();

    let acc = cal.accuracy.unwrap();
    assert_eq!((acc.count, acc.n), (190, 200));
    // Wilson: centre (190 + 1.920729)/203.841459 = 0.941520, half 1.959964 · √(9.5 +
    // 0.960365)/203.841459 = 0.031098 → [0.910422, 0.972617]; suggested 0.91.
    assert!(
        (acc.interval.low - 0.910_421_851_861).abs() < 1e-9,
        "{cal:?}"
    );
    assert_eq!(cal.suggested.min_accuracy, Some(0.91));
    // Smallest margin z²/(n + z²) = 3.841459/203.841459 = 0.018845.
    assert!((cal.smallest_margin - 0.018_845_326_377).abs() < 1e-9);
    // An equally accurate candidate differing on 10 examples (5 each way): drop upper
    // bound 0.035772 (independent solve) → next multiple of 0.005 above: 0.04.
    assert_eq!(cal.differing, Some(10));
    assert!((cal.differing_margin.unwrap() - 0.035_772_270).abs() < 1e-7);
    assert_eq!(cal.suggested.max_drop, Some(0.04));
    // Agreement floor for a candidate passing accuracy(0.91): 0.91 + 0.95 − 1 = 0.86.
    assert_eq!(cal.suggested.min_agreement, Some(0.86));
    assert_eq!(cal.not_worse_refuses_from, Some(5));
    assert_eq!(cal.suggested.max_abs_error, None, "no expected outputs");
    let text = cal.to_string();
    assert!(text.starts_with("calibration of v1 on <in memory> (200 examples; 95% intervals)\n  accuracy: 0.950000 (190 of 200), 95% Wilson interval [0.9104, 0.9726]\n"), "{text}");
    assert!(text.contains("suggested regression(0.04)"), "{text}");
}
