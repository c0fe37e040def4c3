//! The assignment scanner: the API view of Dashboard > Tasks > "Application assignments
//! encountered errors".
//!
//! On `scan_schedule` it lists the watched apps and pages their app users (500 at a time),
//! opening a failure for every `syncState = ERROR` that is not already known (which catches
//! failures whose log event was missed or predates the install) and resolving known failures
//! whose app user is now `SYNCHRONIZED` or no longer assigned. Progress is stored per page, so
//! an interrupted scan resumes where it stopped.
//!
//! Every call of a scan is of [`Class::Scan`], the lowest priority on the Okta budget: each
//! page waits behind the polls, read-backs, retries and manual commands that want the same
//! bucket (the scan yields at every page boundary), and scans use at most `detect.scan_share`
//! of the daemon's share of a bucket per window. A scan that cannot finish before its next
//! scheduled run continues; the runs that fell inside it are skipped, never queued, and
//! counted (`provwatch_scan_ticks_skipped_total`, and in the store for `status`).

use super::DetectError;
use crate::context::Context;
use crate::domain::{Failure, Observation, Operation, Source};
use crate::okta::client::OktaClient;
use crate::okta::types::{AppUser, Application};
use crate::okta::{Class, OktaError};
use crate::store::failures::{self, Applied};
use crate::store::{apps, meta, scan, StoreError, Tx};
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `meta` key: when the last complete scan finished (ms).
pub const LAST_SCAN_KEY: &str = "last_scan_completed_ms";

/// `meta` key: scheduled scans skipped so far because a scan was still running.
pub const TICKS_SKIPPED_KEY: &str = "scan_ticks_skipped";

/// `meta` key: when the last scheduled scan was skipped (ms).
pub const LAST_SKIPPED_KEY: &str = "scan_last_skipped_ms";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanOutcome {
    pub apps: usize,
    pub app_users: usize,
    pub errors_seen: usize,
    pub opened: usize,
    pub resolved: usize,
    pub pages: usize,
    pub malformed: usize,
    /// Apps whose scan failed this run (they resume at the next one).
    pub failed_apps: usize,
}

/// The apps to scan: the configured ones (ids or labels), or every active app that provisions.
pub async fn watched_apps(ctx: &Context) -> Result<Vec<Application>, OktaError> {
    let configured = &ctx.config.detect.apps;
    let all = ctx.okta.list_apps_with(Class::Scan).await?;
    if !configured.is_empty() {
        let mut out = Vec::new();
        for want in configured {
            match all.iter().find(|a| {
                &a.id == want
                    || a.label
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(want))
            }) {
                Some(a) => out.push(a.clone()),
                None => {
                    tracing::warn!(app = %want, "configured app not found among the org's active apps")
                }
            }
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for app in all {
        if provisions(&ctx.okta, &app).await? {
            out.push(app);
        }
    }
    Ok(out)
}

/// Whether the app pushes users. The app object's `features` usually says so at no extra cost;
/// only when it is absent do we ask for the USER_PROVISIONING feature.
async fn provisions(okta: &OktaClient, app: &Application) -> Result<bool, OktaError> {
    if let Some(f) = &app.features {
        return Ok(f.iter().any(|x| {
            x.starts_with("PUSH_") || x == "USER_PROVISIONING" || x == "SCIM_PROVISIONING"
        }));
    }
    match okta.provisioning_feature_with(Class::Scan, &app.id).await {
        Ok(f) => Ok(f.enabled()),
        Err(OktaError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The operation an errored app user most likely failed, from its status.
fn inferred_operation(au: &AppUser) -> Operation {
    match au.status.as_deref() {
        Some("STAGED") => Operation::Create,
        Some("REVOKED" | "DEPROVISIONED" | "INACTIVE" | "UNASSIGNED") => Operation::Deactivate,
        _ => Operation::Update,
    }
}

/// Scans every watched app once (resuming interrupted app scans first).
pub async fn scan_once(
    ctx: &Context,
    shutdown: &CancellationToken,
) -> Result<ScanOutcome, DetectError> {
    let apps = watched_apps(ctx).await?;
    let mut out = ScanOutcome {
        apps: apps.len(),
        ..Default::default()
    };
    let now = ctx.now_ms();
    {
        // The apps list is where the app's internal `name` comes from (alerts link to its admin
        // console page with it); the log events name only the label.
        let rows: Vec<(String, Option<String>, Option<String>)> = apps
            .iter()
            .map(|a| (a.id.clone(), a.label.clone(), a.name.clone()))
            .collect();
        ctx.store
            .write(move |tx| {
                for (id, label, name) in rows {
                    apps::upsert(tx, &id, label.as_deref(), name.as_deref(), now)?;
                }
                Ok(())
            })
            .await?;
    }
    for app in &apps {
        match scan_app(ctx, app, shutdown, &mut out).await {
            Ok(()) => {}
            // Credentials refused or shutting down: the other apps would fare no better.
            Err(DetectError::Cancelled | DetectError::Okta(OktaError::Cancelled)) => {
                return Err(DetectError::Cancelled)
            }
            Err(e @ DetectError::Okta(OktaError::Unauthorized { .. })) => return Err(e),
            // One app's trouble (a 404 after it was deleted, a malformed page, Okta errors for
            // its users) must not keep the others from being scanned; it resumes next run.
            Err(e) => {
                out.failed_apps += 1;
                tracing::warn!(app = %app.id, label = app.label.as_deref().unwrap_or(""), error = %e, "scanning this app failed; going on with the others");
            }
        }
    }
    // Group push errors, connections, agent pools (issue 14).
    let tasks = super::tasks::scan(ctx, &apps).await?;
    (out.opened, out.resolved) = (out.opened + tasks.opened, out.resolved + tasks.resolved);
    let now = ctx.now_ms();
    ctx.store
        .write(move |tx| meta::set(tx, LAST_SCAN_KEY, &now.to_string()))
        .await?;
    ctx.health.update(|h| h.last_scan_ok_ms = Some(now));
    Ok(out)
}

async fn scan_app(
    ctx: &Context,
    app: &Application,
    shutdown: &CancellationToken,
    out: &mut ScanOutcome,
) -> Result<(), DetectError> {
    let app_id = app.id.clone();
    let resume = {
        let id = app_id.clone();
        ctx.store.read(move |tx| scan::get(tx, &id)).await?
    };
    // A resumed scan did not see the first pages in this process, so it cannot tell who is
    // no longer assigned; only a complete pass may resolve by absence.
    let (mut url, complete_pass) = match resume {
        Some((Some(next), _)) => (next, false),
        _ => (OktaClient::app_users_url(&app_id), true),
    };
    let started = ctx.now_ms();
    let mut present: HashSet<String> = HashSet::new();
    // A next link that leads back to any page already read would page forever.
    let mut visited: HashSet<String> = HashSet::new();
    loop {
        if shutdown.is_cancelled() {
            return Err(DetectError::Cancelled);
        }
        let fetched_at = ctx.now_ms();
        // Of the lowest class: this is where a long scan yields to everything else.
        let page = ctx.okta.get_page_with(Class::Scan, &url).await?;
        out.pages += 1;
        let mut users = Vec::with_capacity(page.items.len());
        for raw in page.items {
            match serde_json::from_value::<AppUser>(raw) {
                Ok(au) => users.push(au),
                Err(e) => {
                    out.malformed += 1;
                    tracing::warn!(app = %app_id, error = %e, "skipping a malformed app user");
                }
            }
        }
        out.app_users += users.len();
        present.extend(users.iter().map(|u| u.id.clone()));
        visited.insert(url.clone());
        let next = page.next.filter(|n| {
            let fresh = !visited.contains(n);
            if !fresh {
                tracing::warn!(app = %app_id, "app users next link loops back; ending this app's scan");
            }
            fresh
        });
        let (opened, resolved, errors) = {
            let app_id = app_id.clone();
            let label = app.label.clone();
            let next = next.clone();
            ctx.store
                .write(move |tx| {
                    let r = apply_page(tx, &app_id, label.as_deref(), &users, fetched_at)?;
                    crate::deprovision::ledger::on_scan_page(tx, &app_id, &users, fetched_at)?;
                    scan::set(tx, &app_id, next.as_deref(), started)?;
                    Ok(r)
                })
                .await?
        };
        out.opened += opened;
        out.resolved += resolved;
        out.errors_seen += errors;
        match next {
            Some(n) => url = n,
            None => break,
        }
        // Let the poller and other work run between pages.
        tokio::task::yield_now().await;
    }
    let app_id2 = app_id.clone();
    let resolved = ctx
        .store
        .write(move |tx| {
            let mut n = 0;
            if complete_pass {
                n = resolve_absent(tx, &app_id2, &present, started)?;
            }
            scan::clear(tx, &app_id2)?;
            Ok(n)
        })
        .await?;
    out.resolved += resolved;
    Ok(())
}

/// Applies one page of app users; returns (opened, resolved, errors seen).
fn apply_page(
    tx: &Tx<'_>,
    app_id: &str,
    app_label: Option<&str>,
    users: &[AppUser],
    fetched_at: i64,
) -> Result<(usize, usize, usize), StoreError> {
    let open: Vec<Failure> = failures::list_unresolved_for_app(tx, app_id)?;
    let mut by_user: HashMap<&str, Vec<&Failure>> = HashMap::new();
    for f in &open {
        by_user.entry(f.user_id.as_str()).or_default().push(f);
    }
    let (mut opened, mut resolved, mut errors) = (0, 0, 0);
    for au in users {
        let known = by_user.get(au.id.as_str());
        if au.is_error() {
            errors += 1;
            match known {
                Some(fs) => {
                    for f in fs {
                        failures::seen_by_scan(tx, f.id, fetched_at)?;
                    }
                }
                None => {
                    // Resolved after this page was fetched (a retry or a success event got
                    // there first): the page is older news, and its guessed operation could
                    // open a second, false failure.
                    if failures::resolved_since(tx, app_id, &au.id, fetched_at)? {
                        continue;
                    }
                    let obs = Observation {
                        app_id: app_id.to_owned(),
                        app_label: app_label.map(str::to_owned),
                        user_id: au.id.clone(),
                        user_login: au.login(),
                        operation: inferred_operation(au),
                        failed: true,
                        reason: Some(format!(
                            "Okta reports this assignment in error (status {}, syncState ERROR); no System Log event was seen for it",
                            au.status.as_deref().unwrap_or("unknown")
                        )),
                        event_uuid: None,
                        published_ms: None,
                        source: Source::Scan,
                    };
                    if matches!(
                        failures::apply(tx, &obs, fetched_at, "scanner")?,
                        Applied::Opened(_) | Applied::Reopened(_)
                    ) {
                        opened += 1;
                    }
                }
            }
        } else if au.is_synchronized() {
            for f in known.into_iter().flatten() {
                // A failure seen after this page was fetched is newer than what the page shows.
                // The page is as new as `fetched_at`: a failure event published before it
                // (the System Log is read with lag) must not reopen what the page shows fixed.
                if f.last_seen <= fetched_at
                    && failures::resolve(
                        tx,
                        f.id,
                        fetched_at,
                        Some(fetched_at),
                        "scanner",
                        "app user is SYNCHRONIZED",
                    )?
                {
                    resolved += 1;
                }
            }
        }
    }
    Ok((opened, resolved, errors))
}

/// Resolves user failures of an app whose user is no longer assigned at all.
fn resolve_absent(
    tx: &Tx<'_>,
    app_id: &str,
    present: &HashSet<String>,
    started: i64,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for f in failures::list_unresolved_for_app(tx, app_id)? {
        // A failed deprovisioning is exactly a user Okta no longer assigns whose access in the
        // app was not removed: absence from the list proves nothing about it.
        if f.user_id.is_empty()
            || f.operation == Operation::GroupPush
            || f.operation.is_deprovisioning()
            || present.contains(&f.user_id)
            || f.last_seen > started
        {
            continue;
        }
        if failures::resolve(
            tx,
            f.id,
            started,
            Some(started),
            "scanner",
            "user is no longer assigned to the app",
        )? {
            n += 1;
        }
    }
    Ok(n)
}

/// Time until the schedule's next fire after now.
fn until_next(ctx: &Context) -> Duration {
    let now = ctx.clock.now();
    ctx.config
        .detect
        .scan_schedule
        .after(&now.with_timezone(&Utc))
        .next()
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(1800))
}

/// The most skipped runs counted for one scan: a schedule of every second and a scan of days
/// must not make the count itself slow.
const MAX_COUNTED_SKIPS: usize = 100_000;

/// Scheduled runs strictly after `started` and at or before `ended`: the runs a scan that ran
/// from `started` to `ended` overlapped, which are skipped rather than queued.
pub fn ticks_within(
    schedule: &cron::Schedule,
    started: chrono::DateTime<Utc>,
    ended: chrono::DateTime<Utc>,
) -> u64 {
    schedule
        .after(&started)
        .take_while(|t| *t <= ended)
        .take(MAX_COUNTED_SKIPS)
        .count() as u64
}

/// Counts the runs a scan overlapped: metric, log line and the store (for `status`).
async fn record_skipped(ctx: &Context, started_ms: i64, ended_ms: i64) -> Result<u64, StoreError> {
    let (Some(started), Some(ended)) = (
        chrono::DateTime::<Utc>::from_timestamp_millis(started_ms),
        chrono::DateTime::<Utc>::from_timestamp_millis(ended_ms),
    ) else {
        return Ok(0);
    };
    let skipped = ticks_within(&ctx.config.detect.scan_schedule, started, ended);
    if skipped == 0 {
        return Ok(0);
    }
    ctx.metrics
        .add("provwatch_scan_ticks_skipped_total", &[], skipped as f64);
    tracing::warn!(
        skipped,
        took_s = (ended_ms - started_ms) / 1000,
        "the assignment scan ran past its next scheduled run(s); those runs were skipped, not queued (raise detect.scan_share or space out detect.scan_schedule)"
    );
    ctx.store
        .write(move |tx| {
            let before = meta::get(tx, TICKS_SKIPPED_KEY)?
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            meta::set(tx, TICKS_SKIPPED_KEY, &(before + skipped).to_string())?;
            meta::set(tx, LAST_SKIPPED_KEY, &ended_ms.to_string())
        })
        .await?;
    Ok(skipped)
}

/// The scanner component: scans at start when no scan has completed yet or one was
/// interrupted, then on `scan_schedule`.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let pending = ctx
        .store
        .read(
            |tx| Ok(meta::get(tx, LAST_SCAN_KEY)?.is_none() || !scan::in_progress(tx)?.is_empty()),
        )
        .await
        .unwrap_or(true);
    let mut delay = if pending {
        Duration::from_secs(2)
    } else {
        until_next(&ctx)
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        let started = ctx.now_ms();
        let result = match scan_once(&ctx, &shutdown).await {
            Err(DetectError::Okta(OktaError::Cancelled)) => Err(DetectError::Cancelled),
            other => other,
        };
        if !matches!(result, Err(DetectError::Cancelled)) {
            if let Err(e) = record_skipped(&ctx, started, ctx.now_ms()).await {
                tracing::warn!(error = %e, "could not record skipped scan runs");
            }
        }
        match result {
            Ok(o) => tracing::info!(
                apps = o.apps,
                app_users = o.app_users,
                errors = o.errors_seen,
                opened = o.opened,
                resolved = o.resolved,
                "assignment scan done"
            ),
            Err(DetectError::Cancelled) => return,
            Err(e) => {
                tracing::warn!(error = %e, "assignment scan failed; it resumes at the next scheduled run")
            }
        }
        delay = until_next(&ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn log_failure(user: &str, op: Operation, published: i64) -> Observation {
        Observation {
            app_label: Some("Sales".into()),
            reason: Some("remote down".into()),
            event_uuid: Some(format!("e{published}")),
            published_ms: Some(published),
            ..Observation::failure("0oa1", user, op)
        }
    }

    fn app_user(id: &str, status: &str, sync: &str) -> AppUser {
        serde_json::from_value(serde_json::json!({"id": id, "status": status, "syncState": sync}))
            .unwrap()
    }

    /// A user unassigned in Okta whose deprovisioning push failed is absent from the app's
    /// users: the scan must not call that resolved.
    #[test]
    fn absence_does_not_resolve_a_failed_deprovisioning() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            failures::apply(
                c,
                &log_failure("00u1", Operation::Deactivate, 100),
                1_000,
                "t",
            )?;
            failures::apply(c, &log_failure("00u2", Operation::Update, 100), 1_000, "t")?;
            let n = resolve_absent(c, "0oa1", &HashSet::new(), 2_000)?;
            assert_eq!(n, 1);
            let open = failures::list_unresolved(c)?;
            assert_eq!(open.len(), 1);
            assert_eq!(open[0].operation, Operation::Deactivate);
            Ok(())
        })
        .unwrap();
    }

    /// The scan saw the user SYNCHRONIZED at 5 000; the poller (reading with lag) then applies a
    /// failure event published at 3 000, before the scan: it must not reopen.
    #[test]
    fn a_failure_event_older_than_the_scan_does_not_reopen() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            failures::apply(
                c,
                &log_failure("00u1", Operation::Update, 1_000),
                1_500,
                "t",
            )?;
            let (_, resolved, _) = apply_page(
                c,
                "0oa1",
                Some("Sales"),
                &[app_user("00u1", "PROVISIONED", "SYNCHRONIZED")],
                5_000,
            )?;
            assert_eq!(resolved, 1);
            let late = log_failure("00u1", Operation::Update, 3_000);
            assert_eq!(
                failures::apply(c, &late, 6_000, "poller")?,
                Applied::Ignored
            );
            assert!(failures::list_unresolved(c)?.is_empty());
            let newer = log_failure("00u1", Operation::Update, 7_000);
            assert!(matches!(
                failures::apply(c, &newer, 7_500, "poller")?,
                Applied::Reopened(_)
            ));
            Ok(())
        })
        .unwrap();
    }
}
