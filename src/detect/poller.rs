//! The System Log poller: reads `/api/v1/logs` in polling mode from a durable cursor.
//!
//! Okta's `next` link is the cursor: it is stored whole and requested again, never rebuilt.
//! Each page's effects (seen uuids, failure changes) and the new cursor are committed in one
//! SQLite transaction, so a crash at any point either applied a page and moved past it, or did
//! neither; re-delivered events are skipped by uuid. While pages come back full the poller keeps
//! paging (the rate budget paces it) instead of waiting a whole `poll_interval`.

use super::classify::{classify, classify_lifecycle, published_ms, Classified, LOG_FILTER};
use super::DetectError;
use crate::context::Context;
use crate::domain::{Observation, Operation};
use crate::okta::types::LogEvent;
use crate::okta::OktaError;
use crate::store::failures::{self, Applied};
use crate::store::{apps, claims, cursor, StoreError, Tx};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events per page: Okta's maximum, so a backlog costs as few requests as possible.
pub const PAGE_LIMIT: usize = 1000;

/// What one poll did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub events: usize,
    pub opened: usize,
    pub resolved: usize,
    pub duplicates: usize,
    pub malformed: usize,
    pub unknown: usize,
    /// The page was full: more is waiting.
    pub backlog: bool,
    /// Okta sent no usable `next` link (missing, or looping back on a non-empty page).
    pub bad_next: bool,
    /// Profile changes of users with unresolved failures.
    pub profile_changes: usize,
}

/// The first URL when no cursor is stored: `since` = now − `initial_lookback`.
pub fn initial_url(ctx: &Context) -> String {
    let lookback = chrono::Duration::from_std(ctx.config.detect.initial_lookback)
        .unwrap_or(chrono::Duration::hours(24));
    let since = (ctx.clock.now() - lookback).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut url = ctx
        .okta
        .org_url()
        .join("/api/v1/logs")
        .expect("static path");
    url.query_pairs_mut()
        .append_pair("since", &since)
        .append_pair("limit", &PAGE_LIMIT.to_string())
        .append_pair("filter", LOG_FILTER);
    url.to_string()
}

/// Whether the config watches this app (empty list: every app).
pub fn watched(ctx: &Context, app_id: &str, app_label: Option<&str>) -> bool {
    let apps = &ctx.config.detect.apps;
    apps.is_empty()
        || apps
            .iter()
            .any(|a| a == app_id || app_label.is_some_and(|l| l.eq_ignore_ascii_case(a)))
}

/// Fetches and applies one page.
pub async fn poll_once(ctx: &Context) -> Result<PollOutcome, DetectError> {
    let stored = ctx.store.read(cursor::get).await?;
    let url = match stored {
        Some(c) => c.next_url,
        None => initial_url(ctx),
    };
    let page = ctx.okta.get_page(&url).await?;
    let full = page.items.len() >= PAGE_LIMIT;
    let mut out = PollOutcome {
        events: page.items.len(),
        backlog: full,
        ..Default::default()
    };
    let next = match page.next {
        Some(n) if n == url && !page.items.is_empty() => {
            // A next link that points back at the page we just read would replay it forever;
            // keep the cursor and treat the log as caught up until Okta moves on.
            tracing::warn!("System Log next link loops back to the same page; keeping the cursor");
            out.bad_next = true;
            out.backlog = false;
            None
        }
        Some(n) => match ctx.okta.resolve(&n) {
            Ok(_) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unusable System Log next link; keeping the cursor");
                out.bad_next = true;
                out.backlog = false;
                None
            }
        },
        None => {
            tracing::warn!("System Log page had no next link; keeping the cursor");
            out.bad_next = true;
            out.backlog = false;
            None
        }
    };
    let now = ctx.now_ms();
    let ctx2 = ctx.clone();
    let items = page.items;
    let (out, newest) = ctx
        .store
        .write(move |tx| {
            let newest = apply_events(tx, &ctx2, items, now, &mut out)?;
            if let Some(n) = &next {
                cursor::set(tx, n, now, newest)?;
            }
            Ok((out, newest))
        })
        .await?;
    // Wake the retry worker and the alert evaluator now rather than at their next tick: a
    // due retry starts, and an urgent failure is on its way to Slack, right after this poll.
    if out.opened > 0 || out.profile_changes > 0 {
        ctx.signals.failures_changed();
    }
    let m = &ctx.metrics;
    for (result, n) in [
        ("duplicate", out.duplicates),
        ("malformed", out.malformed),
        ("unknown", out.unknown),
    ] {
        if n > 0 {
            m.add(
                "provwatch_log_events_total",
                &[("result", result)],
                n as f64,
            );
        }
    }
    m.add(
        "provwatch_log_events_total",
        &[("result", "applied")],
        (out.events - out.duplicates - out.malformed - out.unknown) as f64,
    );
    ctx.health.poll_ok(newest);
    m.set(
        "provwatch_last_poll_success_timestamp_seconds",
        &[],
        (now / 1000) as f64,
    );
    if let Some(n) = ctx.health.snapshot().newest_event_ms {
        m.set(
            "provwatch_poll_lag_seconds",
            &[],
            ((now - n).max(0) / 1000) as f64,
        );
    }
    Ok(out)
}

/// Applies a page's events inside the caller's transaction; returns the newest `published`.
fn apply_events(
    tx: &Tx<'_>,
    ctx: &Context,
    items: Vec<Value>,
    now: i64,
    out: &mut PollOutcome,
) -> Result<Option<i64>, StoreError> {
    let mut newest: Option<i64> = None;
    for raw in items {
        let ev: LogEvent = match serde_json::from_value(raw) {
            Ok(ev) => ev,
            Err(e) => {
                out.malformed += 1;
                tracing::warn!(error = %e, "skipping a malformed System Log event");
                continue;
            }
        };
        let Some(published) = published_ms(&ev).filter(|_| !ev.uuid.is_empty()) else {
            out.malformed += 1;
            tracing::warn!(uuid = %ev.uuid, "skipping a System Log event without uuid or published time");
            continue;
        };
        newest = Some(newest.map_or(published, |n: i64| n.max(published)));
        if !cursor::mark_seen(tx, &ev.uuid, published)? {
            out.duplicates += 1;
            continue;
        }
        crate::hooks::health::polled(tx, ctx, &ev, published, now)?;
        // Deprovisioning ledger (issue 13): lifecycle, membership and settings events.
        if let Some(l) = classify_lifecycle(&ev) {
            match l {
                Ok(l) => {
                    crate::deprovision::ledger::on_lifecycle(tx, ctx, &l, now)?;
                }
                Err(why) => {
                    tracing::debug!(uuid = %ev.uuid, event_type = %ev.event_type, %why, "lifecycle event not used by the deprovisioning ledger")
                }
            }
            continue;
        }
        match classify(&ev) {
            Classified::Observation(obs) => {
                if !watched(ctx, &obs.app_id, obs.app_label.as_deref()) {
                    continue;
                }
                apply_observation(tx, &obs, now, out)?;
                crate::deprovision::ledger::on_observation(tx, ctx, &obs, now)?;
            }
            Classified::OrgRateLimit { event_type } => {
                tracing::warn!(%event_type, "Okta reports org-wide rate-limit pressure");
                ctx.metrics.inc(
                    "provwatch_org_rate_limit_events_total",
                    &[("event_type", &event_type)],
                );
            }
            Classified::ProfileChanged {
                user_id,
                published_ms,
            } => {
                if claims::note_profile_change(tx, &user_id, published_ms)? > 0 {
                    out.profile_changes += 1;
                }
            }
            Classified::NoOutcome => {}
            Classified::Unknown { event_type } => {
                out.unknown += 1;
                tracing::debug!(%event_type, "ignoring an event type okta-provwatch does not model");
            }
            Classified::Malformed { why } => {
                out.malformed += 1;
                tracing::warn!(uuid = %ev.uuid, event_type = %ev.event_type, %why, "skipping a malformed provisioning event");
            }
        }
    }
    Ok(newest)
}

pub(crate) fn apply_observation(
    tx: &Tx<'_>,
    obs: &Observation,
    now: i64,
    out: &mut PollOutcome,
) -> Result<(), StoreError> {
    // The event's AppInstance target names the app's label (never its internal name, which
    // the scanner records from the apps list). Every event of a page carries it; the upsert
    // writes only for a new or renamed app.
    if obs.app_label.is_some() {
        apps::upsert(tx, &obs.app_id, obs.app_label.as_deref(), None, now)?;
    }
    match failures::apply(tx, obs, now, "poller")? {
        Applied::Opened(_) | Applied::Reopened(_) => out.opened += 1,
        Applied::Resolved(_) => out.resolved += 1,
        _ => {}
    }
    // A user pushed successfully proves the integration works again.
    if !obs.failed && obs.operation != Operation::Integration {
        let app_ok = Observation {
            user_id: String::new(),
            user_login: None,
            operation: Operation::Integration,
            reason: None,
            ..obs.clone()
        };
        if let Applied::Resolved(_) = failures::apply(tx, &app_ok, now, "poller")? {
            out.resolved += 1;
        }
    }
    Ok(())
}

/// The poller component.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let interval = ctx.config.detect.poll_interval;
    let mut delay = Duration::ZERO;
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = poll_once(&ctx) => r,
        };
        delay = match result {
            Ok(out) => {
                if out.opened > 0 || out.resolved > 0 {
                    tracing::info!(
                        events = out.events,
                        opened = out.opened,
                        resolved = out.resolved,
                        "System Log page applied"
                    );
                } else {
                    tracing::debug!(events = out.events, "System Log page applied");
                }
                if out.backlog {
                    Duration::ZERO
                } else {
                    interval
                }
            }
            Err(e) => {
                let auth = matches!(&e, DetectError::Okta(o) if o.is_auth());
                tracing::warn!(error = %e, "System Log poll failed; will retry");
                ctx.health.poll_failed(e.to_string(), auth);
                match &e {
                    DetectError::Okta(OktaError::RateLimited { retry_after, .. }) => {
                        (*retry_after).max(interval)
                    }
                    _ => interval,
                }
            }
        };
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_prune = Some(tokio::time::Instant::now());
            let now = ctx.now_ms();
            match ctx.store.write(move |tx| cursor::prune_seen(tx, now)).await {
                Ok(n) if n > 0 => tracing::info!(pruned = n, "forgot event uuids past retention"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning seen events failed"),
            }
        }
    }
}
