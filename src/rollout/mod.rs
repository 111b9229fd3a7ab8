//! Rolling versions out by themselves: the model repository on disk and the watcher that
//! follows it.
//!
//! | file | holds |
//! |---|---|
//! | `repository.rs` | the public `bluegreen::repository` module: [`Repository`](repository::Repository), version folders, the completion-marker rule, the desired-version manifest |
//! | `content.rs` | a version directory's files, their fingerprint and BLAKE3 hash (for [`Repository::identity`](repository::Repository::identity)) |
//! | `watch/` | the public `bluegreen::watch` module (feature `watch`): the [`Watcher`](watch::Watcher) thread that stages, validates and promotes new versions |
//!
//! The top layer: stands on the deployment (it drives a [`BlueGreen`](crate::BlueGreen)
//! through its public operations) and on the layers below; nothing in the crate imports
//! it.

mod content;
pub mod repository;
#[cfg(feature = "watch")]
pub mod watch;
