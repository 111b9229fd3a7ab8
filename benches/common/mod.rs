//! Shared in-process harness for the benches (`benches/*.rs`) and `examples/quickbench.rs`.
//!
//! Holds the models the measurements use, the read paths bluegreen is compared against,
//! a multi-threaded runner (readers released together by a barrier, an optional writer
//! replacing the model on a fixed schedule; `run_chunks_with` for paths with per-thread
//! state such as a bare ONNX Runtime session), the admin-operation timers, the memory
//! cycle driver, the shadow-traffic set-ups, the real-model (`onnx`) measurements — read
//! paths, first calls after a swap, validation throughput, shadowing — and small
//! statistics helpers. Keeping one copy here means the criterion benches and the quick
//! mode measure exactly the same thing.
//!
//! Included by the benches as `mod common;` and by the example through
//! `#[path = "../benches/common/mod.rs"] mod common;`.
#![allow(dead_code)]

mod admin;
mod busy_readers;
mod chunks;
mod cpu_time;
mod memory;
mod models;
mod read_paths;
mod runner;
mod shadow;
mod stats;

// The shared API, flat (`common::Load`, `common::median`, …). Each bench names only some of
// it, so a re-export one of them leaves unused is not a mistake.
#[allow(unused_imports)]
pub use self::{
    admin::{CYCLE_PARTS, CycleTimes, Pick, admin_cycle, trivial_deployment},
    busy_readers::{with_busy_readers, with_readers_running},
    chunks::{Chunk, MAX_ATTEMPTS, MAX_STALL, MIN_CPU_SHARE, MIN_OVERLAP, RunResult, charged_with},
    cpu_time::{thread_run_delay_ns, with_other_load},
    memory::{MemoryRun, Staging, memory_cycles, rss_bytes},
    models::{Census, Trivial, WEIGHTS_BYTES, Weights},
    read_paths::{
        AnyPath, ArcSwapLoad, ArcSwapLoadFull, ArcSwapSharedCounter, BlueGreenPredict, Direct,
        ParkingLotRwLock, PathKind, ReadPath, StdMutexClone, StdRwLock,
    },
    runner::{
        DEFAULT_CHUNK_CALLS, Load, WRITER_PERIOD, calibrate, run_chunks, run_chunks_with,
        run_concurrent,
    },
    shadow::{SHADOW_QUEUE, SHADOW_SLOW, ShadowMode, ShadowPath},
    stats::{median, nanos, percentile},
};

// ---------------------------------------------------------------------------------------
// ONNX: the real digits models
// ---------------------------------------------------------------------------------------

/// Measurements on the real models in `models/digits` (ONNX Runtime through `ort`).
///
/// Everything here first calls [`environment`](onnx::environment), which creates ONNX
/// Runtime's process-wide environment and hands it to bluegreen, so that bare sessions and
/// bluegreen's share it. Call nothing else that loads a model before.
#[cfg(feature = "onnx")]
pub mod onnx {
    use std::hint::black_box;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use bluegreen::gates::GoldenGates;
    use bluegreen::onnx::ndarray::{ArrayD, Axis};
    use bluegreen::onnx::ort;
    use bluegreen::onnx::ort::environment::Environment;
    use bluegreen::onnx::ort::session::Session;
    use bluegreen::onnx::ort::session::builder::GraphOptimizationLevel;
    use bluegreen::onnx::ort::value::TensorRef;
    use bluegreen::onnx::{Inputs, OnnxBinding, OnnxConfig, OnnxModel, Outputs};
    use bluegreen::shadow::{Comparison, Shadow, ShadowStatus};
    use bluegreen::{BlueGreen, GoldenSet, Model};

    use super::{
        Load, RunResult, SHADOW_QUEUE, median, nanos, percentile, run_chunks_with,
        thread_run_delay_ns,
    };

    /// Distinct single-row inputs the read-path loops cycle through.
    pub const ROWS: usize = 16;
    /// Sessions per `OnnxModel` (one per core here; the default on this machine).
    pub const POOL: usize = 2;

    pub fn model_path(version: u32) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("models/digits/{version}/model.onnx"))
    }

    /// The held-out digits golden set (450 rows of 64 features, labels).
    pub fn golden() -> GoldenSet {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/digits/golden.npz");
        GoldenSet::from_npz(&path).expect("models/digits/golden.npz")
    }

    /// The first `n` golden rows, each as a `[1, 64]` array.
    pub fn single_rows(golden: &GoldenSet, n: usize) -> Vec<ArrayD<f32>> {
        golden
            .inputs()
            .outer_iter()
            .take(n)
            .map(|row| row.to_owned().insert_axis(Axis(0)).into_dyn())
            .collect()
    }

    /// ONNX Runtime's process-wide environment, shared by bluegreen's sessions and the bare
    /// ones built here. bluegreen keeps the environment it creates in `init_runtime()` to
    /// itself, and ort allows one per process, so it is created here with bluegreen's
    /// settings (name, telemetry off) and handed to bluegreen with `init_runtime_with`;
    /// `init_runtime()` then confirms bluegreen uses it.
    pub fn environment() -> &'static Environment {
        static ENV: OnceLock<Environment> = OnceLock::new();
        ENV.get_or_init(|| {
            let env = ort::init()
                .with_name("bluegreen")
                .with_telemetry(false)
                .build()
                .unwrap_or_else(|e| {
                    panic!(
                        "ONNX Runtime: {e}; to fix: {}",
                        bluegreen::onnx::RUNTIME_FIX
                    )
                });
            bluegreen::onnx::init_runtime_with(env.clone())
                .expect("bluegreen's runtime must not exist yet: load models after this");
            bluegreen::onnx::init_runtime().expect("ONNX Runtime");
            env
        })
    }

    /// A session built the way `OnnxModel` builds each of its pooled ones (same
    /// environment, 1 intra-op thread, all graph optimizations), to be used bare.
    pub fn bare_session(version: u32) -> Session {
        fn fail(what: &str, e: impl std::fmt::Display) -> ! {
            panic!("bare session: {what}: {e}")
        }
        let builder = Session::builder(environment()).unwrap_or_else(|e| fail("builder", e));
        let builder = builder
            .with_intra_threads(1)
            .unwrap_or_else(|e| fail("intra threads", e));
        let mut builder = builder
            .with_optimization_level(GraphOptimizationLevel::All)
            .unwrap_or_else(|e| fail("optimization level", e));
        builder
            .commit_from_file(model_path(version))
            .unwrap_or_else(|e| fail("load", e))
    }

    /// One bare `session.run` on one `[1, 64]` row; returns the number of outputs.
    #[inline]
    pub fn bare_run(session: &mut Session, x: &ArrayD<f32>) -> u64 {
        let value = TensorRef::from_array_view(x).expect("tensor");
        let outputs = session.run(ort::inputs![value]).expect("run");
        outputs.len() as u64
    }

    /// `version` as an `OnnxModel` of `pool` sessions, 1 intra-op thread each.
    pub fn load_model(version: u32, pool: usize) -> OnnxModel {
        environment();
        config(pool).load(model_path(version)).expect("load model")
    }

    fn config(pool: usize) -> OnnxConfig {
        OnnxConfig::new().pool_size(pool).intra_threads(1)
    }

    /// One `OnnxModel::predict`; returns the number of outputs.
    #[inline]
    pub fn model_run(model: &OnnxModel, x: &Inputs) -> u64 {
        model.predict(x).expect("predict").len() as u64
    }

    /// One `BlueGreen::predict`; returns the number of outputs.
    #[inline]
    pub fn bluegreen_run(bg: &BlueGreen<OnnxModel>, x: &Inputs) -> u64 {
        bg.predict(x).expect("predict").len() as u64
    }

    /// How a request reaches the digits model.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OnnxPath {
        /// A bare ort `Session::run` loop (one session per reader thread).
        Bare,
        /// `OnnxModel::predict` (session pool, input checks).
        Model,
        /// `BlueGreen<OnnxModel>::predict`.
        BlueGreen,
    }

    impl OnnxPath {
        pub const ALL: [OnnxPath; 3] = [OnnxPath::Bare, OnnxPath::Model, OnnxPath::BlueGreen];

        pub fn name(self) -> &'static str {
            match self {
                OnnxPath::Bare => "bare_session",
                OnnxPath::Model => "onnxmodel",
                OnnxPath::BlueGreen => "bluegreen_onnx",
            }
        }
    }

    /// The three read paths on one model version, warmed, ready to run. `OnnxModel::predict`
    /// is called on the very model the deployment serves (`bg.active().model()`), so that
    /// `bluegreen_onnx / onnxmodel` compares one model instance with itself: two instances
    /// (or two bare sessions) of one model differ by a few percent from run to run here.
    pub struct OnnxBench {
        arrays: Vec<ArrayD<f32>>,
        inputs: Vec<Inputs>,
        /// One bare session per possible reader.
        bare: Vec<Session>,
        bg: BlueGreen<OnnxModel>,
    }

    impl OnnxBench {
        pub fn new(version: u32) -> Self {
            let arrays = single_rows(&golden(), ROWS);
            let inputs: Vec<Inputs> = arrays.iter().cloned().map(Inputs::single).collect();
            let mut bare: Vec<Session> = (0..POOL).map(|_| bare_session(version)).collect();
            for session in &mut bare {
                for x in &arrays {
                    bare_run(session, x);
                }
            }
            let bg = BlueGreen::builder()
                .warmup_samples(inputs.clone())
                .build(version.to_string(), load_model(version, POOL))
                .expect("deployment");
            Self {
                arrays,
                inputs,
                bare,
                bg,
            }
        }

        /// `readers` threads (1 or 2) call `path` in `chunks` chunks of `chunk_calls`
        /// calls each; see [`run_chunks_with`](super::run_chunks_with).
        pub fn run(
            &mut self,
            path: OnnxPath,
            readers: usize,
            chunks: usize,
            chunk_calls: u64,
        ) -> RunResult {
            let load = Load {
                readers,
                writer: None,
            };
            let (arrays, inputs) = (&self.arrays, &self.inputs);
            let row = |x: u64| (x as usize) % ROWS;
            let mut stateless = vec![(); readers];
            match path {
                OnnxPath::Bare => run_chunks_with(
                    load,
                    chunks,
                    chunk_calls,
                    &mut self.bare[..readers],
                    |session, x| bare_run(session, &arrays[row(x)]),
                    || {},
                ),
                OnnxPath::Model => {
                    let active = self.bg.active();
                    let model = active.model();
                    run_chunks_with(
                        load,
                        chunks,
                        chunk_calls,
                        &mut stateless,
                        |_, x| model_run(model, &inputs[row(x)]),
                        || {},
                    )
                }
                OnnxPath::BlueGreen => {
                    let bg = &self.bg;
                    run_chunks_with(
                        load,
                        chunks,
                        chunk_calls,
                        &mut stateless,
                        |_, x| bluegreen_run(bg, &inputs[row(x)]),
                        || {},
                    )
                }
            }
        }

        /// Calls per chunk so that one chunk of the bare path takes about `target`.
        pub fn calibrate(&mut self, target: Duration) -> u64 {
            let r = self.run(OnnxPath::Bare, 1, 3, 200);
            let per_call = median(
                &r.chunks
                    .iter()
                    .map(|c| c.wall_ns_per_call)
                    .collect::<Vec<_>>(),
            );
            ((nanos(target) / per_call.max(1.0)) as u64).clamp(64, 1 << 20)
        }
    }

    // -- first requests after a swap ----------------------------------------------------

    /// Requests timed right after a swap (and per steady-state window).
    pub const FIRST: usize = 100;
    /// Golden rows configured as warm-up samples in the warm configuration.
    pub const WARMUP_SAMPLES: usize = 16;
    /// Untimed calls on v1 before the swap (from the measuring thread, like a running
    /// service), and on v2 between the first window and the steady-state windows.
    pub const SETTLE_CALLS: usize = 1000;
    /// Steady-state windows of [`FIRST`] calls.
    pub const STEADY_WINDOWS: usize = 20;

    /// What one freshly loaded, swapped-in model showed.
    #[derive(Debug, Clone, Copy)]
    pub struct AfterSwap {
        /// p99 (nearest rank: the 99th of 100) of the first [`FIRST`] single-row calls, ns.
        pub first_p99: f64,
        /// The slowest of those calls, ns.
        pub first_max: f64,
        /// Steady-state p99 of the same model: the median over [`STEADY_WINDOWS`] windows
        /// of [`FIRST`] calls (after [`SETTLE_CALLS`]) of each window's p99, ns — the same
        /// statistic as `first_p99`, over windows in which the thread was not preempted.
        pub steady_p99: f64,
        /// Whether the first window was preempted in every attempt (its figure then includes
        /// waiting for a CPU).
        pub preempted: bool,
    }

    /// Single-row inputs: all 450 golden rows.
    pub fn golden_inputs() -> Vec<Inputs> {
        let golden = golden();
        single_rows(&golden, golden.len())
            .into_iter()
            .map(Inputs::single)
            .collect()
    }

    /// Times [`FIRST`] single-row `predict`s (each call separately); `true` if the thread
    /// was preempted meanwhile (Linux schedstat).
    fn timed_window(bg: &BlueGreen<OnnxModel>, rows: &[Inputs], offset: usize) -> (Vec<f64>, bool) {
        let before = thread_run_delay_ns();
        let times = (0..FIRST)
            .map(|i| {
                let x = &rows[(offset + i) % rows.len()];
                let started = Instant::now();
                let n = bluegreen_run(bg, x);
                let ns = nanos(started.elapsed());
                black_box(n);
                ns
            })
            .collect();
        let preempted = matches!((before, thread_run_delay_ns()), (Some(a), Some(b)) if b > a);
        (times, preempted)
    }

    /// Loads digits v1 into a deployment (with [`WARMUP_SAMPLES`] golden rows as warm-up
    /// samples if `warm`) and serves [`SETTLE_CALLS`] calls on it, stages a freshly loaded
    /// v2 with `stage_with`, swaps, and times the first [`FIRST`] calls, then the steady
    /// state of the same model, all from the calling thread. A trial whose first
    /// window was preempted is redone with a fresh load, up to `attempts` times.
    pub fn after_swap(warm: bool, rows: &[Inputs], attempts: usize) -> AfterSwap {
        let mut last = None;
        for _ in 0..attempts.max(1) {
            let mut builder = BlueGreen::builder();
            if warm {
                builder = builder.warmup_samples(rows[..WARMUP_SAMPLES].to_vec());
            }
            let bg = builder.build("1", load_model(1, POOL)).expect("deployment");
            // A running service: this thread has been serving v1 (so per-thread state such
            // as ONNX Runtime's thread-local GEMM buffers exists) when v2 is swapped in.
            for i in 0..SETTLE_CALLS {
                black_box(bluegreen_run(&bg, &rows[i % rows.len()]));
            }
            bg.stage_with("2", || config(POOL).load(model_path(2)))
                .expect("stage");
            bg.swap().expect("swap");
            let (first, preempted) = timed_window(&bg, rows, WARMUP_SAMPLES);
            for i in 0..SETTLE_CALLS {
                black_box(bluegreen_run(&bg, &rows[i % rows.len()]));
            }
            let (mut clean, mut all) = (Vec::new(), Vec::new());
            for w in 0..STEADY_WINDOWS {
                let (times, p) = timed_window(&bg, rows, w * FIRST);
                let p99 = percentile(&times, 99.0);
                all.push(p99);
                if !p {
                    clean.push(p99);
                }
            }
            let result = AfterSwap {
                first_p99: percentile(&first, 99.0),
                first_max: first.iter().copied().fold(0.0, f64::max),
                steady_p99: median(if clean.is_empty() { &all } else { &clean }),
                preempted,
            };
            if !preempted {
                return result;
            }
            last = Some(result);
        }
        last.expect("at least one attempt")
    }

    // -- validation throughput ----------------------------------------------------------

    /// Golden rows per model call in the validation measurements (GoldenGates' default).
    pub const VALIDATION_BATCH: usize = 256;

    /// Times of one validation round.
    #[derive(Debug, Clone, Copy)]
    pub struct ValidationRound {
        /// `bg.validate()` wall time: the accuracy gate over the golden set on a freshly
        /// staged v2 (its own thread, the binding's copies, reading the outputs).
        pub validate: Duration,
        /// The report's own `elapsed`.
        pub report: Duration,
        /// `OnnxModel::predict` over the same rows in the same batches, on another freshly
        /// loaded v2 (first pass: as cold as the validated candidate).
        pub raw_cold: Duration,
        /// The same again on that model (second pass: warm).
        pub raw_warm: Duration,
    }

    /// A deployment (v1 live) whose accuracy gate runs over the golden set.
    pub struct ValidationBench {
        bg: BlueGreen<OnnxModel>,
        batches: Vec<Inputs>,
        rows: usize,
        seq: u64,
    }

    impl Default for ValidationBench {
        fn default() -> Self {
            Self::new()
        }
    }

    impl ValidationBench {
        pub fn new() -> Self {
            environment();
            let gates =
                GoldenGates::with_batch_size(golden(), OnnxBinding::classifier(), VALIDATION_BATCH);
            let batches = gates
                .golden()
                .batches(VALIDATION_BATCH)
                .map(|(_, rows)| Inputs::single(rows.to_owned()))
                .collect();
            let rows = gates.golden().len();
            let bg = BlueGreen::builder()
                .validator(gates.accuracy(0.9))
                .build("1", load_model(1, POOL))
                .expect("deployment");
            Self {
                bg,
                batches,
                rows,
                seq: 0,
            }
        }

        /// Golden rows per evaluation.
        pub fn rows(&self) -> usize {
            self.rows
        }

        /// Stages a fresh v2 (gates cache results per loaded model, so each round needs a
        /// new one), times `validate()`, then raw predicts on another fresh v2.
        pub fn round(&mut self) -> ValidationRound {
            self.seq += 1;
            self.bg
                .stage_with(format!("2-{}", self.seq), || {
                    config(POOL).load(model_path(2))
                })
                .expect("stage");
            let started = Instant::now();
            let report = self.bg.validate().expect("validate");
            let validate = started.elapsed();
            assert!(
                report.passed(),
                "v2 must pass: {}",
                report.failure_summary()
            );
            let model = load_model(2, POOL);
            let raw = |m: &OnnxModel| {
                let started = Instant::now();
                for batch in &self.batches {
                    black_box(model_run(m, batch));
                }
                started.elapsed()
            };
            let raw_cold = raw(&model);
            let raw_warm = raw(&model);
            ValidationRound {
                validate,
                report: report.elapsed,
                raw_cold,
                raw_warm,
            }
        }
    }

    // -- shadow with real models --------------------------------------------------------

    /// The live answer a mirrored ONNX request keeps: its labels (`Outputs` is not `Clone`,
    /// so the shadow uses `Shadow::summarized`; `Inputs` is `Clone`).
    pub fn labels(out: &Outputs) -> Vec<i64> {
        out.i64("label")
            .map(|a| a.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Shadow set-up of an [`OnnxShadow`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OnnxShadowMode {
        /// No shadow configured.
        None,
        /// Every call mirrored through a queue of [`SHADOW_QUEUE`] to a worker held
        /// [`SHADOW_SLOW`](super::SHADOW_SLOW) per mirror: saturated, and the worker sleeps
        /// rather than competing for a core, so what remains is the caller's own cost.
        Saturated,
        /// Every call mirrored through a queue of [`SHADOW_QUEUE`] to the real v2, run flat
        /// out by the worker on the other core (on a 2-core machine, that costs the caller
        /// shared caches and memory bandwidth too).
        Real,
    }

    impl OnnxShadowMode {
        pub fn name(self) -> &'static str {
            match self {
                OnnxShadowMode::None => "none",
                OnnxShadowMode::Saturated => "saturated",
                OnnxShadowMode::Real => "real",
            }
        }
    }

    /// Digits v1 live, v2 staged (pool of [`POOL`] each, warmed), with the shadow set-up of
    /// an [`OnnxShadowMode`].
    pub struct OnnxShadow {
        bg: BlueGreen<OnnxModel>,
        inputs: Vec<Inputs>,
    }

    impl OnnxShadow {
        pub fn new(mode: OnnxShadowMode) -> Self {
            let inputs: Vec<Inputs> = single_rows(&golden(), ROWS)
                .into_iter()
                .map(Inputs::single)
                .collect();
            let mut builder = BlueGreen::builder().warmup_samples(inputs.clone());
            if mode != OnnxShadowMode::None {
                let slow = mode == OnnxShadowMode::Saturated;
                let compare = move |candidate: &Outputs, live: &Vec<i64>| {
                    if slow {
                        std::thread::sleep(super::SHADOW_SLOW);
                    }
                    Comparison {
                        agree: labels(candidate) == *live,
                        abs_diff: 0.0,
                    }
                };
                builder = builder
                    .shadow(Shadow::summarized(1.0, labels, compare).queue_capacity(SHADOW_QUEUE));
            }
            let bg = builder.build("1", load_model(1, POOL)).expect("deployment");
            let candidate = load_model(2, POOL);
            candidate.warm_up(&inputs).expect("warm-up");
            bg.stage("2", candidate).expect("stage");
            Self { bg, inputs }
        }

        /// One reader calling `predict` in `chunks` chunks of `chunk_calls` calls.
        pub fn run(&self, chunks: usize, chunk_calls: u64) -> RunResult {
            let (bg, inputs) = (&self.bg, &self.inputs);
            run_chunks_with(
                Load::ONE,
                chunks,
                chunk_calls,
                &mut [()],
                |_, x| bluegreen_run(bg, &inputs[(x as usize) % ROWS]),
                || {},
            )
        }

        /// The shadow's counters for v2 (`None` without a shadow).
        pub fn shadow(&self) -> Option<ShadowStatus> {
            self.bg.status().shadow
        }

        /// The copies one mirrored call makes before its enqueue is attempted (input clone,
        /// kept labels, boxed), ns per call over `n` calls: what a saturated shadow throws
        /// away for every dropped mirror.
        pub fn mirror_copy_ns(&self, n: usize) -> f64 {
            let out = self.bg.predict(&self.inputs[0]).expect("predict");
            let started = Instant::now();
            for i in 0..n {
                let input = self.inputs[i % ROWS].clone();
                let kept: Box<dyn std::any::Any + Send> = Box::new(labels(&out));
                black_box((input, kept));
            }
            nanos(started.elapsed()) / n.max(1) as f64
        }
    }
}
