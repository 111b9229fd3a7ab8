//! [`BlueGreen`]: the two-slot deployment, its [`Builder`] and the [`Active`] pin.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::report::{RollbackReport, StageReport, SwapReport};
use crate::retire::Retirer;
use crate::schema::ModelInfo;
use crate::slot::Slot;
use crate::status::{SlotState, SlotStatus, Status};
use crate::supervise::{self, Supervised};
use crate::validate::{self, ValidationReport, Validator};

/// Longest accepted version label, in bytes.
const MAX_VERSION_LEN: usize = 256;

/// A model deployment with two resident slots: **active** (blue, serving every request)
/// and **standby** (green: a staged candidate, or the previous model kept for rollback).
///
/// Share one `BlueGreen` across the service with an `Arc`; every operation takes `&self`.
/// Request threads call [`predict`](Self::predict) (or pin a version with
/// [`active`](Self::active)); an admin path calls [`stage`](Self::stage),
/// [`swap`](Self::swap) and [`rollback`](Self::rollback). Admin operations are serialized
/// among themselves and never block a request.
///
/// # Example
///
/// ```
/// use bluegreen::{validate, BlueGreen, Error, Model};
///
/// struct Scale(f32);
/// impl Model for Scale {
///     type Input = f32;
///     type Output = f32;
///     type Error = std::convert::Infallible;
///     fn predict(&self, x: &f32) -> Result<f32, Self::Error> { Ok(self.0 * x) }
/// }
///
/// // A gate: the candidate must map 1.0 to something positive.
/// let positive = validate::from_fn("positive", |cx: &validate::Context<Scale>| {
///     let y = cx.candidate().predict(&1.0).unwrap();
///     if y > 0.0 { Ok(()) } else { Err(format!("f(1) = {y}")) }
/// });
/// let bg = BlueGreen::builder().validator(positive).build("v1", Scale(1.0))?;
/// assert_eq!(bg.predict(&3.0).unwrap(), 3.0);
///
/// // Stage and swap a good candidate: traffic moves, v1 stays loaded for rollback.
/// bg.stage("v2", Scale(2.0))?;
/// let report = bg.swap()?;
/// assert_eq!((report.from.as_str(), report.to.as_str()), ("v1", "v2"));
/// assert_eq!(bg.predict(&3.0).unwrap(), 6.0);
///
/// // A bad candidate is refused; v2 keeps serving.
/// bg.stage("v3", Scale(-1.0))?;
/// assert!(matches!(bg.swap(), Err(Error::ValidationFailed(_))));
/// assert_eq!(bg.predict(&3.0).unwrap(), 6.0);
///
/// // Instant rollback needs the previous model in standby; staging v3 replaced it,
/// // so stage v1 again to show it (in production you would roll back before staging).
/// bg.stage("v1-again", Scale(1.0))?;
/// bg.swap()?;
/// bg.rollback()?;
/// assert_eq!(bg.active().version(), "v2");
/// # Ok::<(), Error>(())
/// ```
pub struct BlueGreen<M: Model> {
    /// The one pointer request threads read.
    active: ArcSwap<Slot<M>>,
    /// Serializes admin operations (held across validation, which can be slow).
    admin: Mutex<()>,
    /// Standby slot and counters; held only briefly, so `status()` never waits on a swap.
    state: Mutex<State<M>>,
    config: Config<M>,
    /// Declared last: dropped after `active`, so it releases the final references.
    retirer: Retirer<M>,
}

struct Config<M: Model> {
    validators: Vec<Arc<dyn Validator<M>>>,
    validation_deadline: Duration,
    warmup: Arc<Vec<M::Input>>,
    warmup_deadline: Duration,
    drain_timeout: Duration,
}

struct State<M: Model> {
    standby: Option<Standby<M>>,
    swaps: u64,
    rollbacks: u64,
    rejections: u64,
    last_validation: Option<ValidationReport>,
    last_change: SystemTime,
}

struct Standby<M: Model> {
    slot: Arc<Slot<M>>,
    state: SlotState,
}

/// Configures a [`BlueGreen`]; from [`BlueGreen::builder`].
pub struct Builder<M: Model> {
    validators: Vec<Arc<dyn Validator<M>>>,
    validation_deadline: Duration,
    warmup: Vec<M::Input>,
    warmup_deadline: Duration,
    drain_timeout: Duration,
}

impl<M: Model> Default for Builder<M> {
    fn default() -> Self {
        Self {
            validators: Vec::new(),
            validation_deadline: Duration::from_secs(60),
            warmup: Vec::new(),
            warmup_deadline: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl<M: Model> Builder<M> {
    /// Adds a gate every candidate must pass before [`swap`](BlueGreen::swap) flips
    /// traffic. Gates run in the order they were added.
    pub fn validator(mut self, validator: impl Validator<M>) -> Self {
        self.validators.push(Arc::new(validator));
        self
    }

    /// Adds a gate shared with other deployments.
    pub fn shared_validator(mut self, validator: Arc<dyn Validator<M>>) -> Self {
        self.validators.push(validator);
        self
    }

    /// How long a gate may run before it fails as timed out (default 60 s). A gate can
    /// override it with [`Validator::deadline`].
    pub fn validation_deadline(mut self, deadline: Duration) -> Self {
        self.validation_deadline = deadline;
        self
    }

    /// Inputs replayed through every candidate (and the initial model) before it takes
    /// traffic, via [`Model::warm_up`]. Use a few representative requests.
    pub fn warmup_samples(mut self, samples: Vec<M::Input>) -> Self {
        self.warmup = samples;
        self
    }

    /// How long warm-up may take before the candidate is refused (default 60 s).
    pub fn warmup_deadline(mut self, deadline: Duration) -> Self {
        self.warmup_deadline = deadline;
        self
    }

    /// How long retiring a model waits for its in-flight calls and pins to finish
    /// (default 30 s). Past it, the operation fails with [`Error::DrainTimeout`] and the
    /// model stays loaded.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Starts the deployment with `model` active under the label `version`, after warming
    /// it with the configured samples.
    pub fn build(self, version: impl Into<String>, model: M) -> Result<BlueGreen<M>> {
        let version = checked_version(version.into())?;
        let config = Config {
            validators: self.validators,
            validation_deadline: self.validation_deadline,
            warmup: Arc::new(self.warmup),
            warmup_deadline: self.warmup_deadline,
            drain_timeout: self.drain_timeout,
        };
        let slot = Arc::new(Slot::new(model, version));
        warm(&config, &slot)?;
        tracing::info!(target: "bluegreen", version = %slot.version, "deployment started");
        Ok(BlueGreen {
            active: ArcSwap::new(slot),
            admin: Mutex::new(()),
            state: Mutex::new(State {
                standby: None,
                swaps: 0,
                rollbacks: 0,
                rejections: 0,
                last_validation: None,
                last_change: SystemTime::now(),
            }),
            config,
            retirer: Retirer::start()?,
        })
    }
}

impl<M: Model> BlueGreen<M> {
    /// A deployment with default settings and no gates.
    pub fn new(version: impl Into<String>, model: M) -> Result<Self> {
        Builder::default().build(version, model)
    }

    /// Configures a deployment: gates, warm-up, deadlines.
    pub fn builder() -> Builder<M> {
        Builder::default()
    }

    /// Runs the active model on `input`.
    ///
    /// The call runs entirely on the model that was active when it started, even if a
    /// swap or rollback happens meanwhile. It takes no lock and writes no memory shared
    /// with other request threads. The model's own error is returned unchanged.
    #[inline]
    pub fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        self.active.load().predict(input)
    }

    /// Pins the active model, for several calls on one version (request-level affinity).
    ///
    /// While the pin lives, that model is not retired (a later stage waits for it, up to
    /// the drain timeout). Keep pins short: a thread holding more than a few at once falls
    /// off arc-swap's fast path.
    ///
    /// ```
    /// # use bluegreen::{BlueGreen, Model};
    /// # struct Id; impl Model for Id { type Input = u8; type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, x: &u8) -> Result<u8, Self::Error> { Ok(*x) } }
    /// let bg = BlueGreen::new("v1", Id).unwrap();
    /// let pinned = bg.active();
    /// bg.stage("v2", Id).unwrap();
    /// bg.swap().unwrap();
    /// assert_eq!(pinned.version(), "v1"); // still on v1 after the swap
    /// assert_eq!(pinned.predict(&7).unwrap(), 7);
    /// assert_eq!(bg.active().version(), "v2");
    /// ```
    pub fn active(&self) -> Active<'_, M> {
        Active {
            slot: self.active.load(),
            _deployment: PhantomData,
        }
    }

    /// Puts `model` in the standby slot as the candidate `version`.
    ///
    /// If the standby slot is occupied (a previous model or an earlier candidate), that
    /// model is retired first: bluegreen waits up to the drain timeout for its in-flight
    /// calls, then has the retirer thread drop it. On [`Error::DrainTimeout`] nothing
    /// changes and `model` is dropped. Staging replaces the rollback target: roll back
    /// before staging if you need to.
    ///
    /// `model` already exists when this is called, so for a moment three models are in
    /// memory; use [`stage_with`](Self::stage_with) to load only after the old one is gone.
    pub fn stage(&self, version: impl Into<String>, model: M) -> Result<StageReport> {
        self.stage_with(version, move || Ok::<M, std::convert::Infallible>(model))
    }

    /// Like [`stage`](Self::stage), but calls `load` only after the standby slot has been
    /// retired and dropped, so at most two models are ever in memory. A loader error is
    /// returned as [`Error::Load`]; the standby slot is then empty.
    pub fn stage_with<F, E>(&self, version: impl Into<String>, load: F) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let version = checked_version(version.into())?;
        let _admin = self.admin.lock();
        if self.active.load().version == version {
            return Err(Error::VersionInUse {
                version: version.into(),
                slot: "active",
            });
        }
        let (retired, drain_wait) = match self.retire_standby()? {
            Some((v, wait)) => (Some(v), wait),
            None => (None, Duration::ZERO),
        };
        let load_started = Instant::now();
        let model = load().map_err(|e| {
            tracing::warn!(target: "bluegreen", %version, "candidate failed to load");
            Error::Load {
                version: version.to_string(),
                source: e.into(),
            }
        })?;
        let load_time = load_started.elapsed();
        let slot = Arc::new(Slot::new(model, version));
        let generation = slot.generation;
        let mut st = self.state.lock();
        let report = StageReport {
            version: slot.version.to_string(),
            generation,
            retired,
            drain_wait,
            load: load_time,
        };
        st.standby = Some(Standby {
            slot,
            state: SlotState::Staged,
        });
        st.last_change = SystemTime::now();
        drop(st);
        tracing::info!(target: "bluegreen", version = %report.version, generation,
            retired = ?report.retired, load = ?load_time, "candidate staged");
        Ok(report)
    }

    /// Retires whatever the standby slot holds (freeing its memory; rollback is then
    /// impossible). Returns the retired version, or `None` if the slot was empty.
    pub fn unstage(&self) -> Result<Option<String>> {
        let _admin = self.admin.lock();
        Ok(self.retire_standby()?.map(|(v, _)| v))
    }

    /// Runs every gate on the staged candidate without swapping (a dry run).
    ///
    /// Works on a staged or failed candidate and changes neither; the report is recorded
    /// as the status's last validation.
    pub fn validate(&self) -> Result<ValidationReport> {
        let _admin = self.admin.lock();
        let candidate = {
            let st = self.state.lock();
            match &st.standby {
                None => return Err(Error::NothingStaged),
                Some(s) if matches!(s.state, SlotState::Staged | SlotState::Failed) => {
                    Arc::clone(&s.slot)
                }
                Some(s) => return Err(not_a_candidate(s)),
            }
        };
        let report = self.run_gates(&candidate);
        self.state.lock().last_validation = Some(report.clone());
        Ok(report)
    }

    /// Validates and warms the staged candidate, then moves all new traffic to it with one
    /// atomic pointer store.
    ///
    /// Calls already running on the old model finish on it; the old model becomes the
    /// standby (state [`SlotState::Previous`]) so [`rollback`](Self::rollback) is instant.
    /// If a gate fails, panics or overruns, or warm-up fails, nothing changes for traffic:
    /// the candidate stays staged, marked [`SlotState::Failed`], and the error carries the
    /// report.
    pub fn swap(&self) -> Result<SwapReport> {
        let started = Instant::now();
        let _admin = self.admin.lock();
        let candidate = {
            let mut st = self.state.lock();
            match &mut st.standby {
                None => return Err(Error::NothingStaged),
                Some(s) if s.state == SlotState::Staged => {
                    s.state = SlotState::Validating;
                    Arc::clone(&s.slot)
                }
                Some(s) if s.state == SlotState::Failed => {
                    return Err(Error::CandidateFailed {
                        version: s.slot.version.to_string(),
                    });
                }
                Some(s) => return Err(not_a_candidate(s)),
            }
        };

        let report = self.run_gates(&candidate);
        if !report.passed() {
            self.reject(&report);
            return Err(Error::ValidationFailed(Box::new(report)));
        }

        let warm_started = Instant::now();
        if let Err(e) = warm(&self.config, &candidate) {
            self.reject(&report);
            return Err(e);
        }
        let warm_up = warm_started.elapsed();

        let flip_started = Instant::now();
        let old = self.active.swap(Arc::clone(&candidate));
        let flip = flip_started.elapsed();
        drop(candidate);

        let mut st = self.state.lock();
        let old_holders = (Arc::strong_count(&old) - 1) as u64;
        let from = old.version.to_string();
        st.standby = Some(Standby {
            slot: old,
            state: SlotState::Previous,
        });
        st.swaps += 1;
        st.last_validation = Some(report.clone());
        st.last_change = SystemTime::now();
        drop(st);

        let report = SwapReport {
            from,
            to: report.candidate.clone(),
            validation: report,
            warm_up,
            flip,
            total: started.elapsed(),
            old_holders,
        };
        tracing::info!(target: "bluegreen", from = %report.from, to = %report.to,
            validation = ?report.validation.elapsed, warm_up = ?warm_up, flip = ?flip,
            old_holders, "swapped");
        Ok(report)
    }

    /// Moves traffic back to the previous model at once, without re-validating it.
    ///
    /// The model rolled back from stays in standby as [`SlotState::RolledBack`]; it is not
    /// promoted again unless staged anew. Fails with [`Error::NothingToRollBack`] unless
    /// the standby slot holds the previous model.
    pub fn rollback(&self) -> Result<RollbackReport> {
        let _admin = self.admin.lock();
        let previous = {
            let st = self.state.lock();
            match &st.standby {
                Some(s) if s.state == SlotState::Previous => Arc::clone(&s.slot),
                other => {
                    return Err(Error::NothingToRollBack {
                        standby: other.as_ref().map(|s| s.state),
                    });
                }
            }
        };
        let flip_started = Instant::now();
        let old = self.active.swap(previous);
        let flip = flip_started.elapsed();

        let mut st = self.state.lock();
        let old_holders = (Arc::strong_count(&old) - 1) as u64;
        let from = old.version.to_string();
        let to = st
            .standby
            .as_ref()
            .map(|s| s.slot.version.to_string())
            .unwrap_or_default();
        st.standby = Some(Standby {
            slot: old,
            state: SlotState::RolledBack,
        });
        st.rollbacks += 1;
        st.last_change = SystemTime::now();
        drop(st);

        tracing::warn!(target: "bluegreen", %from, %to, ?flip, old_holders, "rolled back");
        Ok(RollbackReport {
            from,
            to,
            flip,
            old_holders,
        })
    }

    /// A snapshot of both slots and the deployment's counters. Never waits for a running
    /// swap's validation.
    pub fn status(&self) -> Status {
        let st = self.state.lock();
        let active = self.active.load_full();
        let active_status = slot_status(&active, SlotState::Active, None);
        drop(active);
        let standby = st.standby.as_ref().map(|s| {
            let holders = (Arc::strong_count(&s.slot) - 1) as u64;
            slot_status(&s.slot, s.state, Some(holders))
        });
        Status {
            active: active_status,
            standby,
            swaps: st.swaps,
            rollbacks: st.rollbacks,
            rejections: st.rejections,
            last_validation: st.last_validation.clone(),
            last_change: st.last_change,
        }
    }

    fn run_gates(&self, candidate: &Arc<Slot<M>>) -> ValidationReport {
        let live = self.active.load_full();
        let report = validate::run_all(
            &self.config.validators,
            candidate,
            &live,
            self.config.validation_deadline,
        );
        let level_ok = report.passed();
        if level_ok {
            tracing::info!(target: "bluegreen", candidate = %report.candidate,
                live = %report.live, gates = report.checks.len(), elapsed = ?report.elapsed,
                "validation passed");
        } else {
            tracing::warn!(target: "bluegreen", candidate = %report.candidate,
                live = %report.live, failed = %report.failure_summary(),
                elapsed = ?report.elapsed, "validation failed");
        }
        report
    }

    /// Marks the standby candidate failed after a refused swap.
    fn reject(&self, report: &ValidationReport) {
        let mut st = self.state.lock();
        if let Some(s) = st.standby.as_mut() {
            s.state = SlotState::Failed;
        }
        st.rejections += 1;
        st.last_validation = Some(report.clone());
        st.last_change = SystemTime::now();
    }

    /// Waits for the standby model to drain, then drops it on the retirer thread.
    /// Must be called with the admin lock held (nobody else can add references then).
    fn retire_standby(&self) -> Result<Option<(String, Duration)>> {
        let slot = match &self.state.lock().standby {
            None => return Ok(None),
            Some(s) => Arc::clone(&s.slot),
        };
        let started = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            // Ours plus the state's; anything beyond is a running call or a pin.
            let holders = (Arc::strong_count(&slot) - 2) as u64;
            if holders == 0 {
                break;
            }
            let waited = started.elapsed();
            if waited >= self.config.drain_timeout {
                tracing::warn!(target: "bluegreen", version = %slot.version, holders,
                    ?waited, "drain timed out; model kept");
                return Err(Error::DrainTimeout {
                    version: slot.version.to_string(),
                    holders,
                    waited,
                });
            }
            std::thread::sleep(pause.min(self.config.drain_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(5));
        }
        let drained = started.elapsed();
        {
            let mut st = self.state.lock();
            st.standby = None;
            st.last_change = SystemTime::now();
        }
        let version = slot.version.to_string();
        self.retirer.retire(slot);
        tracing::info!(target: "bluegreen", %version, drain = ?drained, "standby retired");
        Ok(Some((version, drained)))
    }
}

impl<M: Model> Drop for BlueGreen<M> {
    fn drop(&mut self) {
        // Hand both models to the retirer so their last references are released on its
        // thread; it drops them once `self.retirer` (the last field) shuts it down.
        self.retirer.hold_until_shutdown(self.active.load_full());
        if let Some(s) = self.state.get_mut().standby.take() {
            self.retirer.hold_until_shutdown(s.slot);
        }
    }
}

impl<M: Model> std::fmt::Debug for BlueGreen<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("BlueGreen")
            .field("active", &&*self.active.load().version)
            .field(
                "standby",
                &st.standby.as_ref().map(|s| (&*s.slot.version, s.state)),
            )
            .finish_non_exhaustive()
    }
}

/// The active model, pinned; from [`BlueGreen::active`].
///
/// Borrowing the deployment guarantees the model is released before the deployment is
/// dropped, so its last reference still goes through the retirer.
pub struct Active<'a, M: Model> {
    slot: arc_swap::Guard<Arc<Slot<M>>>,
    _deployment: PhantomData<&'a BlueGreen<M>>,
}

impl<M: Model> Active<'_, M> {
    /// Runs the pinned model (counted in the slot's statistics).
    #[inline]
    pub fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        self.slot.predict(input)
    }

    /// The pinned model's version label.
    pub fn version(&self) -> &str {
        &self.slot.version
    }

    /// The pinned model's generation (unique per load).
    pub fn generation(&self) -> u64 {
        self.slot.generation
    }

    /// The pinned model itself (calls made directly are not counted in statistics).
    pub fn model(&self) -> &M {
        &self.slot.model
    }

    /// What the pinned model declares about itself.
    pub fn info(&self) -> &ModelInfo {
        &self.slot.info
    }
}

fn checked_version(version: String) -> Result<Box<str>> {
    let reason = if version.trim().is_empty() {
        "must not be empty"
    } else if version.len() > MAX_VERSION_LEN {
        "must be at most 256 bytes"
    } else if version.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(version.into_boxed_str());
    };
    Err(Error::InvalidVersion { version, reason })
}

fn not_a_candidate<M: Model>(s: &Standby<M>) -> Error {
    Error::NotACandidate {
        version: s.slot.version.to_string(),
        state: s.state,
    }
}

/// Warms `slot` with the configured samples on a supervised thread.
fn warm<M: Model>(config: &Config<M>, slot: &Arc<Slot<M>>) -> Result<()> {
    if config.warmup.is_empty() {
        return Ok(());
    }
    let (s, samples) = (Arc::clone(slot), Arc::clone(&config.warmup));
    let started = Instant::now();
    let outcome = supervise::run("bluegreen-warmup", config.warmup_deadline, move || {
        s.model.warm_up(&samples).map_err(|e| e.to_string())
    });
    let reason = match outcome {
        Supervised::Done(Ok(())) => {
            tracing::info!(target: "bluegreen", version = %slot.version,
                samples = config.warmup.len(), elapsed = ?started.elapsed(), "warmed up");
            return Ok(());
        }
        Supervised::Done(Err(e)) => format!("error: {e}"),
        Supervised::Panicked(msg) => format!("panicked: {msg}"),
        Supervised::TimedOut => format!("exceeded its deadline of {:?}", config.warmup_deadline),
        Supervised::NotStarted(e) => format!("could not start: {e}"),
    };
    tracing::warn!(target: "bluegreen", version = %slot.version, %reason, "warm-up failed");
    Err(Error::WarmupFailed {
        version: slot.version.to_string(),
        reason,
    })
}

fn slot_status<M: Model>(slot: &Slot<M>, state: SlotState, holders: Option<u64>) -> SlotStatus {
    let t = slot.totals();
    SlotStatus {
        version: slot.version.to_string(),
        generation: slot.generation,
        state,
        in_flight: t.in_flight(),
        holders,
        requests: t.finished,
        errors: t.failed,
        loaded_at: slot.loaded_at,
        info: slot.info.clone(),
    }
}
