//! The deployment's side of the journal: recording its decisions in the order the journal
//! module describes (commit before acting, facts after), the bans in force, and the
//! journal's health for `status()`. Without the `journal` feature, or without
//! [`Builder::journal`](crate::Builder::journal), every call here is free and succeeds:
//! records are built by closures that then never run.

#[cfg(feature = "journal")]
use std::time::Duration;

use super::actor::Actor;
#[cfg(feature = "journal")]
use super::error::Error;
use super::error::Result;
use super::status::JournalStatus;
use crate::journal::{EventKind, Named, Record};
use crate::model::Model;
use crate::slot::{Identity, Slot};

#[cfg(feature = "journal")]
use crate::journal::{Ban, Writer};

/// What a row says about a loaded model.
pub(super) fn named<M: Model>(slot: &Slot<M>) -> Named {
    Named {
        version: slot.version.to_owned(),
        content: slot.content,
        generation: slot.generation,
    }
}

/// A record about `kind`, with the live model after it.
pub(super) fn record<M: Model>(kind: EventKind, live: &Slot<M>, actor: &Actor) -> Record {
    Record::new(kind, named(live), actor.to_string())
}

pub(super) struct Audit {
    #[cfg(feature = "journal")]
    pub(super) journal: Option<Link>,
}

/// An open journal.
#[cfg(feature = "journal")]
pub(super) struct Link {
    pub(super) writer: Writer,
    /// For `history`: a reader never waits for the writer (WAL).
    pub(super) reader: parking_lot::Mutex<rusqlite::Connection>,
    pub(super) bans: parking_lot::Mutex<Vec<Ban>>,
}

impl Audit {
    #[cfg(feature = "journal")]
    fn link(&self) -> Option<&Link> {
        self.journal.as_ref()
    }

    /// Writes what is pending; refuses (so the caller changes nothing) while it cannot.
    pub(super) fn ready(&self) -> Result<()> {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link() {
            link.writer.flush()?;
        }
        Ok(())
    }

    /// Records a decision before it is taken: on `Err`, don't take it.
    pub(super) fn commit(&self, make: impl FnOnce() -> Record) -> Result<()> {
        self.commit_all(|| vec![make()])
    }

    /// Records decisions (one transaction) before they are taken.
    #[cfg_attr(not(feature = "journal"), allow(unused_variables))]
    pub(super) fn commit_all(&self, make: impl FnOnce() -> Vec<Record>) -> Result<()> {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link() {
            let records = make();
            link.writer.commit(records.clone())?;
            self.applied(link, &records);
        }
        Ok(())
    }

    /// Records what already happened, waiting for the disk. On `Err` the record is pending;
    /// the caller stops (nothing further happens until it is written).
    pub(super) fn fact(&self, make: impl FnOnce() -> Record) -> Result<()> {
        self.fact_within(make, None)
    }

    /// [`fact`](Self::fact), waiting at most `wait` (when given).
    #[cfg_attr(not(feature = "journal"), allow(unused_variables))]
    pub(super) fn fact_within(
        &self,
        make: impl FnOnce() -> Record,
        wait: Option<std::time::Duration>,
    ) -> Result<()> {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link() {
            let record = make();
            self.applied(link, std::slice::from_ref(&record));
            link.writer.fact(vec![record], wait)?;
        }
        Ok(())
    }

    /// Records what already happened, without waiting (background threads).
    #[cfg_attr(not(feature = "journal"), allow(unused_variables))]
    pub(super) fn note(&self, make: impl FnOnce() -> Record) {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link() {
            let record = make();
            self.applied(link, std::slice::from_ref(&record));
            link.writer.note(record);
        }
    }

    /// Keeps the bans in memory in step with what was recorded.
    #[cfg(feature = "journal")]
    fn applied(&self, link: &Link, records: &[Record]) {
        let mut bans = link.bans.lock();
        for r in records {
            let Some(subject) = &r.subject else { continue };
            let identity = match subject.content {
                Some(h) => Identity::new(subject.version.clone()).with_content(h),
                None => Identity::new(subject.version.clone()),
            };
            if r.ban {
                bans.retain(|b| b.identity != identity);
                bans.push(Ban {
                    identity,
                    kind: r.kind,
                    reason: r.reason.clone().unwrap_or_default(),
                    actor: r.actor.clone(),
                    at: r.at,
                    event: None,
                });
            } else if r.kind == EventKind::Unban {
                bans.retain(|b| b.identity.version() != subject.version);
            }
        }
    }

    /// Refuses a banned identity.
    #[cfg_attr(not(feature = "journal"), allow(unused_variables))]
    pub(super) fn check_ban(&self, identity: &Identity) -> Result<()> {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link()
            && let Some(ban) = link.bans.lock().iter().find(|b| b.identity == *identity)
        {
            return Err(Error::Banned {
                version: identity.version().to_owned(),
                content: identity.content(),
                reason: format!("{} by {}: {}", ban.kind, ban.actor, ban.reason),
            });
        }
        Ok(())
    }

    /// How many bans are on `version` (any content).
    #[cfg_attr(not(feature = "journal"), allow(unused_variables))]
    pub(super) fn bans_on(&self, version: &str) -> usize {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link() {
            return link
                .bans
                .lock()
                .iter()
                .filter(|b| b.identity.version() == version)
                .count();
        }
        0
    }

    pub(super) fn status(&self) -> Option<JournalStatus> {
        #[cfg(feature = "journal")]
        if let Some(link) = self.link() {
            let h = link.writer.health();
            return Some(JournalStatus {
                path: link.writer.path().to_path_buf(),
                healthy: h.pending == 0 && h.last_error.is_none(),
                written: h.written,
                pending: h.pending,
                failed_writes: h.failed_writes,
                lost: h.lost,
                last_error: h.last_error.as_ref().map(|(e, _)| e.clone()),
                last_error_at: h.last_error.as_ref().map(|(_, t)| *t),
                bans: link.bans.lock().len(),
            });
        }
        None
    }

    /// How long an automatic rollback waits for its record.
    #[cfg(feature = "journal")]
    pub(super) fn auto_rollback_wait() -> Option<Duration> {
        Some(crate::journal::AUTO_ROLLBACK_WAIT)
    }

    #[cfg(not(feature = "journal"))]
    pub(super) fn auto_rollback_wait() -> Option<std::time::Duration> {
        None
    }
}
