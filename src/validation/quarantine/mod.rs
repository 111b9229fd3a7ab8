//! Quarantine: qualifying an untrusted candidate in a child process, under caps, before
//! it enters the serving process. The design — what runs where, why the child is the
//! re-executed application, the caps, the platforms — is in the public module's docs
//! (`bluegreen::quarantine`, `src/quarantine.rs`).
//!
//! # Where things are
//!
//! Stands on `model/`, `slot/` and the rest of `validation/` (a trial runs the gates with
//! `run_all`); the deployment's `stage_quarantined` and the watcher use it, the ONNX
//! backend registers its loader with it, and `bluegreen::quarantine` (a crate-root file,
//! `src/quarantine.rs`) wires the built-in loaders into [`Hook::new`].
//!
//! | file | holds |
//! |---|---|
//! | `config.rs` | [`Quarantine`]: loader, settings, caps, program; `qualify`, the serving process's `load`; content hashes |
//! | `child.rs` | [`Hook`], [`Trial`]: the child's entry point, its loaders, the trial it runs |
//! | `parent.rs` | starting and watching the child: caps, deadlines, its output |
//! | `verdict.rs` | how the child ended, as a verdict: the report and the refusal naming the cause |
//! | `protocol.rs` | [`Job`], the frames, the bounded frame parser |
//! | `limits.rs` | the caps, and the child capping itself (`setrlimit`) |
//! | `usage.rs` | [`Usage`]: peak memory and CPU time from `/proc` and `getrusage` |
//! | `report.rs` | [`QuarantineReport`] |
//! | `error.rs` | [`QuarantineError`] |

mod child;
mod config;
mod error;
mod limits;
mod parent;
mod protocol;
mod report;
mod usage;
mod verdict;

pub use child::{Hook, Trial};
pub use config::Quarantine;
pub(crate) use config::fingerprint;
pub use error::QuarantineError;
pub use protocol::Job;
pub use report::QuarantineReport;
pub use usage::Usage;
