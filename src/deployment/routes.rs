//! The routes into the non-active models besides the admin state — the previous model for
//! pinned sessions, the canary, the shadow target — published from the admin state (so a
//! model being drained for retirement is reached by none of them), and counting the
//! references held beyond them.

use std::sync::Arc;

use super::actor::Actor;
use super::audit::record;
use super::bluegreen::{CanaryRoute, Inner};
use super::faults::FaultKind;
use super::state::State;
use super::status::SlotState;
use crate::journal::{EventKind, Named};
use crate::model::Model;
use crate::slot::Slot;

impl<M: Model> Inner<M> {
    /// Makes the keyed-routing views and the shadow target match the admin state. Called
    /// with the state lock held, after every change to the slots.
    pub(super) fn publish(&self, st: &State<M>) {
        if self.sessions.is_some() {
            let previous = st.rollback_target().cloned();
            let current = self.previous.load();
            let same = match (&*current, &previous) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                self.previous.store(previous);
            }
        }
        let canary = st.candidate.as_ref().and_then(|s| {
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
            let target = st
                .candidate
                .as_ref()
                .filter(|s| matches!(s.state, SlotState::Staged | SlotState::Validating))
                .map(|s| &s.slot);
            shadow.target(target);
        }
    }

    /// Withdraws every route (at shutdown).
    pub(super) fn unpublish(&self) {
        self.previous.store(None);
        self.canary.store(None);
        if let Some(shadow) = &self.shadow {
            shadow.target(None);
        }
    }

    /// References to a non-active model beyond the deployment's own (its slot in the admin
    /// state, and the routes to it) and beyond those held by abandoned work: calls running
    /// on it and [`Active`](crate::Active) pins.
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
        let abandoned = self.hung.refs_on(slot.generation);
        (Arc::strong_count(slot) as u64).saturating_sub(ours + abandoned)
    }

    /// Abandons a mirrored call that overran the shadow's call deadline, if there is one,
    /// so that nothing waits for it (called wherever the deployment looks at holders).
    pub(super) fn check_shadow(&self) {
        if let Some(a) = self
            .shadow
            .as_ref()
            .and_then(|s| s.abandon_if_hung(&self.hung))
        {
            let what = format!(
                "mirrored call on candidate {} hung for {:?}",
                a.version, a.after
            );
            self.faults
                .record(FaultKind::Abandoned, Some(a.version), what.clone());
            let live = self.active.load_full();
            self.audit.note(|| {
                record(EventKind::Abandon, &live, &Actor::Application)
                    .subject(Named {
                        version: a.version.to_owned(),
                        content: None,
                        generation: 0,
                    })
                    .reason(what)
            });
        }
    }
}
