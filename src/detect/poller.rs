//! The System Log poller: reads `/api/v1/logs` in polling mode from a durable cursor.
//!
//! Okta's `next` link is the cursor: it is stored whole and requested again, never rebuilt.
//! Each page's effects (seen uuids, failure changes) and the new cursor are committed in one
//! SQLite transaction, so a crash at any point either applied a page and moved past it, or did
//! neither; re-delivered events are skipped by uuid. While pages come back full the poller keeps
//! paging (the rate budget paces it) instead of waiting a whole `poll_interval`.

use super::classify::{classify, classify_lifecycle, published_ms, Classified, LOG_FILTER};
use super::{page, DetectError};
use crate::context::Context;
use crate::domain::{Observation, Operation};
use crate::okta::client::next_link;
use crate::okta::types::LogEvent;
use crate::okta::OktaError;
use crate::store::failures::{self, Applied};
use crate::store::{apps, claims, cursor, quarantine, StoreError, Tx};
use reqwest::Method;
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
    /// Elements the JSON parser refused, newly quarantined.
    pub quarantined: usize,
    /// The poller stopped following `next` links that went round in a cycle.
    pub cycle: bool,
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

/// Full pages in a row whose newest event is no newer than before, after which the poller
/// stops following `next` links: a catch-up that reads the same times over and over is going
/// round a cycle too long for the seen-link check to have closed yet, or Okta is stuck.
pub const NO_PROGRESS_PAGES: u32 = 5;

/// `after` values remembered per catch-up; past this many the set starts over (a backlog of
/// 10 million events), which at worst lets a cycle run one more lap before it is caught.
const MAX_SEEN_LINKS: usize = 10_000;

/// What the poller remembers across the pages of one catch-up (pages read back to back while
/// they come back full), to notice a `next` link cycle. Reset once a page is not full.
#[derive(Clone, Debug, Default)]
pub struct CatchUp {
    /// The `after` (or whole URL) of every page read in this catch-up.
    seen: std::collections::HashSet<String>,
    /// Newest `published` seen in this catch-up (ms).
    newest: Option<i64>,
    /// Full pages in a row that did not advance `newest`.
    stale_pages: u32,
}

impl CatchUp {
    fn key(url: &str) -> String {
        url::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "after")
                    .map(|(_, v)| format!("after={v}"))
            })
            .unwrap_or_else(|| url.to_owned())
    }

    fn reset(&mut self) {
        *self = CatchUp::default();
    }
}

/// Fetches and applies one page, with no memory of earlier pages (tests, one-off polls). The
/// daemon's loop uses [`poll_with`] so a `next` cycle across pages is caught.
pub async fn poll_once(ctx: &Context) -> Result<PollOutcome, DetectError> {
    poll_with(ctx, &mut CatchUp::default()).await
}

/// A System Log URL for logs and errors: its path, without the cursor and filter.
fn without_query(url: &str) -> String {
    url.split_once('?').map_or(url, |(p, _)| p).to_owned()
}

/// `published` of a raw event, ms.
fn published_of(v: &Value) -> Option<i64> {
    let s = v.get("published")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}

/// Fetches and applies one page as part of the catch-up `cu`.
pub async fn poll_with(ctx: &Context, cu: &mut CatchUp) -> Result<PollOutcome, DetectError> {
    let stored = ctx.store.read(cursor::get).await?;
    let url = match stored {
        Some(c) => c.next_url,
        None => initial_url(ctx),
    };
    // The body as bytes, split by hand before any event is parsed: one event serde refuses
    // must not cost the page (see `page`).
    let (headers, body) = ctx.okta.request(Method::GET, &url, None).await?;
    let parsed = match page::parse_page(&body) {
        Ok(p) => p,
        Err(source) => {
            let e = DetectError::Page {
                url: without_query(&url),
                source,
            };
            ctx.health.log_trouble(e.to_string());
            return Err(e);
        }
    };
    let page_next = next_link(&headers);
    let total = parsed.items.len() + parsed.bad.len();
    let full = total >= PAGE_LIMIT;
    let mut out = PollOutcome {
        events: parsed.items.len(),
        backlog: full,
        ..Default::default()
    };
    let mut trouble: Option<String> = None;
    cu.seen.insert(CatchUp::key(&url));
    if full {
        let newest = parsed.items.iter().filter_map(published_of).max();
        if newest.is_some() && newest > cu.newest {
            cu.newest = newest;
            cu.stale_pages = 0;
        } else {
            cu.stale_pages += 1;
        }
    }
    let next = match page_next {
        Some(n) if n == url && total > 0 => {
            // A next link that points back at the page we just read would replay it forever;
            // keep the cursor and treat the log as caught up until Okta moves on.
            tracing::warn!("System Log next link loops back to the same page; keeping the cursor");
            out.bad_next = true;
            None
        }
        Some(n) if full && cu.seen.contains(&CatchUp::key(&n)) => {
            let why = format!(
                "the System Log next link leads back to a page already read in this catch-up ({} pages); a cycle. Keeping the cursor and polling again in one poll interval",
                cu.seen.len()
            );
            tracing::warn!("{why}");
            out.bad_next = true;
            out.cycle = true;
            trouble = Some(why);
            None
        }
        Some(_) if full && cu.stale_pages >= NO_PROGRESS_PAGES => {
            let why = format!(
                "{} full System Log pages in a row brought no newer event; a next-link cycle or a stuck log. Keeping the cursor and polling again in one poll interval",
                cu.stale_pages
            );
            tracing::warn!("{why}");
            out.bad_next = true;
            out.cycle = true;
            trouble = Some(why);
            None
        }
        Some(n) => match ctx.okta.resolve(&n) {
            Ok(_) => Some(n),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unusable System Log next link; keeping the cursor");
                out.bad_next = true;
                None
            }
        },
        None => {
            tracing::warn!("System Log page had no next link; keeping the cursor");
            out.bad_next = true;
            None
        }
    };
    if out.bad_next {
        out.backlog = false;
    }
    if out.cycle || !full {
        // Caught up, or stopped on a cycle: the next catch-up (one poll interval later) starts
        // afresh, so once Okta's links are straight again they are followed. A cycle that
        // persists costs one lap per interval, not the whole budget.
        cu.reset();
    } else if cu.seen.len() > MAX_SEEN_LINKS {
        cu.seen.clear();
    }
    let now = ctx.now_ms();
    let ctx2 = ctx.clone();
    let items = parsed.items;
    let bad = parsed.bad;
    let page_url = url.clone();
    let moved = next.is_some();
    let (out, newest) = ctx
        .store
        .write(move |tx| {
            let newest = apply_events(tx, &ctx2, items, now, &mut out)?;
            for b in &bad {
                let entry = quarantine::NewEntry {
                    page_url: &page_url,
                    position: b.position,
                    raw: &b.raw,
                    raw_len: b.len,
                    error: &b.error,
                };
                if quarantine::add(tx, &entry, now)? {
                    out.quarantined += 1;
                }
            }
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
    if out.quarantined > 0 {
        m.add(
            "provwatch_quarantined_events_total",
            &[],
            out.quarantined as f64,
        );
        tracing::error!(
            quarantined = out.quarantined,
            page = %without_query(&url),
            "System Log events the JSON parser refused were quarantined and skipped; see `okta-provwatch status`"
        );
    }
    if out.cycle {
        m.inc("provwatch_log_next_cycles_total", &[]);
    }
    match trouble {
        Some(why) => ctx.health.log_trouble(why),
        None if moved => ctx.health.log_ok(),
        None => {}
    }
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

/// Longest wait between retries of a page that cannot be split (it grows from the poll
/// interval, doubling per failure in a row).
pub const MAX_PAGE_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The poller component.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let interval = ctx.config.detect.poll_interval;
    let mut delay = Duration::ZERO;
    let mut last_prune: Option<tokio::time::Instant> = None;
    let mut catch_up = CatchUp::default();
    // Unsplittable pages in a row: the same broken page is retried with a growing delay, not
    // re-read every interval forever at full cost.
    let mut broken_pages: u32 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = poll_with(&ctx, &mut catch_up) => r,
        };
        if !matches!(result, Err(DetectError::Page { .. })) {
            broken_pages = 0;
        }
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
                    DetectError::Page { .. } => {
                        broken_pages = broken_pages.saturating_add(1);
                        page_backoff(interval, broken_pages)
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

/// The wait before re-reading a page that could not be split for the `n`th time in a row: the
/// poll interval, doubled per failure, at most [`MAX_PAGE_BACKOFF`] (but never below the
/// interval itself).
pub fn page_backoff(interval: Duration, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    interval
        .saturating_mul(factor)
        .min(MAX_PAGE_BACKOFF)
        .max(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pages_back_off_to_a_bound() {
        let i = Duration::from_secs(30);
        assert_eq!(page_backoff(i, 1), i);
        assert_eq!(page_backoff(i, 2), i * 2);
        assert_eq!(page_backoff(i, 4), i * 8);
        assert_eq!(page_backoff(i, 40), MAX_PAGE_BACKOFF);
        // An interval longer than the bound is never shortened.
        let long = Duration::from_secs(3600);
        assert_eq!(page_backoff(long, 9), long);
    }

    #[test]
    fn catch_up_keys_on_after() {
        assert_eq!(
            CatchUp::key("https://x.okta.com/api/v1/logs?limit=1000&after=1_2&filter=a"),
            "after=1_2"
        );
        assert_eq!(
            CatchUp::key("https://x.okta.com/api/v1/logs?after=1_2"),
            CatchUp::key("https://x.okta.com/api/v1/logs?filter=b&after=1_2")
        );
        assert_eq!(CatchUp::key("/api/v1/logs?since=x"), "/api/v1/logs?since=x");
    }
}
