//! [`BlueGreen`] itself: the two-slot deployment, what its threads share ([`Inner`]),
//! construction, and how it shuts down.

use std::sync::Arc;
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::{Condvar, Mutex};

use super::audit::Audit;
use super::builder::{Builder, Config};
use super::error::{Error, Result};
use super::faults::FaultLog;
use super::hooks::Hooks;
use super::monitor::Monitor;
use super::retire::Retirer;
use super::state::State;
use crate::model::Model;
use crate::slot::{Hung, Identity, Slot};
use crate::traffic::routing::Sessions;
use crate::traffic::shadow::ShadowRuntime;
use crate::validation::GateWorker;

/// Longest accepted version label (and deployment name), in bytes.
const MAX_VERSION_LEN: usize = 256;

/// A model deployment: the **active** model (blue) serves every request; a **candidate**
/// (green) is staged, validated and warmed beside it; the **previous** model stays loaded
/// after a swap so that [`rollback`](Self::rollback) is instant — and stays loaded while a
/// candidate is staged, validated or refused (unless [`Builder::memory_tight`]).
///
/// Share one `BlueGreen` across the service with an `Arc`; every operation takes `&self`.
/// Request threads call [`predict`](Self::predict) (or pin a version with
/// [`active`](Self::active)); an admin path calls [`stage`](Self::stage),
/// [`swap`](Self::swap) and [`rollback`](Self::rollback). Admin operations are serialized
/// among themselves and never block a request.
///
/// # Faults: panics, hangs, slow drops
///
/// Models, gates and hooks are untrusted code, and the deployment is built to outlive
/// them:
///
/// * A panic in [`predict`](Self::predict) propagates to its caller (catching on the
///   request path would cost every call) and is counted as a failed call — in
///   [`SlotStatus::errors`](crate::SlotStatus::errors) and
///   [`panics`](crate::SlotStatus::panics), and by a bake window's error-rate limits.
/// * A panic anywhere bluegreen runs model or application code on its own threads — a
///   gate, warm-up, `Model::info`, a `stage_with` loader, a mirrored shadow call, the
///   automatic-rollback hook, a model's `Drop` on the retirer — is caught, counted in
///   [`Status::faults`](crate::Status::faults) with the version, and turned into a refusal
///   where an operation was waiting on it. No bluegreen thread ends and the process never
///   aborts because of it.
/// * A gate, warm-up or shadow call that overruns its deadline is abandoned (threads
///   cannot be killed): the candidate is refused, the hung work is listed in
///   [`Status::abandoned`](crate::Status::abandoned) until it returns, and the models it
///   holds can be retired at once — retirement does not wait for abandoned work.
/// * A slow `Drop` cannot make models pile up: at most
///   [`max_retiring`](Builder::max_retiring) models wait to be dropped, and dropping the
///   deployment waits at most the [`shutdown_timeout`](Builder::shutdown_timeout).
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
/// // A bad candidate is refused; v2 keeps serving, and v1 is still the rollback target.
/// bg.stage("v3", Scale(-1.0))?;
/// assert!(matches!(bg.swap(), Err(Error::ValidationFailed(_))));
/// assert_eq!(bg.predict(&3.0).unwrap(), 6.0);
/// bg.rollback()?;
/// assert_eq!(bg.active().version(), "v1");
/// # Ok::<(), Error>(())
/// ```
pub struct BlueGreen<M: Model> {
    pub(super) inner: Arc<Inner<M>>,
    /// The bake monitor thread, when a bake window is configured.
    pub(super) monitor: Option<Monitor>,
    /// The thread that publishes metrics, when an interval is configured.
    #[cfg(feature = "metrics")]
    pub(super) collector: Option<super::publish::Collector>,
}

/// Everything the request threads, the admin path and the monitor thread share.
pub(super) struct Inner<M: Model> {
    /// The one pointer plain `predict` reads.
    pub(super) active: ArcSwap<Slot<M>>,
    /// The canary and its share, read by keyed requests while a canary runs.
    pub(super) canary: ArcSwapOption<CanaryRoute<M>>,
    /// The previous model, read by keyed requests whose session is pinned to it.
    pub(super) previous: ArcSwapOption<Slot<M>>,
    pub(super) sessions: Option<Sessions>,
    pub(super) shadow: Option<ShadowRuntime<M>>,
    /// Serializes admin operations (held across validation, which can be slow).
    pub(super) admin: Mutex<()>,
    /// Candidate and previous slots, counters; held only briefly (the flips happen under
    /// it), so `status()` never waits on a swap.
    pub(super) state: Mutex<State<M>>,
    /// Signalled when a rollback claimed in the state (`BakeRun::claimed`) is done.
    pub(super) claim_released: Condvar,
    pub(super) config: Config<M>,
    /// Faults caught on bluegreen's threads.
    pub(super) faults: Arc<FaultLog>,
    /// Work abandoned past its deadline, still holding models.
    pub(super) hung: Hung,
    /// The thread gates and warm-ups run on.
    pub(super) gate_worker: GateWorker,
    /// The thread that calls the automatic-rollback hook, when one is configured.
    pub(super) hooks: Option<Hooks>,
    /// What the last metrics publish saw.
    #[cfg(feature = "metrics")]
    pub(super) marks: Mutex<super::publish::Marks>,
    /// The journal (when configured) and the bans in force.
    pub(super) audit: Audit,
    /// Declared last: dropped after everything that may hold a model, so it releases the
    /// final references.
    pub(super) retirer: Retirer<M>,
}

pub(super) struct CanaryRoute<M: Model> {
    pub(super) slot: Arc<Slot<M>>,
    pub(super) basis_points: u32,
}

impl<M: Model> BlueGreen<M> {
    /// A deployment with default settings and no gates.
    pub fn new(version: impl Into<Identity>, model: M) -> Result<Self> {
        Builder::default().build(version, model)
    }

    /// Configures a deployment: gates, warm-up, deadlines, bake, shadow, affinity.
    pub fn builder() -> Builder<M> {
        Builder::default()
    }
}

impl<M: Model> Drop for BlueGreen<M> {
    fn drop(&mut self) {
        // The monitor (and the collector) hold a reference to `inner`; stop them so ours is
        // the last.
        drop(self.monitor.take());
        #[cfg(feature = "metrics")]
        drop(self.collector.take());
    }
}

impl<M: Model> Drop for Inner<M> {
    fn drop(&mut self) {
        // Stop the shadow worker and clear every route, then hand both models to the
        // retirer, so their last references are released on its thread when
        // `self.retirer` (the last field) shuts it down.
        // One deadline for every thread to stop, not one each.
        let deadline = Instant::now() + self.config.shutdown_timeout;
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.shutdown(deadline);
        }
        self.unpublish();
        self.retirer.hold_until_shutdown(self.active.load_full());
        let st = self.state.get_mut();
        let slots = [st.candidate.take(), st.previous.take()]
            .into_iter()
            .flatten()
            .chain(std::mem::take(&mut st.draining).into_iter().map(|(_, s)| s));
        for s in slots {
            self.retirer.hold_until_shutdown(s.slot);
        }
        if let Some(hooks) = self.hooks.as_mut() {
            hooks.shutdown(deadline);
        }
        // The retirer itself stops when it is dropped, as the last field: after the
        // active pointer, so that the reference it holds is the model's last.
        self.retirer.stop_by(deadline);
    }
}

impl<M: Model> std::fmt::Debug for BlueGreen<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("BlueGreen")
            .field("active", &self.inner.active.load().version)
            .field(
                "candidate",
                &st.candidate.as_ref().map(|s| (s.slot.version, s.state)),
            )
            .field(
                "previous",
                &st.previous.as_ref().map(|s| (s.slot.version, s.state)),
            )
            .finish_non_exhaustive()
    }
}

/// `identity` with its label checked.
pub(super) fn checked_identity(identity: Identity) -> Result<Identity> {
    let (version, content) = identity.into_parts();
    let version = checked_version(version)?;
    let identity = Identity::new(String::from(version));
    Ok(match content {
        Some(h) => identity.with_content(h),
        None => identity,
    })
}

pub(super) fn checked_version(version: String) -> Result<Box<str>> {
    match label_problem(&version) {
        None => Ok(version.into_boxed_str()),
        Some(reason) => Err(Error::InvalidVersion { version, reason }),
    }
}

pub(super) fn checked_name(name: String) -> Result<String> {
    match label_problem(&name) {
        None => Ok(name),
        Some(reason) => Err(Error::InvalidName { name, reason }),
    }
}

/// Why a version label or deployment name is refused, if it is.
fn label_problem(label: &str) -> Option<&'static str> {
    if label.trim().is_empty() {
        Some("must not be empty")
    } else if label.len() > MAX_VERSION_LEN {
        Some("must be at most 256 bytes")
    } else if label.chars().any(char::is_control) {
        Some("must not contain control characters")
    } else {
        None
    }
}
