//! Watch a model repository and roll new versions out by themselves: [`Watcher`].
//!
//! A [`Watcher`] runs one background thread next to a [`BlueGreen`](crate::BlueGreen) deployment. It looks at
//! a [`Repository`](crate::Repository) (and, in fleet mode, at a desired-version manifest file) whenever the
//! file system reports a change — through the [`notify`] crate — and also every
//! [`poll_interval`](WatcherBuilder::poll_interval), so a lost or unsupported notification
//! (network file systems, some container volumes, an exhausted inotify limit) only delays a
//! rollout. When notify cannot watch at all, it falls back to polling alone
//! ([`Backend::Poll`]).
//!
//! # What it converges to
//!
//! * **Newest version** (the default): the newest *complete* version of the repository
//!   (see the [completion rule](crate::repository#the-completion-rule)). It never moves to
//!   an older version by itself.
//! * **Desired version** ([`follow_manifest`](WatcherBuilder::follow_manifest)): the
//!   version named in a manifest file — for a fleet, a Kubernetes ConfigMap mounted into
//!   every replica. Changing the file moves every replica; the version must be complete in
//!   each replica's repository. If the desired version is the standby's *previous* model,
//!   the watcher rolls back to it instantly instead of loading it again.
//!
//! # What it does with a target
//!
//! Per [`WatchPolicy`]: [`AutoPromote`](WatchPolicy::AutoPromote) stages it with
//! [`stage_with`](crate::BlueGreen::stage_with) (the loader runs only after the old standby is
//! gone), then [`swap`](crate::BlueGreen::swap)s, which runs every gate and warms it before any
//! request sees it; [`StageOnly`](WatchPolicy::StageOnly) stages it and runs the gates as
//! a dry run ([`validate`](crate::BlueGreen::validate)), leaving the swap to an operator.
//!
//! A candidate that fails to load or fails a gate is **refused**: the live model keeps
//! serving, and the refusal is reported three ways — a [`WatchEvent::Refused`] to every
//! [`on_event`](WatcherBuilder::on_event) callback, a `tracing` warning (target
//! `bluegreen::watch`), and [`WatchStatus::refused`]. The deployment's own
//! [`Status`](crate::Status) shows the failed candidate in standby and counts the rejection.
//!
//! With [`quarantine`](WatcherBuilder::quarantine) (feature `quarantine`), each target's
//! model file is first qualified in a capped child process through the deployment's
//! [`Quarantine`](crate::quarantine::Quarantine); the loader runs only for a candidate
//! that passed, and a refusal is a [`RefusalKind::Quarantine`] naming the cause (an
//! endless loop stopped at the CPU cap, a memory bomb at the memory cap, a crash, …). A
//! repository anyone can publish to should be watched this way.
//!
//! Each published version is acted on **once**: the watcher does not retry a refused
//! version in a loop (a fix is noticed when the version's marker is written again, or in
//! fleet mode when the manifest changes), and it does not fight an operator or an automatic
//! rollback by re-promoting a version it already promoted. Errors that say "not now"
//! rather than "not this model" (a drain timeout, a bake window or canary in progress) are
//! retried on the next look.
//!
//! ```no_run
//! use std::sync::Arc;
//! use bluegreen::watch::{WatchPolicy, Watcher};
//! use bluegreen::{BlueGreen, OnnxModel};
//!
//! let bg = Arc::new(BlueGreen::new("1", OnnxModel::load("models/digits/1/model.onnx")?)?);
//! let watcher = Watcher::builder("models/digits")
//!     .policy(WatchPolicy::AutoPromote)
//!     .on_event(|e| eprintln!("watcher: {e}"))
//!     .spawn(Arc::clone(&bg), |v| OnnxModel::load(v.file("model.onnx")))?;
//! // … serve with `bg` …
//! println!("{:?}", watcher.status().refused);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where things are
//!
//! | file | holds |
//! |---|---|
//! | `watcher.rs` | [`Watcher`], [`WatcherBuilder`], [`WatchError`]: the handle, its configuration and the event loop (notify + polling) |
//! | `worker.rs` | one look at the repository: target, decision, events |
//! | `policy.rs` | [`WatchPolicy`] and what each deployment answer means (promoted, refused, retried) |
//! | `retry.rs` | "not now": looking before taking the operation lock, exponential backoff, reporting each cause once |
//! | `fleet.rs` | fleet mode: the desired-version manifest, rollback to the previous model |
//! | `events.rs` | [`WatchEvent`], [`Refusal`], [`RefusalKind`], [`WatchStatus`], [`Backend`] |
//! | `convergence.rs` | looks to the target and the refusal in the way ([`WatchStatus::refusing`], [`WatchStatus::target_since_scan`]) |

mod convergence;
mod events;
mod fleet;
mod policy;
mod retry;
mod watcher;
mod worker;

pub use events::{Backend, Refusal, RefusalKind, WatchEvent, WatchStatus};
pub use policy::WatchPolicy;
pub use watcher::{WatchError, Watcher, WatcherBuilder};
