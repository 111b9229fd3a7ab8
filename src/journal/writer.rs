//! The journal's writer thread: the one owner of the writing connection, the records still
//! pending, and the health the deployment's status shows.
//!
//! Every write goes through this thread, so a disk that is slow or hangs holds up only
//! whoever waits for that write: an admin operation waits as long as it takes (its decision
//! is taken only once recorded), the bake monitor waits at most
//! [`AUTO_ROLLBACK_WAIT`] and rolls back regardless, and the request path never writes.
//!
//! Two ways to write:
//! * **commit** — a decision about to be taken. Pending records are written first; if
//!   anything fails, the caller is told and does not take the decision, and the record is
//!   dropped (it did not happen).
//! * **fact** — something that already happened (a model retired, an automatic rollback).
//!   It joins the pending records and they are written in order; if that fails they stay
//!   pending (at most [`MAX_PENDING`]), the journal reports itself degraded, and every
//!   later commit — so every later admin operation — is refused until they are written.
//!   The journal stays a prefix of what happened, in order, never with a hole.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::error::JournalError;
use super::record::Record;
use super::store::{Keyed, Store};

/// How long the bake monitor waits for its automatic rollback to be recorded before it
/// rolls back anyway (the record stays pending and is written when the disk answers).
pub(crate) const AUTO_ROLLBACK_WAIT: Duration = Duration::from_secs(1);

/// Records kept in memory while the journal cannot be written. Only facts queue up (every
/// decision is refused meanwhile), so this is never reached in practice; past it the
/// oldest are dropped and counted as lost.
pub(crate) const MAX_PENDING: usize = 1024;

/// How the journal is doing, for [`Status::journal`](crate::Status::journal).
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    pub(crate) written: u64,
    pub(crate) pending: usize,
    pub(crate) failed_writes: u64,
    pub(crate) lost: u64,
    pub(crate) last_error: Option<(String, SystemTime)>,
}

enum Mode {
    Commit,
    Fact,
}

enum Request {
    Write {
        records: Vec<Record>,
        mode: Mode,
        reply: Option<Sender<Result<(), JournalError>>>,
    },
    Flush(Sender<Result<(), JournalError>>),
}

/// The handle the deployment holds.
pub(crate) struct Writer {
    tx: Option<Sender<Request>>,
    handle: Option<JoinHandle<()>>,
    exited: Receiver<()>,
    health: Arc<Mutex<Health>>,
    path: PathBuf,
    shutdown_wait: Duration,
}

impl Writer {
    /// Starts the thread that owns `store`.
    pub(crate) fn start(store: Store, shutdown_wait: Duration) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (alive, exited) = crossbeam_channel::bounded::<()>(0);
        let health = Arc::new(Mutex::new(Health::default()));
        let path = store.path().to_path_buf();
        let h = Arc::clone(&health);
        let handle = std::thread::Builder::new()
            .name("bluegreen-journal".to_owned())
            .spawn(move || {
                let _alive = alive;
                Thread {
                    store,
                    pending: VecDeque::new(),
                    health: h,
                    next_key: 0,
                    key_prefix: key_prefix(),
                }
                .run(&rx);
            })?;
        Ok(Self {
            tx: Some(tx),
            handle: Some(handle),
            exited,
            health,
            path,
            shutdown_wait,
        })
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub(crate) fn health(&self) -> Health {
        self.health.lock().clone()
    }

    /// Records a decision before it is taken; waits for the disk.
    pub(crate) fn commit(&self, records: Vec<Record>) -> Result<(), JournalError> {
        self.request(records, Mode::Commit, None)
    }

    /// Records what already happened; waits for the disk (at most `wait`, when given).
    pub(crate) fn fact(
        &self,
        records: Vec<Record>,
        wait: Option<Duration>,
    ) -> Result<(), JournalError> {
        self.request(records, Mode::Fact, wait)
    }

    /// Records what already happened without waiting.
    pub(crate) fn note(&self, record: Record) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Request::Write {
                records: vec![record],
                mode: Mode::Fact,
                reply: None,
            });
        }
    }

    /// Writes what is pending; `Ok` when nothing is left.
    pub(crate) fn flush(&self) -> Result<(), JournalError> {
        if self.health.lock().pending == 0 {
            return Ok(());
        }
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.send(Request::Flush(reply))?;
        answer.recv().unwrap_or_else(|_| Err(gone()))
    }

    fn request(
        &self,
        records: Vec<Record>,
        mode: Mode,
        wait: Option<Duration>,
    ) -> Result<(), JournalError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.send(Request::Write {
            records,
            mode,
            reply: Some(reply),
        })?;
        match wait {
            None => answer.recv().unwrap_or_else(|_| Err(gone())),
            Some(wait) => match answer.recv_timeout(wait) {
                Ok(result) => result,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(JournalError::Writer(
                    format!("no answer from the disk within {wait:?}; the record stays pending"),
                )),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(gone()),
            },
        }
    }

    fn send(&self, request: Request) -> Result<(), JournalError> {
        match &self.tx {
            Some(tx) => tx.send(request).map_err(|_| gone()),
            None => Err(gone()),
        }
    }
}

fn gone() -> JournalError {
    JournalError::Writer("it has stopped".to_owned())
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take());
        let Some(handle) = self.handle.take() else {
            return;
        };
        match self.exited.recv_timeout(self.shutdown_wait) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                tracing::error!(target: "bluegreen::journal", path = %self.path.display(),
                    wait = ?self.shutdown_wait, "journal writer still busy at shutdown; left behind");
            }
            _ => {
                let _ = handle.join();
            }
        }
    }
}

/// The thread's state.
struct Thread {
    store: Store,
    pending: VecDeque<Keyed>,
    health: Arc<Mutex<Health>>,
    next_key: u64,
    key_prefix: String,
}

impl Thread {
    fn run(mut self, rx: &Receiver<Request>) {
        for request in rx.iter() {
            match request {
                Request::Write {
                    records,
                    mode,
                    reply,
                } => {
                    let keyed: Vec<Keyed> = records.into_iter().map(|r| self.key(r)).collect();
                    let result = match mode {
                        Mode::Commit => self.flush().and_then(|()| {
                            let written = self.store.write(&keyed);
                            self.account(&written, keyed.len());
                            written
                        }),
                        Mode::Fact => {
                            for k in keyed {
                                self.push(k);
                            }
                            self.flush()
                        }
                    };
                    if let Some(reply) = reply {
                        let _ = reply.send(result);
                    }
                }
                Request::Flush(reply) => {
                    let _ = reply.send(self.flush());
                }
            }
        }
        // Shutting down: one last try for what is pending.
        if let Err(e) = self.flush() {
            tracing::error!(target: "bluegreen::journal", path = %self.store.path().display(),
                pending = self.pending.len(), error = %e,
                "journal records still pending at shutdown are lost");
        }
    }

    fn key(&mut self, record: Record) -> Keyed {
        self.next_key += 1;
        Keyed {
            key: format!("{}-{}", self.key_prefix, self.next_key),
            record,
        }
    }

    fn push(&mut self, k: Keyed) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.health.lock().lost += 1;
            tracing::error!(target: "bluegreen::journal", "journal pending queue full; oldest record dropped");
        }
        self.pending.push_back(k);
        self.health.lock().pending = self.pending.len();
    }

    fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch: Vec<Keyed> = self.pending.iter().cloned().collect();
        let mut written = self.store.write(&batch);
        if written.as_ref().is_err_and(is_constraint) {
            // A row SQLite's checks refuse would block every later write: write the
            // others one by one and drop it (a bug, reported as lost).
            written = self.drop_refused_rows();
        }
        self.account(&written, batch.len());
        if written.is_ok() {
            self.pending.clear();
        }
        self.health.lock().pending = self.pending.len();
        written
    }

    fn drop_refused_rows(&mut self) -> Result<(), JournalError> {
        let mut kept = VecDeque::new();
        while let Some(k) = self.pending.pop_front() {
            match self.store.write(std::slice::from_ref(&k)) {
                Ok(()) => {}
                Err(e) if is_constraint(&e) => {
                    tracing::error!(target: "bluegreen::journal", kind = %k.record.kind, error = %e,
                        "journal row refused by the schema's checks; dropped");
                    self.health.lock().lost += 1;
                }
                Err(e) => {
                    kept.push_back(k);
                    kept.extend(self.pending.drain(..));
                    self.pending = kept;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn account(&self, result: &Result<(), JournalError>, rows: usize) {
        let mut h = self.health.lock();
        match result {
            Ok(()) => {
                h.written += rows as u64;
                if h.last_error.is_some() {
                    tracing::info!(target: "bluegreen::journal", path = %self.store.path().display(),
                        "journal writable again");
                }
                h.last_error = None;
            }
            Err(e) => {
                h.failed_writes += 1;
                let text = e.to_string();
                if h.last_error.as_ref().map(|(t, _)| t) != Some(&text) {
                    tracing::error!(target: "bluegreen::journal", error = %text,
                        "journal write failed; decisions are refused until it is writable");
                }
                h.last_error = Some((text, SystemTime::now()));
            }
        }
    }
}

fn is_constraint(e: &JournalError) -> bool {
    matches!(e, JournalError::Sqlite { source: rusqlite::Error::SqliteFailure(f, _), .. }
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// Unique per process run: a restarted process may get the same pid.
fn key_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{}-{nanos:x}", std::process::id())
}
