//! Quality and regression gates over a golden set, and the evaluation they share.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use ndarray::{Array1, Array2, Axis};
use parking_lot::Mutex;

use super::quality::{AccuracyGate, AgreementGate, ShareRule};
use super::regression::{RegressionGate, RegressionPolicy};
use super::{Binding, Predictions};
use crate::model::Model;
use crate::model::ModelInfo;
use crate::validation::validate::{Bound, Context, Validator, Verdict};
use crate::validation::{GoldenError, GoldenSet};

/// How many evaluated models the cache keeps (candidate and live, with room to spare).
const CACHE_ENTRIES: usize = 4;

/// One model's predictions over the whole golden set.
pub(crate) struct Evaluation {
    pub(crate) labels: Array1<i64>,
    pub(crate) scores: Option<Array2<f32>>,
    /// Where the output disagreed with the model's declared schema, if anywhere.
    pub(crate) declared_mismatch: Option<String>,
}

type Cached = Arc<Result<Evaluation, String>>;

pub(crate) struct Shared<M: Model> {
    pub(crate) golden: Arc<GoldenSet>,
    pub(crate) binding: Arc<dyn Binding<M>>,
    pub(crate) batch: usize,
    /// The golden set as model inputs, one per batch, made on first use: every model
    /// evaluated after that runs on them without copying a row.
    inputs: OnceLock<Vec<(Range<usize>, M::Input)>>,
    /// Evaluations by generation, least recently used first: the live model's stays
    /// while candidates come and go.
    cache: Mutex<Vec<(u64, Cached)>>,
}

/// Golden rows offered for warm-up: one batch of this many, and one single row.
const WARM_UP_ROWS: usize = 8;

impl<M: Model> Shared<M> {
    /// Warm-up inputs made of golden rows (see [`Validator::warm_up_inputs`]): a small
    /// batch and a single row, the two shapes a service sends most.
    pub(crate) fn warm_up_inputs(&self) -> Vec<M::Input> {
        let mut batches = self.golden.batches(WARM_UP_ROWS);
        let Some((_, batch)) = batches.next() else {
            return Vec::new();
        };
        let single = batch.slice_axis(ndarray::Axis(0), ndarray::Slice::from(..1));
        vec![self.binding.input(batch), self.binding.input(single)]
    }

    /// The evaluation of the model with `generation`, computed once per model.
    pub(crate) fn evaluation(&self, generation: u64, model: &M, info: &ModelInfo) -> Cached {
        {
            let mut cache = self.cache.lock();
            if let Some(at) = cache.iter().position(|(g, _)| *g == generation) {
                let hit = cache.remove(at);
                let value = Arc::clone(&hit.1);
                cache.push(hit);
                return value;
            }
        }
        // Computed outside the lock: two gates racing on one model only waste work.
        let fresh: Cached = Arc::new(self.evaluate(model, info));
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((generation, Arc::clone(&fresh)));
        fresh
    }

    pub(crate) fn evaluate(&self, model: &M, info: &ModelInfo) -> Result<Evaluation, String> {
        let mut labels = Vec::with_capacity(self.golden.len());
        let mut scores: Vec<Array2<f32>> = Vec::new();
        let mut declared_mismatch = None;
        let inputs = self.inputs.get_or_init(|| {
            self.golden
                .batches(self.batch)
                .map(|(range, rows)| (range, self.binding.input(rows)))
                .collect()
        });
        for (range, input) in inputs {
            let (range, n) = (range.clone(), range.len());
            let output = model
                .predict(input)
                .map_err(|e| format!("model failed on golden rows {range:?}: {e}"))?;
            if declared_mismatch.is_none() {
                declared_mismatch = self.binding.check_declared(&output, info).err();
            }
            let p: Predictions = self
                .binding
                .read(&output, n)
                .map_err(|e| format!("unreadable output for golden rows {range:?}: {e}"))?;
            if p.labels.len() != n {
                return Err(format!(
                    "model returned {} labels for {n} golden rows {range:?}",
                    p.labels.len()
                ));
            }
            labels.extend(p.labels.iter().copied());
            if let Some(s) = p.scores {
                if s.nrows() != n {
                    return Err(format!(
                        "model returned {} score rows for {n} golden rows {range:?}",
                        s.nrows()
                    ));
                }
                if scores.first().is_some_and(|f| f.ncols() != s.ncols()) {
                    return Err(format!(
                        "score width changed between batches ({} then {})",
                        scores[0].ncols(),
                        s.ncols()
                    ));
                }
                scores.push(s);
            }
        }
        let scores = if scores.is_empty() {
            None
        } else {
            let views: Vec<_> = scores.iter().map(|s| s.view()).collect();
            Some(ndarray::concatenate(Axis(0), &views).map_err(|e| e.to_string())?)
        };
        Ok(Evaluation {
            labels: Array1::from(labels),
            scores,
            declared_mismatch,
        })
    }

    pub(crate) fn candidate(&self, cx: &Context<M>) -> Cached {
        self.evaluation(
            cx.candidate_generation(),
            cx.candidate(),
            cx.candidate_info(),
        )
    }

    pub(crate) fn live(&self, cx: &Context<M>) -> Cached {
        self.evaluation(cx.live_generation(), cx.live(), cx.live_info())
    }

    /// How many classes a model scores, and who says so: its declared count
    /// ([`Binding::classes`] on `info`), else the width of the scores it returned in
    /// `eval`. `None` when neither tells. (A count the golden set declares itself was
    /// checked when the labels were added.)
    pub(crate) fn model_classes(
        &self,
        info: &ModelInfo,
        eval: Option<&Evaluation>,
    ) -> Option<(usize, String)> {
        if let Some(k) = self.binding.classes(info) {
            return Some((k, format!("the model declares {k} classes")));
        }
        let width = eval?.scores.as_ref()?.ncols();
        Some((
            width,
            format!("the model returns {width} scores per example"),
        ))
    }

    /// Whether every golden label is a class the model (described by `info`, evaluated
    /// as `eval`) can predict; the reason when not.
    pub(crate) fn labels_fit(&self, info: &ModelInfo, eval: &Evaluation) -> Result<(), String> {
        let Some((classes, who)) = self.model_classes(info, Some(eval)) else {
            return Ok(());
        };
        self.golden
            .check_classes(classes)
            .map_err(|e| format!("{e}: {who}, so no answer can match it"))
    }
}

/// Makes golden-set gates that share one [`GoldenSet`], one [`Binding`] and an evaluation
/// cache. See the [module docs](crate::gates) for the list of gates.
///
/// ```
/// use bluegreen::gates::{Binding, GoldenGates, Predictions};
/// use bluegreen::{BlueGreen, GoldenSet, Model};
/// use ndarray::{array, Array1, Array2, ArrayView2};
///
/// /// Classifies a row by its largest feature.
/// struct ArgMax;
/// impl Model for ArgMax {
///     type Input = Array2<f32>;
///     type Output = Array2<f32>;
///     type Error = std::convert::Infallible;
///     fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>, Self::Error> { Ok(x.clone()) }
/// }
/// struct Rows;
/// impl Binding<ArgMax> for Rows {
///     fn input(&self, rows: ArrayView2<'_, f32>) -> Array2<f32> { rows.to_owned() }
///     fn read(&self, out: &Array2<f32>, _: usize) -> Result<Predictions, String> {
///         Ok(Predictions::from_scores(out.clone()))
///     }
/// }
///
/// let golden = GoldenSet::new(array![[0.9f32, 0.1], [0.2, 0.8]])?
///     .with_labels(Array1::from(vec![0i64, 1]))?;
/// let gates = GoldenGates::new(golden, Rows);
/// let bg = BlueGreen::builder()
///     .validator(gates.accuracy(0.95))
///     .validator(gates.agreement(0.9))
///     .build("v1", ArgMax)?;
/// bg.stage("v2", ArgMax)?;
/// let report = bg.swap()?.validation;
/// assert_eq!(report.check("accuracy").unwrap().measured, Some(1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct GoldenGates<M: Model> {
    pub(super) shared: Arc<Shared<M>>,
}

impl<M: Model> Clone for GoldenGates<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Model> GoldenGates<M> {
    /// Gates over `golden`, feeding models through `binding`, 256 examples per call.
    pub fn new(golden: impl Into<Arc<GoldenSet>>, binding: impl Binding<M>) -> Self {
        Self::with_batch_size(golden, binding, 256)
    }

    /// Like [`new`](Self::new), with `batch` examples per model call.
    pub fn with_batch_size(
        golden: impl Into<Arc<GoldenSet>>,
        binding: impl Binding<M>,
        batch: usize,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                golden: golden.into(),
                binding: Arc::new(binding),
                batch: batch.max(1),
                inputs: OnceLock::new(),
                cache: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The golden set.
    pub fn golden(&self) -> &GoldenSet {
        &self.shared.golden
    }

    /// Candidate accuracy against the true labels must be at least `min` (0..=1), as
    /// measured; the report shows it with its 95 % Wilson interval. See
    /// [`accuracy_with`](Self::accuracy_with) to require the interval's lower end instead.
    ///
    /// Labels the candidate cannot predict (at or above its declared number of classes,
    /// see [`Binding::classes`]) fail the gate, naming the first.
    pub fn accuracy(&self, min: f64) -> AccuracyGate<M> {
        self.accuracy_with(ShareRule::Measured { min })
    }

    /// Candidate accuracy by a [`ShareRule`].
    pub fn accuracy_with(&self, rule: ShareRule) -> AccuracyGate<M> {
        AccuracyGate::new(Arc::clone(&self.shared), rule)
    }

    /// Candidate scores must be within `max_abs` of the golden set's expected outputs
    /// (largest absolute difference; the mean is reported too).
    pub fn expected_outputs(&self, max_abs: f64) -> ExpectedOutputsGate<M> {
        ExpectedOutputsGate {
            shared: Arc::clone(&self.shared),
            max_abs,
        }
    }

    /// The candidate must be *non-inferior* to the live model, both measured now on the
    /// same golden set: the upper end of the 95 % paired interval of its accuracy drop
    /// must be below `max_drop` ([`RegressionPolicy::NonInferior`]) — the safe default for
    /// automatic promotion.
    ///
    /// A golden set too small to show that margin refuses every candidate not better than
    /// live; [`RegressionGate::advice`] says so (and how many examples it needs) when the
    /// gate is built. The measured-difference rule of earlier versions is
    /// `regression_with(RegressionPolicy::PointEstimate { max_drop })`.
    pub fn regression(&self, max_drop: f64) -> RegressionGate<M> {
        self.regression_with(RegressionPolicy::non_inferior(max_drop))
    }

    /// The candidate must not be *significantly worse* than the live model at level
    /// `alpha` (exact McNemar test on the discordant examples,
    /// [`RegressionPolicy::NotWorse`]).
    pub fn not_worse(&self, alpha: f64) -> RegressionGate<M> {
        self.regression_with(RegressionPolicy::NotWorse { alpha })
    }

    /// A regression gate with the given [`RegressionPolicy`].
    pub fn regression_with(&self, policy: RegressionPolicy) -> RegressionGate<M> {
        RegressionGate::new(Arc::clone(&self.shared), policy)
    }

    /// Candidate and live model must predict the same label on at least `min` (0..=1) of
    /// the golden examples, as measured; the report shows the share with its 95 % Wilson
    /// interval. See [`agreement_with`](Self::agreement_with).
    pub fn agreement(&self, min: f64) -> AgreementGate<M> {
        self.agreement_with(ShareRule::Measured { min })
    }

    /// Agreement with the live model by a [`ShareRule`].
    pub fn agreement_with(&self, rule: ShareRule) -> AgreementGate<M> {
        AgreementGate::new(Arc::clone(&self.shared), rule)
    }

    /// Checks the golden labels against the number of classes a model described by `info`
    /// declares ([`Binding::classes`]) before any gate runs, e.g. against the live model
    /// when the deployment is built. Returns the count (`None` when the model declares
    /// none). The accuracy and regression gates make the same check on every candidate,
    /// also against the width of the scores it returns.
    ///
    /// ```
    /// use bluegreen::gates::{Binding, GoldenGates, Predictions};
    /// use bluegreen::{Dim, ElementType, GoldenError, GoldenSet, Model, ModelInfo, TensorSpec};
    /// use ndarray::{array, Array2, ArrayView2};
    /// # struct Rows;
    /// # struct M;
    /// # impl Model for M {
    /// #     type Input = Array2<f32>; type Output = Array2<f32>; type Error = std::convert::Infallible;
    /// #     fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>, Self::Error> { Ok(x.clone()) }
    /// # }
    /// # impl Binding<M> for Rows {
    /// #     fn input(&self, rows: ArrayView2<'_, f32>) -> Array2<f32> { rows.to_owned() }
    /// #     fn read(&self, out: &Array2<f32>, _: usize) -> Result<Predictions, String> {
    /// #         Ok(Predictions::from_scores(out.clone()))
    /// #     }
    /// # }
    /// let golden = GoldenSet::new(array![[1f32, 0.0], [0.0, 1.0]])?.with_labels(array![0, 2])?;
    /// let gates = GoldenGates::new(golden, Rows);
    /// // The model scores 2 classes: label 2 can never be predicted.
    /// let info = ModelInfo {
    ///     outputs: vec![TensorSpec::new("scores", ElementType::F32, vec![Dim::Dynamic(None), Dim::Fixed(2)])],
    ///     ..ModelInfo::default()
    /// };
    /// let err = gates.check_labels_against(&info).unwrap_err();
    /// assert!(matches!(err, GoldenError::LabelOutOfRange { row: 1, label: 2, classes: 2, .. }));
    /// # Ok::<(), GoldenError>(())
    /// ```
    pub fn check_labels_against(&self, info: &ModelInfo) -> Result<Option<usize>, GoldenError> {
        match self.shared.model_classes(info, None) {
            Some((classes, _)) => self
                .shared
                .golden
                .check_classes(classes)
                .map(|()| Some(classes)),
            None => Ok(None),
        }
    }

    /// Outputs must be finite, probabilities in range and outputs as declared.
    pub fn sanity(&self) -> super::SanityGate<M> {
        super::SanityGate::new(Arc::clone(&self.shared))
    }

    /// Candidate p99 latency per single-example call must fit `budget`.
    pub fn latency(&self, budget: super::LatencyBudget) -> super::LatencyGate<M> {
        super::LatencyGate::new(Arc::clone(&self.shared), budget)
    }
}

/// Fails when a model could not be evaluated; otherwise hands the evaluation on.
macro_rules! evaluated {
    ($cached:expr, $who:literal) => {
        match &*$cached {
            Ok(e) => e,
            Err(msg) => return Verdict::fail(format!("{}: {msg}", $who)),
        }
    };
}
pub(crate) use evaluated;

/// Gate: max abs error vs expected outputs ≤ max. From [`GoldenGates::expected_outputs`].
pub struct ExpectedOutputsGate<M: Model> {
    shared: Arc<Shared<M>>,
    max_abs: f64,
}

impl<M: Model> Validator<M> for ExpectedOutputsGate<M> {
    fn name(&self) -> &str {
        "expected_outputs"
    }

    fn warm_up_inputs(&self) -> Vec<M::Input> {
        self.shared.warm_up_inputs()
    }

    fn validate(&self, cx: &Context<M>) -> Verdict {
        let Some(expected) = self.shared.golden.expected() else {
            return Verdict::fail("the golden set has no expected outputs");
        };
        let cand = self.shared.candidate(cx);
        let c = evaluated!(cand, "candidate");
        let Some(scores) = &c.scores else {
            return Verdict::fail("the candidate's output has no scores to compare");
        };
        let (max, mean) = match max_abs_error(scores, expected) {
            Ok(e) => e,
            Err(msg) => return Verdict::fail(msg),
        };
        Verdict::measure(max, Bound::AtMost(self.max_abs))
            .with_detail(format!("mean abs error {mean:.3e}"))
    }
}

/// Largest and mean absolute difference between `scores` and `expected` (NaN counts as
/// infinitely far), or why they cannot be compared.
pub(crate) fn max_abs_error(
    scores: &Array2<f32>,
    expected: &Array2<f32>,
) -> Result<(f64, f64), String> {
    if scores.dim() != expected.dim() {
        return Err(format!(
            "candidate scores have shape {:?}, expected outputs {:?}",
            scores.dim(),
            expected.dim()
        ));
    }
    let (mut max, mut sum) = (0f64, 0f64);
    for (a, b) in scores.iter().zip(expected) {
        let d = f64::from((a - b).abs());
        // NaN must fail, so it counts as infinitely far.
        let d = if d.is_nan() { f64::INFINITY } else { d };
        max = max.max(d);
        sum += d;
    }
    Ok((max, sum / expected.len().max(1) as f64))
}
