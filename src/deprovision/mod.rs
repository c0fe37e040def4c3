//! Access really removed (issue 13): every deprovisioning Okta owes is tracked until it is
//! confirmed, including the ones Okta never reports as failed.
//!
//! - [`ledger`]: inside the poller's and scanner's transactions, opens an *expectation* per
//!   (app, user) on `user.lifecycle.deactivate` (and `.suspend` with `include_suspended`) and
//!   `application.user_membership.remove`, closes it on Okta's deactivation SUCCESS, and raises
//!   the app-wide URGENT `deprovisioning_disabled` failure when an `application.lifecycle.update`
//!   turns "Deactivate Users" off (resolved when it is turned back on).
//! - [`verify`]: the app's own SCIM API: check one account, remediate (`PATCH active=false`),
//!   reconcile (orphans).
//! - [`run`] (this module): the long-running component. Each tick it reads the provisioning
//!   settings of apps the ledger marked stale, turns expectations past `deprovision.sla` into
//!   URGENT `deactivate` failures, runs due app checks (and automatic remediation where
//!   `remediate = true`), and reconciles apps on their `[[verify]] schedule`. On the scan
//!   schedule it compares every watched app's "Deactivate Users" against the last known state.
//!
//! Okta calls made here: `GET /api/v1/apps/{id}/features/USER_PROVISIONING` (Apps bucket,
//! low priority: once per watched app per scan, plus once per app after a settings change;
//! reason "deprovisioning settings") and the app users list for reconciliation (Apps bucket,
//! low priority, reason "reconciliation"). Both go through the Okta client's rate budget.

pub mod ledger;
pub mod verify;

use crate::context::Context;
use crate::domain::{Observation, Operation, Source};
use crate::okta::OktaError;
use crate::scim::ScimClient;
use crate::store::expectations::{self as exp, ExpState, Expectation};
use crate::store::failures::{self, Applied};
use chrono::Utc;
use std::collections::HashMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use ledger::{when, ACTOR};

/// How often the component looks at its work (expiries are at most this late).
pub const TICK: Duration = Duration::from_secs(15);
/// How often an open expectation (or a failed or still-active check) is checked again against
/// the app.
pub const VERIFY_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// What one tick did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickOutcome {
    pub settings_read: usize,
    pub expired: usize,
    pub verified: usize,
    pub remediated: usize,
}

/// The SCIM clients of the apps with `[[verify]]`, built once per generation.
pub struct Clients(Vec<(crate::config::VerifyConfig, ScimClient)>);

impl Clients {
    pub fn new(ctx: &Context) -> Clients {
        let timeout = ctx.config.okta.request_timeout;
        Clients(
            ctx.config
                .verify
                .iter()
                .filter_map(|v| match ScimClient::new(v, timeout) {
                    Ok(c) => Some((v.clone(), c)),
                    Err(e) => {
                        tracing::error!(app = %v.app, error = %e, "cannot build the SCIM client; this app is not verified");
                        None
                    }
                })
                .collect(),
        )
    }

    pub fn for_app(
        &self,
        app_id: &str,
        label: Option<&str>,
    ) -> Option<&(crate::config::VerifyConfig, ScimClient)> {
        self.0.iter().find(|(v, _)| v.matches(app_id, label))
    }
}

/// Reads one app's provisioning settings from Okta and compares them with the last known ones:
/// on → off raises the URGENT app-wide failure, off → on resolves it.
pub async fn refresh_settings(ctx: &Context, app_id: &str) -> anyhow::Result<()> {
    let (prov, deact) = match ctx.okta.provisioning_feature(app_id).await {
        Ok(f) => {
            let p = f.enabled();
            (
                Some(p),
                if p {
                    f.deactivate_enabled()
                } else {
                    Some(false)
                },
            )
        }
        // No USER_PROVISIONING feature at all: an SSO-only app, nothing to deprovision.
        Err(OktaError::NotFound { .. }) => (Some(false), Some(false)),
        Err(e) => {
            return Err(anyhow::Error::new(e).context("reading the app's USER_PROVISIONING feature"))
        }
    };
    let now = ctx.now_ms();
    let app = app_id.to_owned();
    ctx.store
        .write(move |tx| {
            let before = exp::provisioning(tx, &app)?;
            let label = crate::store::apps::label(tx, &app)?;
            exp::set_provisioning(tx, &app, prov, deact, now, None)?;
            let after = exp::provisioning(tx, &app)?.and_then(|p| p.deprovisions());
            let was = before.as_ref().and_then(|b| b.deprovisions());
            let open = failures::find(tx, &app, "", Operation::DeprovisioningDisabled)?
                .is_some_and(|f| f.state != crate::domain::State::Resolved);
            match after {
                // Off now, and it was on (or an admin's change was just logged without
                // details): name whoever the log said changed it.
                Some(false)
                    if was == Some(true)
                        || before.as_ref().is_some_and(|b| {
                            b.changed_by.is_some() && b.provisioning.is_none()
                        }) =>
                {
                    let who = before.as_ref().and_then(|b| b.changed_by.clone());
                    let at = before.as_ref().and_then(|b| b.changed_at).unwrap_or(now);
                    ledger::switched(
                        tx,
                        &app,
                        label.as_deref(),
                        false,
                        who.as_deref().or(Some(
                            "an admin (seen by the settings check; no System Log event named them)",
                        )),
                        at,
                        None,
                        now,
                    )?;
                }
                Some(true) if open => {
                    ledger::switched(tx, &app, label.as_deref(), true, None, now, None, now)?;
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// Turns expectations past their deadline into URGENT `deactivate` failures.
pub async fn expire_due(ctx: &Context) -> anyhow::Result<usize> {
    let now = ctx.now_ms();
    let sla = humantime::format_duration(ctx.config.deprovision.sla).to_string();
    Ok(ctx
        .store
        .write(move |tx| {
            let mut n = 0;
            for e in exp::due(tx, now)? {
                if exp::provisioning(tx, &e.app_id)?.and_then(|p| p.deprovisions()) == Some(false) {
                    exp::set_state(tx, e.id, ExpState::Closed, now, Some("deprovisioning is switched off for the app; see its app-wide failure"))?;
                    continue;
                }
                let reason = format!(
                    "no deprovisioning seen within {sla} (deprovision.sla) after {} by {} at {}: Okta has \
                     not reported deactivating {} in {}. Next: check the account in the app; remove it \
                     there and run `okta-provwatch resolve --failure ID --note ...`, or with a [[verify]] \
                     SCIM endpoint `okta-provwatch remediate --failure ID`",
                    e.cause,
                    e.cause_actor.as_deref().unwrap_or("an unknown actor"),
                    when(e.opened_at),
                    e.user_name(),
                    e.app_name()
                );
                let obs = Observation {
                    app_id: e.app_id.clone(),
                    app_label: e.app_label.clone(),
                    user_id: e.user_id.clone(),
                    user_login: e.user_login.clone(),
                    operation: Operation::Deactivate,
                    failed: true,
                    reason: Some(reason),
                    event_uuid: None,
                    published_ms: None,
                    source: Source::Log,
                };
                let id = match failures::apply(tx, &obs, now, ACTOR)? {
                    Applied::Opened(id) | Applied::Reopened(id) | Applied::Refreshed(id) => Some(id),
                    _ => None,
                };
                if let Some(id) = id {
                    exp::set_failure(tx, e.id, id)?;
                }
                exp::set_state(tx, e.id, ExpState::Expired, now, None)?;
                n += 1;
            }
            Ok(n)
        })
        .await?)
}

/// Runs the due app checks; with `remediate = true`, one automatic PATCH for an account found
/// still active (never a second one for the same failure).
pub async fn verify_due(ctx: &Context, clients: &Clients) -> anyhow::Result<(usize, usize)> {
    let now = ctx.now_ms();
    let interval = VERIFY_INTERVAL.as_millis() as i64;
    let due: Vec<Expectation> = ctx
        .store
        .read(move |tx| exp::to_verify(tx, now, interval))
        .await?;
    let (mut checked, mut remediated) = (0, 0);
    for e in due {
        let Some((cfg, client)) = clients.for_app(&e.app_id, e.app_label.as_deref()) else {
            continue;
        };
        let result = verify::check(
            client,
            e.app_user_name.as_deref().or(e.user_login.as_deref()),
            e.scim_id.as_deref(),
        )
        .await;
        checked += 1;
        let now = ctx.now_ms();
        let (e2, r2) = (e.clone(), result);
        let (failure, r2) = ctx
            .store
            .write(move |tx| Ok((verify::record(tx, &e2, &r2, now)?, r2)))
            .await?;
        let (Some(fid), Ok(verify::Check::Active { scim_id, .. }), true) =
            (failure, &r2, cfg.remediate)
        else {
            continue;
        };
        if ctx
            .store
            .read(move |tx| verify::remediated_before(tx, fid))
            .await?
        {
            continue;
        }
        let plan = verify::Plan::new(client, scim_id);
        let sent = verify::remediate(
            &ctx.store,
            client,
            &plan,
            fid,
            "automatic remediation ([[verify]] remediate = true)",
            ctx.now_ms(),
        )
        .await?;
        match sent {
            Ok(()) => {
                remediated += 1;
                // Check again at once: the app's word resolves the failure.
                let again = verify::check(
                    client,
                    e.app_user_name.as_deref().or(e.user_login.as_deref()),
                    Some(scim_id),
                )
                .await;
                let now = ctx.now_ms();
                let id = e.id;
                let e3 = ctx
                    .store
                    .read(move |tx| exp::get(tx, id))
                    .await?
                    .unwrap_or(e.clone());
                ctx.store
                    .write(move |tx| verify::record(tx, &e3, &again, now))
                    .await?;
            }
            Err(err) => {
                tracing::warn!(app = %e.app_id, user = %e.user_id, error = %err, "automatic remediation failed; not retried")
            }
        }
    }
    Ok((checked, remediated))
}

/// The component: see the module doc.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let clients = Clients::new(&ctx);
    // First settings comparison at start: it records the state later scans compare with.
    let mut next_settings = tokio::time::Instant::now();
    let mut next_reconcile: HashMap<String, chrono::DateTime<Utc>> = HashMap::new();
    loop {
        if tokio::time::Instant::now() >= next_settings {
            match crate::detect::scanner::watched_apps(&ctx).await {
                Ok(apps) => {
                    for a in apps {
                        if let Err(e) = refresh_settings(&ctx, &a.id).await {
                            tracing::warn!(app = %a.id, error = %e, "reading the app's provisioning settings failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listing watched apps for the deprovisioning settings check failed")
                }
            }
            next_settings =
                tokio::time::Instant::now() + until_next(&ctx.config.detect.scan_schedule, &ctx);
        }
        match tick(&ctx, &clients).await {
            Ok(o) if o != TickOutcome::default() => tracing::info!(
                expired = o.expired,
                verified = o.verified,
                remediated = o.remediated,
                settings_read = o.settings_read,
                "deprovisioning ledger tick"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "deprovisioning ledger tick failed; next tick retries")
            }
        }
        for (cfg, client) in &clients.0 {
            let now = ctx.clock.now().with_timezone(&Utc);
            let due = next_reconcile
                .entry(cfg.app.clone())
                .or_insert_with(|| cfg.schedule.after(&now).next().unwrap_or(now));
            if *due > now {
                continue;
            }
            *due = cfg
                .schedule
                .after(&now)
                .next()
                .unwrap_or(now + chrono::Duration::hours(1));
            let app_id = match resolve_app(&ctx, &cfg.app).await {
                Some(id) => id,
                None => {
                    tracing::warn!(app = %cfg.app, "[[verify]] app not found among the apps seen; reconciliation skipped");
                    continue;
                }
            };
            match verify::reconcile(&ctx, client, &app_id).await {
                Ok(r) => {
                    tracing::info!(app = %cfg.app, scim_users = r.scim_users, orphans = r.orphans, requests = r.requests, error = r.error.as_deref().unwrap_or(""), "reconciliation done")
                }
                Err(e) => tracing::warn!(app = %cfg.app, error = %e, "reconciliation failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One pass over the ledger's work (without the reconciliations).
pub async fn tick(ctx: &Context, clients: &Clients) -> anyhow::Result<TickOutcome> {
    let mut out = TickOutcome::default();
    for app in ctx.store.read(exp::stale_apps).await? {
        match refresh_settings(ctx, &app).await {
            Ok(()) => out.settings_read += 1,
            Err(e) => {
                tracing::warn!(app = %app, error = %e, "reading the app's provisioning settings failed; tried again next tick")
            }
        }
    }
    out.expired = expire_due(ctx).await?;
    let (v, r) = verify_due(ctx, clients).await?;
    out.verified = v;
    out.remediated = r;
    Ok(out)
}

/// An app id from a `[[verify]] app` (id or label), among the apps the detectors recorded.
pub async fn resolve_app(ctx: &Context, app: &str) -> Option<String> {
    let a = app.to_owned();
    ctx.store
        .read(move |tx| crate::store::apps::resolve(tx, &a))
        .await
        .ok()?
        .into_iter()
        .next()
        .map(|(id, _)| id)
}

fn until_next(s: &cron::Schedule, ctx: &Context) -> Duration {
    let now = ctx.clock.now().with_timezone(&Utc);
    s.after(&now)
        .next()
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(1800))
}
