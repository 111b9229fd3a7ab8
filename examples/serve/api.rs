//! Public endpoints: predict, the model list and metadata, health, readiness, metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bluegreen::onnx::{OnnxError, Outputs, TensorView};
use serde_json::{Map, Value, json};

use super::json::parse_inputs;
use super::limits::{RETRY_AFTER_SECS, read_body};
use super::metrics::ServerSample;
use super::models::Served;
use super::queue::{HttpPredict, QueueError};
use super::reports::spec_json;
use crate::App;

/// A JSON answer with a status code.
pub fn reply(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A JSON error: `{"error": message}`.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    reply(code, &json!({ "error": message.into() }))
}

/// `GET /healthz`: the process is alive and answering.
pub async fn healthz() -> Response {
    reply(StatusCode::OK, &json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 once every model's active version has passed its gates; 503 with the
/// reason otherwise (loading, failed start-up check, shutting down). With one model the
/// answer also carries its `model` and `version` at the top level.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    let shutting_down = app.shutting_down.load(Ordering::Relaxed);
    let mut reasons = Vec::new();
    let mut models = Vec::new();
    for m in app.models.iter() {
        let r = m.readiness();
        if let Err(why) = &r {
            reasons.push(if app.args.models.len() == 1 {
                why.clone()
            } else {
                format!("model {}: {why}", m.name())
            });
        }
        models.push(json!({
            "name": m.name(),
            "ready": r.is_ok(),
            "version": r.as_ref().ok(),
            "reason": r.as_ref().err(),
        }));
    }
    if shutting_down {
        reasons.insert(0, "shutting down".to_owned());
    }
    let mut body = json!({ "ready": reasons.is_empty(), "models": models });
    if let [only] = &app.args.models[..] {
        body["model"] = json!(only.name);
        body["version"] = models[0]["version"].clone();
    }
    if reasons.is_empty() {
        reply(StatusCode::OK, &body)
    } else {
        body["reason"] = json!(reasons.join("; "));
        reply(StatusCode::SERVICE_UNAVAILABLE, &body)
    }
}

/// `GET /metrics`: Prometheus text format. Each deployment publishes first (reading its
/// per-thread lanes), so the figures are as of this scrape.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let server = ServerSample {
        open_connections: app.connections.open(),
        queue: app.queue.stats(),
        shed: app.queue.shed(),
    };
    let text = app.metrics.render(app.models.iter(), &server);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// Any other path.
pub async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see GET /v1/models, POST /v1/models/<name>:predict, GET /healthz, /readyz, /metrics",
    )
}

/// Counts every answer by route template and status code.
pub async fn track_http(State(_): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    super::metrics::http_answer(route, response.status().as_str());
    response
}

/// `GET /v1/models`: every served model, its active version and readiness.
pub async fn list_models(State(app): State<Arc<App>>) -> Response {
    let models: Vec<Value> = app
        .models
        .iter()
        .map(|m| {
            let r = m.readiness();
            json!({
                "name": m.name(),
                "version": m.bg.get().map(|bg| bg.active().version().to_owned()),
                "ready": r.is_ok(),
                "reason": r.err(),
            })
        })
        .collect();
    reply(StatusCode::OK, &json!({ "models": models }))
}

/// `GET /v1/models/<name>`: which version serves, whether it is ready, and what the model
/// takes and returns.
pub async fn model_info(State(app): State<Arc<App>>, Path(target): Path<String>) -> Response {
    let Some(model) = app.models.get(&target) else {
        return unknown_model(&app, &target);
    };
    let Some(bg) = model.bg.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading",
        );
    };
    let active = bg.active();
    let info = active.info();
    reply(
        StatusCode::OK,
        &json!({
            "model": model.name(),
            "version": active.version(),
            "ready": model.readiness().is_ok(),
            "inputs": info.inputs.iter().map(spec_json).collect::<Vec<_>>(),
            "outputs": info.outputs.iter().map(spec_json).collect::<Vec<_>>(),
        }),
    )
}

/// A 404 naming what is served.
pub fn unknown_model(app: &App, target: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no model {target:?}: this service serves {:?} (GET /v1/models lists them)",
            app.models.names()
        ),
    )
}

/// How a prediction ended, for the answer and the metrics.
pub struct Answer {
    code: StatusCode,
    body: Value,
    /// The version that answered (or refused the input); `None` when the body was refused
    /// before a model was involved.
    version: Option<String>,
    error_kind: Option<&'static str>,
}

/// `POST /v1/models/<name>:predict`.
///
/// Body: `{"inputs": [[…], …]}` for a model with one input, or
/// `{"inputs": {"<input name>": [[…], …], …}}`. Nested arrays give the shape; numbers become
/// the element type the model declares for that input (f32 or i64). The answer:
/// `{"model", "version", "outputs": {"<output name>": nested arrays}}`.
pub async fn predict(
    State(app): State<Arc<App>>,
    Path(target): Path<String>,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(name) = target.strip_suffix(":predict") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown action on {target:?}: use POST /v1/models/<name>:predict"),
        );
    };
    let Some(model) = app.models.get(name).cloned() else {
        return unknown_model(&app, name);
    };
    let Some(service) = model.service.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading",
        );
    };
    let body = match read_body(body, &app.args.limits).await {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.to_string()),
    };
    // CPU work (JSON parsing, inference, JSON rendering) runs on the inference pool; a job
    // whose client has gone by then is skipped, before parsing or before inference.
    let job = HttpPredict {
        model: Arc::clone(&model),
        body,
        max_batch: app.args.max_batch,
    };
    let outcome = app.queue.run(service, job).await;
    let answer = match outcome {
        Ok(answer) => answer,
        Err(e @ QueueError::Full(_)) => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            return r;
        }
        Err(e @ QueueError::Lost(_)) => {
            tracing::error!(model = %model.name(), error = %e, "inference job lost");
            return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
    };
    if let Some(version) = &answer.version {
        super::metrics::answered(model.name(), version, answer.error_kind, started);
    }
    reply(answer.code, &answer.body)
}

/// On an inference worker: parse against the active model's declared inputs, run it, render
/// the answer. `None` when the client left before inference.
pub fn infer(
    model: &Served,
    bg: &bluegreen::BlueGreen<bluegreen::OnnxModel>,
    body: &[u8],
    max_batch: usize,
    client_gone: &dyn Fn() -> bool,
) -> Option<Answer> {
    // Numbers are converted to the element types the active model declares (a swap keeps
    // them: the schema gate refuses a candidate that takes other inputs).
    let parsed = {
        let active = bg.active();
        parse_inputs(body, &active.info().inputs, max_batch)
            .map_err(|e| (e, active.version().to_owned()))
    };
    let inputs = match parsed {
        Ok(inputs) => inputs,
        Err((e, version)) if e.depends_on_model() => {
            return Some(Answer {
                code: StatusCode::BAD_REQUEST,
                body: json!({ "error": e.to_string(), "version": version }),
                version: Some(version),
                error_kind: Some("input"),
            });
        }
        Err((e, _)) => {
            return Some(Answer {
                code: StatusCode::BAD_REQUEST,
                body: json!({ "error": e.to_string() }),
                version: None,
                error_kind: None,
            });
        }
    };
    if client_gone() {
        return None;
    }
    // "version" names the model that computed this answer, even if a swap or rollback
    // happened meanwhile.
    let answer = bg.predict_versioned(&inputs);
    let version = answer.version.to_owned();
    Some(match answer.output {
        Ok(outputs) => Answer {
            code: StatusCode::OK,
            body: json!({
                "model": model.name(),
                "version": version,
                "outputs": outputs_json(&outputs),
            }),
            version: Some(version),
            error_kind: None,
        },
        Err(e) if e.is_input_error() => Answer {
            code: StatusCode::BAD_REQUEST,
            body: json!({ "error": e.to_string(), "version": version }),
            version: Some(version),
            error_kind: Some("input"),
        },
        Err(e) => model_failed(model, version, &e),
    })
}

fn model_failed(model: &Served, version: String, e: &OnnxError) -> Answer {
    tracing::error!(model = %model.name(), %version, error = %e, "model failed");
    Answer {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        body: json!({
            "error": model.redact(&format!("model failed: {e}")),
            "version": version,
        }),
        version: Some(version),
        error_kind: Some("model"),
    }
}

/// Outputs as `{"name": nested arrays}`; non-finite floats become `null`.
fn outputs_json(outputs: &Outputs) -> Value {
    let mut map = Map::new();
    let mut skipped = Vec::new();
    for (name, view) in outputs.iter() {
        let v = match view {
            TensorView::F32(a) => nested(&a, &|x: &f32| {
                serde_json::Number::from_f64(f64::from(*x)).map_or(Value::Null, Value::Number)
            }),
            TensorView::I64(a) => nested(&a, &|x: &i64| Value::from(*x)),
            other => {
                skipped.push(json!({ "name": name, "dtype": other.dtype().to_string() }));
                continue;
            }
        };
        map.insert(name.to_owned(), v);
    }
    if !skipped.is_empty() {
        map.insert("_skipped".to_owned(), Value::Array(skipped));
    }
    Value::Object(map)
}

fn nested<T>(a: &bluegreen::onnx::ndarray::ArrayViewD<'_, T>, leaf: &dyn Fn(&T) -> Value) -> Value {
    if a.ndim() == 0 {
        return a.iter().next().map_or(Value::Null, leaf);
    }
    if a.ndim() == 1 {
        return Value::Array(a.iter().map(leaf).collect());
    }
    Value::Array(a.outer_iter().map(|sub| nested(&sub, leaf)).collect())
}
