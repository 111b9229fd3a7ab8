//! [`QuarantineReport`]: what one quarantine run found.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::error::QuarantineError;
use super::usage::Usage;
use crate::validation::validate::ValidationReport;

/// The outcome of qualifying one candidate in a quarantine child: passed, or refused and
/// why, with what the child used. [`Status::last_quarantine`](crate::Status) shows the
/// latest one; a refusal is returned inside
/// [`Error::Quarantined`](crate::Error::Quarantined).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarantineReport {
    /// The candidate's version label.
    pub version: String,
    /// The candidate's file.
    pub candidate: PathBuf,
    /// `None` when the candidate passed; else why it was refused.
    pub refusal: Option<QuarantineError>,
    /// The gates' report from the child, when it got that far (passed or failed).
    pub validation: Option<ValidationReport>,
    /// The child's process id (`None` when it could not be started).
    pub pid: Option<u32>,
    /// What the child used: peak memory, CPU time, wall time.
    pub usage: Usage,
    /// xxh3 of the candidate file's bytes when it was qualified (`None` for a folder): the
    /// serving process loads it only if its bytes still hash to this.
    pub content_hash: Option<u64>,
    /// When the child ended.
    #[serde(serialize_with = "crate::serde_util::unix_secs")]
    pub finished_at: SystemTime,
}

impl QuarantineReport {
    /// Whether the candidate passed quarantine.
    pub fn passed(&self) -> bool {
        self.refusal.is_none()
    }
}

impl fmt::Display for QuarantineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refusal {
            None => write!(f, "quarantine of {}: PASSED ({})", self.version, self.usage),
            Some(e) => write!(
                f,
                "quarantine of {}: REFUSED, {} ({}): {e}",
                self.version,
                e.cause(),
                self.usage
            ),
        }
    }
}
