//! "Not now": answers that are no verdict on the model — a drain that would time out, a
//! retirer still dropping, a bake or canary in progress, a journal that cannot be written
//! — and how the watcher waits them out.
//!
//! Two rules, both found in the field. First, *look before taking the operation lock*: a
//! status snapshot tells whether staging would have to wait for a held model, so the
//! watcher does not sit on the lock (which an operator's admin calls share) through a
//! drain timeout; measured before this rule, a watcher retrying a pinned deployment held
//! it ~87 % of the time. Second, *back off*: the target is tried again after an
//! exponentially growing, jittered delay ([`backon`]'s schedule, from the poll interval up
//! to a minute), not on every look; a new target or a new marker starts afresh.
//!
//! Deferrals are reported once per version and cause (the cause, not the message: a
//! message carries the time waited and would never repeat), and the set that remembers
//! them only holds versions still in the repository.

use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::events::WatchEvent;
use super::worker::{Outcome, Worker};
use crate::deployment::{Error, SlotState};
use crate::model::Model;
use crate::rollout::repository::{MarkerStamp, VersionDir};

/// The longest wait between two tries of one target.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A target that got "not now", and when to try it again.
pub(super) struct Retry {
    pub(super) version: String,
    pub(super) marker: Option<MarkerStamp>,
    backoff: ExponentialBackoff,
    pub(super) next: Instant,
}

impl<M, F, E> Worker<M, F>
where
    M: Model,
    F: Fn(&VersionDir) -> Result<M, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Whether `target` is waiting out a backoff.
    pub(super) fn backing_off(&self, target: &VersionDir) -> bool {
        self.retry.as_ref().is_some_and(|r| {
            r.version == target.version && r.marker == target.marker && Instant::now() < r.next
        })
    }

    /// After a "not now" on `target`: when to try it again.
    pub(super) fn schedule_retry(&mut self, target: &VersionDir) {
        let same = self
            .retry
            .as_ref()
            .is_some_and(|r| r.version == target.version && r.marker == target.marker);
        if !same {
            self.retry = Some(Retry {
                version: target.version.clone(),
                marker: target.marker,
                backoff: ExponentialBuilder::new()
                    .with_min_delay(self.poll)
                    .with_max_delay(MAX_BACKOFF.max(self.poll))
                    .with_factor(2.0)
                    .with_jitter()
                    .without_max_times()
                    .build(),
                next: Instant::now(),
            });
        }
        if let Some(r) = self.retry.as_mut() {
            let wait = r.backoff.next().unwrap_or(MAX_BACKOFF);
            r.next = Instant::now() + wait;
            self.shared.lock().next_retry = Some(SystemTime::now() + wait);
            tracing::debug!(target: "bluegreen::watch", version = %r.version, ?wait, "retry scheduled");
        }
    }

    /// The target was acted on (or changed): no retry pending.
    pub(super) fn clear_retry(&mut self) {
        if self.retry.take().is_some() {
            self.shared.lock().next_retry = None;
        }
    }

    /// Why staging a candidate now would have to wait, from a status snapshot taken
    /// without the operation lock; `None` when it can go ahead.
    pub(super) fn not_now(&self) -> Option<(&'static str, String)> {
        let st = self.bg.status();
        if let Some(j) = st.journal.as_ref().filter(|j| j.pending > 0) {
            let error = j.last_error.as_deref().unwrap_or("rows pending");
            return Some((
                "journal",
                format!("the journal cannot be written ({error})"),
            ));
        }
        if let Some(b) = &st.bake {
            return Some((
                "bake",
                format!(
                    "{} is baking; its rollback target must stay until it passes",
                    b.version
                ),
            ));
        }
        if let Some(c) = st
            .candidate
            .as_ref()
            .filter(|c| c.state == SlotState::Canary)
        {
            return Some(("canary", format!("canary {} is running", c.version)));
        }
        // Staging retires the candidate; swapping retires the previous model.
        for s in [&st.candidate, &st.previous].into_iter().flatten() {
            if let Some(holders) = s.holders.filter(|&h| h > 0) {
                return Some((
                    "drain",
                    format!(
                        "{} ({}) is still held by {holders} calls or pins; it must drain before it is retired",
                        s.version, s.state
                    ),
                ));
            }
        }
        if !st.retiring.is_empty() {
            let dropping: Vec<&str> = st.retiring.iter().map(|m| m.version.as_str()).collect();
            return Some((
                "retirer",
                format!("the retirer is still dropping {}", dropping.join(", ")),
            ));
        }
        None
    }

    /// Reports a "not now" once per version and cause; the caller retries later.
    pub(super) fn defer(
        &mut self,
        version: &str,
        (cause, reason): (&'static str, String),
    ) -> Outcome {
        self.why_not = Some((version.to_owned(), format!("deferred: {reason}")));
        if self
            .reported_once
            .insert((version.to_owned(), format!("deferred: {cause}")))
        {
            tracing::info!(target: "bluegreen::watch", %version, %reason, "deferred");
            self.emit(WatchEvent::Deferred {
                version: version.to_owned(),
                reason,
            });
        }
        Outcome::Retry
    }
}

/// The cause of a "not now" error, for reporting it once.
pub(super) fn cause(e: &Error) -> &'static str {
    match e {
        Error::DrainTimeout { .. } => "drain",
        Error::RetireBacklog { .. } => "retirer",
        Error::BakeInProgress { .. } => "bake",
        Error::CanaryInProgress { .. } => "canary",
        #[cfg(feature = "journal")]
        Error::Journal(_) => "journal",
        _ => "other",
    }
}
