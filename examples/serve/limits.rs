//! The service's limits, and the tower / tower-http layers that enforce the per-request ones.
//!
//! | limit | flag | default | enforced by |
//! |---|---|---|---|
//! | open connections | `--max-connections` | 1024 | a semaphore taken before `accept` (server.rs) |
//! | request head | `--header-timeout-ms` | 10 000 | hyper's `header_read_timeout` (server.rs) |
//! | idle keep-alive | `--idle-timeout-ms` | 5 000 | graceful close after the last answer (server.rs) |
//! | request body time | `--body-timeout-ms` | 10 000 | `tower_http::timeout::RequestBodyDeadlineLayer` → 408 |
//! | request body size | `--max-body-bytes` | 2 MiB | `tower_http::limit::RequestBodyLimitLayer` → 413 |
//! | public request time | `--request-timeout-ms` | 30 000 | `tower_http::timeout::TimeoutLayer` → 503 |
//! | inference queue | `--max-queue` | 128 | bluegreen's `InferencePool` admissions, `load_shed` → 503 + `Retry-After` (queue.rs) |
//! | rows per request | `--max-batch` | 1024 | the request parser (json.rs) |
//! | array nesting | — | 16 | the request parser (json.rs) |

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use http_body_util::{BodyExt, LengthLimitError};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutError, TimeoutLayer};

/// Every limit, resolved from the flags.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_queue: usize,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
}

/// `Retry-After` on a shed request, seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

impl Limits {
    /// The public routes get the request deadline (503 when it passes; the dropped request
    /// future lets a queued inference job be skipped).
    pub fn public<S: Clone + Send + Sync + 'static>(&self, routes: Router<S>) -> Router<S> {
        routes.layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            self.request_timeout,
        ))
    }

    /// Every route gets the body limits: size (413; a declared `Content-Length` over it is
    /// refused before a byte of body is read) and total transfer time (408).
    pub fn bodies<S: Clone + Send + Sync + 'static>(&self, routes: Router<S>) -> Router<S> {
        routes
            .layer(DefaultBodyLimit::max(self.max_body_bytes))
            .layer(RequestBodyDeadlineLayer::new(self.body_timeout))
            .layer(RequestBodyLimitLayer::new(self.max_body_bytes))
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
    #[error("cannot read the request body: {0}")]
    Broken(String),
}

impl BodyError {
    /// The HTTP status for it.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a whole body under the layers above, naming which limit stopped it.
pub async fn read_body(body: Body, limits: &Limits) -> Result<Bytes, BodyError> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cause {
                if c.is::<LengthLimitError>() {
                    return Err(BodyError::TooLarge(limits.max_body_bytes));
                }
                if c.is::<TimeoutError>() {
                    return Err(BodyError::TimedOut(limits.body_timeout));
                }
                cause = c.source();
            }
            Err(BodyError::Broken(e.to_string()))
        }
    }
}
