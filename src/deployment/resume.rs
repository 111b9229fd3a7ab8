//! Starting on a journal (feature `journal`): [`Builder::journal`], the resume step
//! ([`Builder::resume`]), the checks `build` makes against what the journal knows, and
//! reading the journal back from a running deployment ([`BlueGreen::history`],
//! [`BlueGreen::bans`]).

use std::path::PathBuf;
use std::time::Duration;

use super::audit::Link;
use super::bluegreen::BlueGreen;
use super::builder::Builder;
use super::error::{Error, Result};
use crate::journal::{
    Ban, Entry, EventKind, Named, Record, Resume, Store, Writer, open_for_reading, read_history,
    read_resume,
};
use crate::model::Model;
use crate::slot::Identity;

/// A journal configured on a builder, opened at the latest by `build`.
pub(super) struct JournalSetup {
    path: PathBuf,
    lock_timeout: Duration,
    store: Option<Store>,
    resume: Option<Resume>,
}

impl<M: Model> Builder<M> {
    /// Records every decision in the journal at `path` (created if missing; see the
    /// [`journal`](crate::journal) module), and resumes from it: call
    /// [`resume`](Self::resume) before [`build`](Self::build) to learn which version was
    /// live and which are banned. Several deployments may share one file under different
    /// [names](Self::name).
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(JournalSetup {
            path: path.into(),
            lock_timeout: Duration::from_secs(2),
            store: None,
            resume: None,
        });
        self
    }

    /// How long a journal write waits for another process's write lock (an operator's
    /// `sqlite3` in a transaction) before the operation is refused (default 2 s).
    pub fn journal_lock_timeout(mut self, timeout: Duration) -> Self {
        if let Some(j) = self.journal.as_mut() {
            j.lock_timeout = timeout;
        }
        self
    }

    /// Opens the journal (creating or migrating it) and reads what this deployment
    /// ([`name`](Self::name)) was serving when it stopped and which versions are banned.
    /// Without a [`journal`](Self::journal) there is nothing to resume: an empty
    /// [`Resume`].
    ///
    /// # Errors
    /// [`Error::Journal`] when the file cannot be opened, is not a journal, or has a newer
    /// schema.
    pub fn resume(&mut self) -> Result<Resume> {
        let name = self.name.clone();
        let Some(setup) = self.journal.as_mut() else {
            return Ok(Resume {
                model: name,
                ..Resume::default()
            });
        };
        setup.load(&name)?;
        Ok(setup.resume.clone().unwrap_or_default())
    }
}

impl JournalSetup {
    fn load(&mut self, name: &str) -> Result<()> {
        if self.store.is_none() {
            self.store = Some(Store::open(&self.path, name, self.lock_timeout)?);
        }
        if self.resume.is_none()
            && let Some(store) = &self.store
        {
            self.resume = Some(read_resume(store.connection(), &self.path, name)?);
        }
        Ok(())
    }

    /// Opens the journal for a deployment starting on `identity`, refusing a banned
    /// identity or a replaced live version.
    pub(super) fn open(
        mut self,
        name: &str,
        identity: &Identity,
        shutdown_wait: Duration,
    ) -> Result<Link> {
        self.load(name)?;
        let (Some(store), Some(resume)) = (self.store.take(), self.resume.take()) else {
            unreachable!("load opened both");
        };
        let reader = open_for_reading(&self.path, self.lock_timeout)?;
        let writer = Writer::start(store, shutdown_wait).map_err(|source| Error::Spawn {
            what: "journal",
            source,
        })?;
        let unloaded = Named {
            version: identity.version().to_owned(),
            content: identity.content(),
            generation: 0,
        };
        // Nothing serves yet: the rows' live model is what the journal last knew.
        let live = resume.live.as_ref().map_or_else(
            || unloaded.clone(),
            |l| Named {
                version: l.identity.version().to_owned(),
                content: l.identity.content(),
                generation: 0,
            },
        );
        let refuse = |kind: EventKind, error: Error| {
            let row = Record::new(kind, live.clone(), "application".to_owned())
                .subject(unloaded.clone())
                .reason(error.to_string());
            if let Err(e) = writer.fact(vec![row], None) {
                tracing::error!(target: "bluegreen::journal", error = %e,
                    "could not record why the initial model was refused");
            }
            tracing::error!(target: "bluegreen", %identity, %error, "initial model refused");
            Err(error)
        };
        if let Some(ban) = resume.ban_on(identity) {
            let error = Error::Banned {
                version: identity.version().to_owned(),
                content: identity.content(),
                reason: format!("{} by {}: {}", ban.kind, ban.actor, ban.reason),
            };
            return refuse(EventKind::Refusal, error);
        }
        if let Some(l) = &resume.live
            && l.identity.version() == identity.version()
            && let (Some(expected), Some(found)) = (l.identity.content(), identity.content())
            && expected != found
        {
            let error = Error::ContentChanged {
                version: identity.version().to_owned(),
                expected,
                found,
                at_start: true,
            };
            return refuse(EventKind::ContentChanged, error);
        }
        Ok(Link {
            writer,
            reader: parking_lot::Mutex::new(reader),
            bans: parking_lot::Mutex::new(resume.bans),
        })
    }
}

impl<M: Model> BlueGreen<M> {
    /// The newest `limit` journal rows about this deployment, oldest first (at most
    /// [`MAX_HISTORY`](crate::journal::MAX_HISTORY)); empty without a journal. Reads never
    /// wait for the journal's writer.
    ///
    /// # Errors
    /// [`Error::Journal`] when the file cannot be read.
    pub fn history(&self, limit: usize) -> Result<Vec<Entry>> {
        let audit = &self.inner.audit;
        match &audit.journal {
            Some(link) => Ok(read_history(
                &link.reader.lock(),
                link.writer.path(),
                &self.inner.config.name,
                limit,
            )?),
            None => Ok(Vec::new()),
        }
    }

    /// The bans in force (rows not yet written included); empty without a journal.
    pub fn bans(&self) -> Vec<Ban> {
        self.inner
            .audit
            .journal
            .as_ref()
            .map(|l| l.bans.lock().clone())
            .unwrap_or_default()
    }
}
