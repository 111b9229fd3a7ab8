//! Snapshots of a deployment's state: [`Status`], [`SlotStatus`], [`SlotState`].

use std::fmt;
use std::time::SystemTime;

use crate::schema::ModelInfo;
use crate::validate::ValidationReport;

/// What a slot holds, from the deployment's point of view.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotState {
    /// Serving all traffic.
    Active,
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
    /// What the slot is doing.
    pub state: SlotState,
    /// Calls running on this model right now.
    pub in_flight: u64,
    /// References held on the model besides the deployment's own: calls that started
    /// before it left the active slot, [`Active`](crate::Active) pins, validators still
    /// running. Exact for the standby slot; `None` for the active slot, whose readers hold
    /// no counted reference (that is what keeps the read path free of shared writes).
    pub holders: Option<u64>,
    /// Calls this model has finished.
    pub requests: u64,
    /// Calls that returned an error.
    pub errors: u64,
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
    /// The candidate or previous model, if any.
    pub standby: Option<SlotStatus>,
    /// Completed swaps.
    pub swaps: u64,
    /// Completed rollbacks.
    pub rollbacks: u64,
    /// Candidates refused by validation or warm-up.
    pub rejections: u64,
    /// The most recent validation (from a swap or a dry run).
    pub last_validation: Option<ValidationReport>,
    /// When the active or standby slot last changed.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub last_change: SystemTime,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |f: &mut fmt::Formatter<'_>, label: &str, s: &SlotStatus| {
            writeln!(
                f,
                "{label:<8} {} (gen {}, {}): {} in flight, {} requests, {} errors",
                s.version, s.generation, s.state, s.in_flight, s.requests, s.errors
            )
        };
        line(f, "active", &self.active)?;
        match &self.standby {
            Some(s) => line(f, "standby", s)?,
            None => writeln!(f, "standby  (empty)")?,
        }
        writeln!(
            f,
            "swaps {}, rollbacks {}, rejected candidates {}",
            self.swaps, self.rollbacks, self.rejections
        )
    }
}
