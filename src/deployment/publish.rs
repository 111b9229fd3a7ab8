//! Publishing the per-thread lanes through the `metrics` facade (feature `metrics`):
//! [`BlueGreen::publish_metrics`], the collector thread that calls it, and what it
//! remembers between calls.
//!
//! # Why a tick and not a counter per call
//!
//! `predict` writes only its own thread's lane (see `slot/stats.rs`): a facade counter
//! bumped per call would be one atomic read-modify-write on a cache line every request
//! thread shares — exactly the ~10× cost at two threads the lanes exist to avoid — plus
//! a registry lookup in the recorder. So the request path is the same with the feature on
//! as without it (quickbench `metrics` section: paired ratio `metrics_on_vs_off_*`), and
//! the figures leave the lanes here: each publish sums every lane of every loaded model
//! and hands the facade what changed since the last publish (counters are incremented by
//! the difference, the latency histogram gets each bucket's new calls with
//! `record_many`), while gauges are set to what they are now. The lanes are only read,
//! never reset, so `status()` and the bake window see the same totals as before.
//!
//! Two ways to call it, both supported: a collector thread per deployment
//! ([`Builder::metrics_interval`](crate::Builder::metrics_interval), default every second)
//! — for exporters that serve the scrape themselves (`PrometheusBuilder::install`) — and
//! [`BlueGreen::publish_metrics`] from the application's own scrape handler, right before
//! it renders, for figures as of the scrape. Calls are serialized, so the two can be mixed.
//!
//! What a model did between the last publish and its retirement is published when it is
//! retired (after its calls drained), so a version's counters are complete; calls that an
//! abandoned gate makes on it afterwards are not.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use metrics::{SharedString, counter, gauge, histogram};

use super::bluegreen::{BlueGreen, Inner};
use super::error::{Error, Result};
use super::faults::{FaultKind, panic_text};
use super::metrics::*;
use super::status::SlotState;
use crate::model::Model;
use crate::slot::{Slot, Totals};

/// What was published last time: counters are published as differences from it.
#[derive(Default)]
pub(super) struct Marks {
    /// Per loaded model, by generation.
    slots: HashMap<u64, SlotMark>,
    faults: BTreeMap<FaultKind, u64>,
    /// The shadowed candidate's version and its counts.
    shadow: Option<(String, [u64; 4])>,
    /// The `slot_info` label sets set to 1 last time (set to 0 once they are gone).
    info: HashSet<(&'static str, &'static str, SlotState)>,
}

#[derive(Default)]
struct SlotMark {
    totals: Totals,
    /// Calls per latency bucket, by the bucket's upper bound in nanoseconds.
    latency: HashMap<u128, u64>,
}

impl<M: Model> BlueGreen<M> {
    /// Publishes this deployment's figures through the `metrics` facade now (feature
    /// `metrics`): calls, errors, panics, outcomes and latency per version; in-flight per
    /// slot; which version each slot holds; canary share, bake, retiring and abandoned
    /// models; shadow results; faults by kind. Swaps, rollbacks and gate results are
    /// counted when they happen and need no publishing.
    ///
    /// The collector thread calls this every
    /// [`metrics_interval`](crate::Builder::metrics_interval); call it yourself right
    /// before your exporter renders to publish figures as of the scrape. It reads every
    /// thread's lane (never resetting them) and takes the state lock briefly; request
    /// threads are not affected.
    ///
    /// ```
    /// use bluegreen::{BlueGreen, Model};
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// # struct Id; impl Model for Id { type Input = u8; type Output = u8;
    /// #   type Error = std::convert::Infallible;
    /// #   fn predict(&self, x: &u8) -> Result<u8, Self::Error> { Ok(*x) } }
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// let handle = recorder.handle();
    /// metrics::with_local_recorder(&recorder, || {
    ///     let bg = BlueGreen::builder().name("digits").metrics_interval(None).build("v1", Id)?;
    ///     for x in 0..3 { bg.predict(&x).unwrap(); }
    ///     bg.publish_metrics();
    ///     Ok::<(), bluegreen::Error>(())
    /// })?;
    /// let text = handle.render();
    /// assert!(text.contains(r#"bluegreen_predictions_total{model="digits",version="v1"} 3"#));
    /// # Ok::<(), bluegreen::Error>(())
    /// ```
    pub fn publish_metrics(&self) {
        self.inner.publish_metrics();
    }
}

impl<M: Model> Inner<M> {
    pub(super) fn publish_metrics(&self) {
        let name = &self.config.name;
        let mut marks = self.marks.lock();
        describe();
        // What the slots hold, read under the state lock; everything else after it.
        let (slots, canary, baking) = {
            let st = self.state.lock();
            let active = self.active.load_full();
            let baking = st.baking(active.generation).is_some();
            let active_state = if baking {
                SlotState::Baking
            } else {
                SlotState::Active
            };
            let mut slots = vec![("active", Some((active, active_state)))];
            for (label, s) in [("candidate", &st.candidate), ("previous", &st.previous)] {
                slots.push((label, s.as_ref().map(|s| (Arc::clone(&s.slot), s.state))));
            }
            for (_, s) in &st.draining {
                slots.push(("draining", Some((Arc::clone(&s.slot), s.state))));
            }
            let canary = st
                .candidate
                .as_ref()
                .and_then(|s| s.canary.as_ref())
                .map_or(0.0, |c| f64::from(c.basis_points) / 10_000.0);
            (slots, canary, baking)
        };

        let mut seen = HashSet::new();
        let mut info = HashSet::new();
        for (label, held) in &slots {
            let in_flight = match held {
                Some((slot, state)) => {
                    seen.insert(slot.generation);
                    let t = publish_slot(name, &mut marks, slot);
                    if *label != "draining" {
                        info.insert((*label, slot.version, *state));
                    }
                    t.in_flight()
                }
                None => 0,
            };
            if *label != "draining" {
                let l = labels(name, [("slot", SharedString::const_str(label))]);
                gauge!(IN_FLIGHT, l).set(in_flight as f64);
            }
        }
        // A model that left without retirement (no final publish) is forgotten.
        marks.slots.retain(|g, _| seen.contains(g));
        for gone in marks.info.difference(&info) {
            gauge!(SLOT_INFO, info_labels(name, *gone)).set(0.0);
        }
        for now in &info {
            gauge!(SLOT_INFO, info_labels(name, *now)).set(1.0);
        }
        marks.info = info;

        let only_model = || labels(name, []);
        for series in EVENT_COUNTERS {
            counter!(series, only_model()).increment(0);
        }
        gauge!(CANARY_RATIO, only_model()).set(canary);
        gauge!(BAKING, only_model()).set(if baking { 1.0 } else { 0.0 });
        let draining = slots.len().saturating_sub(3);
        let retiring = self.retirer.backlog().len() + draining;
        gauge!(RETIRING, only_model()).set(retiring as f64);
        gauge!(ABANDONED, only_model()).set(self.hung.list().len() as f64);
        for (kind, total) in self.faults.snapshot().by_kind {
            let before = marks.faults.insert(kind, total).unwrap_or(0);
            if total > before {
                let l = labels(name, [("kind", fault_label(kind).into())]);
                counter!(FAULTS, l).increment(total - before);
            }
        }
        drop(slots);
        self.publish_shadow(&mut marks);
    }

    /// Publishes what a retired model did since the last publish, and forgets it; counts
    /// the retirement.
    pub(super) fn publish_retired(&self, slot: &Slot<M>) {
        let mut marks = self.marks.lock();
        publish_slot(&self.config.name, &mut marks, slot);
        marks.slots.remove(&slot.generation);
    }

    fn publish_shadow(&self, marks: &mut Marks) {
        let Some(s) = self.shadow.as_ref().and_then(|s| s.status()) else {
            return;
        };
        let name = &self.config.name;
        let agreed = (s.agreement * s.compared as f64).round() as u64;
        let now = [s.mirrored, s.dropped, s.compared, agreed];
        let before = match &marks.shadow {
            // The same candidate, still counting up: publish the difference.
            Some((v, b)) if *v == s.version && now.iter().zip(b).all(|(n, b)| n >= b) => *b,
            _ => [0; 4],
        };
        for (series, (n, b)) in [
            SHADOW_MIRRORED,
            SHADOW_DROPPED,
            SHADOW_COMPARED,
            SHADOW_AGREED,
        ]
        .into_iter()
        .zip(now.iter().zip(before))
        {
            if *n > b {
                counter!(series, labels(name, [])).increment(n - b);
            }
        }
        gauge!(SHADOW_AGREEMENT, labels(name, [])).set(s.agreement);
        marks.shadow = Some((s.version, now));
    }
}

/// Publishes one model's lanes: the counters' growth since its mark and the latency
/// histogram's new calls. Returns its totals now.
fn publish_slot<M: Model>(name: &Arc<str>, marks: &mut Marks, slot: &Slot<M>) -> Totals {
    let t = slot.totals();
    let latency = slot.latency();
    let mark = marks.slots.entry(slot.generation).or_default();
    let version = || ("version", SharedString::const_str(slot.version));
    let add = |series: &'static str, now: u64, before: u64| {
        if now > before {
            counter!(series, labels(name, [version()])).increment(now - before);
        }
    };
    add(PREDICTIONS, t.finished, mark.totals.finished);
    add(ERRORS, t.failed, mark.totals.failed);
    add(PANICS, t.panicked, mark.totals.panicked);
    for (result, now, before) in [
        ("good", t.outcomes_ok, mark.totals.outcomes_ok),
        ("bad", t.outcomes_bad, mark.totals.outcomes_bad),
    ] {
        if now > before {
            let l = labels(name, [version(), ("result", result.into())]);
            counter!(OUTCOMES, l).increment(now - before);
        }
    }
    let mut buckets = latency.buckets().peekable();
    if buckets.peek().is_some() {
        let h = histogram!(LATENCY, labels(name, [version()]));
        for (upper, calls) in buckets {
            let before = mark.latency.insert(upper.as_nanos(), calls).unwrap_or(0);
            if calls > before {
                let new = usize::try_from(calls - before).unwrap_or(usize::MAX);
                h.record_many(upper.as_secs_f64(), new);
            }
        }
    }
    mark.totals = t;
    t
}

fn info_labels(
    name: &Arc<str>,
    (slot, version, state): (&'static str, &'static str, SlotState),
) -> Vec<metrics::Label> {
    labels(
        name,
        [
            ("slot", SharedString::const_str(slot)),
            ("state", state.to_string().into()),
            ("version", SharedString::const_str(version)),
        ],
    )
}

/// `DropPanicked` → `drop_panicked`.
fn fault_label(kind: FaultKind) -> String {
    let mut out = String::new();
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Gives the recorder every series' description (cheap; recorders keep the last one).
fn describe() {
    for (series, kind, about) in SERIES {
        let about = SharedString::const_str(about);
        match kind {
            Kind::Counter => metrics::describe_counter!(*series, about),
            Kind::Gauge => metrics::describe_gauge!(*series, about),
            Kind::Histogram => {
                metrics::describe_histogram!(*series, metrics::Unit::Seconds, about);
            }
        }
    }
}

/// The collector thread: publishes every `interval` until the deployment is dropped.
pub(super) struct Collector {
    stop: Option<crossbeam_channel::Sender<()>>,
    exited: crossbeam_channel::Receiver<()>,
    handle: Option<std::thread::JoinHandle<()>>,
    shutdown_wait: Duration,
}

impl Collector {
    pub(super) fn start<M: Model>(
        inner: Arc<Inner<M>>,
        every: Duration,
        shutdown_wait: Duration,
    ) -> Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let (alive, exited) = crossbeam_channel::bounded::<()>(0);
        let handle = std::thread::Builder::new()
            .name("bluegreen-metrics".to_owned())
            .spawn(move || {
                let _alive = alive;
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    // The recorder is the application's code: a panic in it is a fault,
                    // and the next tick publishes again.
                    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| inner.publish_metrics()))
                    {
                        inner.faults.record(
                            FaultKind::MetricsPanicked,
                            None,
                            panic_text(payload.as_ref()),
                        );
                    }
                }
            })
            .map_err(|source| Error::Spawn {
                what: "metrics collector",
                source,
            })?;
        Ok(Self {
            stop: Some(stop),
            exited,
            handle: Some(handle),
            shutdown_wait,
        })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.stop.take());
        let Some(handle) = self.handle.take() else {
            return;
        };
        // A recorder that hangs must not hang the deployment's drop.
        match self.exited.recv_timeout(self.shutdown_wait) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                tracing::error!(target: "bluegreen", wait = ?self.shutdown_wait,
                    "metrics collector still publishing at shutdown; left behind");
            }
            _ => {
                let _ = handle.join();
            }
        }
    }
}
