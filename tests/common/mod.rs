//! Test models written in plain Rust, with instrumentation the assertions rely on.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bluegreen::{Model, validate};
use parking_lot::Mutex;

/// What a [`Tracked`] model does when called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answers `(tag, input)`.
    Healthy,
    /// Returns [`ModelError`] for every call.
    Failing,
    /// Panics on every call.
    Panicking,
    /// Sleeps this long, then answers.
    Slow(Duration),
    /// Answers the first `n` calls, then returns errors.
    FailingAfter(u64),
    /// Answers the first `n` calls quickly, then sleeps this long per call.
    SlowAfter(u64, Duration),
    /// Hangs until [`Tracker::release`] is called, then answers.
    HangsUntilReleased,
}

/// What a [`Tracked`] model's `Drop` does after its bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrop {
    /// Returns.
    Quietly,
    /// Panics.
    Panics,
    /// Sleeps this long.
    Slowly(Duration),
    /// Blocks until [`Tracker::release`] is called.
    HangsUntilReleased,
}

/// The error a [`Tracked`] model returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model {tag} refused input {input}")]
pub struct ModelError {
    pub tag: u64,
    pub input: u64,
}

/// Shared bookkeeping across every model a test creates.
#[derive(Default)]
pub struct Tracker {
    alive: AtomicUsize,
    max_alive: AtomicUsize,
    created: AtomicU64,
    drops: Mutex<HashMap<u64, u32>>,
    released: AtomicBool,
    hanging: AtomicUsize,
    /// Drops that have started (the models' `alive` count falls only when they end).
    drops_started: AtomicU64,
    /// Problems seen inside `Drop` (a drop while a call ran, a drop on a reader thread).
    pub violations: Mutex<Vec<String>>,
}

impl Tracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new healthy model answering with `tag`.
    pub fn model(self: &Arc<Self>, tag: u64) -> Tracked {
        self.model_with(tag, Behavior::Healthy)
    }

    pub fn model_with(self: &Arc<Self>, tag: u64, behavior: Behavior) -> Tracked {
        let alive = self.alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_alive.fetch_max(alive, Ordering::SeqCst);
        self.created.fetch_add(1, Ordering::SeqCst);
        Tracked {
            tag,
            behavior,
            good: true,
            on_drop: OnDrop::Quietly,
            in_flight: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            warmed: AtomicBool::new(false),
            tracker: Arc::clone(self),
        }
    }

    /// Drops that have started, finished or not.
    pub fn drops_started(&self) -> u64 {
        self.drops_started.load(Ordering::SeqCst)
    }

    /// How many [`Behavior::HangsUntilReleased`] calls are hanging right now.
    pub fn hanging(&self) -> usize {
        self.hanging.load(Ordering::SeqCst)
    }

    /// Lets every [`Behavior::HangsUntilReleased`] call finish.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }

    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    pub fn max_alive(&self) -> usize {
        self.max_alive.load(Ordering::SeqCst)
    }

    pub fn created(&self) -> u64 {
        self.created.load(Ordering::SeqCst)
    }

    /// How many times the model with `tag` was dropped.
    pub fn drops_of(&self, tag: u64) -> u32 {
        self.drops.lock().get(&tag).copied().unwrap_or(0)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.lock().values().map(|&n| u64::from(n)).sum()
    }
}

/// A plain-Rust model that answers `(tag, input)` and reports misuse from its `Drop`.
pub struct Tracked {
    pub tag: u64,
    pub behavior: Behavior,
    /// What the `tag_is_good` gate says about this model.
    pub good: bool,
    /// What its `Drop` does.
    pub on_drop: OnDrop,
    in_flight: AtomicU64,
    calls: AtomicU64,
    warmed: AtomicBool,
    tracker: Arc<Tracker>,
}

impl Tracked {
    /// Marks the model as one the `tag_is_good` gate refuses.
    pub fn bad(mut self) -> Self {
        self.good = false;
        self
    }

    /// Gives the model a `Drop` that panics, is slow or hangs.
    pub fn dropping(mut self, on_drop: OnDrop) -> Self {
        self.on_drop = on_drop;
        self
    }

    pub fn was_warmed(&self) -> bool {
        self.warmed.load(Ordering::SeqCst)
    }
}

impl Model for Tracked {
    type Input = u64;
    type Output = (u64, u64);
    type Error = ModelError;

    fn predict(&self, input: &u64) -> Result<(u64, u64), ModelError> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let out = match self.behavior {
            Behavior::FailingAfter(n) if call >= n => Err(ModelError {
                tag: self.tag,
                input: *input,
            }),
            Behavior::SlowAfter(n, d) if call >= n => {
                std::thread::sleep(d);
                Ok((self.tag, *input))
            }
            Behavior::FailingAfter(_) | Behavior::SlowAfter(..) => Ok((self.tag, *input)),
            Behavior::HangsUntilReleased => {
                self.tracker.hanging.fetch_add(1, Ordering::SeqCst);
                while !self.tracker.released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                self.tracker.hanging.fetch_sub(1, Ordering::SeqCst);
                Ok((self.tag, *input))
            }
            Behavior::Healthy => Ok((self.tag, *input)),
            Behavior::Failing => Err(ModelError {
                tag: self.tag,
                input: *input,
            }),
            Behavior::Panicking => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                panic!("model {} panicked on purpose", self.tag)
            }
            Behavior::Slow(d) => {
                std::thread::sleep(d);
                Ok((self.tag, *input))
            }
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn warm_up(&self, samples: &[u64]) -> Result<usize, ModelError> {
        for s in samples {
            self.predict(s)?;
        }
        self.warmed.store(true, Ordering::SeqCst);
        Ok(samples.len())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.tracker.drops_started.fetch_add(1, Ordering::SeqCst);
        match self.on_drop {
            OnDrop::Quietly | OnDrop::Panics => {}
            OnDrop::Slowly(d) => std::thread::sleep(d),
            OnDrop::HangsUntilReleased => {
                while !self.tracker.released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        let running = self.in_flight.load(Ordering::SeqCst);
        if running != 0 {
            self.tracker.violations.lock().push(format!(
                "model {} dropped with {running} calls running",
                self.tag
            ));
        }
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        if name.starts_with("reader") {
            self.tracker.violations.lock().push(format!(
                "model {} dropped on reader thread {name}",
                self.tag
            ));
        }
        *self.tracker.drops.lock().entry(self.tag).or_default() += 1;
        self.tracker.alive.fetch_sub(1, Ordering::SeqCst);
        if self.on_drop == OnDrop::Panics {
            panic!("drop of model {} panicked on purpose", self.tag);
        }
    }
}

/// A gate that passes exactly the models not marked [`Tracked::bad`].
pub fn tag_is_good() -> impl bluegreen::Validator<Tracked> {
    validate::from_fn("tag_is_good", |cx: &validate::Context<Tracked>| {
        if cx.candidate().good {
            Ok(())
        } else {
            Err(format!("model {} is marked bad", cx.candidate().tag))
        }
    })
}

/// Spins until `cond` holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}
