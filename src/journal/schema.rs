//! The database file: opening it with the durability settings, telling a journal from any
//! other SQLite file, and migrating its schema (`PRAGMA user_version`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::error::JournalError;

/// The schema this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = 1;

/// Marks the file as a bluegreen journal (`PRAGMA application_id`, "bgJ1").
const APPLICATION_ID: i64 = 0x6267_4a31;

/// Migration `i` takes a journal from schema `i` to `i + 1`; each runs in one transaction
/// together with the new `user_version`, so a crash leaves the old schema or the new one.
/// Schema 0 is an empty file.
const MIGRATIONS: &[&str] = &[
    // 0 → 1: the event table, one index per deployment, and two views for the shell.
    r"
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        event_key       TEXT    NOT NULL UNIQUE,
        at              TEXT    NOT NULL,
        at_ms           INTEGER NOT NULL,
        model           TEXT    NOT NULL,
        kind            TEXT    NOT NULL CHECK (kind IN ('start', 'stage', 'load_failed',
                            'validation', 'refusal', 'swap', 'rollback', 'auto_rollback', 'bake_passed',
                            'canary_start', 'canary_step', 'canary_promote', 'canary_abort',
                            'retire', 'abandon', 'unban', 'content_changed')),
        version         TEXT,
        content         TEXT    CHECK (content IS NULL OR length(content) = 64),
        generation      INTEGER,
        from_version    TEXT,
        from_content    TEXT    CHECK (from_content IS NULL OR length(from_content) = 64),
        live_version    TEXT    NOT NULL,
        live_content    TEXT    CHECK (live_content IS NULL OR length(live_content) = 64),
        live_generation INTEGER NOT NULL,
        ban             INTEGER NOT NULL DEFAULT 0 CHECK (ban IN (0, 1)),
        actor           TEXT    NOT NULL,
        pid             INTEGER NOT NULL,
        reason          TEXT,
        detail          TEXT    CHECK (detail IS NULL OR json_valid(detail)),
        CHECK (ban = 0 OR version IS NOT NULL)
    );
    CREATE INDEX events_by_model ON events (model, id);
    CREATE INDEX events_by_version ON events (model, version, id);

    -- What each deployment served after its last event.
    CREATE VIEW live AS
    SELECT e.model, e.live_version AS version, e.live_content AS content, e.at AS since_event_at,
           e.kind AS by_event, e.id
    FROM events e
    WHERE e.id = (SELECT max(id) FROM events x WHERE x.model = e.model);

    -- Bans in force: the newest banning event of each (model, version, content) with no
    -- unban of that version after it.
    CREATE VIEW bans AS
    SELECT e.model, e.version, e.content, e.kind, e.reason, e.actor, e.at, e.id
    FROM events e
    WHERE e.ban = 1
      AND e.id = (SELECT max(id) FROM events b WHERE b.ban = 1 AND b.model = e.model
                  AND b.version = e.version AND b.content IS e.content)
      AND NOT EXISTS (SELECT 1 FROM events u WHERE u.kind = 'unban' AND u.model = e.model
                      AND u.version = e.version AND u.id > e.id);
    ",
];

/// Opens (creating if needed) the journal at `path` for writing, with WAL and
/// `synchronous = FULL`, and brings its schema up to [`SCHEMA_VERSION`].
pub(crate) fn open_for_writing(
    path: &Path,
    lock_timeout: Duration,
) -> Result<Connection, JournalError> {
    let at = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(at)?;
    conn.busy_timeout(lock_timeout).map_err(at)?;
    identify(&conn, path)?;
    // WAL: readers (the sqlite3 shell, `history`) never block the writer, and a commit is
    // one append to the log. FULL: the log is fsynced at every commit, so a decision that
    // was reported done survives power loss too (NORMAL would survive a crash of the
    // process, but not of the machine: its commits reach the disk only at checkpoints).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(at)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::Unsupported {
            path: path.to_path_buf(),
            what: format!("write-ahead logging (the file system gave journal_mode {mode})"),
        });
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA trusted_schema = OFF;")
        .map_err(at)?;
    migrate(&conn, path)?;
    Ok(conn)
}

/// Opens an existing journal for reading only (no schema change, no file created).
pub(crate) fn open_for_reading(
    path: &Path,
    lock_timeout: Duration,
) -> Result<Connection, JournalError> {
    let at = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_file() {
        return Err(JournalError::Missing {
            path: path.to_path_buf(),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(at)?;
    conn.busy_timeout(lock_timeout).map_err(at)?;
    identify(&conn, path)?;
    let version = user_version(&conn, path)?;
    if version != SCHEMA_VERSION {
        return Err(JournalError::Schema {
            path: path.to_path_buf(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    Ok(conn)
}

/// Refuses a SQLite file that is something else (another application's database).
fn identify(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let at = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(at)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(at)?;
    if id == APPLICATION_ID || (id == 0 && tables == 0) {
        Ok(())
    } else {
        Err(JournalError::NotAJournal {
            path: path.to_path_buf(),
        })
    }
}

fn user_version(conn: &Connection, path: &Path) -> Result<u32, JournalError> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(u32::try_from(v).unwrap_or(u32::MAX))
}

/// Applies the migrations a journal lacks, each in its own transaction.
fn migrate(conn: &Connection, path: &Path) -> Result<(), JournalError> {
    let at = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    loop {
        let version = user_version(conn, path)?;
        if version == SCHEMA_VERSION {
            return Ok(());
        }
        if version > SCHEMA_VERSION {
            return Err(JournalError::Schema {
                path: path.to_path_buf(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        let step = MIGRATIONS[version as usize];
        // IMMEDIATE: two processes opening a new journal at once migrate one after the
        // other; the second sees the new user_version and stops.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(at)?;
        let again = user_version(conn, path)?;
        let applied = if again == version {
            conn.execute_batch(step)
                .and_then(|()| {
                    conn.execute_batch(&format!(
                        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                        version + 1
                    ))
                })
                .and_then(|()| conn.execute_batch("COMMIT"))
        } else {
            conn.execute_batch("COMMIT")
        };
        if let Err(e) = applied {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(at(e));
        }
        tracing::info!(target: "bluegreen::journal", path = %path.display(),
            from = version, to = version + 1, "journal schema migrated");
    }
}
