//! Work that hung past its deadline and was abandoned, and the slot references it still
//! holds.
//!
//! A gate, a warm-up or a mirrored shadow call runs untrusted model code on a thread of
//! its own. When it overruns its deadline the deployment stops waiting for it — threads
//! cannot be killed — but the thread still holds references to the slots it was given,
//! and may hold them forever (an ONNX model with an endless `Loop` does). Retiring a slot
//! waits until nobody but the deployment holds it, so without bookkeeping one hung call
//! would wedge every later `stage`.
//!
//! [`Hung`] is that bookkeeping. Abandoned work registers *what* hung and a [`Weak`] to
//! the allocation through which it holds its slots (a gate's context, a warm-up's handle),
//! together with the generations of those slots: each alive entry holds exactly one
//! reference to each slot it names. Retirement subtracts those references, so it can go
//! ahead; the slot is then freed by the hung thread itself if it ever returns. An entry
//! disappears as soon as its work lets go (its `Weak` no longer upgrades).

use std::any::Any;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use crate::sync::Mutex;

/// One piece of abandoned work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HungWork {
    /// What hung, in words (`gate "accuracy"`, `warm-up`, `mirrored call`).
    pub(crate) what: String,
    /// The versions of the slots it holds, in `generations` order.
    pub(crate) versions: Vec<&'static str>,
    /// The generations of the slots it holds (one reference each).
    pub(crate) generations: Vec<u64>,
    /// When it was abandoned.
    pub(crate) since: SystemTime,
}

struct Entry {
    work: HungWork,
    holds: Weak<dyn Any + Send + Sync>,
}

/// The registry of abandoned work of one deployment.
#[derive(Default)]
pub(crate) struct Hung {
    entries: Mutex<Vec<Entry>>,
}

impl Hung {
    /// Registers `work`, which holds one reference to each of `work.generations` through
    /// `holds` for as long as `holds` is alive.
    pub(crate) fn abandon<T: Any + Send + Sync>(&self, work: HungWork, holds: &Arc<T>) {
        let holds: Arc<dyn Any + Send + Sync> = Arc::<T>::clone(holds);
        let holds = Arc::downgrade(&holds);
        tracing::error!(target: "bluegreen", what = %work.what, versions = ?work.versions,
            "work overran its deadline and was abandoned; its thread still holds the model");
        let mut entries = self.entries.lock();
        entries.retain(|e| e.holds.strong_count() > 0);
        entries.push(Entry { work, holds });
    }

    /// References to the slot with `generation` held by abandoned work still running.
    pub(crate) fn refs_on(&self, generation: u64) -> u64 {
        let mut entries = self.entries.lock();
        entries.retain(|e| e.holds.strong_count() > 0);
        entries
            .iter()
            .map(|e| {
                e.work
                    .generations
                    .iter()
                    .filter(|&&g| g == generation)
                    .count() as u64
            })
            .sum()
    }

    /// The abandoned work still running, oldest first.
    pub(crate) fn list(&self) -> Vec<HungWork> {
        let mut entries = self.entries.lock();
        entries.retain(|e| e.holds.strong_count() > 0);
        entries.iter().map(|e| e.work.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(generations: Vec<u64>) -> HungWork {
        HungWork {
            what: "gate \"g\"".to_owned(),
            versions: vec!["v"; generations.len()],
            generations,
            since: SystemTime::now(),
        }
    }

    #[test]
    fn an_entry_counts_its_references_until_its_work_lets_go() {
        let hung = Hung::default();
        let context = Arc::new(("candidate", "live"));
        hung.abandon(work(vec![7, 3]), &context);
        let warm_up = Arc::new(());
        hung.abandon(work(vec![7]), &warm_up);
        assert_eq!(
            (hung.refs_on(7), hung.refs_on(3), hung.refs_on(9)),
            (2, 1, 0)
        );
        assert_eq!(hung.list().len(), 2);
        drop(context);
        assert_eq!((hung.refs_on(7), hung.refs_on(3)), (1, 0));
        drop(warm_up);
        assert_eq!(hung.refs_on(7), 0);
        assert!(hung.list().is_empty());
    }
}
