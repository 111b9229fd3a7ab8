//! JSON renderings of bluegreen's reports. (The library can serialize them itself with its
//! `serde` feature; the example renders them by hand so that it runs with default features.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bluegreen::quarantine::QuarantineReport;
use bluegreen::{
    Check, RollbackReport, SlotStatus, StageReport, Status, SwapReport, TensorSpec,
    ValidationReport,
};
use serde_json::{Value, json};

/// Seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `{"name", "dtype", "shape"}`; dynamic dimensions by name (or `null`).
pub fn spec_json(s: &TensorSpec) -> Value {
    json!({
        "name": s.name,
        "dtype": s.dtype.to_string(),
        "shape": s.shape.as_ref().map(|dims| dims.iter().map(|d| match d {
            bluegreen::Dim::Fixed(n) => json!(n),
            bluegreen::Dim::Dynamic(name) => json!(name),
        }).collect::<Vec<_>>()),
    })
}

fn check_json(c: &Check) -> Value {
    json!({
        "name": c.name,
        "status": c.status.to_string(),
        "passed": c.passed(),
        "measured": c.measured,
        "bound": c.bound.map(|b| b.to_string()),
        "detail": c.detail,
        "elapsed_s": secs(c.elapsed),
    })
}

/// A validation report with every check.
pub fn validation_json(r: &ValidationReport) -> Value {
    json!({
        "candidate": r.candidate,
        "live": r.live,
        "passed": r.passed(),
        "summary": if r.passed() { String::new() } else { r.failure_summary() },
        "checks": r.checks.iter().map(check_json).collect::<Vec<_>>(),
        "elapsed_s": secs(r.elapsed),
        "finished_at": unix(r.finished_at),
    })
}

fn slot_json(s: &SlotStatus) -> Value {
    json!({
        "version": s.version,
        "generation": s.generation,
        "state": s.state.to_string(),
        "in_flight": s.in_flight,
        "holders": s.holders,
        "requests": s.requests,
        "errors": s.errors,
        "loaded_at": unix(s.loaded_at),
        "content": s.content.map(|h| h.to_string()),
    })
}

/// A deployment status.
pub fn status_json(s: &Status) -> Value {
    json!({
        "active": slot_json(&s.active),
        "standby": s.standby.as_ref().map(slot_json),
        "swaps": s.swaps,
        "rollbacks": s.rollbacks,
        "rejections": s.rejections,
        "quarantine_refusals": s.quarantine_refusals,
        "last_quarantine": s.last_quarantine.as_ref().map(quarantine_json),
        "last_validation": s.last_validation.as_ref().map(validation_json),
        "last_change": unix(s.last_change),
        "auto_rollbacks": s.auto_rollbacks,
        "last_auto_rollback": s.last_auto_rollback.as_ref().map(|r| json!({
            "from": r.from, "to": r.to, "reason": r.reason, "at": unix(r.at),
        })),
        "bake": s.bake.as_ref().map(|b| json!({
            "version": b.version,
            "elapsed_s": secs(b.elapsed),
            "requests": b.requests,
            "errors": b.errors,
            "p99_s": b.p99.map(secs),
        })),
        "content_changed": s.content_changed.as_ref().map(|c| json!({
            "version": c.version,
            "loaded": c.loaded.to_string(),
            "found": c.found.to_string(),
            "since": unix(c.since),
        })),
        "journal": s.journal.as_ref().map(|j| json!({
            "healthy": j.healthy,
            "written": j.written,
            "pending": j.pending,
            "failed_writes": j.failed_writes,
            "last_error": j.last_error,
            "bans": j.bans,
        })),
    })
}

/// A stage report.
pub fn stage_json(r: &StageReport) -> Value {
    json!({
        "version": r.version,
        "generation": r.generation,
        "retired": r.retired,
        "drain_wait_s": secs(r.drain_wait),
        "load_s": r.load.map(secs),
        "quarantine": r.quarantine.as_ref().map(quarantine_json),
    })
}

/// A quarantine run: passed or refused (its cause), and what the child used.
pub fn quarantine_json(r: &QuarantineReport) -> Value {
    json!({
        "version": r.version,
        "passed": r.passed(),
        "cause": r.refusal.as_ref().map(|e| e.cause()),
        "reason": r.refusal.as_ref().map(ToString::to_string),
        "validation": r.validation.as_ref().map(validation_json),
        "peak_memory_bytes": r.usage.peak_memory,
        "cpu_s": r.usage.cpu.map(secs),
        "elapsed_s": secs(r.usage.elapsed),
        "finished_at": unix(r.finished_at),
    })
}

/// A swap report.
pub fn swap_json(r: &SwapReport) -> Value {
    json!({
        "from": r.from,
        "to": r.to,
        "validation": validation_json(&r.validation),
        "warm_up_s": secs(r.warm_up),
        "flip_s": secs(r.flip),
        "total_s": secs(r.total),
        "old_holders": r.old_holders,
    })
}

/// A rollback report.
pub fn rollback_json(r: &RollbackReport) -> Value {
    json!({
        "from": r.from,
        "to": r.to,
        "flip_s": secs(r.flip),
        "old_holders": r.old_holders,
    })
}

#[cfg(feature = "watch")]
fn refusal_json(r: &bluegreen::watch::Refusal) -> Value {
    json!({
        "version": r.version,
        "kind": r.kind.to_string(),
        "reason": r.reason,
        "report": r.report.as_ref().map(validation_json),
        "at": unix(r.at),
    })
}

/// The watcher's status.
#[cfg(feature = "watch")]
pub fn watch_json(w: &bluegreen::watch::WatchStatus) -> Value {
    json!({
        "repository": w.repository.display().to_string(),
        "manifest": w.manifest.as_ref().map(|p| p.display().to_string()),
        "policy": w.policy.to_string(),
        "backend": w.backend.to_string(),
        "fallback_reason": w.fallback_reason,
        "desired": w.desired,
        "target": w.target,
        "active": w.active,
        "converged": w.converged,
        "divergence": w.divergence,
        "next_retry": w.next_retry.map(unix),
        "content_changed": w.content_changed,
        "waiting": w.waiting,
        "refusing": w.refusing.as_ref().map(refusal_json),
        "target_since_scan": w.target_since_scan,
        "converged_since_scan": w.converged_since_scan,
        "scans": w.scans,
        "last_scan": w.last_scan.map(unix),
        "last_error": w.last_error,
        "incomplete": w.incomplete,
        "promoted": w.promoted,
        "refusals": w.refusals,
        "refused": w.refused.iter().map(refusal_json).collect::<Vec<_>>(),
        "last_event": w.last_event.as_ref().map(ToString::to_string),
    })
}
