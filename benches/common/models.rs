//! The models the measurements run: [`Trivial`] (`x + 1`, out of line), behind every
//! read-path, admin and shadow figure, and [`Weights`] (a resident 1 MiB allocation,
//! counted by a [`Census`]), cycled by the memory driver.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bluegreen::Model;

/// The cheapest possible model: `x + 1`, kept out of line so every read path pays for one
/// real call and nothing is folded away. `tag` only tells versions apart.
pub struct Trivial {
    pub tag: u64,
}

impl Model for Trivial {
    type Input = u64;
    type Output = u64;
    type Error = Infallible;

    #[inline(never)]
    fn predict(&self, x: &u64) -> Result<u64, Infallible> {
        Ok(x.wrapping_add(1))
    }
}

pub(super) fn call(m: &Trivial, x: u64) -> u64 {
    let Ok(y) = m.predict(&x);
    y
}

/// Counts live [`Weights`] models through their constructor and `Drop`.
#[derive(Default)]
pub struct Census {
    alive: AtomicUsize,
    max_alive: AtomicUsize,
    created: AtomicUsize,
}

impl Census {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }
    pub fn max_alive(&self) -> usize {
        self.max_alive.load(Ordering::SeqCst)
    }
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }
}

/// Size of one [`Weights`] model's resident allocation.
pub const WEIGHTS_BYTES: usize = 1 << 20;

/// A model holding a real, touched 1 MiB allocation (so it is resident, not just reserved).
pub struct Weights {
    data: Vec<f32>,
    census: Arc<Census>,
}

impl Weights {
    pub fn new(census: &Arc<Census>, tag: u64) -> Self {
        let n = WEIGHTS_BYTES / std::mem::size_of::<f32>();
        // Non-zero contents: a zeroed allocation could stay untouched (not resident).
        let data = (0..n).map(|i| (i as u64 ^ tag) as f32 + 1.0).collect();
        let alive = census.alive.fetch_add(1, Ordering::SeqCst) + 1;
        census.max_alive.fetch_max(alive, Ordering::SeqCst);
        census.created.fetch_add(1, Ordering::SeqCst);
        Self {
            data,
            census: Arc::clone(census),
        }
    }
}

impl Drop for Weights {
    fn drop(&mut self) {
        self.census.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Model for Weights {
    type Input = u64;
    type Output = f32;
    type Error = Infallible;

    fn predict(&self, x: &u64) -> Result<f32, Infallible> {
        Ok(self.data[(*x as usize) % self.data.len()])
    }
}
