//! Writing rows: one transaction per batch, idempotent by event key, after checking that
//! the file at the journal's path is still the one that was opened.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};

use super::error::JournalError;
use super::record::{Named, Record, Value};
use super::schema;

/// A record with the key that makes writing it twice harmless (a retry after an
/// ambiguous failure inserts nothing).
#[derive(Debug, Clone)]
pub(crate) struct Keyed {
    pub(crate) key: String,
    pub(crate) record: Record,
}

/// The writing connection of one deployment.
pub(crate) struct Store {
    path: PathBuf,
    conn: Connection,
    /// (device, inode) of the file opened, to notice it being removed or replaced.
    file: Option<(u64, u64)>,
    model: String,
    pid: u32,
}

impl Store {
    pub(crate) fn open(
        path: &Path,
        model: &str,
        lock_timeout: Duration,
    ) -> Result<Self, JournalError> {
        let conn = schema::open_for_writing(path, lock_timeout)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn,
            file: file_id(path),
            model: model.to_owned(),
            pid: std::process::id(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Writes `batch` in one transaction: all rows or none.
    pub(crate) fn write(&mut self, batch: &[Keyed]) -> Result<(), JournalError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.file.is_some() && file_id(&self.path) != self.file {
            return Err(JournalError::Moved {
                path: self.path.clone(),
            });
        }
        let at = |source| JournalError::Sqlite {
            path: self.path.clone(),
            source,
        };
        // IMMEDIATE takes the write lock up front (waiting up to the lock timeout), so
        // the transaction cannot fail half-way for want of it.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(at)?;
        let result = self
            .insert_all(batch)
            .and_then(|()| self.conn.execute_batch("COMMIT"));
        if let Err(e) = result {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(at(e));
        }
        Ok(())
    }

    fn insert_all(&self, batch: &[Keyed]) -> rusqlite::Result<()> {
        let mut insert = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO events (event_key, at, at_ms, model, kind, version, content,
                generation, from_version, from_content, live_version, live_content,
                live_generation, ban, actor, pid, reason, detail)
             VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', ?2 / 1000.0, 'unixepoch'), ?2, ?3,
                ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?;
        for Keyed { key, record: r } in batch {
            let hex = |n: &Option<&Named>| n.and_then(|n| n.content).map(|h| h.to_string());
            let (subject, from) = (r.subject.as_ref(), r.from.as_ref());
            insert.execute(params![
                key,
                unix_ms(r.at),
                self.model,
                r.kind.as_str(),
                subject.map(|n| n.version.as_str()),
                hex(&subject),
                subject.and_then(|n| (n.generation != 0).then(|| sql_int(n.generation))),
                from.map(|n| n.version.as_str()),
                hex(&from),
                r.live.version,
                r.live.content.map(|h| h.to_string()),
                sql_int(r.live.generation),
                r.ban,
                r.actor,
                self.pid,
                r.reason,
                detail_json(&r.detail),
            ])?;
        }
        Ok(())
    }
}

/// The `detail` column: a JSON object, or NULL when there is nothing to say.
fn detail_json(detail: &[(&'static str, Value)]) -> Option<String> {
    if detail.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = detail
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Bool(b) => serde_json::Value::Bool(*b),
                Value::Num(x) => serde_json::Number::from_f64(*x)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                Value::Text(s) => serde_json::Value::String(s.clone()),
                Value::Report(r) => serde_json::to_value(r).unwrap_or(serde_json::Value::Null),
            };
            ((*k).to_owned(), v)
        })
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Generations are process-local counters far below `i64::MAX`; saturate rather than wrap.
fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &Path) -> Option<(u64, u64)> {
    None
}
