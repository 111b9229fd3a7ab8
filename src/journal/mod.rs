//! The deployment journal (feature `journal`): every decision a deployment takes, one row
//! each, in an embedded SQLite database — so a restart resumes on the version last
//! committed as live, never promotes again a version that was rolled back or refused, and
//! operators can read the audit trail with the `sqlite3` shell.
//!
//! ```no_run
//! use bluegreen::{BlueGreen, Model};
//! # struct M; impl Model for M { type Input = (); type Output = (); type Error = std::convert::Infallible;
//! #   fn predict(&self, _: &()) -> Result<(), Self::Error> { Ok(()) } }
//! # fn load(_: &str) -> M { M }
//! let mut builder = BlueGreen::builder().name("digits").journal("state/journal.db");
//! let resume = builder.resume()?;                       // what was live, what is banned
//! let start = resume.live_identity().cloned().unwrap_or_else(|| "1".into());
//! let bg = builder.build(start.clone(), load(start.version()))?;
//! # Ok::<(), bluegreen::Error>(())
//! ```
//!
//! # What is recorded
//!
//! One row per event ([`EventKind`]): `start`, `stage`, `load_failed`, `validation` (a dry
//! run, the report as JSON), `refusal` (gates — report as JSON —, warm-up, a ban, changed
//! content), `swap`, `rollback`, `auto_rollback` (with the breached limit), `bake_passed`,
//! `canary_start` / `canary_step` / `canary_promote` / `canary_abort`, `retire`, `abandon`,
//! `unban`, `content_changed`. Each row has the time, the deployment's name, the version,
//! content hash and generation it is about, the model traffic left (for moves), the model
//! **live after the event** (so the last row says what was served), who asked
//! (`admin:<caller>`, `watcher`, `bake`, `application`; see [`Actor`](crate::Actor)), the
//! process id, a reason and a JSON `detail`.
//!
//! # Schema (version 1)
//!
//! `PRAGMA application_id` marks the file as a bluegreen journal (another SQLite file is
//! refused, never written into) and `PRAGMA user_version` holds the schema version. Opening
//! a journal applies the migrations it lacks, each in one transaction with its new
//! `user_version`; a journal from a newer build is refused
//! ([`JournalError::Schema`]).
//!
//! ```sql
//! CREATE TABLE events (
//!     id INTEGER PRIMARY KEY,          -- increasing, in the order things happened
//!     event_key TEXT NOT NULL UNIQUE,  -- "<pid>-<start>-<n>": a retried write inserts nothing
//!     at TEXT NOT NULL,                -- UTC, 2026-12-01T10:00:00.123Z
//!     at_ms INTEGER NOT NULL,          -- the same, milliseconds since the Unix epoch
//!     model TEXT NOT NULL,             -- the deployment (Builder::name)
//!     kind TEXT NOT NULL,              -- see above (CHECKed)
//!     version TEXT, content TEXT, generation INTEGER,   -- the model acted on
//!     from_version TEXT, from_content TEXT,             -- traffic moves: the model left
//!     live_version TEXT NOT NULL, live_content TEXT, live_generation INTEGER NOT NULL,
//!     ban INTEGER NOT NULL,            -- 1: this row bans (version, content)
//!     actor TEXT NOT NULL, pid INTEGER NOT NULL,
//!     reason TEXT, detail TEXT         -- detail is JSON (CHECK json_valid)
//! );
//! -- views: `live` (each deployment's last row) and `bans` (bans in force)
//! ```
//!
//! Content hashes are 64 hex digits (BLAKE3, see [`ContentHash`](crate::ContentHash)).
//!
//! # Durability: WAL, `synchronous = FULL`
//!
//! The database is in write-ahead-log mode: a commit is one append, and readers (the
//! `sqlite3` shell, [`BlueGreen::history`](crate::BlueGreen::history)) never block the
//! writer. `synchronous = FULL` makes SQLite fsync the log at **every** commit. In WAL mode
//! `NORMAL` would survive the process being killed but not the machine losing power: its
//! commits reach the disk only at the next checkpoint, so the last decisions — the ones a
//! restart needs — could silently vanish. A journal commit happens once per admin
//! operation, so the fsync (milliseconds) is paid by the admin path, never by requests.
//!
//! # The order: record, then act
//!
//! An admin operation records its decision *before* taking it: the `swap` row is committed
//! (fsynced) and only then does traffic move; likewise `stage`, `rollback`, canary steps,
//! `unban`. If the process dies between the two, the journal holds a decision that was not
//! applied yet — and a restart applies it (it resumes on the swapped-to version, which had
//! passed its gates and warm-up). What already happened — a model retired, a candidate
//! refused, an automatic rollback — is recorded right after it happens.
//!
//! The bake monitor is the one exception to "wait for the disk": an automatic rollback waits
//! at most one second for its row, then rolls back anyway (the row is written when the disk
//! answers). A bad model never keeps traffic because the journal is slow.
//!
//! # When the journal cannot be written
//!
//! The disk is full, the file was removed or replaced ([`JournalError::Moved`]), another
//! process holds the write lock past the [lock timeout](crate::Builder::journal_lock_timeout)
//! (an operator's `sqlite3` left in a transaction):
//!
//! * The live model keeps serving; requests never touch the journal.
//! * An admin operation whose decision cannot be recorded is **refused** with
//!   [`Error::Journal`](crate::Error::Journal) and nothing changes (a loaded candidate is
//!   retired again, a validated one stays staged).
//! * Something that already happened and cannot be recorded stays **pending** in memory,
//!   in order; [`Status::journal`](crate::Status::journal) says so (`pending`,
//!   `last_error`). Until it is written, every admin operation is refused — so the journal
//!   is always a prefix of what happened, never a record with a hole in it. The next
//!   operation after the disk recovers writes the pending rows first.
//! * An automatic rollback still happens (its row pending), and its ban holds in memory.
//!
//! # Resume and bans
//!
//! [`Builder::resume`](crate::Builder::resume) reads what deployment `name` was serving
//! ([`Resume::live`]) and its bans. A version is **banned** — refused by `stage`, by the
//! watcher, by `build` — when it was rolled back (automatically, or by anyone but the
//! watcher following its manifest), refused by its gates, or aborted as a canary. A ban is
//! on the label *and* the content hash: new bytes under the same label are a new candidate.
//! [`BlueGreen::unban`](crate::BlueGreen::unban) lifts it, recorded with who asked.
//!
//! # Where this sits
//!
//! Between `traffic/` and `deployment/` in the layers: the deployment's admin operations
//! write it, so it must be below them, and it needs nothing of theirs — a row is plain data
//! (`record.rs`), built by the deployment. It stands on `slot/` (identities) and
//! `validation/` (reports, as JSON). Its own folder rather than a file in `deployment/`
//! because it is a storage engine with a schema, a thread and readers — one concept, and
//! `deployment/` is about the state machine.
//!
//! | file | holds |
//! |---|---|
//! | `record.rs` | [`EventKind`] and the row the deployment hands over (compiled without the feature too) |
//! | `schema.rs` | opening the file (WAL, `synchronous = FULL`), telling a journal from other files, migrations |
//! | `store.rs` | writing a batch of rows in one transaction, idempotently, after checking the file is still there |
//! | `writer.rs` | the writer thread: commits, facts, pending rows, health |
//! | `read.rs` | [`Resume`], [`Ban`], [`Live`], [`Entry`], and [`Journal`], a read-only handle |
//! | `error.rs` | [`JournalError`] |

mod record;

pub use record::EventKind;
pub(crate) use record::{Named, Record, Value};

#[cfg(feature = "journal")]
mod error;
#[cfg(feature = "journal")]
mod read;
#[cfg(feature = "journal")]
mod schema;
#[cfg(feature = "journal")]
mod store;
#[cfg(feature = "journal")]
mod writer;

#[cfg(feature = "journal")]
pub use error::JournalError;
#[cfg(feature = "journal")]
pub use read::{Ban, Entry, Journal, Live, MAX_HISTORY, Resume};
#[cfg(feature = "journal")]
pub(crate) use read::{read_history, read_resume};
#[cfg(feature = "journal")]
pub use schema::SCHEMA_VERSION;
#[cfg(feature = "journal")]
pub(crate) use schema::open_for_reading;
#[cfg(feature = "journal")]
pub(crate) use store::Store;
#[cfg(feature = "journal")]
pub(crate) use writer::{AUTO_ROLLBACK_WAIT, Writer};
