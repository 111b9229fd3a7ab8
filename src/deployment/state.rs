//! The admin state behind the state lock: the candidate slot, the previous model (the
//! rollback target), a model being drained for retirement, counters, the running bake.
//!
//! Three slots besides the active one, because a candidate must not cost the rollback
//! target: staging, loading or refusing a candidate leaves the previous model loaded
//! (unless the deployment is [memory-tight](crate::Builder::memory_tight), where the
//! standby is one slot as before and staging retires it first). The public
//! [`Status::standby`](crate::Status::standby) shows the candidate when there is one, else
//! the previous model.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::error::Error;
use super::status::{ContentChange, SlotState};
use crate::model::Model;
use crate::slot::Slot;
use crate::traffic::bake::AutoRollback;
use crate::validation::validate::ValidationReport;

pub(super) struct State<M: Model> {
    /// A candidate: staged, validating, failed or running as a canary.
    pub(super) candidate: Option<Standby<M>>,
    /// The model active before the last swap (`Previous`, the rollback target) or the
    /// one just rolled back from (`RolledBack`).
    pub(super) previous: Option<Standby<M>>,
    /// Models taken out of their slots for retirement, while their calls drain. Routes no
    /// longer reach them; a drain timeout puts them back.
    pub(super) draining: Vec<(Which, Standby<M>)>,
    pub(super) swaps: u64,
    pub(super) rollbacks: u64,
    pub(super) rejections: u64,
    pub(super) auto_rollbacks: u64,
    pub(super) last_validation: Option<ValidationReport>,
    pub(super) last_auto_rollback: Option<AutoRollback>,
    pub(super) bake: Option<BakeRun>,
    /// The files of the model with this generation were found replaced in place.
    pub(super) content_changed: Option<(u64, ContentChange)>,
    pub(super) last_change: SystemTime,
    #[cfg(feature = "quarantine")]
    pub(super) quarantine_refusals: u64,
    #[cfg(feature = "quarantine")]
    pub(super) last_quarantine: Option<crate::validation::quarantine::QuarantineReport>,
}

/// Which of the two non-active slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    Candidate,
    Previous,
}

impl<M: Model> State<M> {
    pub(super) fn new() -> Self {
        Self {
            candidate: None,
            previous: None,
            draining: Vec::new(),
            swaps: 0,
            rollbacks: 0,
            rejections: 0,
            auto_rollbacks: 0,
            last_validation: None,
            last_auto_rollback: None,
            bake: None,
            content_changed: None,
            last_change: SystemTime::now(),
            #[cfg(feature = "quarantine")]
            quarantine_refusals: 0,
            #[cfg(feature = "quarantine")]
            last_quarantine: None,
        }
    }

    /// What the public standby slot shows: the candidate, else the previous model.
    pub(super) fn standby(&self) -> Option<&Standby<M>> {
        self.candidate.as_ref().or(self.previous.as_ref())
    }

    pub(super) fn slot(&self, which: Which) -> Option<&Standby<M>> {
        match which {
            Which::Candidate => self.candidate.as_ref(),
            Which::Previous => self.previous.as_ref(),
        }
    }

    pub(super) fn slot_mut(&mut self, which: Which) -> &mut Option<Standby<M>> {
        match which {
            Which::Candidate => &mut self.candidate,
            Which::Previous => &mut self.previous,
        }
    }

    /// The rollback target, if there is one.
    pub(super) fn rollback_target(&self) -> Option<&Arc<Slot<M>>> {
        self.previous
            .as_ref()
            .filter(|p| p.state == SlotState::Previous)
            .map(|p| &p.slot)
    }

    /// The bake running on the active model with `generation`, if any.
    pub(super) fn baking(&self, generation: u64) -> Option<BakeRun> {
        self.bake.filter(|b| b.generation == generation)
    }

    pub(super) fn changed(&mut self) {
        self.last_change = SystemTime::now();
    }
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
    /// A rollback out of this bake is being recorded in the journal (outside the state
    /// lock): the monitor does not judge it meanwhile, and another rollback waits.
    pub(super) claimed: bool,
}

impl BakeRun {
    pub(super) fn new(generation: u64) -> Self {
        Self {
            generation,
            started: Instant::now(),
            claimed: false,
        }
    }
}

pub(super) fn not_a_candidate<M: Model>(s: &Standby<M>) -> Error {
    Error::NotACandidate {
        version: s.slot.version.to_string(),
        state: s.state,
    }
}
