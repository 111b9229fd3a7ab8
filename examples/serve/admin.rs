//! Admin endpoints, per model: stage, validate (dry run), swap, rollback, unstage, status,
//! and with a journal (`--journal`) history and unban. Each operation is recorded as asked
//! by `admin:<caller>`, the caller named by the `X-Bluegreen-Actor` header (default `api`).
//! Every one needs `Authorization: Bearer <BLUEGREEN_ADMIN_TOKEN>` (auth.rs). Answers name
//! models and versions, never the server's file-system paths: each model's repository path
//! is replaced by `<name>` in every admin body (the full error goes to the log).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bluegreen::repository::RepositoryError;
use bluegreen::{Actor, BlueGreen, Error, OnnxModel};
use serde_json::{Value, json};

use super::api::{error, unknown_model};
use super::auth::AuthError;
use super::models::{Phase, Served};
use super::reports::{
    quarantine_json, rollback_json, stage_json, status_json, swap_json, validation_json,
};
use crate::App;

/// An answer sent instead of running the operation (boxed: responses are large).
type Denied = Box<Response>;

/// A JSON answer about `model`, its repository path redacted.
fn answer(model: &Served, code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        model.redact(&body.to_string()),
    )
        .into_response()
}

fn refuse(model: &Served, code: StatusCode, message: &str) -> Response {
    answer(model, code, &json!({ "error": message }))
}

/// The answer for a refused authorization.
fn denied(e: AuthError) -> Response {
    match e {
        AuthError::Disabled => error(StatusCode::FORBIDDEN, e.to_string()),
        _ => {
            let mut r = error(StatusCode::UNAUTHORIZED, e.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bluegreen-admin\""),
            );
            r
        }
    }
}

/// Longest caller name taken from `X-Bluegreen-Actor`.
const MAX_ACTOR: usize = 64;

/// Who asks, for the journal: `admin:<X-Bluegreen-Actor>`, or `admin:api`. The header is
/// the caller's own word (one token authenticates every caller): letters, digits and
/// `.-_@` only, at most 64 of them, else `api`.
pub fn actor(headers: &HeaderMap) -> Actor {
    let name = headers
        .get("x-bluegreen-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_ACTOR
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b))
        })
        .unwrap_or("api");
    Actor::admin(name)
}

/// Authorizes, finds the model, and returns it with its deployment.
fn guard(
    app: &App,
    headers: &HeaderMap,
    name: &str,
) -> Result<(Arc<Served>, Arc<BlueGreen<OnnxModel>>), Denied> {
    app.admin_token
        .authorize(headers)
        .map_err(|e| Box::new(denied(e)))?;
    let Some(model) = app.models.get(name).cloned() else {
        return Err(Box::new(unknown_model(app, name)));
    };
    let bg = model.bg.get().cloned().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the initial model is still loading",
        ))
    })?;
    Ok((model, bg))
}

/// Runs an admin operation on the blocking pool, holding the model's operation lock
/// (shared with its watcher) so that sequences do not interleave.
async fn blocking<T: Send + 'static>(
    model: &Arc<Served>,
    op: impl FnOnce(&Served) -> T + Send + 'static,
) -> Result<T, Denied> {
    let model = Arc::clone(model);
    tokio::task::spawn_blocking(move || {
        let _op = model.op_lock.lock().unwrap_or_else(|e| e.into_inner());
        op(&model)
    })
    .await
    .map_err(|e| {
        Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("admin operation failed: {e}"),
        ))
    })
}

/// The HTTP answer for a refused operation. The live model keeps serving in every case.
fn refused(model: &Served, e: Error) -> Response {
    let message = e.to_string();
    tracing::warn!(model = %model.name(), error = %message, "admin operation refused");
    match e {
        Error::ValidationFailed(report) => answer(
            model,
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": message, "validation": validation_json(&report) }),
        ),
        Error::Quarantined(report) => answer(
            model,
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": message, "quarantine": quarantine_json(&report) }),
        ),
        Error::WarmupFailed { .. } | Error::Load { .. } => {
            refuse(model, StatusCode::UNPROCESSABLE_ENTITY, &message)
        }
        Error::InvalidVersion { .. } => refuse(model, StatusCode::BAD_REQUEST, &message),
        Error::DrainTimeout { .. } | Error::RetireBacklog { .. } => {
            refuse(model, StatusCode::SERVICE_UNAVAILABLE, &message)
        }
        #[cfg(feature = "journal")]
        Error::Journal(_) => refuse(model, StatusCode::SERVICE_UNAVAILABLE, &message),
        Error::Spawn { .. } => refuse(model, StatusCode::INTERNAL_SERVER_ERROR, &message),
        // Nothing staged, not a candidate, already failed, version in use, nothing to roll
        // back to, a bake or canary in progress, banned, replaced in place: the request
        // conflicts with the state.
        _ => refuse(model, StatusCode::CONFLICT, &message),
    }
}

/// `GET /admin/models/<name>/status`.
pub async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (model, bg) = match guard(&app, &headers, &name) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let readiness = model.readiness();
    let startup = match &*model.phase.lock().unwrap_or_else(|e| e.into_inner()) {
        Phase::Loading => Value::Null,
        Phase::Serving {
            initial_passed,
            report,
            note,
            ..
        } => json!({
            "passed": initial_passed,
            "report": report.as_ref().map(validation_json),
            "note": note,
        }),
    };
    #[cfg(feature = "watch")]
    let watch = model
        .watcher
        .get()
        .map_or(Value::Null, |w| super::reports::watch_json(&w.status()));
    #[cfg(not(feature = "watch"))]
    let watch = Value::Null;
    answer(
        &model,
        StatusCode::OK,
        &json!({
            "model": model.name(),
            "ready": readiness.is_ok(),
            "not_ready_reason": readiness.err(),
            "deployment": status_json(&bg.status()),
            "startup_check": startup,
            "verdict": super::verdict::Verdict::of(&model).json(),
            "watch": watch,
        }),
    )
}

/// `POST /admin/models/<name>/stage` with `{"version": "3"}`: loads that version from the
/// model's repository into the standby slot (retiring whatever was there).
pub async fn stage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (model, bg) = match guard(&app, &headers, &name) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let version = match serde_json::from_slice::<Value>(&body) {
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(r#"malformed JSON: {e}; send {{"version": "3"}}"#),
            );
        }
        Ok(v) => match v.get("version") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    r#"the body must name a version: {"version": "3"}"#,
                );
            }
        },
    };
    let dir = match model.repo.version(&version) {
        Ok(dir) => dir,
        Err(RepositoryError::NotFound { version, .. }) => {
            return refuse(
                &model,
                StatusCode::NOT_FOUND,
                &format!("version {version} not found in the repository of {name}"),
            );
        }
        Err(e @ RepositoryError::InvalidVersion { .. }) => {
            return refuse(&model, StatusCode::BAD_REQUEST, &e.to_string());
        }
        Err(e) => {
            tracing::error!(model = %name, %version, error = %e, "cannot read the version");
            return refuse(
                &model,
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot read version {version} of {name} (see the service log)"),
            );
        }
    };
    let who = actor(&headers);
    let quarantined = app.args.quarantine.is_some();
    let outcome = blocking(&model, move |model| {
        let path = model.model_path(&dir.path);
        // The hash of what is about to be loaded: kept with the model, journaled, and what
        // a ban holds for.
        let identity = match model.repo.identity(&dir) {
            Ok(identity) => identity,
            Err(e) => {
                return Err(Error::Load {
                    version,
                    source: e.into(),
                });
            }
        };
        let bg = bg.acting_as(who);
        if quarantined {
            bg.stage_quarantined_with(identity, &path, |p| model.onnx.load(p))
        } else {
            bg.stage_with(identity, || model.onnx.load(&path))
        }
    })
    .await;
    match outcome {
        Ok(Ok(report)) => answer(&model, StatusCode::OK, &stage_json(&report)),
        Ok(Err(e)) => refused(&model, e),
        Err(r) => *r,
    }
}

/// `POST /admin/models/<name>/validate`: every gate on the staged candidate, nothing
/// changes. 200 with the report whether it passed or not.
pub async fn validate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let (model, bg) = match guard(&app, &headers, &name) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let who = actor(&headers);
    match blocking(&model, move |_| bg.acting_as(who).validate()).await {
        Ok(Ok(report)) => answer(&model, StatusCode::OK, &validation_json(&report)),
        Ok(Err(e)) => refused(&model, e),
        Err(r) => *r,
    }
}

/// Runs one admin operation on a model's deployment (authorized, serialized, off the async
/// runtime) and answers 200 with `ok(result)` or the error's status.
async fn admin_op<T: Send + 'static>(
    app: &Arc<App>,
    headers: &HeaderMap,
    name: &str,
    op: impl FnOnce(bluegreen::Acting<'_, OnnxModel>) -> bluegreen::Result<T> + Send + 'static,
    ok: impl FnOnce(&T) -> serde_json::Value,
) -> Response {
    let (model, bg) = match guard(app, headers, name) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    let who = actor(headers);
    match blocking(&model, move |_| op(bg.acting_as(who))).await {
        Ok(Ok(value)) => answer(&model, StatusCode::OK, &ok(&value)),
        Ok(Err(e)) => refused(&model, e),
        Err(r) => *r,
    }
}

/// `POST /admin/models/<name>/swap`: validate, warm, switch. 422 with the report when a
/// gate fails (the live model keeps serving).
pub async fn swap(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_op(&app, &headers, &name, |bg| bg.swap(), swap_json).await
}

/// `POST /admin/models/<name>/rollback`: back to the previous model, instantly.
pub async fn rollback(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_op(&app, &headers, &name, |bg| bg.rollback(), rollback_json).await
}

/// `POST /admin/models/<name>/unstage`: frees the standby slot (no rollback afterwards).
pub async fn unstage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    admin_op(
        &app,
        &headers,
        &name,
        |bg| bg.unstage(),
        |retired| json!({ "retired": retired }),
    )
    .await
}

/// `GET /admin/models/<name>/history[?limit=N]`: the newest journal rows about the model,
/// oldest first (default 100, at most 10 000); 404 without `--journal`.
#[cfg(feature = "journal")]
pub async fn history(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let (model, bg) = match guard(&app, &headers, &name) {
        Ok(g) => g,
        Err(r) => return *r,
    };
    if app.args.journal.is_none() {
        return refuse(
            &model,
            StatusCode::NOT_FOUND,
            "no journal: start with --journal FILE",
        );
    }
    let limit = match query
        .as_deref()
        .map(|q| q.strip_prefix("limit=").map(str::parse::<usize>))
    {
        None => 100,
        Some(Some(Ok(n))) if n > 0 => n.min(bluegreen::journal::MAX_HISTORY),
        _ => {
            return refuse(
                &model,
                StatusCode::BAD_REQUEST,
                "the query may only be limit=N, N ≥ 1",
            );
        }
    };
    match tokio::task::spawn_blocking(move || bg.history(limit)).await {
        Ok(Ok(rows)) => answer(
            &model,
            StatusCode::OK,
            &json!({ "model": model.name(), "events": rows }),
        ),
        Ok(Err(e)) => refused(&model, e),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("history failed: {e}"),
        ),
    }
}

/// `POST /admin/models/<name>/unban` with `{"version": "3"}`: lifts the journal's bans on
/// that version (recorded with who asked); answers how many were lifted.
#[cfg(feature = "journal")]
pub async fn unban(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let version = match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("version").and_then(Value::as_str).map(str::to_owned))
    {
        Some(v) => v,
        None => return error(StatusCode::BAD_REQUEST, r#"send {"version": "3"}"#),
    };
    admin_op(
        &app,
        &headers,
        &name,
        move |bg| bg.unban(&version),
        |lifted| json!({ "lifted": lifted }),
    )
    .await
}
