//! The admin state behind the lock: the standby slot and what it is doing, counters, the
//! running bake.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::error::Error;
use super::status::SlotState;
use crate::model::Model;
use crate::slot::Slot;
use crate::traffic::bake::AutoRollback;
use crate::validation::validate::ValidationReport;

pub(super) struct State<M: Model> {
    pub(super) standby: Option<Standby<M>>,
    pub(super) swaps: u64,
    pub(super) rollbacks: u64,
    pub(super) rejections: u64,
    pub(super) auto_rollbacks: u64,
    pub(super) last_validation: Option<ValidationReport>,
    pub(super) last_auto_rollback: Option<AutoRollback>,
    pub(super) bake: Option<BakeRun>,
    pub(super) last_change: SystemTime,
}

pub(super) struct Standby<M: Model> {
    pub(super) slot: Arc<Slot<M>>,
    pub(super) state: SlotState,
    /// Set exactly while `state` is `Canary`.
    pub(super) canary: Option<CanaryRun>,
}

/// A running canary: its share and the report it passed (kept for promotion).
pub(super) struct CanaryRun {
    pub(super) basis_points: u32,
    pub(super) validation: ValidationReport,
}

impl<M: Model> Standby<M> {
    pub(super) fn new(slot: Arc<Slot<M>>, state: SlotState) -> Self {
        Self {
            slot,
            state,
            canary: None,
        }
    }
}

#[derive(Clone, Copy)]
pub(super) struct BakeRun {
    pub(super) generation: u64,
    pub(super) started: Instant,
}

pub(super) fn not_a_candidate<M: Model>(s: &Standby<M>) -> Error {
    Error::NotACandidate {
        version: s.slot.version.to_string(),
        state: s.state,
    }
}
