//! What a gate sees: [`Context`] (the candidate and the live model) and the evidence
//! gathered about the candidate before its gates ran ([`ShadowStatus`], filled in by the
//! shadow worker of the traffic layer, read by the shadow gate).

use crate::sync::Arc;
use std::time::Duration;

use crate::model::{Model, ModelInfo};
use crate::slot::Slot;

/// What a validator sees: the candidate and the model that is live right now.
pub struct Context<M: Model> {
    candidate: Arc<Slot<M>>,
    live: Arc<Slot<M>>,
    shadow: Option<ShadowStatus>,
}

impl<M: Model> Context<M> {
    pub(crate) fn new(
        candidate: Arc<Slot<M>>,
        live: Arc<Slot<M>>,
        shadow: Option<ShadowStatus>,
    ) -> Self {
        Self {
            candidate,
            live,
            shadow,
        }
    }

    /// Shadow-traffic results for this candidate, when shadowing is configured and
    /// mirrored requests reached it (see [`ShadowGate`](crate::shadow::ShadowGate)).
    pub fn shadow(&self) -> Option<&ShadowStatus> {
        self.shadow.as_ref()
    }

    /// The model under validation.
    pub fn candidate(&self) -> &M {
        &self.candidate.model
    }

    /// The model serving traffic now (to compare against).
    pub fn live(&self) -> &M {
        &self.live.model
    }

    /// The candidate's version label.
    pub fn candidate_version(&self) -> &str {
        self.candidate.version
    }

    /// The live model's version label.
    pub fn live_version(&self) -> &str {
        self.live.version
    }

    /// The candidate's generation: unique per loaded model in the process, so gates can
    /// cache results per model.
    pub fn candidate_generation(&self) -> u64 {
        self.candidate.generation
    }

    /// The live model's generation.
    pub fn live_generation(&self) -> u64 {
        self.live.generation
    }

    /// What the candidate declares about itself (captured when it was staged).
    pub fn candidate_info(&self) -> &ModelInfo {
        &self.candidate.info
    }

    /// What the live model declares about itself.
    pub fn live_info(&self) -> &ModelInfo {
        &self.live.info
    }
}

/// Shadow results for the staged candidate, in [`Status::shadow`](crate::Status::shadow).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowStatus {
    /// The candidate being shadowed.
    pub version: String,
    /// Copies queued for it.
    pub mirrored: u64,
    /// Copies dropped because the queue was full.
    pub dropped: u64,
    /// Copies the candidate answered and that were compared.
    pub compared: u64,
    /// Copies the candidate failed on.
    pub errors: u64,
    /// Share of compared answers that agreed (1 with none compared).
    pub agreement: f64,
    /// Mean of [`Comparison::abs_diff`](crate::Comparison::abs_diff) over compared answers.
    pub mean_abs_diff: f64,
    /// The candidate's median latency on mirrored calls.
    pub p50: Option<Duration>,
    /// The candidate's p99 latency on mirrored calls.
    pub p99: Option<Duration>,
}
