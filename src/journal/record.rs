//! What one journal row says: [`EventKind`] and the `Record` the deployment hands over.
//!
//! Compiled with or without the `journal` feature: the deployment builds records through
//! closures that only run when a journal is configured, so without one nothing is
//! allocated for them.
// Without the feature nothing reads a record: the closures that build them never run.
#![cfg_attr(not(feature = "journal"), allow(dead_code))]

use std::fmt;
use std::time::SystemTime;

use crate::slot::ContentHash;
use crate::validation::validate::ValidationReport;

/// What happened, one kind per journal row (the `kind` column holds [`as_str`](Self::as_str)).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// The deployment started on its initial model (a process start or restart).
    Start,
    /// A candidate was staged.
    Stage,
    /// A `stage_with` loader failed or panicked.
    LoadFailed,
    /// A dry-run validation (`validate`, `validate_active`), report in `detail`.
    Validation,
    /// A candidate was refused: by its gates (report in `detail`; a ban), its warm-up, a
    /// ban, or changed content.
    Refusal,
    /// Traffic moved to a validated candidate.
    Swap,
    /// Traffic moved back to the previous model, asked for by someone.
    Rollback,
    /// The bake window rolled back on its own (reason in `reason`; a ban).
    AutoRollback,
    /// The bake window passed: the live model is stable.
    BakePassed,
    /// A candidate started as a canary (share and report in `detail`).
    CanaryStart,
    /// The canary's share changed.
    CanaryStep,
    /// The canary took all traffic.
    CanaryPromote,
    /// The canary was stopped (a ban unless the watcher asked).
    CanaryAbort,
    /// A model was retired (drained and handed to the retirer).
    Retire,
    /// Work overran its deadline and was abandoned (what, in `reason`).
    Abandon,
    /// A ban was lifted.
    Unban,
    /// A version's files no longer hash to what was loaded or recorded.
    ContentChanged,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 17] = [
        EventKind::Start,
        EventKind::Stage,
        EventKind::LoadFailed,
        EventKind::Validation,
        EventKind::Refusal,
        EventKind::Swap,
        EventKind::Rollback,
        EventKind::AutoRollback,
        EventKind::BakePassed,
        EventKind::CanaryStart,
        EventKind::CanaryStep,
        EventKind::CanaryPromote,
        EventKind::CanaryAbort,
        EventKind::Retire,
        EventKind::Abandon,
        EventKind::Unban,
        EventKind::ContentChanged,
    ];

    /// The name stored in the `kind` column.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Stage => "stage",
            EventKind::LoadFailed => "load_failed",
            EventKind::Validation => "validation",
            EventKind::Refusal => "refusal",
            EventKind::Swap => "swap",
            EventKind::Rollback => "rollback",
            EventKind::AutoRollback => "auto_rollback",
            EventKind::BakePassed => "bake_passed",
            EventKind::CanaryStart => "canary_start",
            EventKind::CanaryStep => "canary_step",
            EventKind::CanaryPromote => "canary_promote",
            EventKind::CanaryAbort => "canary_abort",
            EventKind::Retire => "retire",
            EventKind::Abandon => "abandon",
            EventKind::Unban => "unban",
            EventKind::ContentChanged => "content_changed",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether this kind moves traffic (the live model after it may differ from before).
    pub const fn moves_traffic(self) -> bool {
        matches!(
            self,
            EventKind::Swap
                | EventKind::Rollback
                | EventKind::AutoRollback
                | EventKind::CanaryPromote
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model as a row names it: label, content hash, generation (unique in its process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Named {
    pub(crate) version: String,
    pub(crate) content: Option<ContentHash>,
    pub(crate) generation: u64,
}

/// A value in a row's `detail` JSON object.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Bool(bool),
    Num(f64),
    Text(String),
    Report(Box<ValidationReport>),
}

/// One row to write. `live` is the model serving all traffic *after* the event, so the
/// last row of a deployment says what it was serving.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) kind: EventKind,
    /// The model acted on (the candidate, the model retired, the version unbanned …).
    pub(crate) subject: Option<Named>,
    /// For moves of traffic: the model traffic left.
    pub(crate) from: Option<Named>,
    pub(crate) live: Named,
    /// Whether this row bans its subject (label and content) from being staged again.
    pub(crate) ban: bool,
    pub(crate) actor: String,
    pub(crate) reason: Option<String>,
    pub(crate) detail: Vec<(&'static str, Value)>,
    pub(crate) at: SystemTime,
}

impl Record {
    pub(crate) fn new(kind: EventKind, live: Named, actor: String) -> Self {
        Self {
            kind,
            subject: None,
            from: None,
            live,
            ban: false,
            actor,
            reason: None,
            detail: Vec::new(),
            at: SystemTime::now(),
        }
    }

    pub(crate) fn subject(mut self, subject: Named) -> Self {
        self.subject = Some(subject);
        self
    }

    pub(crate) fn from(mut self, from: Named) -> Self {
        self.from = Some(from);
        self
    }

    pub(crate) fn ban(mut self, ban: bool) -> Self {
        self.ban = ban;
        self
    }

    pub(crate) fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub(crate) fn detail(mut self, key: &'static str, value: Value) -> Self {
        self.detail.push((key, value));
        self
    }
}
