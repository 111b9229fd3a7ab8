//! [`BlueGreen`]: the two-slot deployment, its [`Builder`] and the [`Active`] pin.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::model::ModelInfo;
use crate::report::{CanaryReport, RollbackReport, StageReport, SwapReport};
use crate::retire::Retirer;
use crate::slot::Slot;
use crate::status::{SlotState, SlotStatus, Status};
use crate::traffic::bake::{AutoRollback, Bake, BakeStatus};
use crate::traffic::routing::{self, Affinity, Sessions};
use crate::traffic::shadow::{Shadow, ShadowRuntime};
use crate::validation::supervise::{self, Supervised};
use crate::validation::validate::{ValidationReport, Validator};

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
    inner: Arc<Inner<M>>,
    /// The bake monitor thread, when a bake window is configured.
    monitor: Option<Monitor>,
}

/// Everything the request threads, the admin path and the monitor thread share.
struct Inner<M: Model> {
    /// The one pointer plain `predict` reads.
    active: ArcSwap<Slot<M>>,
    /// The canary and its share, read by keyed requests while a canary runs.
    canary: ArcSwapOption<CanaryRoute<M>>,
    /// The previous model, read by keyed requests whose session is pinned to it.
    previous: ArcSwapOption<Slot<M>>,
    sessions: Option<Sessions>,
    shadow: Option<ShadowRuntime<M>>,
    /// Serializes admin operations (held across validation, which can be slow).
    admin: Mutex<()>,
    /// Standby slot and counters; held only briefly, so `status()` never waits on a swap.
    state: Mutex<State<M>>,
    config: Config<M>,
    /// Declared last: dropped after everything that may hold a model, so it releases the
    /// final references.
    retirer: Retirer<M>,
}

struct CanaryRoute<M: Model> {
    slot: Arc<Slot<M>>,
    basis_points: u32,
}

struct Monitor {
    stop: Option<crossbeam_channel::Sender<()>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

type RollbackHook = Arc<dyn Fn(&AutoRollback) + Send + Sync>;

struct Config<M: Model> {
    validators: Vec<Arc<dyn Validator<M>>>,
    validation_deadline: Duration,
    warmup: Arc<Vec<M::Input>>,
    warmup_deadline: Duration,
    drain_timeout: Duration,
    bake: Option<Bake>,
    on_auto_rollback: Option<RollbackHook>,
    timed: bool,
}

struct State<M: Model> {
    standby: Option<Standby<M>>,
    swaps: u64,
    rollbacks: u64,
    rejections: u64,
    auto_rollbacks: u64,
    last_validation: Option<ValidationReport>,
    last_auto_rollback: Option<AutoRollback>,
    bake: Option<BakeRun>,
    last_change: SystemTime,
}

struct Standby<M: Model> {
    slot: Arc<Slot<M>>,
    state: SlotState,
    /// Set exactly while `state` is `Canary`.
    canary: Option<CanaryRun>,
}

/// A running canary: its share and the report it passed (kept for promotion).
struct CanaryRun {
    basis_points: u32,
    validation: ValidationReport,
}

impl<M: Model> Standby<M> {
    fn new(slot: Arc<Slot<M>>, state: SlotState) -> Self {
        Self {
            slot,
            state,
            canary: None,
        }
    }
}

#[derive(Clone, Copy)]
struct BakeRun {
    generation: u64,
    started: Instant,
}

/// Configures a [`BlueGreen`]; from [`BlueGreen::builder`].
pub struct Builder<M: Model> {
    validators: Vec<Arc<dyn Validator<M>>>,
    validation_deadline: Duration,
    warmup: Vec<M::Input>,
    warmup_deadline: Duration,
    drain_timeout: Duration,
    bake: Option<Bake>,
    on_auto_rollback: Option<RollbackHook>,
    shadow: Option<Shadow<M>>,
    affinity: Option<Affinity>,
    track_latency: bool,
}

impl<M: Model> Default for Builder<M> {
    fn default() -> Self {
        Self {
            validators: Vec::new(),
            validation_deadline: Duration::from_secs(60),
            warmup: Vec::new(),
            warmup_deadline: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            bake: None,
            on_auto_rollback: None,
            shadow: None,
            affinity: None,
            track_latency: false,
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

    /// Watches every newly promoted model for a bake window and rolls back automatically
    /// on a breach; see [`Bake`]. Starts one monitor thread.
    pub fn bake(mut self, bake: Bake) -> Self {
        self.bake = Some(bake);
        self
    }

    /// Called (on the monitor thread) after every automatic rollback, e.g. to page someone.
    pub fn on_auto_rollback(
        mut self,
        hook: impl Fn(&AutoRollback) + Send + Sync + 'static,
    ) -> Self {
        self.on_auto_rollback = Some(Arc::new(hook));
        self
    }

    /// Mirrors a share of live calls to the staged candidate; see [`Shadow`]. Starts one
    /// worker thread.
    pub fn shadow(mut self, shadow: Shadow<M>) -> Self {
        self.shadow = Some(shadow);
        self
    }

    /// Keeps each session on the version that answered its first request; see
    /// [`Affinity`] and [`BlueGreen::predict_keyed`].
    pub fn affinity(mut self, affinity: Affinity) -> Self {
        self.affinity = Some(affinity);
        self
    }

    /// Times every call, so [`SlotStatus`] reports p50/p99 (a bake with latency limits
    /// turns this on by itself). Costs two clock reads per call.
    pub fn track_latency(mut self, on: bool) -> Self {
        self.track_latency = on;
        self
    }

    /// Starts the deployment with `model` active under the label `version`, after warming
    /// it with the configured samples.
    pub fn build(self, version: impl Into<String>, model: M) -> Result<BlueGreen<M>> {
        let version = checked_version(version.into())?;
        let timed = self.track_latency || self.bake.as_ref().is_some_and(Bake::times_calls);
        let config = Config {
            validators: self.validators,
            validation_deadline: self.validation_deadline,
            warmup: Arc::new(self.warmup),
            warmup_deadline: self.warmup_deadline,
            drain_timeout: self.drain_timeout,
            bake: self.bake,
            on_auto_rollback: self.on_auto_rollback,
            timed,
        };
        let slot = Arc::new(Slot::new(model, version, timed));
        warm(&config, &slot)?;
        let shadow = self
            .shadow
            .map(ShadowRuntime::start)
            .transpose()
            .map_err(|source| Error::Spawn {
                what: "shadow",
                source,
            })?;
        let inner = Arc::new(Inner {
            active: ArcSwap::new(slot),
            canary: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            sessions: self.affinity.as_ref().map(Sessions::new),
            shadow,
            admin: Mutex::new(()),
            state: Mutex::new(State {
                standby: None,
                swaps: 0,
                rollbacks: 0,
                rejections: 0,
                auto_rollbacks: 0,
                last_validation: None,
                last_auto_rollback: None,
                bake: None,
                last_change: SystemTime::now(),
            }),
            config,
            retirer: Retirer::start()?,
        });
        let monitor = match &inner.config.bake {
            Some(bake) => Some(Monitor::start(Arc::clone(&inner), bake.check_every)?),
            None => None,
        };
        tracing::info!(target: "bluegreen", version = %inner.active.load().version, "deployment started");
        Ok(BlueGreen { inner, monitor })
    }
}

impl Monitor {
    fn start<M: Model>(inner: Arc<Inner<M>>, every: Duration) -> Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name("bluegreen-bake".to_owned())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    inner.check_bake();
                }
            })
            .map_err(|source| Error::Spawn {
                what: "bake monitor",
                source,
            })?;
        Ok(Self {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            // The last `BlueGreen` can be released on the monitor thread itself (by an
            // auto-rollback hook holding it); a thread cannot join itself, and it is about
            // to leave its loop anyway now that `stop` is gone.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl<M: Model> BlueGreen<M> {
    /// A deployment with default settings and no gates.
    pub fn new(version: impl Into<String>, model: M) -> Result<Self> {
        Builder::default().build(version, model)
    }

    /// Configures a deployment: gates, warm-up, deadlines, bake, shadow, affinity.
    pub fn builder() -> Builder<M> {
        Builder::default()
    }

    /// Runs the active model on `input`.
    ///
    /// The call runs entirely on the model that was active when it started, even if a
    /// swap or rollback happens meanwhile. It takes no lock and writes no memory shared
    /// with other request threads. The model's own error is returned unchanged.
    // `always`: left to its heuristics, LLVM sometimes keeps this out of line in a hot
    // loop, which measured ~1 ns (15 %) of the trivial-model read path.
    #[inline(always)]
    pub fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        let inner = &*self.inner;
        inner.mirrored(input, inner.active.load().predict(input))
    }

    /// Runs the model this request `key` is routed to: the session's pinned version (with
    /// [`Affinity`]), else the canary if the key falls in its share, else the active model.
    ///
    /// Keys are hashed with xxh3, stable across processes, so every replica routes a key
    /// the same way. Without a canary or affinity this is [`predict`](Self::predict).
    ///
    /// ```
    /// # use bluegreen::{BlueGreen, Model};
    /// # struct Id(u8); impl Model for Id { type Input = (); type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, _: &()) -> Result<u8, Self::Error> { Ok(self.0) } }
    /// let bg = BlueGreen::new("v1", Id(1))?;
    /// bg.stage("v2", Id(2))?;
    /// bg.start_canary(10.0)?; // validated, warmed, 10 % of keys
    /// let on_canary = (0..10_000).filter(|u| bg.predict_keyed(format!("user-{u}"), &()) == Ok(2)).count();
    /// assert!((800..1200).contains(&on_canary));
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    pub fn predict_keyed(
        &self,
        key: impl AsRef<[u8]>,
        input: &M::Input,
    ) -> Result<M::Output, M::Error> {
        let inner = &*self.inner;
        let active = inner.active.load();
        let canary = inner.canary.load();
        let previous;
        let slot: &Slot<M> = if canary.is_none() && inner.sessions.is_none() {
            &active
        } else {
            let hash = routing::key_hash(key.as_ref());
            let routed: &Slot<M> = match canary.as_deref() {
                Some(c) if routing::bucket(hash) < c.basis_points => &c.slot,
                _ => &active,
            };
            match &inner.sessions {
                None => routed,
                Some(sessions) => {
                    let now = Instant::now();
                    previous = inner.previous.load();
                    let candidates = [
                        Some(&**active),
                        canary.as_deref().map(|c| &*c.slot),
                        previous.as_deref(),
                    ];
                    let loaded =
                        |g: u64| candidates.into_iter().flatten().find(|s| s.generation == g);
                    let g = sessions.route(hash, now, |g| loaded(g).is_some(), routed.generation);
                    loaded(g).unwrap_or(routed)
                }
            }
        };
        inner.mirrored(input, slot.predict(input))
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
            slot: self.inner.active.load(),
            _deployment: PhantomData,
        }
    }

    /// Puts `model` in the standby slot as the candidate `version`.
    ///
    /// If the standby slot is occupied (a previous model or an earlier candidate), that
    /// model is retired first: bluegreen waits up to the drain timeout for its in-flight
    /// calls, then has the retirer thread drop it. On [`Error::DrainTimeout`] nothing
    /// changes and `model` is dropped. Staging replaces the rollback target: roll back
    /// before staging if you need to. Refused while a bake window or a canary runs.
    ///
    /// `model` already exists when this is called, so for a moment three models are in
    /// memory; use [`stage_with`](Self::stage_with) to load only after the old one is gone.
    pub fn stage(&self, version: impl Into<String>, model: M) -> Result<StageReport> {
        self.stage_inner(
            version.into(),
            move || Ok::<M, std::convert::Infallible>(model),
            false,
        )
        .map(|report| StageReport {
            load: None,
            ..report
        })
    }

    /// Like [`stage`](Self::stage), but calls `load` only after the standby slot has been
    /// retired and dropped, so at most two models are ever in memory. A loader error is
    /// returned as [`Error::Load`]; the standby slot is then empty.
    pub fn stage_with<F, E>(&self, version: impl Into<String>, load: F) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.stage_inner(version.into(), load, true)
    }

    fn stage_inner<F, E>(
        &self,
        version: String,
        load: F,
        wait_for_drop: bool,
    ) -> Result<StageReport>
    where
        F: FnOnce() -> std::result::Result<M, E>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &*self.inner;
        let version = checked_version(version)?;
        let _admin = inner.admin.lock();
        inner.refuse_if_busy()?;
        if inner.active.load().version == version {
            return Err(Error::VersionInUse {
                version: version.into(),
                slot: "active",
            });
        }
        let (retired, drain_wait) = match inner.retire_standby(wait_for_drop)? {
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
        let slot = Arc::new(Slot::new(model, version, inner.config.timed));
        let report = StageReport {
            version: slot.version.to_string(),
            generation: slot.generation,
            retired,
            drain_wait,
            load: Some(load_time),
        };
        let mut st = inner.state.lock();
        st.standby = Some(Standby::new(slot, SlotState::Staged));
        st.last_change = SystemTime::now();
        inner.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %report.version, generation = report.generation,
            retired = ?report.retired, "candidate staged");
        Ok(report)
    }

    /// Retires whatever the standby slot holds (freeing its memory; rollback is then
    /// impossible). Returns the retired version, or `None` if the slot was empty.
    /// Refused while a bake window or a canary runs.
    pub fn unstage(&self) -> Result<Option<String>> {
        let _admin = self.inner.admin.lock();
        self.inner.refuse_if_busy()?;
        Ok(self.inner.retire_standby(true)?.map(|(v, _)| v))
    }

    /// Runs every gate on the staged candidate without swapping (a dry run).
    ///
    /// Works on a staged or failed candidate and changes neither; the report is recorded
    /// as the status's last validation.
    pub fn validate(&self) -> Result<ValidationReport> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let candidate = {
            let st = inner.state.lock();
            match &st.standby {
                None => return Err(Error::NothingStaged),
                Some(s) if matches!(s.state, SlotState::Staged | SlotState::Failed) => {
                    Arc::clone(&s.slot)
                }
                Some(s) => return Err(not_a_candidate(s)),
            }
        };
        let report = inner.run_gates(&candidate);
        inner.state.lock().last_validation = Some(report.clone());
        Ok(report)
    }

    /// Runs every gate on the active model itself (it is both candidate and live model, so
    /// comparisons with the live model hold trivially): for readiness checks, since the
    /// model given to [`Builder::build`] was never a candidate. Changes nothing.
    ///
    /// ```
    /// # use bluegreen::{validate, BlueGreen, Model};
    /// # struct Id(i32); impl Model for Id { type Input = i32; type Output = i32;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, x: &i32) -> Result<i32, Self::Error> { Ok(self.0 * x) } }
    /// let gate = validate::from_fn("keeps sign", |cx: &validate::Context<Id>| {
    ///     if cx.candidate().predict(&1).unwrap() > 0 { Ok(()) } else { Err("flips sign") }
    /// });
    /// let bg = BlueGreen::builder().validator(gate).build("v1", Id(-1))?;
    /// assert!(!bg.validate_active().passed()); // serving, but not ready
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    pub fn validate_active(&self) -> ValidationReport {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let active = inner.active.load_full();
        let report = inner.run_gates(&active);
        inner.state.lock().last_validation = Some(report.clone());
        report
    }

    /// Validates and warms the staged candidate, then moves all new traffic to it with one
    /// atomic pointer store.
    ///
    /// Calls already running on the old model finish on it; the old model becomes the
    /// standby (state [`SlotState::Previous`]) so [`rollback`](Self::rollback) is instant.
    /// If a gate fails, panics or overruns, or warm-up fails, nothing changes for traffic:
    /// the candidate stays staged, marked [`SlotState::Failed`], and the error carries the
    /// report. With a [`Bake`] configured, the new model then bakes.
    pub fn swap(&self) -> Result<SwapReport> {
        let inner = &*self.inner;
        let started = Instant::now();
        let _admin = inner.admin.lock();
        let candidate = inner.take_candidate()?;
        let (report, warm_up) = inner.qualify(&candidate)?;
        Ok(inner.flip_to(candidate, report, warm_up, started))
    }

    /// Validates and warms the staged candidate like [`swap`](Self::swap), then sends it
    /// `percent` (0..=100) of keyed traffic ([`predict_keyed`](Self::predict_keyed)) instead
    /// of all traffic. Raise the share with [`set_canary_percent`](Self::set_canary_percent),
    /// finish with [`promote_canary`](Self::promote_canary) or
    /// [`abort_canary`](Self::abort_canary).
    pub fn start_canary(&self, percent: f64) -> Result<CanaryReport> {
        let inner = &*self.inner;
        let basis_points =
            routing::basis_points(percent).ok_or(Error::InvalidPercent { percent })?;
        let _admin = inner.admin.lock();
        let candidate = inner.take_candidate()?;
        let (report, warm_up) = inner.qualify(&candidate)?;
        let mut st = inner.state.lock();
        if let Some(s) = st.standby.as_mut() {
            s.state = SlotState::Canary;
            s.canary = Some(CanaryRun {
                basis_points,
                validation: report.clone(),
            });
        }
        st.last_validation = Some(report.clone());
        st.last_change = SystemTime::now();
        inner.publish(&st);
        drop(st);
        tracing::info!(target: "bluegreen", version = %candidate.version, percent, "canary started");
        Ok(CanaryReport {
            version: candidate.version.to_string(),
            percent,
            validation: report,
            warm_up,
        })
    }

    /// Changes the running canary's share of keyed traffic, at once.
    pub fn set_canary_percent(&self, percent: f64) -> Result<()> {
        let inner = &*self.inner;
        let basis_points =
            routing::basis_points(percent).ok_or(Error::InvalidPercent { percent })?;
        let _admin = inner.admin.lock();
        let mut st = inner.state.lock();
        match st.standby.as_mut() {
            Some(Standby {
                canary: Some(c), ..
            }) => c.basis_points = basis_points,
            other => {
                return Err(Error::NoCanary {
                    standby: other.map(|s| s.state),
                });
            }
        }
        st.last_change = SystemTime::now();
        inner.publish(&st);
        tracing::info!(target: "bluegreen", percent, "canary share changed");
        Ok(())
    }

    /// Moves all traffic to the running canary (it already passed its gates), like the
    /// flip of [`swap`](Self::swap).
    pub fn promote_canary(&self) -> Result<SwapReport> {
        let inner = &*self.inner;
        let started = Instant::now();
        let _admin = inner.admin.lock();
        let (candidate, report) = {
            let st = inner.state.lock();
            match &st.standby {
                Some(Standby {
                    slot,
                    canary: Some(c),
                    ..
                }) => (Arc::clone(slot), c.validation.clone()),
                other => {
                    return Err(Error::NoCanary {
                        standby: other.as_ref().map(|s| s.state),
                    });
                }
            }
        };
        Ok(inner.flip_to(candidate, report, Duration::ZERO, started))
    }

    /// Stops the canary at once: its share drops to 0 and it is marked failed, so it is not
    /// promoted without a new stage.
    pub fn abort_canary(&self) -> Result<()> {
        let inner = &*self.inner;
        let _admin = inner.admin.lock();
        let mut st = inner.state.lock();
        let version = match st.standby.as_mut() {
            Some(s) if s.canary.is_some() => {
                s.state = SlotState::Failed;
                s.canary = None;
                s.slot.version.to_string()
            }
            other => {
                return Err(Error::NoCanary {
                    standby: other.map(|s| s.state),
                });
            }
        };
        st.last_change = SystemTime::now();
        inner.publish(&st);
        drop(st);
        tracing::warn!(target: "bluegreen", %version, "canary aborted");
        Ok(())
    }

    /// Moves traffic back to the previous model at once, without re-validating it.
    ///
    /// The model rolled back from stays in standby as [`SlotState::RolledBack`]; it is not
    /// promoted again unless staged anew. Fails with [`Error::NothingToRollBack`] unless
    /// the standby slot holds the previous model. Ends a running bake window.
    pub fn rollback(&self) -> Result<RollbackReport> {
        let _admin = self.inner.admin.lock();
        self.inner.rollback_locked()
    }

    /// Reports whether a request served by `version` turned out well (a delayed label
    /// matched, the user accepted the answer, …). Feeds the bake window's outcome limits
    /// and [`SlotStatus::outcomes`].
    pub fn record_outcome(&self, version: &str, ok: bool) -> Result<()> {
        let inner = &*self.inner;
        {
            let active = inner.active.load();
            if &*active.version == version {
                active.stats.record_outcome(ok);
                return Ok(());
            }
        }
        let st = inner.state.lock();
        match &st.standby {
            Some(s) if &*s.slot.version == version => {
                s.slot.stats.record_outcome(ok);
                Ok(())
            }
            _ => Err(Error::UnknownVersion {
                version: version.to_owned(),
            }),
        }
    }

    /// A snapshot of both slots and the deployment's counters. Never waits for a running
    /// swap's validation.
    pub fn status(&self) -> Status {
        let inner = &*self.inner;
        let st = inner.state.lock();
        let active = inner.active.load_full();
        let baking = st.bake.filter(|b| b.generation == active.generation);
        let active_state = if baking.is_some() {
            SlotState::Baking
        } else {
            SlotState::Active
        };
        let active_status = slot_status(&active, active_state, None);
        let bake = baking.map(|b| {
            let o = active.observed();
            BakeStatus {
                version: active.version.to_string(),
                elapsed: b.started.elapsed(),
                requests: o.requests,
                errors: o.errors,
                p99: o.p99,
                outcomes: o.outcomes,
                outcomes_ok: o.outcomes_ok,
            }
        });
        drop(active);
        let standby = st
            .standby
            .as_ref()
            .map(|s| slot_status(&s.slot, s.state, Some(inner.holders(&s.slot))));
        let canary_percent = st
            .standby
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .map(|c| f64::from(c.basis_points) / 100.0);
        Status {
            active: active_status,
            standby,
            swaps: st.swaps,
            rollbacks: st.rollbacks,
            rejections: st.rejections,
            last_validation: st.last_validation.clone(),
            bake,
            auto_rollbacks: st.auto_rollbacks,
            last_auto_rollback: st.last_auto_rollback.clone(),
            canary_percent,
            shadow: inner.shadow.as_ref().and_then(ShadowRuntime::status),
            sessions: inner.sessions.as_ref().map(Sessions::len),
            last_change: st.last_change,
        }
    }
}

impl<M: Model> Inner<M> {
    /// Offers a successful call to the shadow (when configured) and passes its answer on.
    #[inline]
    fn mirrored(
        &self,
        input: &M::Input,
        out: std::result::Result<M::Output, M::Error>,
    ) -> std::result::Result<M::Output, M::Error> {
        if let (Some(shadow), Ok(answer)) = (&self.shadow, &out) {
            shadow.offer(input, answer);
        }
        out
    }

    /// Refuses operations that would retire the standby while it is a rollback target
    /// under a bake, or a running canary.
    fn refuse_if_busy(&self) -> Result<()> {
        let st = self.state.lock();
        if let Some(b) = st.bake {
            let active = self.active.load();
            if active.generation == b.generation {
                return Err(Error::BakeInProgress {
                    version: active.version.to_string(),
                });
            }
        }
        match &st.standby {
            Some(s) if s.state == SlotState::Canary => Err(Error::CanaryInProgress {
                version: s.slot.version.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The staged candidate, marked validating; or why there is none.
    fn take_candidate(&self) -> Result<Arc<Slot<M>>> {
        let mut st = self.state.lock();
        match &mut st.standby {
            None => Err(Error::NothingStaged),
            Some(s) if s.state == SlotState::Staged => {
                s.state = SlotState::Validating;
                Ok(Arc::clone(&s.slot))
            }
            Some(s) if s.state == SlotState::Failed => Err(Error::CandidateFailed {
                version: s.slot.version.to_string(),
            }),
            Some(s) => Err(not_a_candidate(s)),
        }
    }

    /// Runs the gates and warm-up on a candidate taken with `take_candidate`. On failure
    /// the candidate is marked failed and traffic is untouched.
    fn qualify(&self, candidate: &Arc<Slot<M>>) -> Result<(ValidationReport, Duration)> {
        let report = self.run_gates(candidate);
        if !report.passed() {
            self.reject(&report);
            return Err(Error::ValidationFailed(Box::new(report)));
        }
        let warm_started = Instant::now();
        if let Err(e) = warm(&self.config, candidate) {
            self.reject(&report);
            return Err(e);
        }
        Ok((report, warm_started.elapsed()))
    }

    /// The flip: `candidate` becomes active, the old active becomes the previous model.
    fn flip_to(
        &self,
        candidate: Arc<Slot<M>>,
        report: ValidationReport,
        warm_up: Duration,
        started: Instant,
    ) -> SwapReport {
        let flip_started = Instant::now();
        let old = self.active.swap(Arc::clone(&candidate));
        let flip = flip_started.elapsed();

        let mut st = self.state.lock();
        let from = old.version.to_string();
        st.standby = Some(Standby::new(old, SlotState::Previous));
        st.swaps += 1;
        st.last_validation = Some(report.clone());
        st.last_change = SystemTime::now();
        if self.config.bake.is_some() {
            st.bake = Some(BakeRun {
                generation: candidate.generation,
                started: Instant::now(),
            });
        }
        self.publish(&st);
        let old_holders = st.standby.as_ref().map_or(0, |s| self.holders(&s.slot));
        drop(st);
        drop(candidate);

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
            old_holders, baking = self.config.bake.is_some(), "swapped");
        report
    }

    /// Rollback with the admin lock held.
    fn rollback_locked(&self) -> Result<RollbackReport> {
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
        let from = old.version.to_string();
        let to = st
            .standby
            .as_ref()
            .map(|s| s.slot.version.to_string())
            .unwrap_or_default();
        st.standby = Some(Standby::new(old, SlotState::RolledBack));
        st.rollbacks += 1;
        st.bake = None;
        st.last_change = SystemTime::now();
        self.publish(&st);
        let old_holders = st.standby.as_ref().map_or(0, |s| self.holders(&s.slot));
        drop(st);

        tracing::warn!(target: "bluegreen", %from, %to, ?flip, old_holders, "rolled back");
        Ok(RollbackReport {
            from,
            to,
            flip,
            old_holders,
        })
    }

    /// One look at the running bake (called by the monitor thread).
    fn check_bake(&self) {
        let Some(bake) = &self.config.bake else {
            return;
        };
        let (run, active, previous) = {
            let mut st = self.state.lock();
            let Some(run) = st.bake else { return };
            let active = self.active.load_full();
            if active.generation != run.generation {
                st.bake = None;
                return;
            }
            let previous = st
                .standby
                .as_ref()
                .filter(|s| s.state == SlotState::Previous)
                .map(|s| Arc::clone(&s.slot));
            (run, active, previous)
        };
        let now = active.observed();
        let prev = previous.as_ref().map(|p| p.observed());
        drop(previous);
        if let Some(reason) = bake.breach(&now, prev.as_ref()) {
            drop(active);
            self.auto_rollback(run, reason);
        } else if bake.passed(run.started.elapsed(), &now) {
            let mut st = self.state.lock();
            if st.bake.is_some_and(|b| b.generation == run.generation) {
                st.bake = None;
                st.last_change = SystemTime::now();
                drop(st);
                tracing::info!(target: "bluegreen", version = %active.version,
                    requests = now.requests, errors = now.errors, elapsed = ?run.started.elapsed(),
                    "bake passed; version is stable");
            }
        }
    }

    fn auto_rollback(&self, run: BakeRun, reason: String) {
        let record = {
            let _admin = self.admin.lock();
            // Re-check under the admin lock: a manual rollback may have won the race.
            if self
                .state
                .lock()
                .bake
                .is_none_or(|b| b.generation != run.generation)
            {
                return;
            }
            let report = match self.rollback_locked() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(target: "bluegreen", %reason, error = %e,
                        "bake limit breached but automatic rollback failed");
                    return;
                }
            };
            let record = AutoRollback {
                from: report.from,
                to: report.to,
                reason,
                after: run.started.elapsed(),
                at: SystemTime::now(),
            };
            let mut st = self.state.lock();
            st.auto_rollbacks += 1;
            st.last_auto_rollback = Some(record.clone());
            record
        };
        tracing::error!(target: "bluegreen", from = %record.from, to = %record.to,
            reason = %record.reason, after = ?record.after, "automatic rollback");
        // Outside the admin lock: the hook may call back into the deployment.
        if let Some(hook) = &self.config.on_auto_rollback {
            hook(&record);
        }
    }

    /// Makes the keyed-routing views and the shadow target match the standby slot.
    fn publish(&self, st: &State<M>) {
        let standby = st.standby.as_ref();
        let with = |state: &[SlotState]| standby.filter(|s| state.contains(&s.state));
        if self.sessions.is_some() {
            self.previous
                .store(with(&[SlotState::Previous]).map(|s| Arc::clone(&s.slot)));
        }
        let canary = standby.and_then(|s| {
            let run = s.canary.as_ref()?;
            Some(Arc::new(CanaryRoute {
                slot: Arc::clone(&s.slot),
                basis_points: run.basis_points,
            }))
        });
        if canary.is_some() || self.canary.load().is_some() {
            self.canary.store(canary);
        }
        if let Some(shadow) = &self.shadow {
            shadow.target(with(&[SlotState::Staged, SlotState::Validating]).map(|s| &s.slot));
        }
    }

    /// Unpublishes everything (before retiring the standby).
    fn unpublish(&self) {
        self.previous.store(None);
        self.canary.store(None);
        if let Some(shadow) = &self.shadow {
            shadow.target(None);
        }
    }

    /// References to a standby model beyond the deployment's own (state and routes).
    fn holders(&self, slot: &Arc<Slot<M>>) -> u64 {
        let mut ours = 1;
        if self
            .previous
            .load()
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, slot))
        {
            ours += 1;
        }
        if self
            .canary
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.slot, slot))
        {
            ours += 1;
        }
        if self.shadow.as_ref().is_some_and(|s| s.holds(slot)) {
            ours += 1;
        }
        Arc::strong_count(slot).saturating_sub(ours) as u64
    }

    fn run_gates(&self, candidate: &Arc<Slot<M>>) -> ValidationReport {
        let live = self.active.load_full();
        let shadow = self
            .shadow
            .as_ref()
            .and_then(ShadowRuntime::status)
            .filter(|s| s.version == *candidate.version);
        let report = crate::validation::run_all(
            &self.config.validators,
            candidate,
            &live,
            shadow,
            self.config.validation_deadline,
        );
        if report.passed() {
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
        self.publish(&st);
    }

    /// Waits for the standby model to drain, then drops it on the retirer thread.
    /// Must be called with the admin lock held (nobody else can add references then).
    fn retire_standby(&self, wait_for_drop: bool) -> Result<Option<(String, Duration)>> {
        let slot = match &self.state.lock().standby {
            None => return Ok(None),
            Some(s) => Arc::clone(&s.slot),
        };
        // No new keyed request, session or mirrored call may reach it from here on.
        self.unpublish();
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
                self.publish(&self.state.lock());
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
        self.retirer.retire(slot, wait_for_drop);
        tracing::info!(target: "bluegreen", %version, drain = ?drained, "standby retired");
        Ok(Some((version, drained)))
    }
}

impl<M: Model> Drop for BlueGreen<M> {
    fn drop(&mut self) {
        // The monitor holds a reference to `inner`; stop it so ours is the last.
        drop(self.monitor.take());
    }
}

impl<M: Model> Drop for Inner<M> {
    fn drop(&mut self) {
        // Stop the shadow worker and clear every route, then hand both models to the
        // retirer, so their last references are released on its thread when
        // `self.retirer` (the last field) shuts it down.
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.shutdown();
        }
        self.unpublish();
        self.retirer.hold_until_shutdown(self.active.load_full());
        if let Some(s) = self.state.get_mut().standby.take() {
            self.retirer.hold_until_shutdown(s.slot);
        }
    }
}

impl<M: Model> std::fmt::Debug for BlueGreen<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("BlueGreen")
            .field("active", &&*self.inner.active.load().version)
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
    let latency = slot.latency();
    SlotStatus {
        version: slot.version.to_string(),
        generation: slot.generation,
        state,
        in_flight: t.in_flight(),
        holders,
        requests: t.finished,
        errors: t.failed,
        p50: latency.quantile(0.5),
        p99: latency.quantile(0.99),
        outcomes: (t.outcomes_ok, t.outcomes()),
        loaded_at: slot.loaded_at,
        info: slot.info.clone(),
    }
}
