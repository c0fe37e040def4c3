//! The operations endpoint on `[http] listen`: `/metrics` (Prometheus text) and `/healthz`.
//!
//! Gauges that describe state rather than events (open failures, poll lag, last successful
//! poll, rate-limit headroom) are recomputed at scrape time from the store and the shared
//! health record, so they are never staler than the scrape and cost nothing between scrapes.
//! Counters are incremented by the components that own them.
//!
//! The server reads the [`Context`] through a `watch` channel so a SIGHUP reload can swap the
//! context underneath it without dropping the listening socket.
//!
//! # Abuse
//! The listener is served with hyper directly, not `axum::serve`, so that it can defend itself
//! (issue 10, defect 3: 1,100 half-open connections once exhausted the process's file
//! descriptors, and `/healthz` and every Slack and SMTP delivery failed with them). Each
//! connection must send its request head within [`HEADER_READ_TIMEOUT`] and be done within
//! [`REQUEST_TIMEOUT`]; at most [`MAX_CONNECTIONS`] are open at once. A connection accepted at
//! the cap makes the oldest open connection close at once: a real request is done in
//! milliseconds, so the oldest is a slow client, and holding slots open can never lock a
//! health check out (closing the newcomer instead would hand the listener to whoever fills the
//! slots first). The cap is far below the unit's `LimitNOFILE=`, so however the listener is
//! abused, the descriptors deliveries and the store need remain.

use crate::context::Context;
use crate::metrics::Kind;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A connection must have sent its whole request head this soon after it was accepted.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection is closed this long after it was accepted, whatever it is doing: a scrape
/// takes milliseconds, a `/metrics` refresh at most a few store reads.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Connections served at once; more are closed as soon as they are accepted. Prometheus and a
/// load balancer's health check need a handful; the unit's `LimitNOFILE=16384` leaves the rest
/// of the descriptors to the store, Okta and the alert channels.
pub const MAX_CONNECTIONS: usize = 256;

/// After an `accept` error (out of descriptors, say) the listener waits this long before
/// accepting again instead of spinning on the error.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How long a stop lets connections in flight finish before closing them.
const DRAIN: Duration = Duration::from_secs(2);

/// The Prometheus text exposition format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = crate::metrics::CONTENT_TYPE;

/// Scrapes share the daemon's one store connection, so the store-backed gauges are recomputed
/// at most this often, by one scrape at a time; scrapes in between render the registry as is.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct AppState {
    ctx: watch::Receiver<Context>,
    /// When the daemon started (ms): the staleness rule only applies after a grace period.
    started_ms: i64,
    /// When the gauges were last recomputed; the lock makes concurrent scrapes queue here
    /// (costing no thread) instead of on the store connection.
    last_refresh: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

/// Binds the listener. Done before READY=1, so a port clash fails `systemctl start`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// The routes, for [`serve`] and for tests that drive the router directly.
pub fn router(ctx: watch::Receiver<Context>, started_ms: i64) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            ctx,
            started_ms,
            last_refresh: Arc::default(),
        })
}

/// Serves until `shutdown` is cancelled. Never returns early on a bad connection or an
/// `accept` error: those are logged and counted, and the listener carries on.
pub async fn serve(
    listener: TcpListener,
    ctx: watch::Receiver<Context>,
    started_ms: i64,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics = ctx.borrow().metrics.clone();
    let app = router(ctx, started_ms);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    // Open connections, oldest first: each one's token closes it, and is cancelled by the
    // connection itself when it ends (so finished ones are skipped and pruned).
    let mut open: VecDeque<CancellationToken> = VecDeque::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Reap finished connections so the sets stay as small as the live ones.
        while conns.try_join_next().is_some() {}
        while open.front().is_some_and(|t| t.is_cancelled()) {
            open.pop_front();
        }
        if open.len() > 2 * MAX_CONNECTIONS {
            open.retain(|t| !t.is_cancelled());
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                // At the cap: close the oldest open connection at once and take its slot.
                if let Some(oldest) = open.pop_front() {
                    oldest.cancel();
                    metrics.inc("provwatch_http_connections_evicted_total", &[]);
                }
                match tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(slot)) => slot,
                    _ => {
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let svc = TowerToHyperService::new(app.clone());
        let metrics = metrics.clone();
        let stop = shutdown.clone();
        let evict = CancellationToken::new();
        open.push_back(evict.clone());
        conns.spawn(async move {
            let _slot = slot;
            // Marks this connection finished for the accept loop, however it ends.
            let _done = evict.clone().drop_guard();
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                // One request per connection: scrapers reconnect cheaply on loopback, and a
                // connection's whole life is then one request's, bounded below.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = tokio::time::timeout(REQUEST_TIMEOUT, conn.as_mut()) => match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        if e.is_timeout() {
                            metrics.inc("provwatch_http_connections_timed_out_total", &[]);
                        }
                        tracing::debug!(error = %e, "HTTP connection ended with an error");
                    }
                    Err(_) => {
                        metrics.inc("provwatch_http_connections_timed_out_total", &[]);
                        tracing::debug!("HTTP connection closed: request not done in time");
                    }
                },
                // Evicted at the cap: dropping the connection closes the socket.
                _ = evict.cancelled() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN + Duration::from_millis(500), async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        conns.abort_all();
    }
    Ok(())
}

async fn metrics(State(st): State<AppState>) -> Response {
    let ctx = st.ctx.borrow().clone();
    {
        let mut last = st.last_refresh.lock().await;
        if last.is_none_or(|t| t.elapsed() >= MIN_REFRESH_INTERVAL) {
            refresh_gauges(&ctx).await;
            *last = Some(Instant::now());
        }
    }
    let body = ctx.metrics.render();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

async fn healthz(State(st): State<AppState>) -> Response {
    let ctx = st.ctx.borrow().clone();
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match health_verdict(&ctx, st.started_ms, ctx.now_ms()) {
        Ok(()) => (StatusCode::OK, plain, "ok\n".to_string()).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            plain,
            format!("unhealthy: {reason}\n"),
        )
            .into_response(),
    }
}

/// `Ok` when polling works; otherwise why not, in words an operator can act on. The rule is
/// [`crate::health::verdict`], the same one the daemon-health alert uses.
pub fn health_verdict(ctx: &Context, started_ms: i64, now_ms: i64) -> Result<(), String> {
    let h = ctx.health.snapshot();
    match crate::health::verdict(
        &h,
        ctx.config.detect.poll_interval,
        Some(started_ms),
        now_ms,
    ) {
        crate::health::Verdict::Unhealthy { reason, .. } => Err(reason),
        crate::health::Verdict::Healthy | crate::health::Verdict::Unknown => Ok(()),
    }
}

/// The registry plus the scrape-time gauges.
pub async fn render_metrics(ctx: &Context) -> String {
    refresh_gauges(ctx).await;
    ctx.metrics.render()
}

/// Recomputes the state gauges. A store error leaves the previous values in place (and is
/// logged) rather than failing the scrape: the other families are still worth having.
pub async fn refresh_gauges(ctx: &Context) {
    let m = &ctx.metrics;
    m.describe(
        "provwatch_consecutive_poll_failures",
        Kind::Gauge,
        "System Log polls failed in a row (0 when the last one worked).",
    );
    let now_ms = ctx.now_ms();
    let h = ctx.health.snapshot();
    // After a restart the in-memory record is empty until the next event; the cursor row
    // remembers the newest event applied before, so the lag survives restarts.
    let newest = match h.newest_event_ms {
        Some(n) => Some(n),
        None => ctx
            .store
            .read(crate::store::cursor::newest_published)
            .await
            .unwrap_or(None),
    };
    if let Some(newest) = newest {
        m.set(
            "provwatch_poll_lag_seconds",
            &[],
            now_ms.saturating_sub(newest).max(0) as f64 / 1000.0,
        );
    }
    if let Some(ok) = h.last_poll_ok_ms {
        m.set(
            "provwatch_last_poll_success_timestamp_seconds",
            &[],
            ok as f64 / 1000.0,
        );
    }
    m.set(
        "provwatch_consecutive_poll_failures",
        &[],
        h.consecutive_poll_failures as f64,
    );
    for b in ctx.okta.budget().snapshot() {
        if let Some(r) = b.remaining {
            m.set(
                "okta_rate_limit_remaining",
                &[("bucket", b.bucket.as_str())],
                r as f64,
            );
        }
        if let Some(l) = b.limit {
            m.set(
                "okta_rate_limit_limit",
                &[("bucket", b.bucket.as_str())],
                l as f64,
            );
        }
    }
    match open_failures(ctx).await {
        Ok(rows) => m.set_all(
            "provwatch_open_failures",
            rows.into_iter()
                .map(|(app, op, n)| {
                    (
                        vec![("app".to_string(), app), ("operation".to_string(), op)],
                        n as f64,
                    )
                })
                .collect(),
        ),
        Err(e) => tracing::warn!(error = %e, "could not count open failures for /metrics"),
    }
}

/// Unresolved failures grouped by app (label, or id when Okta gave none) and operation.
async fn open_failures(
    ctx: &Context,
) -> Result<Vec<(String, String, i64)>, crate::store::StoreError> {
    ctx.store.read(crate::store::failures::open_counts).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::{Config, Env};

    fn ctx(dir: &std::path::Path) -> Context {
        let text = format!(
            "[okta]\norg_url = \"http://127.0.0.1:9\"\napi_token_env = \"T\"\n\
             [state]\npath = \"{}\"\n[detect]\npoll_interval = \"10s\"\n",
            dir.join("state.db").display()
        );
        let config = Config::from_toml_str(&text, &Env::from_map([("T", "secret-token")])).unwrap();
        Context::new(config, Clock::system()).unwrap()
    }

    #[test]
    fn health_rules() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        let start = 1_000_000;
        // Within the grace window nothing has polled yet and that is fine.
        assert!(health_verdict(&c, start, start + 5_000).is_ok());
        // After it, never having polled is not.
        let e = health_verdict(&c, start, start + 31_000).unwrap_err();
        assert!(e.contains("no successful"), "{e}");
        c.health.poll_ok(None);
        let now = c.now_ms();
        assert!(health_verdict(&c, start, now).is_ok());
        let e = health_verdict(&c, start, now + 31_000).unwrap_err();
        assert!(e.contains("last successful System Log poll"), "{e}");
        for _ in 0..3 {
            c.health
                .poll_failed("Okta rejected the credentials (401)".into(), true);
        }
        // Failed polls count once the last success is too old, and name their cause.
        assert!(health_verdict(&c, start, now).is_ok());
        let e = health_verdict(&c, start, now + 31_000).unwrap_err();
        assert!(e.contains("3 consecutive") && e.contains("401"), "{e}");
    }

    #[tokio::test]
    async fn open_failures_gauge_follows_the_store() {
        use crate::domain::{Observation, Operation};
        use crate::store::failures::apply;
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path());
        let obs = |user: &str, op| Observation {
            app_label: Some("Sales".into()),
            published_ms: Some(1),
            ..Observation::failure("0oa1", user, op)
        };
        c.store
            .write_blocking(|conn| {
                apply(conn, &obs("00u1", Operation::Create), 1, "t")?;
                apply(conn, &obs("00u2", Operation::Create), 1, "t")?;
                apply(conn, &obs("00u1", Operation::Deactivate), 1, "t")?;
                Ok(())
            })
            .unwrap();
        let text = render_metrics(&c).await;
        assert!(
            text.contains("provwatch_open_failures{app=\"Sales\",operation=\"create\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("provwatch_open_failures{app=\"Sales\",operation=\"deactivate\"} 1"),
            "{text}"
        );
    }
}
