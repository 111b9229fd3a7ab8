//! [`Builder`]: configuring a deployment (gates, warm-up, deadlines, bake, shadow,
//! affinity) and starting it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::{Condvar, Mutex};

use super::actor::Actor;
use super::audit::{Audit, named, record};
use super::bluegreen::{BlueGreen, Inner, checked_identity, checked_name};
use super::error::{Error, Result};
use super::faults::{FaultKind, FaultLog, panic_text};
use super::hooks::Hooks;
use super::monitor::Monitor;
use super::retire::Retirer;
use super::state::State;
use super::warmup::warm;
use crate::journal::EventKind;
use crate::model::Model;
use crate::slot::{Hung, Identity, Slot};
use crate::traffic::bake::{AutoRollback, Bake};
use crate::traffic::routing::{Affinity, Sessions};
use crate::traffic::shadow::{OnPanic, Shadow, ShadowPanic, ShadowRuntime};
use crate::validation::GateWorker;
use crate::validation::validate::Validator;

pub(super) type RollbackHook = Arc<dyn Fn(&AutoRollback) + Send + Sync>;

pub(super) struct Config<M: Model> {
    /// The deployment's name: its `model` label in metrics, and in log events.
    pub(super) name: Arc<str>,
    pub(super) validators: Vec<Arc<dyn Validator<M>>>,
    pub(super) validation_deadline: Duration,
    pub(super) warmup: Arc<Vec<M::Input>>,
    pub(super) warmup_deadline: Duration,
    pub(super) drain_timeout: Duration,
    pub(super) bake: Option<Bake>,
    pub(super) timed: bool,
    pub(super) memory_tight: bool,
    pub(super) shutdown_timeout: Duration,
    #[cfg(feature = "quarantine")]
    pub(super) quarantine: Option<crate::validation::quarantine::Quarantine<M>>,
}

/// Configures a [`BlueGreen`]; from [`BlueGreen::builder`].
pub struct Builder<M: Model> {
    pub(super) name: String,
    #[cfg(feature = "metrics")]
    metrics_interval: Option<Duration>,
    #[cfg(feature = "journal")]
    pub(super) journal: Option<super::resume::JournalSetup>,
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
    memory_tight: bool,
    max_retiring: usize,
    shutdown_timeout: Duration,
    #[cfg(feature = "quarantine")]
    quarantine: Option<crate::validation::quarantine::Quarantine<M>>,
}

impl<M: Model> Default for Builder<M> {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.to_owned(),
            #[cfg(feature = "metrics")]
            metrics_interval: Some(Duration::from_secs(1)),
            #[cfg(feature = "journal")]
            journal: None,
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
            memory_tight: false,
            max_retiring: 1,
            shutdown_timeout: Duration::from_secs(10),
            #[cfg(feature = "quarantine")]
            quarantine: None,
        }
    }
}

/// The name of a deployment that was not given one.
pub(super) const DEFAULT_NAME: &str = "default";

impl<M: Model> Builder<M> {
    /// Names the deployment (default `"default"`): the value of the `model` label on every
    /// series it publishes through the `metrics` facade (feature `metrics`), the `model`
    /// column of its journal rows (feature `journal`; one journal file can serve several
    /// deployments), and the `model` field of its log events. Give each deployment in a
    /// process its own name, or their series add up. Same rules as a version label: not
    /// empty, at most 256 bytes, no control characters ([`Error::InvalidName`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How often a collector thread publishes the deployment's figures through the
    /// `metrics` facade (default every second; feature `metrics`). `None` starts no thread:
    /// then call [`BlueGreen::publish_metrics`] yourself, e.g. from your scrape handler
    /// right before the exporter renders — the figures are then as of the scrape. Events
    /// (swaps, rollbacks, gate results) are counted when they happen either way.
    #[cfg(feature = "metrics")]
    pub fn metrics_interval(mut self, every: Option<Duration>) -> Self {
        self.metrics_interval = every.map(|d| d.max(Duration::from_millis(1)));
        self
    }

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
    /// traffic, via [`Model::warm_up`]. Use a few representative requests. Without them,
    /// warm-up still runs: on inputs a gate offers (the golden-set gates offer golden
    /// rows), else with no samples, for a model that warms itself (`OnnxModel` does).
    pub fn warmup_samples(mut self, samples: Vec<M::Input>) -> Self {
        self.warmup = samples;
        self
    }

    /// How long warm-up may take before the candidate is refused (default 60 s).
    pub fn warmup_deadline(mut self, deadline: Duration) -> Self {
        self.warmup_deadline = deadline;
        self
    }

    /// How long retiring a model waits for its in-flight calls and pins to finish, and for
    /// room in the retirer's backlog (default 30 s). Past it, the operation fails with
    /// [`Error::DrainTimeout`] or [`Error::RetireBacklog`] and the model stays loaded.
    /// References held by work abandoned past its deadline (a hung gate) are not waited
    /// for.
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

    /// Called after every automatic rollback, e.g. to page someone — on a thread of its
    /// own, inside `catch_unwind`: a panicking hook is counted as a
    /// [`FaultKind::HookPanicked`](crate::FaultKind::HookPanicked), a hung one makes later
    /// notifications [skipped](crate::FaultKind::HookSkipped), and neither stops the bake
    /// monitor. The hook may call back into the deployment.
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

    /// Times every call, so [`SlotStatus`](crate::SlotStatus) reports p50/p99 (a bake with latency limits
    /// turns this on by itself). Costs two clock reads per call.
    pub fn track_latency(mut self, on: bool) -> Self {
        self.track_latency = on;
        self
    }

    /// At most two models resident (active + standby), at the cost of the rollback target:
    /// staging retires whatever the standby holds — the previous model included — before
    /// the new model is loaded, so a candidate that fails to load or is refused leaves
    /// nothing to roll back to, and staging is refused during a bake window.
    ///
    /// Off by default: a deployment keeps its previous model loaded while a candidate is
    /// staged, validated or refused, so it can hold **three** models at once (active,
    /// previous, candidate). Turn this on when three copies of the model do not fit in
    /// memory.
    pub fn memory_tight(mut self, on: bool) -> Self {
        self.memory_tight = on;
        self
    }

    /// How many retired models may be waiting to be dropped — queued for the retirer or in
    /// their `Drop` — at once (default 1). Retiring one more waits for room up to the
    /// drain timeout, then fails with [`Error::RetireBacklog`]: a slow `Drop` slows the
    /// admin path down instead of letting models pile up in memory.
    pub fn max_retiring(mut self, models: usize) -> Self {
        self.max_retiring = models.max(1);
        self
    }

    /// How long dropping the deployment waits for its threads, all together — the shadow
    /// worker, the hook thread, the retirer dropping the last models (default 10 s). A
    /// thread still busy then (a `Drop` or a hook that hangs) is left behind to finish on
    /// its own, with an error logged, instead of blocking the caller.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Qualifies candidates in a child process before they enter this one; see
    /// [`Quarantine`](crate::quarantine::Quarantine) and
    /// [`stage_quarantined`](BlueGreen::stage_quarantined). The application's `main()` must
    /// call [`bluegreen::quarantine::enter()`](crate::quarantine::enter) first (a child is
    /// this binary, re-executed).
    #[cfg(feature = "quarantine")]
    pub fn quarantine(mut self, quarantine: crate::validation::quarantine::Quarantine<M>) -> Self {
        self.quarantine = Some(quarantine);
        self
    }

    /// Starts the deployment with `model` active as `identity` (a version label, or an
    /// [`Identity`] with the hash of its bytes), after warming it (see
    /// [`warmup_samples`](Self::warmup_samples)).
    ///
    /// With a journal (`Builder::journal`, feature `journal`): refused with [`Error::Banned`] for a banned
    /// identity, and with [`Error::ContentChanged`] when `identity` has the label the
    /// journal last recorded as live but other bytes (the version was replaced in place:
    /// pick another version, e.g. from `journal::Resume::live_history`).
    /// A journal that cannot be written at start does not stop the deployment: the `start`
    /// row stays pending and admin operations are refused until it is written.
    #[cfg_attr(not(feature = "journal"), allow(unused_mut))]
    pub fn build(mut self, identity: impl Into<Identity>, model: M) -> Result<BlueGreen<M>> {
        let identity = checked_identity(identity.into())?;
        let version = identity.version().to_owned();
        let name: Arc<str> = checked_name(std::mem::take(&mut self.name))?.into();
        let audit = Audit {
            #[cfg(feature = "journal")]
            journal: match self.journal.take() {
                Some(setup) => Some(setup.open(&name, &identity, self.shutdown_timeout)?),
                None => None,
            },
        };
        let timed = self.track_latency || self.bake.as_ref().is_some_and(Bake::times_calls);
        let config = Config {
            name,
            validators: self.validators,
            validation_deadline: self.validation_deadline,
            warmup: Arc::new(self.warmup),
            warmup_deadline: self.warmup_deadline,
            drain_timeout: self.drain_timeout,
            bake: self.bake,
            timed,
            memory_tight: self.memory_tight,
            shutdown_timeout: self.shutdown_timeout,
            #[cfg(feature = "quarantine")]
            quarantine: self.quarantine,
        };
        let faults = Arc::new(FaultLog::default());
        let hung = Hung::default();
        let late_faults = Arc::clone(&faults);
        let gate_worker = GateWorker::new(Arc::new(move |what: &str, message| {
            late_faults.record(
                FaultKind::AbandonedWorkPanicked,
                None,
                format!("{what}: {message}"),
            );
        }));
        let slot = match Slot::new(model, &version, identity.content(), timed) {
            Ok(slot) => Arc::new(slot),
            Err((model, message)) => {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(model)));
                return Err(Error::ModelPanicked {
                    version,
                    during: "info",
                    message,
                });
            }
        };
        if let Err(e) = warm(&config, &hung, &faults, &gate_worker, &slot, &|_| {}) {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(slot))) {
                tracing::error!(target: "bluegreen", panic = %panic_text(payload.as_ref()),
                    "the refused initial model's drop panicked");
            }
            return Err(e);
        }
        let spawn = |what| move |source| Error::Spawn { what, source };
        let shadow_faults = Arc::clone(&faults);
        let on_panic: OnPanic = Arc::new(move |site, version, message| {
            let kind = match site {
                ShadowPanic::Call => FaultKind::ShadowPanicked,
                ShadowPanic::Drop => FaultKind::DropPanicked,
                ShadowPanic::Late => FaultKind::AbandonedWorkPanicked,
            };
            shadow_faults.record(kind, Some(version), message);
        });
        let shadow = self
            .shadow
            .map(|s| ShadowRuntime::start(s, on_panic))
            .transpose()
            .map_err(spawn("shadow"))?;
        let hooks = self
            .on_auto_rollback
            .map(|hook| Hooks::start(hook, Arc::clone(&faults)))
            .transpose()
            .map_err(spawn("hook"))?;
        let retirer = Retirer::start(Arc::clone(&faults), self.max_retiring)?;
        let inner = Arc::new(Inner {
            active: ArcSwap::new(slot),
            canary: ArcSwapOption::empty(),
            previous: ArcSwapOption::empty(),
            sessions: self.affinity.as_ref().map(Sessions::new),
            shadow,
            admin: Mutex::new(()),
            state: Mutex::new(State::new()),
            claim_released: Condvar::new(),
            config,
            faults,
            hung,
            gate_worker,
            hooks,
            #[cfg(feature = "metrics")]
            marks: Mutex::default(),
            audit,
            retirer,
        });
        let active = inner.active.load_full();
        // The start is a fact: if it cannot be written now it stays pending, and admin
        // operations are refused until it is.
        let _ = inner.audit.fact(|| {
            record(EventKind::Start, &active, &Actor::Application).subject(named(&active))
        });
        drop(active);
        let monitor = match &inner.config.bake {
            Some(bake) => Some(Monitor::start(Arc::clone(&inner), bake.check_every)?),
            None => None,
        };
        #[cfg(feature = "metrics")]
        let collector = self
            .metrics_interval
            .map(|every| {
                super::publish::Collector::start(Arc::clone(&inner), every, self.shutdown_timeout)
            })
            .transpose()?;
        tracing::info!(target: "bluegreen", model = %inner.config.name,
            version = %inner.active.load().version, "deployment started");
        Ok(BlueGreen {
            inner,
            monitor,
            #[cfg(feature = "metrics")]
            collector,
        })
    }
}
