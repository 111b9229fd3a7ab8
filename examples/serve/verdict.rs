//! A replica's verdict on the version it is asked to serve — the fleet-level signal: a
//! refusal on any replica must reach the controller, which then aborts the rollout for the
//! whole fleet (deploy/k8s, docs/serving.md "Fleet recipe"). Shown as `verdict` in
//! `/admin/models/<name>/status` and as `bluegreen_target_refused` in `/metrics`.

use serde_json::{Value, json};

use super::models::{Phase, Served};

/// Whether this replica refuses the version it is asked to serve, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The version refused, when one is.
    pub refused: Option<String>,
    /// `validation`, `load`, `warm-up`, `quarantine`, `banned`, … or `startup-check`.
    pub kind: Option<String>,
    /// The error, in words.
    pub reason: Option<String>,
}

impl Verdict {
    /// Asked of one model: with a watcher, whether the refusal of its target stands
    /// (`WatchStatus::refusing`); without one, whether the start-up version failed its
    /// start-up check and is still the one serving (the pod-level blue-green mode, where
    /// each new pod is asked to serve its `--version`).
    pub fn of(model: &Served) -> Verdict {
        #[cfg(feature = "watch")]
        if let Some(w) = model.watcher.get() {
            let r = w.status().refusing;
            return Verdict {
                kind: r.as_ref().map(|r| r.kind.to_string()),
                reason: r.as_ref().map(|r| r.reason.clone()),
                refused: r.map(|r| r.version),
            };
        }
        let none = Verdict {
            refused: None,
            kind: None,
            reason: None,
        };
        let Some(bg) = model.bg.get() else {
            return none;
        };
        let active = bg.active();
        let phase = model
            .phase
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match phase {
            Phase::Serving {
                initial_generation,
                initial_passed: false,
                report,
                note,
            } if active.generation() == initial_generation => Verdict {
                refused: Some(active.version().to_owned()),
                kind: Some("startup-check".to_owned()),
                reason: report.map(|r| r.failure_summary()).or(note),
            },
            _ => none,
        }
    }

    /// As in `/status`.
    pub fn json(&self) -> Value {
        json!({
            "refused": self.refused.is_some(),
            "version": self.refused,
            "kind": self.kind,
            "reason": self.reason,
        })
    }
}
