//! The accept loop: HTTP/1.1 through hyper, with connection-level limits.
//!
//! - At most `--max-connections` connections are open: a permit is taken *before* `accept`,
//!   so past the limit new clients wait in the kernel's listen backlog instead of using up
//!   file descriptors (the process never reaches `EMFILE` on connections while the limit is
//!   below `ulimit -n`).
//! - hyper's `header_read_timeout` closes a connection whose request head is not complete
//!   within `--header-timeout-ms` of the server starting to wait for it: a fresh connection
//!   that sends nothing, a client trickling its headers, a keep-alive connection that never
//!   sends its next request.
//! - A keep-alive connection with no request in progress for `--idle-timeout-ms` after its
//!   last answer is closed through hyper's graceful shutdown (a fresh connection that never
//!   sends a request is the head timeout's: hyper does not close it gracefully mid-wait).
//! - On SIGTERM / Ctrl-C: stop accepting, let every connection finish its request in flight
//!   (graceful shutdown), wait for them (bounded by the request timeout), exit.
//!
//! The per-request limits (body size and time, request time) are tower layers on the router
//! (limits.rs). HTTP/2 is not served: put a proxy in front for it, and for TLS.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::limits::Limits;

/// Open connections now, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionGauge(AtomicUsize);

impl ConnectionGauge {
    /// The number of open client connections.
    pub fn open(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    gauge: Arc<ConnectionGauge>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Per-connection errors (reset before accept) and resource exhaustion:
                    // log, pause briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = Arc::clone(&builder);
        let stop = stop_rx.clone();
        let gauge = Arc::clone(&gauge);
        tokio::spawn(async move {
            gauge.0.fetch_add(1, Ordering::Relaxed);
            connection(stream, router, &builder, limits.idle_timeout, stop).await;
            gauge.0.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit until it ends: getting them all back means all ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(
        limits.request_timeout + limits.body_timeout,
        permits.acquire_many(all),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("shutting down with connections still open");
    }
}

/// One connection: hyper, plus the idle and shutdown triggers for its graceful close.
async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    builder: &http1::Builder,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let router = router.clone();
            let busy = Busy::begin(&activity);
            async move {
                let answer = router.oneshot(req.map(Body::new)).await;
                drop(busy);
                answer
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.idle_for(idle_timeout), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
struct Activity {
    state: Mutex<(usize, Instant)>,
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new((0, Instant::now())),
            changed: Notify::new(),
        }
    }

    /// Completes once no request has been in progress for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let (busy, since) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
            if busy > 0 {
                self.changed.notified().await;
                continue;
            }
            let deadline = since + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

/// A request in progress on a connection; its end restarts the idle clock.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.state.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        activity.changed.notify_one();
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        {
            let mut s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 = s.0.saturating_sub(1);
            s.1 = Instant::now();
        }
        self.0.changed.notify_one();
    }
}
