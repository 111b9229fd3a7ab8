//! The deployment: [`BlueGreen`] with its two slots, everything that changes them, and
//! everything it reports.
//!
//! | file | holds |
//! |---|---|
//! | `bluegreen.rs` | [`BlueGreen`] and `Inner`, what request threads, the admin path and the monitor share; construction and shutdown |
//! | `builder.rs` | [`Builder`] and the deployment's `Config` |
//! | `read.rs` | the request path: `predict`, `predict_keyed`, their versioned forms ([`Versioned`]), the [`Active`] pin, `record_outcome` |
//! | `actor.rs` | [`Actor`], who asks for an operation, and [`Acting`], the operations asked for in someone's name |
//! | `admin.rs` | the admin operations' public face; stage, unstage, dry runs, unban, content checks |
//! | `flip.rs` | swap and rollback, and the steps they share with canaries (qualify, record the move, flip) |
//! | `quarantine.rs` | `stage_quarantined`: qualify a candidate file in a quarantine child, then load and stage it (feature `quarantine`) |
//! | `canary.rs` | start, resize, promote and abort a canary |
//! | `monitor.rs` | the bake monitor thread and automatic rollback |
//! | `hooks.rs` | the thread that calls the automatic-rollback hook, off the monitor |
//! | `warmup.rs` | warming a model before it takes traffic (always; where the samples come from) |
//! | `faults.rs` | [`Faults`]: panics and hangs caught on bluegreen's threads, counted with the version |
//! | `metrics.rs` | the series bluegreen publishes through the `metrics` facade, and the events counted where they happen (swaps, rollbacks, gate results) |
//! | `publish.rs` | feature `metrics`: `publish_metrics`, summing the per-thread lanes on a collector tick or at scrape time |
//! | `routes.rs` | publishing the standby to keyed routes and the shadow, withdrawing it, counting its holders |
//! | `retire.rs` | draining the standby and the retirer thread that drops retired models |
//! | `audit.rs` | the deployment's side of the journal: record before acting, facts after, bans in force |
//! | `resume.rs` | (feature `journal`) [`Builder::journal`], the resume step, start-up checks, [`BlueGreen::history`] |
//! | `state.rs` | the admin state: candidate and previous slots, a model draining, counters, running bake |
//! | `status.rs` | [`Status`], [`SlotStatus`], [`SlotState`] and `status()` |
//! | `report.rs` | what admin operations return: [`StageReport`], [`SwapReport`], [`RollbackReport`], [`CanaryReport`] |
//! | `error.rs` | [`Error`], why an admin operation was refused |
//!
//! Stands on every layer below it — `model/`, `slot/`, `validation/`, `traffic/`,
//! `journal/` — and is
//! imported only by `rollout/` (the repository watcher) and the crate's re-exports.
//! [`Error`] lives here because it carries deployment-level facts (slot states,
//! validation reports); the lower layers keep their own small error types.

mod actor;
mod admin;
mod audit;
mod bluegreen;
mod builder;
mod canary;
mod error;
mod faults;
mod flip;
mod hooks;
mod metrics;
mod monitor;
#[cfg(feature = "metrics")]
mod publish;
#[cfg(feature = "quarantine")]
mod quarantine;
mod read;
mod report;
#[cfg(feature = "journal")]
mod resume;
mod retire;
mod routes;
mod state;
mod status;
mod warmup;

pub use actor::{Acting, Actor};
pub use bluegreen::BlueGreen;
pub use builder::Builder;
pub use error::{Error, Result};
pub use faults::{Fault, FaultKind, Faults};
pub use read::{Active, Versioned};
pub use report::{CanaryReport, RollbackReport, StageReport, SwapReport};
pub use status::{
    Abandoned, ContentChange, JournalStatus, RetiringModel, SlotState, SlotStatus, Status,
};
