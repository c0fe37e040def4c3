//! The event hook receiver on `[hooks] listen`: one path, two methods.
//!
//! - `GET` with `X-Okta-Verification-Challenge`: Okta's one-time verification, answered
//!   `{"verification": "<challenge>"}`. The answer reveals nothing, and Okta does not promise
//!   to send the auth header on it, so it is not required; a *wrong* one is still refused.
//! - `POST` with `data.events[]`: authenticated by constant-time comparison of the whole
//!   `Authorization` header with the configured secret (both hashed first, so the length
//!   leaks nothing either); the body is bounded (`max_body_bytes`), parsed, and every event
//!   written to the inbox in one transaction before `200` goes back. The applier is woken
//!   afterwards; it never runs inside the request.
//!
//! Refusals are `4xx` with a short JSON cause, store nothing, count in
//! `provwatch_hook_requests_total{result}`, and no log line carries a header value.

use super::tls::TlsListener;
use crate::config::HooksConfig;
use crate::context::Context;
use crate::okta::types::LogEvent;
use crate::store::inbox::{self, NewEvent};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Okta waits 3 s for the answer; the inbox write must be done well before.
pub const STORE_DEADLINE: Duration = Duration::from_millis(2000);

/// Okta's challenge is a short token; anything longer is not Okta.
const MAX_CHALLENGE_LEN: usize = 256;

/// The longest event uuid accepted (Okta's are 36 characters).
const MAX_UUID_LEN: usize = 128;

#[derive(Clone)]
struct St {
    ctx: Context,
    cfg: Arc<HooksConfig>,
    wake: Arc<Notify>,
}

/// Binds `[hooks] listen`.
pub async fn bind(cfg: &HooksConfig) -> std::io::Result<TcpListener> {
    TcpListener::bind(cfg.listen).await
}

/// The receiver's routes, for [`serve`] and for tests.
pub fn router(ctx: Context, wake: Arc<Notify>) -> Option<Router> {
    let cfg = Arc::new(ctx.config.hooks.clone()?);
    let path = cfg.path.clone();
    Some(
        Router::new()
            .route(&path, axum::routing::any(handle))
            .fallback(not_found)
            .with_state(St { ctx, cfg, wake }),
    )
}

/// Serves until `shutdown`, over TLS when `tls_cert_file`/`tls_key_file` are set.
pub async fn serve(
    listener: TcpListener,
    ctx: Context,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(app) = router(ctx.clone(), wake) else {
        return Ok(());
    };
    let cfg = ctx.config.hooks.clone().expect("router checked [hooks]");
    let addr = listener.local_addr()?;
    let stop = shutdown.clone();
    match &cfg.tls {
        Some(files) => {
            let tls = super::tls::server_config(&files.cert_file, &files.key_file)?;
            tracing::info!(%addr, path = %cfg.path, "event hook receiver listening (TLS)");
            let l = TlsListener::new(listener, tls, shutdown.clone())?;
            axum::serve(l, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await?;
        }
        None => {
            tracing::info!(%addr, path = %cfg.path, "event hook receiver listening (plain HTTP; put a TLS proxy in front)");
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await?;
        }
    }
    Ok(())
}

fn refuse(ctx: &Context, status: StatusCode, result: &'static str, why: &str) -> Response {
    ctx.metrics
        .inc("provwatch_hook_requests_total", &[("result", result)]);
    (status, axum::Json(json!({ "error": why }))).into_response()
}

async fn not_found(State(st): State<St>) -> Response {
    refuse(
        &st.ctx,
        StatusCode::NOT_FOUND,
        "not_found",
        "no such path; Okta's event hook URL must end in [hooks] path",
    )
}

/// Constant-time check of the Authorization header against the secret. `None`: no header.
fn authorized(headers: &HeaderMap, cfg: &HooksConfig) -> Option<bool> {
    let got = headers.get(header::AUTHORIZATION)?;
    let a = ring::digest::digest(&ring::digest::SHA256, got.as_bytes());
    let b = ring::digest::digest(&ring::digest::SHA256, cfg.secret.expose_secret().as_bytes());
    Some(bool::from(a.as_ref().ct_eq(b.as_ref())))
}

async fn handle(State(st): State<St>, req: Request) -> Response {
    let ctx = &st.ctx;
    match *req.method() {
        Method::GET => verify(&st, req.headers()),
        Method::POST => receive(&st, req).await,
        _ => refuse(
            ctx,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use GET for verification or POST for deliveries",
        ),
    }
}

fn verify(st: &St, headers: &HeaderMap) -> Response {
    let ctx = &st.ctx;
    if authorized(headers, &st.cfg) == Some(false) {
        tracing::warn!("event hook verification with a wrong Authorization header refused");
        return refuse(
            ctx,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization header does not match [hooks] secret",
        );
    }
    let Some(challenge) = headers
        .get("x-okta-verification-challenge")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|c| {
            !c.is_empty()
                && c.len() <= MAX_CHALLENGE_LEN
                && c.chars().all(|ch| ch.is_ascii_graphic())
        })
    else {
        return refuse(
            ctx,
            StatusCode::BAD_REQUEST,
            "malformed",
            "a GET must carry a valid X-Okta-Verification-Challenge header",
        );
    };
    ctx.metrics.inc(
        "provwatch_hook_requests_total",
        &[("result", "verification")],
    );
    tracing::info!("answered Okta's event hook verification");
    axum::Json(json!({ "verification": challenge })).into_response()
}

/// Reads a delivery into inbox rows; `Err` is the cause of a 400.
pub fn parse_delivery(body: &[u8]) -> Result<(Option<String>, Vec<NewEvent>), String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let events = v
        .pointer("/data/events")
        .and_then(Value::as_array)
        .ok_or("the body has no data.events array")?;
    let mut out = Vec::with_capacity(events.len());
    for (i, raw) in events.iter().enumerate() {
        let ev: LogEvent = serde_json::from_value(raw.clone())
            .map_err(|e| format!("data.events[{i}] is not a System Log event: {e}"))?;
        if ev.uuid.is_empty() || ev.uuid.len() > MAX_UUID_LEN {
            return Err(format!("data.events[{i}] has no usable uuid"));
        }
        if ev.event_type.is_empty() {
            return Err(format!("data.events[{i}] has no eventType"));
        }
        out.push(NewEvent {
            published_ms: crate::detect::classify::published_ms(&ev),
            uuid: ev.uuid,
            event_type: ev.event_type,
            body: raw.to_string(),
        });
    }
    let event_id = v
        .get("eventId")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(MAX_UUID_LEN).collect());
    Ok((event_id, out))
}

async fn receive(st: &St, req: Request) -> Response {
    let ctx = &st.ctx;
    match authorized(req.headers(), &st.cfg) {
        None => {
            tracing::warn!("event hook delivery without an Authorization header refused");
            return refuse(
                ctx,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing Authorization header",
            );
        }
        Some(false) => {
            tracing::warn!("event hook delivery with a wrong Authorization header refused");
            return refuse(
                ctx,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the Authorization header does not match [hooks] secret",
            );
        }
        Some(true) => {}
    }
    let limit = st.cfg.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        refuse(
            ctx,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("the body is larger than [hooks] max_body_bytes ({limit} bytes)"),
        )
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let body: Body = req.into_body();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let (event_id, events) = match parse_delivery(&bytes) {
        Ok(x) => x,
        Err(why) => {
            tracing::warn!(%why, "malformed event hook delivery refused");
            return refuse(ctx, StatusCode::BAD_REQUEST, "malformed", &why);
        }
    };
    let now = ctx.now_ms();
    let total = events.len();
    let write = ctx
        .store
        .write(move |tx| inbox::receive(tx, event_id.as_deref(), &events, now));
    match tokio::time::timeout(STORE_DEADLINE, write).await {
        Ok(Ok(new)) => {
            ctx.metrics
                .inc("provwatch_hook_requests_total", &[("result", "accepted")]);
            let m = &ctx.metrics;
            if new > 0 {
                m.add(
                    "provwatch_hook_events_total",
                    &[("result", "received")],
                    new as f64,
                );
            }
            if total > new {
                m.add(
                    "provwatch_hook_events_total",
                    &[("result", "redelivered")],
                    (total - new) as f64,
                );
            }
            super::health::delivered(ctx, now);
            st.wake.notify_one();
            tracing::debug!(events = total, new, "event hook delivery stored");
            StatusCode::OK.into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not store an event hook delivery; Okta retries it once, polling catches the rest");
            refuse(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "store_error",
                "the delivery could not be stored; retry",
            )
        }
        Err(_) => {
            // The write may still commit; Okta's retry is then a duplicate, skipped by uuid.
            tracing::warn!("storing an event hook delivery took too long; asking Okta to retry");
            refuse(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "store_error",
                "the store is busy; retry",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_parse_or_name_their_fault() {
        let ok = br#"{"eventId":"d1","data":{"events":[{"uuid":"u1","published":"2026-11-20T10:00:00Z","eventType":"application.provision.user.push"}]}}"#;
        let (id, evs) = parse_delivery(ok).unwrap();
        assert_eq!(id.as_deref(), Some("d1"));
        assert_eq!(evs[0].uuid, "u1");
        assert_eq!(evs[0].published_ms, Some(1_795_168_800_000));
        assert!(parse_delivery(b"{").unwrap_err().contains("not JSON"));
        assert!(parse_delivery(b"{\"data\":{}}")
            .unwrap_err()
            .contains("data.events"));
        assert!(
            parse_delivery(br#"{"data":{"events":[{"eventType":"x","published":"p"}]}}"#)
                .unwrap_err()
                .contains("events[0]")
        );
    }
}
