//! Admin endpoints: stage, validate (dry run), swap, rollback, unstage, status. Every one
//! needs `Authorization: Bearer <BLUEGREEN_ADMIN_TOKEN>`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bluegreen::repository::RepositoryError;
use bluegreen::{BlueGreen, Error, OnnxModel};
use serde_json::{Value, json};

use super::api::{error, reply};
use super::json::{rollback_json, stage_json, status_json, swap_json, validation_json};
use crate::{App, Phase};

/// An answer sent instead of running the operation (boxed: responses are large).
type Denied = Box<Response>;

/// Checks the bearer token; the error is the answer to send.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Denied> {
    let Some(expected) = &app.admin_token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: start the service with BLUEGREEN_ADMIN_TOKEN set",
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if constant_time_eq(token.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(Box::new(unauthorized("invalid bearer token"))),
        None => Err(Box::new(unauthorized(
            "missing credentials: send Authorization: Bearer <BLUEGREEN_ADMIN_TOKEN>",
        ))),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"bluegreen-admin\""),
    );
    r
}

/// Compares without an early exit, so the time taken does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Authorizes, checks the model name, and returns the deployment.
fn guard(app: &App, headers: &HeaderMap, name: &str) -> Result<Arc<BlueGreen<OnnxModel>>, Denied> {
    authorize(app, headers)?;
    if name != app.args.name {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no model {name:?}: this service serves {:?}", app.args.name),
        )));
    }
    app.bg.get().cloned().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the initial model is still loading",
        ))
    })
}

/// Runs an admin operation on the blocking pool, holding the operation lock (shared with the
/// watcher) so that sequences do not interleave.
async fn blocking<T: Send + 'static>(
    app: &Arc<App>,
    op: impl FnOnce(&App) -> T + Send + 'static,
) -> Result<T, Denied> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || {
        let _op = app.op_lock.lock().unwrap_or_else(|e| e.into_inner());
        op(&app)
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
fn refused(e: Error) -> Response {
    let message = e.to_string();
    match e {
        Error::ValidationFailed(report) => reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({ "error": message, "validation": validation_json(&report) }),
        ),
        Error::WarmupFailed { .. } | Error::Load { .. } => {
            error(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
        Error::InvalidVersion { .. } => error(StatusCode::BAD_REQUEST, message),
        Error::DrainTimeout { .. } => error(StatusCode::SERVICE_UNAVAILABLE, message),
        Error::Spawn { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, message),
        // Nothing staged, not a candidate, already failed, version in use, nothing to roll
        // back to, a bake or canary in progress: the request conflicts with the state.
        _ => error(StatusCode::CONFLICT, message),
    }
}

/// `GET /admin/models/<name>/status`.
pub async fn status(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let bg = match guard(&app, &headers, &name) {
        Ok(bg) => bg,
        Err(r) => return *r,
    };
    let readiness = app.readiness();
    let startup = match &*app.phase.lock().unwrap_or_else(|e| e.into_inner()) {
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
    let watch = app
        .watcher
        .get()
        .map_or(Value::Null, |w| super::json::watch_json(&w.status()));
    #[cfg(not(feature = "watch"))]
    let watch = Value::Null;
    reply(
        StatusCode::OK,
        &json!({
            "model": app.args.name,
            "ready": readiness.is_ok(),
            "not_ready_reason": readiness.err(),
            "deployment": status_json(&bg.status()),
            "startup_check": startup,
            "watch": watch,
        }),
    )
}

/// `POST /admin/models/<name>/stage` with `{"version": "3"}`: loads that version from the
/// repository into the standby slot (retiring whatever was there).
pub async fn stage(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let bg = match guard(&app, &headers, &name) {
        Ok(bg) => bg,
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
    let dir = match app.repo.version(&version) {
        Ok(dir) => dir,
        Err(e @ RepositoryError::NotFound { .. }) => {
            return error(StatusCode::NOT_FOUND, e.to_string());
        }
        Err(e @ RepositoryError::InvalidVersion { .. }) => {
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let outcome = blocking(&app, move |app| {
        let path = app.model_path(&dir.path);
        bg.stage_with(version, || app.onnx.load(&path))
    })
    .await;
    match outcome {
        Ok(Ok(report)) => reply(StatusCode::OK, &stage_json(&report)),
        Ok(Err(e)) => refused(e),
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
    let bg = match guard(&app, &headers, &name) {
        Ok(bg) => bg,
        Err(r) => return *r,
    };
    match blocking(&app, move |_| bg.validate()).await {
        Ok(Ok(report)) => {
            if !report.passed() {
                app.dry_run_failures.fetch_add(1, Ordering::Relaxed);
            }
            reply(StatusCode::OK, &validation_json(&report))
        }
        Ok(Err(e)) => refused(e),
        Err(r) => *r,
    }
}

/// Runs one admin operation on the deployment (authorized, serialized, off the async
/// runtime) and answers 200 with `ok(result)` or the error's status.
async fn admin_op<T: Send + 'static>(
    app: &Arc<App>,
    headers: &HeaderMap,
    name: &str,
    op: impl FnOnce(&BlueGreen<OnnxModel>) -> bluegreen::Result<T> + Send + 'static,
    ok: impl FnOnce(&T) -> serde_json::Value,
) -> Response {
    let bg = match guard(app, headers, name) {
        Ok(bg) => bg,
        Err(r) => return *r,
    };
    match blocking(app, move |_| op(&bg)).await {
        Ok(Ok(value)) => reply(StatusCode::OK, &ok(&value)),
        Ok(Err(e)) => refused(e),
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
