//! Public endpoints: predict, model metadata, health, readiness, metrics.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bluegreen::ElementType;
use bluegreen::onnx::ndarray::{ArrayD, IxDyn};
use bluegreen::onnx::{Inputs, OnnxError, Outputs, Tensor, TensorView};
use serde_json::{Map, Value, json};

use super::json::spec_json;
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

/// `GET /readyz`: 200 once the active model has passed its gates; 503 with the reason
/// otherwise (loading, failed start-up check, shutting down).
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.readiness() {
        Ok(version) => reply(
            StatusCode::OK,
            &json!({ "ready": true, "model": app.args.name, "version": version }),
        ),
        Err(reason) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "reason": reason }),
        ),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let status = app.bg.get().map(|bg| bg.status());
    let text = app.metrics.render(
        status.as_ref(),
        app.readiness().is_ok(),
        app.dry_run_failures.load(Ordering::Relaxed),
    );
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
        "no such endpoint; see POST /v1/models/<name>:predict, GET /healthz, /readyz, /metrics",
    )
}

/// Counts every answer by route template and status code.
pub async fn track_http(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    app.metrics
        .http
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// `GET /v1/models/<name>`: which version serves, whether the service is ready, and what the
/// model takes and returns.
pub async fn model_info(State(app): State<Arc<App>>, Path(target): Path<String>) -> Response {
    if target != app.args.name {
        return unknown_model(&app, &target);
    }
    let Some(bg) = app.bg.get() else {
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
            "model": app.args.name,
            "version": active.version(),
            "ready": app.readiness().is_ok(),
            "inputs": info.inputs.iter().map(spec_json).collect::<Vec<_>>(),
            "outputs": info.outputs.iter().map(spec_json).collect::<Vec<_>>(),
        }),
    )
}

fn unknown_model(app: &App, target: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no model {target:?}: this service serves {:?} (POST /v1/models/{}:predict)",
            app.args.name, app.args.name
        ),
    )
}

/// How a prediction ended, for the answer and the metrics.
struct Answer {
    code: StatusCode,
    body: Value,
    /// The version that answered (or refused the input); `None` before a model was involved.
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
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Some(name) = target.strip_suffix(":predict") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("unknown action on {target:?}: use POST /v1/models/<name>:predict"),
        );
    };
    if name != app.args.name {
        return unknown_model(&app, name);
    }
    let Some(bg) = app.bg.get().cloned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading",
        );
    };
    let max_batch = app.args.max_batch;
    let model_name = app.args.name.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // CPU work (JSON parsing, inference, JSON rendering) runs on the inference pool.
    app.pool.spawn(move || {
        let answer = match parse_request(&body, max_batch) {
            Err(message) => Answer {
                code: StatusCode::BAD_REQUEST,
                body: json!({ "error": message }),
                version: None,
                error_kind: None,
            },
            Ok(request) => {
                // The pin keeps one model for the whole call, so "version" names the model
                // that really answered even if a swap happens meanwhile.
                let pinned = bg.active();
                let version = pinned.version().to_owned();
                let answer = build_inputs(request, &pinned.info().inputs)
                    .and_then(|inputs| pinned.predict(&inputs).map_err(PredictError::Model));
                match answer {
                    Ok(outputs) => Answer {
                        code: StatusCode::OK,
                        body: json!({
                            "model": model_name,
                            "version": version,
                            "outputs": outputs_json(&outputs),
                        }),
                        version: Some(version),
                        error_kind: None,
                    },
                    Err(PredictError::Input(message)) => Answer {
                        code: StatusCode::BAD_REQUEST,
                        body: json!({ "error": message, "version": version }),
                        version: Some(version),
                        error_kind: Some("input"),
                    },
                    Err(PredictError::Model(e)) if e.is_input_error() => Answer {
                        code: StatusCode::BAD_REQUEST,
                        body: json!({ "error": e.to_string(), "version": version }),
                        version: Some(version),
                        error_kind: Some("input"),
                    },
                    Err(PredictError::Model(e)) => {
                        tracing::error!(%version, error = %e, "model failed");
                        Answer {
                            code: StatusCode::INTERNAL_SERVER_ERROR,
                            body: json!({ "error": format!("model failed: {e}"), "version": version }),
                            version: Some(version),
                            error_kind: Some("model"),
                        }
                    }
                }
            }
        };
        let _ = tx.send(answer);
    });
    let Ok(answer) = rx.await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the inference worker ended without an answer",
        );
    };
    if let Some(version) = &answer.version {
        let m = &app.metrics;
        m.requests.with_label_values(&[version.as_str()]).inc();
        if let Some(kind) = answer.error_kind {
            m.errors.with_label_values(&[version.as_str(), kind]).inc();
        }
        m.latency
            .with_label_values(&[version.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    reply(answer.code, &answer.body)
}

enum PredictError {
    /// The request cannot become the model's input (message for the client).
    Input(String),
    /// The model refused or failed.
    Model(OnnxError),
}

/// A request's tensors before they meet the model: a nested JSON array each.
enum Body {
    /// `{"inputs": [...]}`: the model's only input.
    Single(Value),
    /// `{"inputs": {"name": [...]}}`.
    Named(Vec<(String, Value)>),
}

fn parse_request(body: &[u8], max_batch: usize) -> Result<Body, String> {
    if body.is_empty() {
        return Err(r#"empty body: send JSON like {"inputs": [[0.0, 1.0, ...]]}"#.to_owned());
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err(format!(
            r#"the body must be a JSON object like {{"inputs": [[...]]}}, not {}"#,
            kind(&value)
        ));
    };
    if let Some(other) = obj.keys().find(|k| k.as_str() != "inputs") {
        return Err(format!(
            r#"unknown field {other:?}: the body is {{"inputs": [[...], ...]}} or {{"inputs": {{"<input name>": [...]}}}}"#
        ));
    }
    let request = match obj.remove("inputs") {
        None => return Err(r#"missing field "inputs""#.to_owned()),
        Some(v @ Value::Array(_)) => Body::Single(v),
        Some(Value::Object(named)) if named.is_empty() => {
            return Err(r#""inputs" names no input"#.to_owned());
        }
        Some(Value::Object(named)) => Body::Named(named.into_iter().collect()),
        Some(other) => {
            return Err(format!(
                r#""inputs" must be an array (one input) or an object of arrays (named inputs), not {}"#,
                kind(&other)
            ));
        }
    };
    let batches = match &request {
        Body::Single(v) => vec![v],
        Body::Named(named) => named.iter().map(|(_, v)| v).collect(),
    };
    for v in batches {
        if let Value::Array(rows) = v
            && rows.len() > max_batch
        {
            return Err(format!(
                "{} rows in one request; this service accepts at most {max_batch}",
                rows.len()
            ));
        }
    }
    Ok(request)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns the request into the model's [`Inputs`], converting numbers to the element type the
/// model declares for each input. Names, ranks and sizes are left to the model's own checks,
/// whose typed errors say exactly what it expects.
fn build_inputs(request: Body, specs: &[bluegreen::TensorSpec]) -> Result<Inputs, PredictError> {
    match request {
        Body::Single(v) => {
            // A model with several inputs refuses an unnamed one with a typed error; build
            // it as f32 then and let that error speak.
            let dtype = match specs {
                [only] => only.dtype,
                _ => ElementType::F32,
            };
            let name = specs.first().map_or("inputs", |s| s.name.as_str());
            Ok(Inputs::single(tensor(&v, dtype, name)?))
        }
        Body::Named(named) => {
            let mut inputs = Inputs::new();
            for (name, v) in named {
                let dtype = specs
                    .iter()
                    .find(|s| s.name == name)
                    .map_or(ElementType::F32, |s| s.dtype);
                let t = tensor(&v, dtype, &name)?;
                inputs.insert(name, t);
            }
            Ok(inputs)
        }
    }
}

/// A nested JSON array → a tensor of `dtype`, with the array's shape.
fn tensor(v: &Value, dtype: ElementType, name: &str) -> Result<Tensor, PredictError> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Value::Array(items) = cur {
        shape.push(items.len());
        match items.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    if shape.is_empty() {
        return Err(PredictError::Input(format!(
            "input `{name}` must be a (nested) array of numbers, not {}",
            kind(v)
        )));
    }
    if shape.contains(&0) {
        return Err(PredictError::Input(format!(
            "input `{name}` has an empty array (shape {shape:?}); send at least one value per axis"
        )));
    }
    let total = shape.iter().product::<usize>();
    let mut numbers = Vec::with_capacity(total);
    let mut at = Vec::with_capacity(shape.len());
    collect(v, &shape, &mut at, &mut numbers)
        .map_err(|m| PredictError::Input(format!("input `{name}`: {m}")))?;
    let at_index = |i: usize| {
        let mut rest = i;
        let mut idx = vec![0; shape.len()];
        for (axis, size) in shape.iter().enumerate().rev() {
            idx[axis] = rest % size;
            rest /= size;
        }
        idx.iter().map(|i| format!("[{i}]")).collect::<String>()
    };
    match dtype {
        ElementType::F32 => {
            let mut data = Vec::with_capacity(total);
            for (i, n) in numbers.iter().enumerate() {
                let x = n.as_f64().unwrap_or(f64::NAN) as f32;
                if !x.is_finite() {
                    return Err(PredictError::Input(format!(
                        "input `{name}`{}: {n} does not fit in f32",
                        at_index(i)
                    )));
                }
                data.push(x);
            }
            ArrayD::from_shape_vec(IxDyn(&shape), data)
                .map(Tensor::from)
                .map_err(|e| PredictError::Input(format!("input `{name}`: {e}")))
        }
        ElementType::I64 => {
            let mut data = Vec::with_capacity(total);
            for (i, n) in numbers.iter().enumerate() {
                let Some(x) = n.as_i64() else {
                    return Err(PredictError::Input(format!(
                        "input `{name}`{}: {n} is not a 64-bit integer, and the model takes i64",
                        at_index(i)
                    )));
                };
                data.push(x);
            }
            ArrayD::from_shape_vec(IxDyn(&shape), data)
                .map(Tensor::from)
                .map_err(|e| PredictError::Input(format!("input `{name}`: {e}")))
        }
        other => Err(PredictError::Input(format!(
            "input `{name}` takes element type {other}, which this service cannot build from JSON (f32 and i64 only)"
        ))),
    }
}

/// Walks a nested array that must be rectangular with `shape`, collecting its numbers.
fn collect<'a>(
    v: &'a Value,
    shape: &[usize],
    at: &mut Vec<usize>,
    out: &mut Vec<&'a serde_json::Number>,
) -> Result<(), String> {
    let here = || at.iter().map(|i| format!("[{i}]")).collect::<String>();
    let depth = at.len();
    if depth == shape.len() {
        return match v {
            Value::Number(n) => {
                out.push(n);
                Ok(())
            }
            other => Err(format!("{} is {}; expected a number", here(), kind(other))),
        };
    }
    match v {
        Value::Array(items) if items.len() == shape[depth] => {
            for (i, item) in items.iter().enumerate() {
                at.push(i);
                collect(item, shape, at, out)?;
                at.pop();
            }
            Ok(())
        }
        Value::Array(items) => Err(format!(
            "ragged array: {} has {} elements, but its first sibling has {} (shape {shape:?})",
            if here().is_empty() {
                "the top level".to_owned()
            } else {
                here()
            },
            items.len(),
            shape[depth]
        )),
        other => Err(format!(
            "{} is {}; expected an array of {} (shape {shape:?})",
            here(),
            kind(other),
            shape[depth]
        )),
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
