//! What admin operations return: [`StageReport`], [`SwapReport`], [`RollbackReport`].

use std::time::Duration;

use crate::validation::validate::ValidationReport;

/// The result of [`BlueGreen::stage`](crate::BlueGreen::stage).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The staged candidate's version.
    pub version: String,
    /// Its generation (unique per load).
    pub generation: u64,
    /// The models retired to make room: an earlier candidate, a model rolled back from (no
    /// rollback target), and in a memory-tight deployment the previous model.
    pub retired: Vec<String>,
    /// How long retiring waited for the old models' in-flight calls to drain.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub drain_wait: Duration,
    /// How long the loader ran ([`stage_with`](crate::BlueGreen::stage_with) only; a
    /// model handed to [`stage`](crate::BlueGreen::stage) was loaded before the call).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::opt_secs")
    )]
    pub load: Option<Duration>,
    /// The quarantine the candidate passed before it was loaded
    /// ([`stage_quarantined`](crate::BlueGreen::stage_quarantined) only).
    #[cfg(feature = "quarantine")]
    pub quarantine: Option<crate::validation::quarantine::QuarantineReport>,
}

/// The result of a successful [`BlueGreen::swap`](crate::BlueGreen::swap).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct SwapReport {
    /// The version that was active before.
    pub from: String,
    /// The version now active.
    pub to: String,
    /// Every gate the candidate passed.
    pub validation: ValidationReport,
    /// Time spent warming the candidate.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub warm_up: Duration,
    /// Calls the warm-up made on the candidate (0 after a canary promotion: it was warmed
    /// when the canary started).
    pub warm_up_calls: usize,
    /// Time of the flip itself (one atomic pointer store plus bookkeeping).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub flip: Duration,
    /// Wall time of the whole swap.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub total: Duration,
    /// References still held on the old model when the swap returned (calls that started
    /// before the flip and are finishing on it); 0 means it had already drained.
    pub old_holders: u64,
}

impl SwapReport {
    /// Whether no call was still running on the old model when the swap returned.
    pub fn drained(&self) -> bool {
        self.old_holders == 0
    }
}

/// The result of a successful [`BlueGreen::rollback`](crate::BlueGreen::rollback).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackReport {
    /// The version rolled back from (now standby, state rolled-back).
    pub from: String,
    /// The version now active again.
    pub to: String,
    /// Time of the flip.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub flip: Duration,
    /// References still held on the rolled-back model when rollback returned.
    pub old_holders: u64,
}

/// The result of [`BlueGreen::start_canary`](crate::BlueGreen::start_canary).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryReport {
    /// The canary's version.
    pub version: String,
    /// Its share of keyed traffic, in percent.
    pub percent: f64,
    /// Every gate it passed.
    pub validation: ValidationReport,
    /// Time spent warming it.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::serde_util::secs"))]
    pub warm_up: Duration,
    /// Calls the warm-up made on it.
    pub warm_up_calls: usize,
}
