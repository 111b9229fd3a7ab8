//! Faults: what went wrong inside bluegreen's own threads, counted and kept for
//! [`Status::faults`](crate::Status::faults).
//!
//! A model, a gate, a hook or a `Drop` may panic or hang. Where such a fault crosses into
//! a bluegreen thread (the retirer, the bake monitor, the hook thread, a gate or warm-up
//! thread, the shadow worker) it is caught, logged with `tracing` at error level, counted
//! by kind and remembered with the version it concerns — never allowed to end the thread
//! or abort the process. A panic inside `predict` on a caller's thread is not a fault of
//! this kind: it reaches the caller, and is counted on the model's slot
//! ([`SlotStatus::panics`](crate::SlotStatus::panics)).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::SystemTime;

use parking_lot::Mutex;

/// How many faults [`Faults::recent`] keeps.
const KEPT: usize = 16;

/// What kind of fault bluegreen caught.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// A model's `Drop` panicked on the retirer thread.
    DropPanicked,
    /// `Model::info` panicked while the model was being staged (the stage was refused).
    InfoPanicked,
    /// A `stage_with` loader panicked (the stage was refused).
    LoaderPanicked,
    /// `Model::warm_up` panicked (the candidate was refused).
    WarmupPanicked,
    /// A gate panicked (the candidate was refused).
    GatePanicked,
    /// The candidate panicked on a mirrored shadow request.
    ShadowPanicked,
    /// The automatic-rollback hook panicked.
    HookPanicked,
    /// An automatic-rollback notification was dropped: the hook was still busy with
    /// earlier ones (it may hang).
    HookSkipped,
    /// The bake monitor's look at the baking model panicked; it looks again next time.
    MonitorPanicked,
    /// Work on a model overran its deadline and was abandoned (see
    /// [`Status::abandoned`](crate::Status::abandoned)).
    Abandoned,
    /// Work abandoned past its deadline panicked later: when it finally returned, or
    /// while dropping the models it held. Nobody waited for it any more; it is counted
    /// here instead of unwinding out of a bluegreen thread.
    AbandonedWorkPanicked,
    /// The application's `metrics` recorder panicked while the collector thread published
    /// (feature `metrics`); it publishes again on its next tick.
    MetricsPanicked,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::DropPanicked => "drop panicked",
            FaultKind::InfoPanicked => "info panicked",
            FaultKind::LoaderPanicked => "loader panicked",
            FaultKind::WarmupPanicked => "warm-up panicked",
            FaultKind::GatePanicked => "gate panicked",
            FaultKind::ShadowPanicked => "shadow call panicked",
            FaultKind::HookPanicked => "hook panicked",
            FaultKind::HookSkipped => "hook notification skipped",
            FaultKind::MonitorPanicked => "bake monitor panicked",
            FaultKind::Abandoned => "work abandoned",
            FaultKind::AbandonedWorkPanicked => "abandoned work panicked",
            FaultKind::MetricsPanicked => "metrics recorder panicked",
        })
    }
}

/// One caught fault.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// What happened.
    pub kind: FaultKind,
    /// The version of the model concerned, when there is one.
    pub version: Option<String>,
    /// The panic message, or what was abandoned.
    pub message: String,
    /// When it was caught.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub at: SystemTime,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(v) = &self.version {
            write!(f, " ({v})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Faults caught so far, in [`Status::faults`](crate::Status::faults).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    /// Every fault since the deployment started.
    pub total: u64,
    /// Counts by kind.
    pub by_kind: BTreeMap<FaultKind, u64>,
    /// The most recent faults, oldest first (at most 16).
    pub recent: Vec<Fault>,
}

impl Faults {
    /// How many faults of `kind` were caught.
    pub fn count(&self, kind: FaultKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }
}

/// The deployment's fault log, shared by its threads.
#[derive(Default)]
pub(crate) struct FaultLog {
    inner: Mutex<(u64, BTreeMap<FaultKind, u64>, VecDeque<Fault>)>,
}

impl FaultLog {
    /// Counts, logs and remembers one fault.
    pub(crate) fn record(
        &self,
        kind: FaultKind,
        version: Option<&str>,
        message: impl Into<String>,
    ) {
        let message = message.into();
        tracing::error!(target: "bluegreen", %kind, version = version.unwrap_or("-"), %message,
            "fault caught");
        let mut g = self.inner.lock();
        g.0 += 1;
        *g.1.entry(kind).or_default() += 1;
        if g.2.len() == KEPT {
            g.2.pop_front();
        }
        g.2.push_back(Fault {
            kind,
            version: version.map(str::to_owned),
            message,
            at: SystemTime::now(),
        });
    }

    pub(crate) fn snapshot(&self) -> Faults {
        let g = self.inner.lock();
        Faults {
            total: g.0,
            by_kind: g.1.clone(),
            recent: g.2.iter().cloned().collect(),
        }
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    crate::model::panic_message(payload).unwrap_or_else(|| "non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_counting_past_the_recent_window() {
        let log = FaultLog::default();
        for i in 0..20 {
            log.record(FaultKind::DropPanicked, Some("v1"), format!("boom {i}"));
        }
        log.record(FaultKind::HookPanicked, None, "hook");
        let f = log.snapshot();
        assert_eq!(f.total, 21);
        assert_eq!(f.count(FaultKind::DropPanicked), 20);
        assert_eq!(f.count(FaultKind::HookPanicked), 1);
        assert_eq!(f.recent.len(), 16);
        assert_eq!(f.recent.last().unwrap().to_string(), "hook panicked: hook");
        assert_eq!(f.recent[0].message, "boom 5");
    }
}
