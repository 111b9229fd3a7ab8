//! Snapshots of a deployment's state: [`Status`], [`SlotStatus`], [`SlotState`].

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::bluegreen::BlueGreen;
use super::faults::Faults;
use super::state::Standby;
use crate::model::Model;
use crate::model::ModelInfo;
use crate::slot::{ContentHash, Slot};
use crate::traffic::bake::{AutoRollback, BakeStatus};
use crate::traffic::routing::Sessions;
use crate::traffic::shadow::ShadowRuntime;
use crate::validation::ShadowStatus;
use crate::validation::validate::ValidationReport;

/// What a slot holds, from the deployment's point of view.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotState {
    /// Serving all traffic (stable: no bake running).
    Active,
    /// Serving all traffic, inside its bake window: watched, and rolled back on a breach.
    Baking,
    /// A validated candidate serving a share of keyed traffic.
    Canary,
    /// A candidate waiting for [`swap`](crate::BlueGreen::swap).
    Staged,
    /// A candidate whose gates are running right now.
    Validating,
    /// A candidate that failed validation or warm-up; it will not be promoted.
    Failed,
    /// The model that was active before the last swap, kept loaded for rollback.
    Previous,
    /// The model that was rolled back from; it will not be promoted again without a new
    /// [`stage`](crate::BlueGreen::stage).
    RolledBack,
}

impl fmt::Display for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlotState::Active => "active",
            SlotState::Baking => "baking",
            SlotState::Canary => "canary",
            SlotState::Staged => "staged",
            SlotState::Validating => "validating",
            SlotState::Failed => "failed",
            SlotState::Previous => "previous",
            SlotState::RolledBack => "rolled-back",
        })
    }
}

/// One slot at the moment of the snapshot.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    /// Version label given at stage time.
    pub version: String,
    /// Process-wide unique, increasing id of this load (two loads of one version differ).
    pub generation: u64,
    /// The hash of the bytes it was loaded from, when it was staged with one (see
    /// [`Identity`](crate::Identity)).
    pub content: Option<ContentHash>,
    /// What the slot is doing.
    pub state: SlotState,
    /// Calls running on this model right now.
    pub in_flight: u64,
    /// References held on the model besides the deployment's own: calls that started
    /// before it left the active slot, [`Active`](crate::Active) pins, validators still
    /// running. `None` for the active slot, whose readers hold no counted reference (that
    /// is what keeps the read path free of shared writes); for the same reason a keyed call
    /// running right now on a canary or session-pinned previous model may not show here —
    /// [`in_flight`](Self::in_flight) counts calls. Retiring a model first withdraws those
    /// routes, which makes the count exact before it waits on it.
    pub holders: Option<u64>,
    /// Calls this model has finished.
    pub requests: u64,
    /// Calls that failed: returned an error, or panicked.
    pub errors: u64,
    /// Calls that panicked inside the model (also counted in [`errors`](Self::errors)). The
    /// panic reached the caller; bluegreen counted it on the way out.
    pub panics: u64,
    /// Median call latency, when calls are timed (a bake with latency limits).
    pub p50: Option<Duration>,
    /// p99 call latency, when calls are timed.
    pub p99: Option<Duration>,
    /// Outcomes the application reported for this model (good, total).
    pub outcomes: (u64, u64),
    /// When the model was staged (or given at construction).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub loaded_at: SystemTime,
    /// What the model declares about itself.
    pub info: ModelInfo,
}

/// A snapshot of a deployment, from [`BlueGreen::status`](crate::BlueGreen::status).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The model serving traffic.
    pub active: SlotStatus,
    /// The standby slot as one view: the candidate when one is staged, else the previous
    /// model. (With a candidate staged, the previous model is in
    /// [`previous`](Self::previous).)
    pub standby: Option<SlotStatus>,
    /// The candidate: staged, validating, failed, or running as a canary.
    pub candidate: Option<SlotStatus>,
    /// The previous model: the rollback target ([`SlotState::Previous`]) or the model
    /// just rolled back from ([`SlotState::RolledBack`]).
    pub previous: Option<SlotStatus>,
    /// Models on their way out: draining, queued for the retirer, or being dropped.
    pub retiring: Vec<RetiringModel>,
    /// Work abandoned past its deadline that still runs (and holds models).
    pub abandoned: Vec<Abandoned>,
    /// Faults caught on bluegreen's threads (panics, hangs, skipped hooks).
    pub faults: Faults,
    /// Completed swaps.
    pub swaps: u64,
    /// Completed rollbacks.
    pub rollbacks: u64,
    /// Candidates refused by validation or warm-up.
    pub rejections: u64,
    /// The most recent validation (from a swap or a dry run).
    pub last_validation: Option<ValidationReport>,
    /// The bake window running now, if any.
    pub bake: Option<BakeStatus>,
    /// Automatic rollbacks so far.
    pub auto_rollbacks: u64,
    /// The most recent automatic rollback, with its reason.
    pub last_auto_rollback: Option<AutoRollback>,
    /// Share of keyed traffic (percent) going to the canary, when one runs.
    pub canary_percent: Option<f64>,
    /// Shadow-traffic results for the last shadowed candidate.
    pub shadow: Option<ShadowStatus>,
    /// Sessions remembered for affinity (when configured).
    pub sessions: Option<usize>,
    /// The active version's files were found replaced in place (see
    /// [`BlueGreen::check_content`](crate::BlueGreen::check_content)): the model serving is
    /// not what its folder now holds.
    pub content_changed: Option<ContentChange>,
    /// The journal, when one is configured (`Builder::journal`, feature `journal`).
    pub journal: Option<JournalStatus>,
    /// Candidates refused in quarantine.
    #[cfg(feature = "quarantine")]
    pub quarantine_refusals: u64,
    /// The most recent quarantine run: the candidate, passed or why refused, and the
    /// child's peak memory, CPU time and duration.
    #[cfg(feature = "quarantine")]
    pub last_quarantine: Option<crate::validation::quarantine::QuarantineReport>,
    /// When the active or standby slot last changed.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub last_change: SystemTime,
}

/// A live version whose files changed under it, in [`Status::content_changed`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentChange {
    /// The version label.
    pub version: String,
    /// The content the serving model was loaded from.
    pub loaded: ContentHash,
    /// What the version's files hash to now.
    pub found: ContentHash,
    /// When it was noticed.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub since: SystemTime,
}

/// How the journal is doing, in [`Status::journal`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalStatus {
    /// The database file.
    pub path: PathBuf,
    /// Nothing pending and the last write succeeded.
    pub healthy: bool,
    /// Rows written by this deployment.
    pub written: u64,
    /// Rows about things that happened, not written yet; while any are, admin operations
    /// are refused (see the `journal` module docs).
    pub pending: usize,
    /// Write attempts that failed.
    pub failed_writes: u64,
    /// Rows dropped because too many were pending (never expected).
    pub lost: u64,
    /// The last write error, until a write succeeds.
    pub last_error: Option<String>,
    /// When it happened.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::opt_unix_secs")
    )]
    pub last_error_at: Option<SystemTime>,
    /// Bans in force.
    pub bans: usize,
}

/// A model on its way out, in [`Status::retiring`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiringModel {
    /// Its version.
    pub version: String,
    /// Its generation.
    pub generation: u64,
    /// Whether its `Drop` is running now (else it is queued, or still draining).
    pub dropping: bool,
    /// When it was handed over for retirement.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub since: SystemTime,
}

/// Work that overran its deadline and still runs, in [`Status::abandoned`]. Its thread
/// holds the models it was given until it returns; retiring them does not wait for it.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abandoned {
    /// What hung (a gate, a warm-up, a mirrored call) and on which candidate.
    pub what: String,
    /// The versions of the models it holds.
    pub versions: Vec<String>,
    /// When it was abandoned.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub since: SystemTime,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |f: &mut fmt::Formatter<'_>, label: &str, s: &SlotStatus| {
            write!(
                f,
                "{label:<8} {} (gen {}, {}): {} in flight, {} requests, {} errors",
                s.version, s.generation, s.state, s.in_flight, s.requests, s.errors
            )?;
            match s.panics {
                0 => writeln!(f),
                n => writeln!(f, " ({n} panicked)"),
            }
        };
        line(f, "active", &self.active)?;
        match &self.standby {
            Some(s) => line(f, "standby", s)?,
            None => writeln!(f, "standby  (empty)")?,
        }
        writeln!(
            f,
            "swaps {}, rollbacks {} ({} automatic), rejected candidates {}",
            self.swaps, self.rollbacks, self.auto_rollbacks, self.rejections
        )?;
        if let Some(b) = &self.bake {
            writeln!(
                f,
                "baking {} for {:.1?}: {} requests, {} errors",
                b.version, b.elapsed, b.requests, b.errors
            )?;
        }
        if let Some(p) = self.previous.as_ref().filter(|_| self.candidate.is_some()) {
            line(f, "previous", p)?;
        }
        for r in &self.retiring {
            writeln!(
                f,
                "retiring {} (gen {}): {}",
                r.version,
                r.generation,
                if r.dropping { "dropping" } else { "waiting" }
            )?;
        }
        for a in &self.abandoned {
            writeln!(f, "abandoned: {} (holds {})", a.what, a.versions.join(", "))?;
        }
        #[cfg(feature = "quarantine")]
        if let Some(q) = &self.last_quarantine {
            writeln!(f, "last {q}")?;
        }
        if self.faults.total > 0 {
            writeln!(f, "faults caught: {}", self.faults.total)?;
        }
        if let Some(c) = &self.content_changed {
            writeln!(
                f,
                "content changed: {} was loaded from {}, its files now hash to {}",
                c.version,
                c.loaded.short(),
                c.found.short()
            )?;
        }
        if let Some(j) = self.journal.as_ref().filter(|j| !j.healthy) {
            writeln!(
                f,
                "journal degraded: {} pending, last error: {}",
                j.pending,
                j.last_error.as_deref().unwrap_or("-")
            )?;
        }
        if let Some(r) = &self.last_auto_rollback {
            writeln!(
                f,
                "last automatic rollback: {} -> {}: {}",
                r.from, r.to, r.reason
            )?;
        }
        Ok(())
    }
}

impl<M: Model> BlueGreen<M> {
    /// A snapshot of both slots and the deployment's counters. Never waits for a running
    /// swap's validation.
    pub fn status(&self) -> Status {
        let inner = &*self.inner;
        inner.check_shadow();
        let st = inner.state.lock();
        let active = inner.active.load_full();
        let baking = st.bake.filter(|b| b.generation == active.generation);
        let active_state = if baking.is_some() {
            SlotState::Baking
        } else {
            SlotState::Active
        };
        let active_status = slot_status(&active, active_state, None);
        let active_generation = active.generation;
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
        let view = |s: &Standby<M>| slot_status(&s.slot, s.state, Some(inner.holders(&s.slot)));
        let candidate = st.candidate.as_ref().map(view);
        let previous = st.previous.as_ref().map(view);
        let standby = candidate.clone().or_else(|| previous.clone());
        let canary_percent = st
            .candidate
            .as_ref()
            .and_then(|s| s.canary.as_ref())
            .map(|c| f64::from(c.basis_points) / 100.0);
        let draining = st.draining.iter().map(|(_, s)| RetiringModel {
            version: s.slot.version.to_owned(),
            generation: s.slot.generation,
            dropping: false,
            since: st.last_change,
        });
        let retiring = draining
            .into_iter()
            .chain(inner.retirer.backlog())
            .collect();
        let abandoned = inner
            .hung
            .list()
            .into_iter()
            .map(|w| Abandoned {
                what: w.what,
                versions: w.versions.iter().map(|v| (*v).to_owned()).collect(),
                since: w.since,
            })
            .collect();
        Status {
            active: active_status,
            standby,
            candidate,
            previous,
            retiring,
            abandoned,
            faults: inner.faults.snapshot(),
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
            content_changed: st
                .content_changed
                .as_ref()
                .filter(|(generation, _)| *generation == active_generation)
                .map(|(_, c)| c.clone()),
            journal: inner.audit.status(),
            last_change: st.last_change,
            #[cfg(feature = "quarantine")]
            quarantine_refusals: st.quarantine_refusals,
            #[cfg(feature = "quarantine")]
            last_quarantine: st.last_quarantine.clone(),
        }
    }
}

pub(super) fn slot_status<M: Model>(
    slot: &Slot<M>,
    state: SlotState,
    holders: Option<u64>,
) -> SlotStatus {
    let t = slot.totals();
    let latency = slot.latency();
    SlotStatus {
        version: slot.version.to_string(),
        generation: slot.generation,
        content: slot.content,
        state,
        in_flight: t.in_flight(),
        holders,
        requests: t.finished,
        errors: t.failed,
        panics: t.panicked,
        p50: latency.quantile(0.5),
        p99: latency.quantile(0.99),
        outcomes: (t.outcomes_ok, t.outcomes()),
        loaded_at: slot.loaded_at,
        info: slot.info.clone(),
    }
}
