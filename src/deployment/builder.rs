//! [`Builder`]: configuring a deployment (gates, warm-up, deadlines, bake, shadow,
//! affinity) and starting it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;

use super::admin::warm;
use super::bluegreen::{BlueGreen, Inner, checked_version};
use super::error::{Error, Result};
use super::monitor::Monitor;
use super::retire::Retirer;
use super::state::State;
use crate::model::Model;
use crate::slot::Slot;
use crate::traffic::bake::{AutoRollback, Bake};
use crate::traffic::routing::{Affinity, Sessions};
use crate::traffic::shadow::{Shadow, ShadowRuntime};
use crate::validation::validate::Validator;

pub(super) type RollbackHook = Arc<dyn Fn(&AutoRollback) + Send + Sync>;

pub(super) struct Config<M: Model> {
    pub(super) validators: Vec<Arc<dyn Validator<M>>>,
    pub(super) validation_deadline: Duration,
    pub(super) warmup: Arc<Vec<M::Input>>,
    pub(super) warmup_deadline: Duration,
    pub(super) drain_timeout: Duration,
    pub(super) bake: Option<Bake>,
    pub(super) on_auto_rollback: Option<RollbackHook>,
    pub(super) timed: bool,
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

    /// Times every call, so [`SlotStatus`](crate::SlotStatus) reports p50/p99 (a bake with latency limits
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
        let slot = Arc::new(Slot::new(model, &version, timed));
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
