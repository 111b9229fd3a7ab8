//! Reading the journal back: what a restart resumes from ([`Resume`], [`Ban`]), the
//! history ([`Entry`]), and [`Journal`], a read-only handle for tools and tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Row, params};

use super::error::JournalError;
use super::record::EventKind;
use super::schema;
use crate::slot::{ContentHash, Identity};

/// How many distinct live versions [`Resume::live_history`] keeps.
const LIVE_HISTORY: usize = 16;

/// Longest history one [`Journal::history`] call returns.
pub const MAX_HISTORY: usize = 10_000;

/// A version that must not be staged again — it was rolled back (automatically, or by
/// someone other than the watcher following its manifest), refused by its gates, or
/// aborted as a canary — until it is [unbanned](crate::BlueGreen::unban) or its content
/// changes.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Ban {
    /// The version label and the content hash it was banned with.
    pub identity: Identity,
    /// The event that banned it.
    pub kind: EventKind,
    /// Why, in words.
    pub reason: String,
    /// Who asked (`bake`, `watcher`, `admin:<caller>`, `application`).
    pub actor: String,
    /// When.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub at: SystemTime,
    /// The journal row, when it has been written (`None` while pending).
    pub event: Option<i64>,
}

/// What the journal says a deployment was serving when it stopped.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// The version (and content) serving all traffic after the last event.
    pub identity: Identity,
    /// The event that made it live (`start`, `swap`, `rollback`, `auto_rollback`,
    /// `canary_promote`).
    pub since: EventKind,
    /// When that happened.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub at: SystemTime,
    /// Whether it was still inside its bake window when the journal ends (swapped or
    /// promoted with a bake configured, and no `bake_passed` since).
    pub baking: bool,
}

/// What a restart resumes from; from [`Builder::resume`](crate::Builder::resume) or
/// [`Journal::resume`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resume {
    /// The deployment's name in the journal.
    pub model: String,
    /// The version last committed as live; `None` for a deployment the journal has never
    /// seen.
    pub live: Option<Live>,
    /// The versions that were live, newest first, distinct (up to 16; the first is
    /// [`live`](Self::live)'s): where to fall back when the last one's files are gone or
    /// changed.
    pub live_history: Vec<Identity>,
    /// Bans in force.
    pub bans: Vec<Ban>,
    /// Rows about this deployment.
    pub events: u64,
    /// The process that wrote the last row.
    pub last_pid: Option<u32>,
}

impl Resume {
    /// The version to start on: the one last live, if any.
    pub fn live_identity(&self) -> Option<&Identity> {
        self.live.as_ref().map(|l| &l.identity)
    }

    /// The ban on exactly this label and content, if any.
    pub fn ban_on(&self, identity: &Identity) -> Option<&Ban> {
        self.bans.iter().find(|b| b.identity == *identity)
    }
}

/// One journal row, as read back ([`BlueGreen::history`](crate::BlueGreen::history),
/// [`Journal::history`]).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The row id: increasing, in the order things happened.
    pub id: i64,
    /// When.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::serde_util::unix_secs")
    )]
    pub at: SystemTime,
    /// The deployment.
    pub model: String,
    /// What happened.
    pub kind: EventKind,
    /// The model acted on, if any.
    pub subject: Option<Identity>,
    /// Its generation (unique within the process that wrote the row).
    pub generation: Option<u64>,
    /// For moves of traffic: the model it left.
    pub from: Option<Identity>,
    /// The model serving all traffic after the event.
    pub live: Identity,
    /// Whether this row banned its subject.
    pub ban: bool,
    /// Who asked.
    pub actor: String,
    /// The process that wrote it.
    pub pid: u32,
    /// Why, in words.
    pub reason: Option<String>,
    /// More, as JSON: the validation report, a canary share, timings.
    pub detail: Option<serde_json::Value>,
}

/// A read-only look at a journal file — for tools, tests and dashboards; the deployment
/// writes through its own connection ([`Builder::journal`](crate::Builder::journal)).
///
/// ```no_run
/// use bluegreen::journal::Journal;
/// let journal = Journal::open("state/journal.db")?;
/// let resume = journal.resume("digits")?;
/// println!("last live: {:?}, banned: {:?}", resume.live, resume.bans);
/// for e in journal.history("digits", 20)? {
///     println!("{} {} {:?} by {}", e.id, e.kind, e.subject, e.actor);
/// }
/// # Ok::<(), bluegreen::journal::JournalError>(())
/// ```
pub struct Journal {
    path: PathBuf,
    conn: Connection,
}

impl Journal {
    /// Opens an existing journal for reading (it is never created or migrated here).
    ///
    /// # Errors
    /// [`JournalError::Missing`], [`JournalError::NotAJournal`], [`JournalError::Schema`]
    /// for a schema other than this build's, or SQLite's error.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, JournalError> {
        let path = path.as_ref();
        Ok(Self {
            path: path.to_path_buf(),
            conn: schema::open_for_reading(path, Duration::from_secs(5))?,
        })
    }

    /// What deployment `model` would resume from.
    pub fn resume(&self, model: &str) -> Result<Resume, JournalError> {
        read_resume(&self.conn, &self.path, model)
    }

    /// The newest `limit` rows about `model` (at most [`MAX_HISTORY`]), oldest first.
    pub fn history(&self, model: &str, limit: usize) -> Result<Vec<Entry>, JournalError> {
        read_history(&self.conn, &self.path, model, limit)
    }

    /// The deployments the journal knows, by name.
    pub fn models(&self) -> Result<Vec<String>, JournalError> {
        let at = sqlite_at(&self.path);
        let mut q = self
            .conn
            .prepare("SELECT DISTINCT model FROM events ORDER BY model")
            .map_err(&at)?;
        let rows = q.query_map([], |r| r.get::<_, String>(0)).map_err(&at)?;
        rows.collect::<Result<_, _>>()
            .map_err(sqlite_at(&self.path))
    }
}

fn sqlite_at(path: &Path) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
    move |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn read_resume(
    conn: &Connection,
    path: &Path,
    model: &str,
) -> Result<Resume, JournalError> {
    let at = sqlite_at(path);
    let (events, last_pid): (i64, Option<i64>) = conn
        .query_row(
            "SELECT count(*), (SELECT pid FROM events WHERE model = ?1 ORDER BY id DESC LIMIT 1)
             FROM events WHERE model = ?1",
            params![model],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&at)?;
    // The last row says what was live; the last row that moved traffic (or started the
    // deployment) says since when, and whether a bake was still running.
    fn optional<T>(e: rusqlite::Error) -> rusqlite::Result<Option<T>> {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        }
    }
    let last = conn
        .query_row(
            "SELECT id, live_version, live_content FROM events WHERE model = ?1
             ORDER BY id DESC LIMIT 1",
            params![model],
            |r| {
                Ok(Some((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                )))
            },
        )
        .or_else(optional)
        .map_err(&at)?;
    let moved = conn
        .query_row(
            "SELECT id, kind, at_ms, detail FROM events WHERE model = ?1
             AND kind IN ('start', 'swap', 'rollback', 'auto_rollback', 'canary_promote')
             ORDER BY id DESC LIMIT 1",
            params![model],
            |r| {
                Ok(Some((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                )))
            },
        )
        .or_else(optional)
        .map_err(&at)?;
    let live = match (last, moved) {
        (Some((id, version, content)), Some((moved_id, kind, at_ms, detail))) => {
            let since = parse_kind(path, moved_id, &kind)?;
            let baked: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM events WHERE model = ?1
                     AND kind = 'bake_passed' AND id > ?2)",
                    params![model, moved_id],
                    |r| r.get(0),
                )
                .map_err(&at)?;
            let with_bake = detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .is_some_and(|d| d["bake"] == serde_json::Value::Bool(true));
            Some(Live {
                identity: identity(path, id, version, content)?,
                since,
                at: from_ms(at_ms),
                baking: matches!(since, EventKind::Swap | EventKind::CanaryPromote)
                    && with_bake
                    && !baked,
            })
        }
        (Some((id, version, content)), None) => Some(Live {
            identity: identity(path, id, version, content)?,
            since: EventKind::Start,
            at: UNIX_EPOCH,
            baking: false,
        }),
        (None, _) => None,
    };
    // The live columns of each traffic move (and start) name the model it made live.
    let mut q = conn
        .prepare(
            "SELECT live_version, live_content, id FROM events
             WHERE model = ?1 AND kind IN ('start', 'swap', 'rollback', 'auto_rollback', 'canary_promote')
             ORDER BY id DESC LIMIT 256",
        )
        .map_err(&at)?;
    let rows = q
        .query_map(params![model], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(&at)?;
    let mut live_history: Vec<Identity> = Vec::new();
    for row in rows {
        let (version, content, id) = row.map_err(&at)?;
        let id = identity(path, id, version, content)?;
        if !live_history.contains(&id) {
            live_history.push(id);
            if live_history.len() == LIVE_HISTORY {
                break;
            }
        }
    }
    let mut q = conn
        .prepare(
            "SELECT b.version, b.content, b.kind, b.reason, b.actor, e.at_ms, b.id
             FROM bans b JOIN events e ON e.id = b.id WHERE b.model = ?1 ORDER BY b.id",
        )
        .map_err(&at)?;
    let rows = q
        .query_map(params![model], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .map_err(&at)?;
    let mut bans = Vec::new();
    for row in rows {
        let (version, content, kind, reason, actor, at_ms, id) = row.map_err(&at)?;
        bans.push(Ban {
            identity: identity(path, id, version, content)?,
            kind: parse_kind(path, id, &kind)?,
            reason: reason.unwrap_or_default(),
            actor,
            at: from_ms(at_ms),
            event: Some(id),
        });
    }
    Ok(Resume {
        model: model.to_owned(),
        live,
        live_history,
        bans,
        events: u64::try_from(events).unwrap_or(0),
        last_pid: last_pid.and_then(|p| u32::try_from(p).ok()),
    })
}

pub(crate) fn read_history(
    conn: &Connection,
    path: &Path,
    model: &str,
    limit: usize,
) -> Result<Vec<Entry>, JournalError> {
    let at = sqlite_at(path);
    let limit = i64::try_from(limit.min(MAX_HISTORY)).unwrap_or(0);
    let mut q = conn
        .prepare(
            "SELECT * FROM (SELECT id, at_ms, model, kind, version, content, generation,
                from_version, from_content, live_version, live_content, ban, actor, pid,
                reason, detail
             FROM events WHERE model = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
        )
        .map_err(&at)?;
    let rows = q.query_map(params![model, limit], raw_entry).map_err(&at)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(&at)?.into_entry(path)?);
    }
    Ok(out)
}

/// A row as SQLite gives it, before its text columns are checked.
struct RawEntry {
    id: i64,
    at_ms: i64,
    model: String,
    kind: String,
    version: Option<String>,
    content: Option<String>,
    generation: Option<i64>,
    from_version: Option<String>,
    from_content: Option<String>,
    live_version: String,
    live_content: Option<String>,
    ban: bool,
    actor: String,
    pid: i64,
    reason: Option<String>,
    detail: Option<String>,
}

fn raw_entry(r: &Row<'_>) -> rusqlite::Result<RawEntry> {
    Ok(RawEntry {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        model: r.get(2)?,
        kind: r.get(3)?,
        version: r.get(4)?,
        content: r.get(5)?,
        generation: r.get(6)?,
        from_version: r.get(7)?,
        from_content: r.get(8)?,
        live_version: r.get(9)?,
        live_content: r.get(10)?,
        ban: r.get(11)?,
        actor: r.get(12)?,
        pid: r.get(13)?,
        reason: r.get(14)?,
        detail: r.get(15)?,
    })
}

impl RawEntry {
    fn into_entry(self, path: &Path) -> Result<Entry, JournalError> {
        let id = self.id;
        let opt = |v: Option<String>, c: Option<String>| match v {
            Some(v) => identity(path, id, v, c).map(Some),
            None => Ok(None),
        };
        let detail = match self.detail {
            Some(d) => Some(
                serde_json::from_str(&d).map_err(|e| JournalError::Malformed {
                    path: path.to_path_buf(),
                    id,
                    problem: format!("detail is not JSON: {e}"),
                })?,
            ),
            None => None,
        };
        Ok(Entry {
            id,
            at: from_ms(self.at_ms),
            model: self.model,
            kind: parse_kind(path, id, &self.kind)?,
            subject: opt(self.version, self.content)?,
            generation: self.generation.and_then(|g| u64::try_from(g).ok()),
            from: opt(self.from_version, self.from_content)?,
            live: identity(path, id, self.live_version, self.live_content)?,
            ban: self.ban,
            actor: self.actor,
            pid: u32::try_from(self.pid).unwrap_or(0),
            reason: self.reason,
            detail,
        })
    }
}

fn identity(
    path: &Path,
    id: i64,
    version: String,
    content: Option<String>,
) -> Result<Identity, JournalError> {
    let identity = Identity::new(version);
    match content {
        None => Ok(identity),
        Some(hex) => hex
            .parse::<ContentHash>()
            .map(|h| identity.with_content(h))
            .map_err(|e| JournalError::Malformed {
                path: path.to_path_buf(),
                id,
                problem: e.to_string(),
            }),
    }
}

fn parse_kind(path: &Path, id: i64, kind: &str) -> Result<EventKind, JournalError> {
    EventKind::parse(kind).ok_or_else(|| JournalError::Malformed {
        path: path.to_path_buf(),
        id,
        problem: format!("unknown kind {kind:?}"),
    })
}

fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
