//! [`Slot`]: a loaded model together with its identity and counters — the unit that is
//! swapped — and [`Observed`], what it has shown so far.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::identity::ContentHash;
use super::stats::{Histogram, SlotStats, Totals};
use crate::model::{Model, ModelInfo};

/// One loaded model as bluegreen holds it. Shared by `Arc`; the active one lives in the
/// `ArcSwap`, the standby one in the admin state.
pub(crate) struct Slot<M: Model> {
    pub(crate) model: M,
    /// Interned (see `label.rs`), so an answer can name it without shared writes.
    pub(crate) version: &'static str,
    /// Unique in the process, increasing; tells two loads of one version apart (and lets
    /// gates cache results per loaded model).
    pub(crate) generation: u64,
    /// The hash of the bytes it was loaded from, when the stager said (see `identity.rs`).
    pub(crate) content: Option<ContentHash>,
    pub(crate) info: ModelInfo,
    pub(crate) loaded_at: SystemTime,
    /// Whether calls are timed (only when something needs latency: a bake limit).
    timed: bool,
    pub(crate) stats: SlotStats,
}

impl<M: Model> Slot<M> {
    /// A slot for `model`, asking it for its [`info`](Model::info) once. A model whose
    /// `info` panics is handed back with the panic message: it is refused, and its caller
    /// disposes of it (its `Drop` is untrusted too).
    pub(crate) fn new(
        model: M,
        version: &str,
        content: Option<ContentHash>,
        timed: bool,
    ) -> Result<Self, (M, String)> {
        static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);
        let info = match catch_unwind(AssertUnwindSafe(|| model.info())) {
            Ok(info) => info,
            Err(payload) => {
                let message = crate::model::panic_message(payload.as_ref())
                    .unwrap_or_else(|| "non-string panic payload".to_owned());
                return Err((model, message));
            }
        };
        let generation = NEXT_GENERATION.fetch_add(1, Ordering::Relaxed);
        Ok(Self {
            model,
            version: super::label::intern(version),
            generation,
            content,
            info,
            loaded_at: SystemTime::now(),
            timed,
            stats: SlotStats::default(),
        })
    }

    /// The hot path: one counted call on this model.
    #[inline(always)]
    pub(crate) fn predict(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        if self.timed {
            return self.predict_timed(input);
        }
        let call = self.stats.enter();
        let out = self.model.predict(input);
        call.finish(out.is_err());
        out
    }

    /// The hot path with per-call timing (only when a bake limit or `track_latency` asks).
    #[inline(never)]
    fn predict_timed(&self, input: &M::Input) -> Result<M::Output, M::Error> {
        let call = self.stats.enter();
        let started = Instant::now();
        let out = self.model.predict(input);
        call.took(started.elapsed());
        call.finish(out.is_err());
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

/// What a model showed, for the bake's judgement.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observed {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) p99: Option<Duration>,
    pub(crate) outcomes: u64,
    pub(crate) outcomes_ok: u64,
}

impl Observed {
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    pub(crate) fn outcome_success(&self) -> f64 {
        if self.outcomes == 0 {
            1.0
        } else {
            self.outcomes_ok as f64 / self.outcomes as f64
        }
    }
}
