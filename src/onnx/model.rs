//! [`OnnxModel`]: a pool of ONNX Runtime sessions behind the [`Model`] trait.

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use ndarray::ArrayD;
use ort::session::builder::{PrepackedWeights, SessionBuilder};
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use parking_lot::Mutex;

use super::OnnxError;
use super::check::check;
use super::config::{OnnxConfig, Source};
use super::describe::describe;
use super::provider::{ExecutionProvider, commit, first_session};
use super::runtime::environment;
use super::tensor::{InputKey, Inputs, OutputValues, Outputs, Tensor};
use crate::{Dim, Model, ModelInfo, TensorSpec};

/// One pooled session. Only touched by the thread holding its lock.
struct Slot {
    session: Session,
    /// This slot's own copy of the output names, so that cloning the `Arc` into each
    /// [`Outputs`] only touches a cache line owned by this slot's usual thread.
    output_names: Arc<[String]>,
    /// Successful and failed `run`s on this session (diagnostics; see
    /// [`OnnxModel::runs_per_session`]).
    runs: u64,
}

/// An ONNX model served by a pool of ONNX Runtime sessions.
///
/// Implements [`Model`] with [`Inputs`] → [`Outputs`]. Many threads can call
/// [`predict`](Model::predict) at once: each call takes one session from the pool (see the
/// [module docs](super#concurrency-a-pool-of-sessions) for how, without shared writes), so up
/// to [`pool_size`](OnnxModel::pool_size) calls run in parallel.
///
/// ```no_run
/// use bluegreen::Model;
/// use bluegreen::onnx::{Inputs, OnnxModel, ndarray::Array2};
///
/// let model = OnnxModel::load("models/digits/2/model.onnx")?;
/// let out = model.predict(&Inputs::single(Array2::<f32>::zeros((1, 64))))?;
/// let label = out.i64("label")?;
/// let probabilities = out.f32("probabilities")?;
/// assert_eq!(probabilities.shape(), &[1, 10]);
/// # let _ = label;
/// # Ok::<(), bluegreen::onnx::OnnxError>(())
/// ```
pub struct OnnxModel {
    // Field order matters for drop: sessions go before the prepacked-weights container.
    slots: Box<[CachePadded<Mutex<Slot>>]>,
    /// The model's inputs, in graph order (also in `info`), resolved once at load.
    inputs: Box<[TensorSpec]>,
    input_names: Box<[String]>,
    info: ModelInfo,
    path: Option<PathBuf>,
    provider: ExecutionProvider,
    fallback: Option<String>,
    prepacked: Option<PrepackedWeights>,
}

impl OnnxModel {
    /// Loads the model file at `path` with the default [`OnnxConfig`].
    ///
    /// # Errors
    /// See [`OnnxConfig::load`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, OnnxError> {
        OnnxConfig::default().load(path)
    }

    /// Loads a model from the bytes of an `.onnx` file with the default [`OnnxConfig`].
    ///
    /// # Errors
    /// See [`OnnxConfig::load_from_memory`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnnxError> {
        OnnxConfig::default().load_from_memory(bytes)
    }

    /// A configuration to load with; same as [`OnnxConfig::new`].
    pub fn builder() -> OnnxConfig {
        OnnxConfig::new()
    }

    /// Number of sessions in the pool.
    pub fn pool_size(&self) -> usize {
        self.slots.len()
    }

    /// The file the model was loaded from (`None` when loaded from memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The model's input names, in graph order.
    pub fn input_names(&self) -> &[String] {
        &self.input_names
    }

    /// Whether the pool's sessions share a prepacked-weights container.
    pub fn shares_prepacked_weights(&self) -> bool {
        self.prepacked.is_some()
    }

    /// How many times each session in the pool has run (index = session), including warm-up
    /// runs and runs ONNX Runtime failed.
    ///
    /// A diagnostic: it briefly takes every session's lock, so don't call it on a request
    /// path. After [`warm_up`](Model::warm_up) with `k` samples on a fresh model, every
    /// entry is `k`.
    pub fn runs_per_session(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.lock().runs).collect()
    }

    pub(super) fn build(config: &OnnxConfig, source: Source<'_>) -> Result<Self, OnnxError> {
        if config.resolved_pool_size() == 0 {
            return Err(OnnxError::InvalidConfig(
                "pool_size must be at least 1".to_string(),
            ));
        }
        let env = environment()?;
        let prepacked = config.share_prepacked_weights.then(PrepackedWeights::new);
        let base = || -> Result<SessionBuilder, OnnxError> {
            let mut builder = Session::builder(env)
                .map_err(OnnxError::runtime)?
                .with_intra_threads(config.intra_threads)
                .map_err(OnnxError::runtime)?
                .with_optimization_level(config.optimization_level.into())
                .map_err(OnnxError::runtime)?;
            if let Some(weights) = &prepacked {
                builder = builder
                    .with_prepacked_weights(weights)
                    .map_err(OnnxError::runtime)?;
            }
            Ok(builder)
        };

        let (mut builder, first, provider, fallback) = first_session(config, source, &base)?;
        let pool_size = config.pool_size_on(&provider);
        let info = describe(&first, source, config.metadata_limits);
        let inputs: Box<[TensorSpec]> = info.inputs.clone().into_boxed_slice();
        let input_names: Box<[String]> = inputs.iter().map(|t| t.name.clone()).collect();
        let output_names: Vec<String> = first
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();

        let mut slots = Vec::with_capacity(pool_size);
        slots.push(slot(first, &output_names));
        for _ in 1..pool_size {
            let session = commit(&mut builder, source)?;
            slots.push(slot(session, &output_names));
        }
        tracing::debug!(
            path = ?source.path(),
            pool_size,
            %provider,
            shares_prepacked_weights = prepacked.is_some(),
            "loaded ONNX model"
        );

        Ok(Self {
            slots: slots.into_boxed_slice(),
            inputs,
            input_names,
            info,
            path: source.path(),
            provider,
            fallback,
            prepacked,
        })
    }

    /// Where the model runs: the configured
    /// [execution provider](OnnxConfig::execution_provider), or
    /// [`Cpu`](ExecutionProvider::Cpu) after a [fall back](OnnxConfig::cpu_fallback).
    pub fn execution_provider(&self) -> &ExecutionProvider {
        &self.provider
    }

    /// Why the configured execution provider could not be used, when the model fell back to
    /// the CPU; `None` when it runs where it was asked to.
    pub fn cpu_fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Checks `inputs` against the model and returns one tensor per model input, in graph
    /// order. Allocates nothing (for up to 8 inputs) unless it fails.
    fn resolve<'a>(&self, inputs: &'a Inputs) -> Result<Resolved<'a>, OnnxError> {
        let n = self.inputs.len();
        let entries = &inputs.entries;

        let mut resolved = Resolved::with_len(n);
        if let Some((InputKey::Only, t)) = entries.first() {
            if n != 1 || entries.len() != 1 {
                return Err(OnnxError::AmbiguousInput {
                    expected: self.input_names.to_vec(),
                });
            }
            resolved.set(0, t);
        } else {
            for (i, (key, tensor)) in entries.iter().enumerate() {
                let name = match key {
                    InputKey::Named(name) => name,
                    InputKey::Only => {
                        return Err(OnnxError::AmbiguousInput {
                            expected: self.input_names.to_vec(),
                        });
                    }
                };
                let Some(index) = self.input_names.iter().position(|n| n == name) else {
                    return Err(OnnxError::UnknownInput {
                        name: name.clone(),
                        expected: self.input_names.to_vec(),
                    });
                };
                let duplicate = entries[..i]
                    .iter()
                    .any(|(b, _)| matches!(b, InputKey::Named(n) if n == name));
                if duplicate {
                    return Err(OnnxError::DuplicateInput { name: name.clone() });
                }
                resolved.set(index, tensor);
            }
            if let Some(missing) = (0..n).find(|&i| resolved.get(i).is_none()) {
                return Err(OnnxError::MissingInput {
                    name: self.input_names[missing].clone(),
                    expected: self.input_names.to_vec(),
                });
            }
        }

        for (i, spec) in self.inputs.iter().enumerate() {
            if let Some(tensor) = resolved.get(i) {
                check(spec, tensor)?;
            }
        }
        Ok(resolved)
    }

    /// Takes a session: this thread's home slot if free, else any free slot (which becomes
    /// the new home), else waits for the home slot.
    fn with_slot<R>(&self, f: impl FnOnce(&mut Slot) -> R) -> R {
        let n = self.slots.len();
        let home = home_hint() % n;
        if let Some(mut guard) = self.slots[home].try_lock() {
            return f(&mut guard);
        }
        for k in 1..n {
            let i = if home + k >= n {
                home + k - n
            } else {
                home + k
            };
            if let Some(mut guard) = self.slots[i].try_lock() {
                set_home_hint(i);
                return f(&mut guard);
            }
        }
        let mut guard = self.slots[home].lock();
        f(&mut guard)
    }
}

/// Turns resolved tensors into ort input values (borrowing the arrays) and calls `f` with
/// them. Done before a session is taken, so the session lock is held only for the run.
fn with_values<R>(
    resolved: &Resolved<'_>,
    f: impl FnOnce(&[SessionInputValue<'_>]) -> Result<R, OnnxError>,
) -> Result<R, OnnxError> {
    match resolved.len {
        0 => f(&[]),
        1 => {
            let prepared = Prepared::new(resolved.get(0).ok_or_else(unresolved)?);
            let values = [prepared.value()?];
            f(&values)
        }
        n => {
            let prepared: Vec<Prepared<'_>> = (0..n)
                .map(|i| resolved.get(i).map(Prepared::new).ok_or_else(unresolved))
                .collect::<Result<_, _>>()?;
            let values: Vec<SessionInputValue<'_>> = prepared
                .iter()
                .map(Prepared::value)
                .collect::<Result<_, _>>()?;
            f(&values)
        }
    }
}

impl OnnxModel {
    /// The self warm-up of [`Model::warm_up`] without samples.
    fn warm_up_from_schema(&self) -> usize {
        let Some(input) = zeros_for(&self.inputs) else {
            tracing::warn!(target: "bluegreen", path = ?self.path,
                "cannot make warm-up inputs from the declared schema; not warmed");
            return 0;
        };
        let mut runs = 0;
        for slot in self.slots.iter() {
            let resolved = match self.resolve(&input) {
                Ok(r) => r,
                Err(_) => return runs,
            };
            let mut slot = slot.lock();
            if let Err(e) = with_values(&resolved, |values| run_values(&mut slot, values)) {
                tracing::warn!(target: "bluegreen", path = ?self.path, error = %e,
                    "self warm-up on zeros failed; the model is not fully warmed");
                return runs;
            }
            runs += 1;
        }
        runs
    }
}

/// Largest synthetic warm-up input, in elements per tensor.
const MAX_WARMUP_ELEMENTS: usize = 1 << 20;

/// One input of zeros per declared input (dynamic dimensions as 1), if every input can
/// be made.
fn zeros_for(specs: &[TensorSpec]) -> Option<Inputs> {
    let mut inputs = Inputs::new();
    for spec in specs {
        let shape: Vec<usize> = spec
            .shape
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Dynamic(_) => 1,
            })
            .collect();
        let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
        if elements > MAX_WARMUP_ELEMENTS {
            return None;
        }
        let tensor = match spec.dtype {
            crate::ElementType::F32 => Tensor::F32(ArrayD::zeros(shape)),
            crate::ElementType::I64 => Tensor::I64(ArrayD::zeros(shape)),
            _ => return None,
        };
        inputs.insert(spec.name.clone(), tensor);
    }
    Some(inputs)
}

impl Model for OnnxModel {
    type Input = Inputs;
    type Output = Outputs;
    type Error = OnnxError;

    fn predict(&self, input: &Inputs) -> Result<Outputs, OnnxError> {
        // The common case, one tensor for a one-input model, without the general resolution.
        if let ([spec], [(InputKey::Only, tensor)]) = (&*self.inputs, &*input.entries) {
            check(spec, tensor)?;
            let prepared = Prepared::new(tensor);
            let values = [prepared.value()?];
            return self.with_slot(|slot| run_values(slot, &values));
        }
        let resolved = self.resolve(input)?;
        with_values(&resolved, |values| {
            self.with_slot(|slot| run_values(slot, values))
        })
    }

    /// Runs every sample on **every** session of the pool, so that no request pays for a
    /// cold session; returns the number of runs. Stops at the first error.
    ///
    /// With no samples the model warms itself: one input of zeros per declared input
    /// (dynamic dimensions as 1), run once on every session. Inputs it cannot make — a
    /// type other than f32/i64, no declared shape, or more than 2^20 elements — mean no
    /// self warm-up (0 runs, logged); an error on those synthetic inputs ends it early,
    /// logged, without refusing the model (zeros are not a real request).
    fn warm_up(&self, samples: &[Inputs]) -> Result<usize, OnnxError> {
        if samples.is_empty() {
            return Ok(self.warm_up_from_schema());
        }
        let resolved = samples
            .iter()
            .map(|s| self.resolve(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut runs = 0;
        for slot in self.slots.iter() {
            let mut slot = slot.lock();
            for r in &resolved {
                with_values(r, |values| run_values(&mut slot, values))?;
                runs += 1;
            }
        }
        Ok(runs)
    }

    fn info(&self) -> ModelInfo {
        self.info.clone()
    }
}

impl fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("pool_size", &self.slots.len())
            .field("inputs", &self.info.inputs)
            .field("outputs", &self.info.outputs)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------
// hot-path helpers

/// Per-thread preferred slot: assigned once per thread from a process-wide counter (the only
/// shared write, once per thread), then moved to whichever slot the thread last found free.
static NEXT_HOME: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn home_hint() -> usize {
    HOME.try_with(|h| {
        let v = h.get();
        if v != usize::MAX {
            v
        } else {
            let v = NEXT_HOME.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            h.set(v);
            v
        }
    })
    .unwrap_or(0)
}

fn set_home_hint(i: usize) {
    let _ = HOME.try_with(|h| h.set(i));
}

/// Up to 8 inputs resolved without allocating; more spill to a `Vec`.
struct Resolved<'a> {
    len: usize,
    inline: [Option<&'a Tensor>; 8],
    spill: Vec<Option<&'a Tensor>>,
}

impl<'a> Resolved<'a> {
    fn with_len(len: usize) -> Self {
        Self {
            len,
            inline: [None; 8],
            spill: if len > 8 { vec![None; len] } else { Vec::new() },
        }
    }

    fn set(&mut self, i: usize, t: &'a Tensor) {
        if self.len > 8 {
            self.spill[i] = Some(t);
        } else {
            self.inline[i] = Some(t);
        }
    }

    fn get(&self, i: usize) -> Option<&'a Tensor> {
        if self.len > 8 {
            self.spill.get(i).copied().flatten()
        } else {
            self.inline.get(i).copied().flatten()
        }
    }
}

fn unresolved() -> OnnxError {
    OnnxError::Runtime {
        message: "internal error: input not resolved".to_string(),
    }
}

/// An input tensor in standard layout: borrowed when it already is (the common case, no
/// copy), copied into standard layout otherwise.
enum Prepared<'a> {
    F32(&'a ArrayD<f32>),
    I64(&'a ArrayD<i64>),
    OwnedF32(ArrayD<f32>),
    OwnedI64(ArrayD<i64>),
}

impl<'a> Prepared<'a> {
    fn new(t: &'a Tensor) -> Self {
        match t {
            Tensor::F32(a) if a.is_standard_layout() => Prepared::F32(a),
            Tensor::I64(a) if a.is_standard_layout() => Prepared::I64(a),
            Tensor::F32(a) => Prepared::OwnedF32(a.as_standard_layout().into_owned()),
            Tensor::I64(a) => Prepared::OwnedI64(a.as_standard_layout().into_owned()),
        }
    }

    fn value(&self) -> Result<SessionInputValue<'_>, OnnxError> {
        let value = match self {
            Prepared::F32(a) => TensorRef::from_array_view(*a).map(Into::into),
            Prepared::I64(a) => TensorRef::from_array_view(*a).map(Into::into),
            Prepared::OwnedF32(a) => TensorRef::from_array_view(a).map(Into::into),
            Prepared::OwnedI64(a) => TensorRef::from_array_view(a).map(Into::into),
        };
        value.map_err(OnnxError::runtime)
    }
}

fn run_values(slot: &mut Slot, values: &[SessionInputValue<'_>]) -> Result<Outputs, OnnxError> {
    slot.runs += 1;
    let outputs = slot.session.run(values).map_err(OnnxError::runtime)?;
    let collected: OutputValues = outputs.into_iter().map(|(_, v)| v).collect();
    Ok(Outputs::new(Arc::clone(&slot.output_names), collected))
}

// Load-time helpers.

fn slot(session: Session, output_names: &[String]) -> CachePadded<Mutex<Slot>> {
    CachePadded::new(Mutex::new(Slot {
        session,
        output_names: output_names.to_vec().into(),
        runs: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_spills_past_eight_inputs() {
        let t = Tensor::from(ndarray::Array1::<f32>::zeros(1));
        let mut r = Resolved::with_len(10);
        r.set(9, &t);
        assert!(r.get(9).is_some());
        assert!(r.get(0).is_none());
        assert!(r.get(10).is_none());
        let mut r = Resolved::with_len(2);
        r.set(1, &t);
        assert!(r.get(1).is_some() && r.get(0).is_none());
    }
}
