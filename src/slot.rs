//! A loaded model together with its identity and counters: the unit that is swapped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use crate::bake::Observed;
use crate::model::Model;
use crate::model::ModelInfo;
use crate::stats::{Histogram, SlotStats, Totals};

/// One loaded model as bluegreen holds it. Shared by `Arc`; the active one lives in the
/// `ArcSwap`, the standby one in the admin state.
pub(crate) struct Slot<M: Model> {
    pub(crate) model: M,
    pub(crate) version: Box<str>,
    /// Unique in the process, increasing; tells two loads of one version apart (and lets
    /// gates cache results per loaded model).
    pub(crate) generation: u64,
    pub(crate) info: ModelInfo,
    pub(crate) loaded_at: SystemTime,
    /// Whether calls are timed (only when something needs latency: a bake limit).
    timed: bool,
    pub(crate) stats: SlotStats,
}

impl<M: Model> Slot<M> {
    pub(crate) fn new(model: M, version: Box<str>, timed: bool) -> Self {
        static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        let info = model.info();
        Self {
            model,
            version,
            generation,
            info,
            loaded_at: SystemTime::now(),
            timed,
            stats: SlotStats::default(),
        }
    }

    /// The hot path: one counted call on this model.
    #[inline(always)]
    pub(crate) fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        if self.timed {
            return self.predict_timed(input);
        }
        let call = self.stats.enter();
        let out = self.model.predict(input);
        if out.is_err() {
            call.failed();
        }
        out
    }

    /// The hot path with per-call timing (only when a bake limit or `track_latency` asks).
    #[inline(never)]
    fn predict_timed(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        let call = self.stats.enter();
        let started = Instant::now();
        let out = self.model.predict(input);
        call.took(started.elapsed());
        if out.is_err() {
            call.failed();
        }
        out
    }

    pub(crate) fn totals(&self) -> Totals {
        self.stats.totals()
    }

    /// Latency of counted calls (empty unless the slot is timed).
    pub(crate) fn latency(&self) -> Histogram {
        self.stats.latency()
    }

    /// What this model has shown, for a bake's judgement.
    pub(crate) fn observed(&self) -> Observed {
        let t = self.totals();
        Observed {
            requests: t.finished,
            errors: t.failed,
            p99: if self.timed {
                self.latency().quantile(0.99)
            } else {
                None
            },
            outcomes: t.outcomes(),
            outcomes_ok: t.outcomes_ok,
        }
    }
}
