//! [`JournalError`]: why the journal could not be opened, read or written.

use std::path::PathBuf;

/// Why the journal could not be opened, read or written. A write that fails this way was
/// not recorded, and the decision it was for was not taken (see the [module
/// docs](crate::journal#when-the-journal-cannot-be-written)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// SQLite refused: the disk is full, the file is locked by another writer past the
    /// lock timeout, it is corrupt, or it cannot be created.
    #[error("journal {}: {source}", path.display())]
    Sqlite {
        /// The journal file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file at the journal's path is no longer the one that was opened (removed,
    /// renamed or replaced while the deployment ran). Writing on would record decisions
    /// in a file nobody will read; restore it or restart the process.
    #[error(
        "journal {} was removed or replaced while open; decisions are not recorded until it is back (restart the process)",
        path.display()
    )]
    Moved {
        /// The journal file.
        path: PathBuf,
    },
    /// No journal file exists there (reading only; writing creates it).
    #[error("no journal at {}", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file is a SQLite database, but not a bluegreen journal.
    #[error("{} is a SQLite database but not a bluegreen journal; refusing to write into it", path.display())]
    NotAJournal {
        /// The path given.
        path: PathBuf,
    },
    /// The journal's schema is newer than this build knows (or, reading, older).
    #[error(
        "journal {} has schema version {found}; this build of bluegreen reads and writes version {known}",
        path.display()
    )]
    Schema {
        /// The path given.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The version this build writes.
        known: u32,
    },
    /// The file system cannot give what the journal needs.
    #[error("journal {}: the file system does not support {what}", path.display())]
    Unsupported {
        /// The path given.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// A row read back is malformed (it was written by something else, or edited).
    #[error("journal {} row {id}: {problem}", path.display())]
    Malformed {
        /// The journal file.
        path: PathBuf,
        /// The row's id.
        id: i64,
        /// What is wrong with it.
        problem: String,
    },
    /// The journal's writer thread is gone (it could not start, or the deployment is
    /// shutting down).
    #[error("the journal writer thread is not running: {0}")]
    Writer(String),
}
