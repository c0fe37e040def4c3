//! The operations endpoint on `[http] listen`: `/metrics` (Prometheus text) and `/healthz`.
//!
//! Gauges that describe state rather than events (open failures, poll lag, last successful
//! poll, rate-limit headroom) are recomputed at scrape time from the store and the shared
//! health record, so they are never staler than the scrape and cost nothing between scrapes.
//! Counters are incremented by the components that own them.
//!
//! The server reads the [`Context`] through a `watch` channel so a SIGHUP reload can swap the
//! context underneath it without dropping the listening socket.

use crate::context::Context;
use crate::metrics::Kind;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    ctx: watch::Receiver<Context>,
    started_ms: i64,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(ctx, started_ms);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
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
            .read(|tx| Ok(crate::store::cursor::get(tx)?.and_then(|k| k.newest_published)))
            .await
            .unwrap_or(None)
            .filter(|n| *n > 0),
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
