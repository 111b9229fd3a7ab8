//! After the switch: what watches, mirrors and routes traffic once a candidate is staged or
//! promoted.
//!
//! | file | holds |
//! |---|---|
//! | `bake.rs` | the public `bluegreen::bake` module: [`Bake`](bake::Bake) limits and their judgement, [`AutoRollback`](bake::AutoRollback), [`BakeStatus`](bake::BakeStatus) |
//! | `shadow.rs` | the public `bluegreen::shadow` module: [`Shadow`](shadow::Shadow) settings and the worker that mirrors live calls to the staged candidate |
//! | `shadow_worker.rs` | the shadow worker thread, and abandoning it when the candidate hangs |
//! | `routing.rs` | the public `bluegreen::routing` module: the canary split by stable key hash and session [`Affinity`](routing::Affinity) |
//!
//! Stands on `model/`, `slot/` and `validation/` (the shadow worker fills in the
//! [`ShadowStatus`](crate::ShadowStatus) that the shadow gate reads). The deployment drives
//! these pieces — the bake monitor thread, the shadow target, the keyed routes — and is
//! the only layer that imports them.

pub mod bake;
pub mod routing;
pub mod shadow;
mod shadow_worker;
