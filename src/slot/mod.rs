//! The loaded-slot machinery: a model with its identity, and counters that request threads
//! update without ever sharing a cache line.
//!
//! | file | holds |
//! |---|---|
//! | `loaded.rs` | [`Slot`]: one loaded model, its version and generation, the hot-path `predict` that counts the call; [`Observed`], what the model has shown (for the bake) |
//! | `stats.rs` | [`SlotStats`]: per-slot counters and latency histogram, striped per thread; [`bump`], the single-writer increment |
//! | `identity.rs` | [`Identity`] and [`ContentHash`]: a version label and the hash of the bytes it was loaded from |
//! | `hung.rs` | [`Hung`]: work abandoned past its deadline, and the slot references it still holds |
//! | `label.rs` | interned version labels: how an answer names its version without shared writes |
//! | `lanes.rs` | [`Lanes`]: one cache-padded value per thread, found through an inlined thread index |
//!
//! Stands on `model/` only. Everything above — validation (a gate's `Context` holds slots),
//! the traffic features and the deployment — imports it; nothing here knows about them.

mod hung;
mod identity;
mod label;
mod lanes;
mod loaded;
mod stats;

pub(crate) use hung::{Hung, HungWork};
pub use identity::{ContentHash, Identity, InvalidContentHash};
pub(crate) use lanes::Lanes;
pub(crate) use loaded::{Observed, Slot};
#[cfg(feature = "metrics")]
pub(crate) use stats::Totals;
pub(crate) use stats::{SlotStats, bump};
