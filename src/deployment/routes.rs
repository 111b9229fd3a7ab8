//! The routes into the standby model besides the admin state — the previous model for
//! pinned sessions, the canary, the shadow target — published from the admin state and
//! withdrawn before the standby is retired; and counting the references beyond them.

use std::sync::Arc;

use super::bluegreen::{CanaryRoute, Inner};
use super::state::State;
use super::status::SlotState;
use crate::model::Model;
use crate::slot::Slot;

impl<M: Model> Inner<M> {
    /// Makes the keyed-routing views and the shadow target match the standby slot.
    pub(super) fn publish(&self, st: &State<M>) {
        let standby = st.standby.as_ref();
        let with = |state: &[SlotState]| standby.filter(|s| state.contains(&s.state));
        if self.sessions.is_some() {
            self.previous
                .store(with(&[SlotState::Previous]).map(|s| Arc::clone(&s.slot)));
        }
        let canary = standby.and_then(|s| {
            let run = s.canary.as_ref()?;
            Some(Arc::new(CanaryRoute {
                slot: Arc::clone(&s.slot),
                basis_points: run.basis_points,
            }))
        });
        if canary.is_some() || self.canary.load().is_some() {
            self.canary.store(canary);
        }
        if let Some(shadow) = &self.shadow {
            shadow.target(with(&[SlotState::Staged, SlotState::Validating]).map(|s| &s.slot));
        }
    }

    /// Unpublishes everything (before retiring the standby).
    pub(super) fn unpublish(&self) {
        self.previous.store(None);
        self.canary.store(None);
        if let Some(shadow) = &self.shadow {
            shadow.target(None);
        }
    }

    /// References to a standby model beyond the deployment's own (state and routes).
    pub(super) fn holders(&self, slot: &Arc<Slot<M>>) -> u64 {
        let mut ours = 1;
        if self
            .previous
            .load()
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, slot))
        {
            ours += 1;
        }
        if self
            .canary
            .load()
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.slot, slot))
        {
            ours += 1;
        }
        if self.shadow.as_ref().is_some_and(|s| s.holds(slot)) {
            ours += 1;
        }
        Arc::strong_count(slot).saturating_sub(ours) as u64
    }
}
