//! Shadow-traffic set-ups on the trivial model: a [`Trivial`] deployment with a candidate
//! staged and no shadow, a saturated one or a 1 % one ([`ShadowMode`], [`ShadowPath`]),
//! and the slow worker and tiny queue they share with the ONNX shadow set-ups.

use std::time::Duration;

use bluegreen::BlueGreen;
use bluegreen::shadow::{Comparison, Shadow, ShadowStatus};

use super::{ReadPath, Trivial};

/// How long the shadow worker is held per mirrored call in the shadow configurations:
/// the comparison sleeps this long, standing in for a slow candidate (the [`Trivial`]
/// candidate itself cannot be slow without changing the model every other figure uses).
/// The worker then drains at most ~5 000 mirrors a second against millions offered, so
/// the queue stays full.
pub const SHADOW_SLOW: Duration = Duration::from_micros(200);

/// Queue capacity of the shadow configurations ("a tiny queue").
pub const SHADOW_QUEUE: usize = 4;

/// Shadow set-up of a [`ShadowPath`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowMode {
    /// No shadow configured: plain `BlueGreen::predict`.
    None,
    /// Every call mirrored (fraction 1.0) to a slow worker through a tiny queue: saturated,
    /// nearly every mirror dropped.
    Saturated,
    /// 1 % of calls mirrored (same slow worker and queue).
    OnePercent,
}

impl ShadowMode {
    pub const ALL: [ShadowMode; 3] = [
        ShadowMode::None,
        ShadowMode::Saturated,
        ShadowMode::OnePercent,
    ];

    /// Short identifier used in bench ids and quickbench lines.
    pub fn name(self) -> &'static str {
        match self {
            ShadowMode::None => "none",
            ShadowMode::Saturated => "saturated",
            ShadowMode::OnePercent => "1pct",
        }
    }

    /// Share of calls mirrored, `None` without a shadow.
    pub fn fraction(self) -> Option<f64> {
        match self {
            ShadowMode::None => None,
            ShadowMode::Saturated => Some(1.0),
            ShadowMode::OnePercent => Some(0.01),
        }
    }
}

/// `BlueGreen::predict` on a [`Trivial`] deployment with a candidate staged (shadowing
/// only runs while one is) and the shadow set-up of a [`ShadowMode`].
pub struct ShadowPath {
    pub bg: BlueGreen<Trivial>,
}

impl ShadowPath {
    pub fn new(mode: ShadowMode) -> Self {
        let mut builder = BlueGreen::builder();
        if let Some(fraction) = mode.fraction() {
            let slow_compare = |candidate: &u64, live: &u64| {
                std::thread::sleep(SHADOW_SLOW);
                Comparison {
                    agree: candidate == live,
                    abs_diff: 0.0,
                }
            };
            builder =
                builder.shadow(Shadow::new(fraction, slow_compare).queue_capacity(SHADOW_QUEUE));
        }
        let bg = builder.build("v0", Trivial { tag: 0 }).expect("deployment");
        bg.stage("v1", Trivial { tag: 1 }).expect("stage");
        Self { bg }
    }

    /// The shadow's counters for the staged candidate (`None` without a shadow).
    pub fn shadow(&self) -> Option<ShadowStatus> {
        self.bg.status().shadow
    }
}

impl ReadPath for ShadowPath {
    #[inline]
    fn call(&self, x: u64) -> u64 {
        let Ok(y) = self.bg.predict(&x);
        y
    }
    fn replace(&self) {}
}
