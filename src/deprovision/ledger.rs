//! The ledger's side of detection, run inside the poller's and the scanner's transactions (no
//! I/O here): a deactivation, suspension or unassignment opens an expectation for every app
//! where the user had an app user and Okta deprovisions; Okta's deactivation SUCCESS closes it
//! (or hands it to the app check); an `application.lifecycle.update` that switches
//! deprovisioning off raises the app-wide URGENT failure at once, and switching it back on
//! resolves it.

use crate::context::Context;
use crate::detect::classify::{Lifecycle, LifecycleEvent};
use crate::detect::poller::watched;
use crate::domain::{Observation, Operation, Source};
use crate::okta::types::AppUser;
use crate::store::expectations::{self as exp, ExpState, KnownAppUser, NewExpectation, Verify};
use crate::store::failures::{self, Applied};
use crate::store::{StoreError, Tx};

/// Who the ledger writes as in failure histories.
pub const ACTOR: &str = "deprovision";

pub(crate) fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

fn has_verify(ctx: &Context, app_id: &str, label: Option<&str>) -> bool {
    ctx.config.verify.iter().any(|v| v.matches(app_id, label))
}

/// A lifecycle, membership or settings event, in the poller's transaction.
pub fn on_lifecycle(
    tx: &Tx<'_>,
    ctx: &Context,
    l: &Lifecycle,
    now: i64,
) -> Result<usize, StoreError> {
    match l {
        Lifecycle::UserOff(ev) => {
            if ev.event_type == "user.lifecycle.suspend"
                && !ctx.config.deprovision.include_suspended
            {
                return Ok(0);
            }
            let mut n = 0;
            for au in exp::apps_of_user(tx, &ev.user_id)? {
                let label = crate::store::apps::label(tx, &au.app_id)?;
                if !watched(ctx, &au.app_id, label.as_deref()) {
                    continue;
                }
                n += expect(tx, ctx, ev, &au.app_id, label.as_deref(), Some(&au), now)? as usize;
            }
            if n == 0 {
                tracing::debug!(user = %ev.user_id, "deactivated user has no app user known to the ledger");
            }
            Ok(n)
        }
        Lifecycle::Unassigned(ev) => {
            if !watched(ctx, &ev.app_id, ev.app_label.as_deref()) {
                return Ok(0);
            }
            let known = exp::known_app_user(tx, &ev.app_id, &ev.user_id)?;
            Ok(expect(
                tx,
                ctx,
                ev,
                &ev.app_id,
                ev.app_label.as_deref(),
                known.as_ref(),
                now,
            )? as usize)
        }
        Lifecycle::SettingsChanged {
            ev,
            provisioning,
            deactivate,
        } => {
            if !watched(ctx, &ev.app_id, ev.app_label.as_deref()) {
                return Ok(0);
            }
            let who = ev.actor.as_deref().unwrap_or("an unknown admin");
            if provisioning.is_none() && deactivate.is_none() {
                // The event did not say what changed: the component reads the app's feature on
                // its next tick and compares.
                exp::mark_stale(tx, &ev.app_id, Some((who, ev.published_ms)))?;
                return Ok(0);
            }
            exp::set_provisioning(
                tx,
                &ev.app_id,
                *provisioning,
                *deactivate,
                now,
                Some((who, ev.published_ms)),
            )?;
            let on = match (provisioning, deactivate) {
                (Some(false), _) | (_, Some(false)) => false,
                (_, Some(true)) => true,
                _ => return Ok(0),
            };
            switched(
                tx,
                &ev.app_id,
                ev.app_label.as_deref(),
                on,
                Some(who),
                ev.published_ms,
                Some(&ev.uuid),
                now,
            )?;
            Ok(1)
        }
    }
}

/// Opens the expectation for one app; false when not owed (deprovisioning off) or already open.
fn expect(
    tx: &Tx<'_>,
    ctx: &Context,
    ev: &LifecycleEvent,
    app_id: &str,
    label: Option<&str>,
    known: Option<&KnownAppUser>,
    _now: i64,
) -> Result<bool, StoreError> {
    match exp::provisioning(tx, app_id)? {
        // Okta will not deprovision here: the app-wide URGENT failure says so; an expectation
        // per user would only repeat it.
        Some(p) if p.deprovisions() == Some(false) => return Ok(false),
        Some(_) => {}
        // Unknown: expect it, and have the component read the app's settings before the
        // deadline, so an app without deprovisioning does not page anyone.
        None => exp::mark_stale(tx, app_id, None)?,
    }
    let sla = i64::try_from(ctx.config.deprovision.sla.as_millis()).unwrap_or(i64::MAX / 2);
    let verify = if has_verify(ctx, app_id, label) {
        Verify::Scheduled
    } else {
        Verify::None
    };
    let opened = exp::open(
        tx,
        &NewExpectation {
            app_id,
            app_label: label,
            user_id: &ev.user_id,
            user_login: ev
                .user_login
                .as_deref()
                .or(known.and_then(|k| k.user_login.as_deref())),
            app_user_name: ev
                .app_user_name
                .as_deref()
                .or(known.and_then(|k| k.app_user_name.as_deref())),
            scim_id: known.and_then(|k| k.scim_id.as_deref()),
            cause: &ev.event_type,
            cause_actor: ev.actor.as_deref(),
            cause_uuid: Some(&ev.uuid),
            opened_at: ev.published_ms,
            deadline: ev.published_ms.saturating_add(sla),
            verify: Some(verify),
        },
    )?;
    Ok(opened.is_some())
}

/// Raises (`on == false`) or resolves the app-wide "deprovisioning switched off" failure.
#[allow(clippy::too_many_arguments)]
pub fn switched(
    tx: &Tx<'_>,
    app_id: &str,
    label: Option<&str>,
    on: bool,
    who: Option<&str>,
    at: i64,
    event_uuid: Option<&str>,
    now: i64,
) -> Result<Applied, StoreError> {
    let reason = (!on).then(|| {
        format!(
            "\"Deactivate Users\" (or provisioning) was turned off for {} by {} at {}: Okta now \
             deprovisions nobody in this app, silently. Turn it back on under the app's \
             Provisioning > To App settings; then check the app for accounts of people who left \
             meanwhile (`okta-provwatch status` lists open expectations)",
            label.unwrap_or(app_id),
            who.unwrap_or("an unknown admin"),
            when(at)
        )
    });
    let obs = Observation {
        app_id: app_id.to_owned(),
        app_label: label.map(str::to_owned),
        user_id: String::new(),
        user_login: None,
        operation: Operation::DeprovisioningDisabled,
        failed: !on,
        reason,
        event_uuid: event_uuid.map(str::to_owned),
        published_ms: event_uuid.map(|_| at),
        source: Source::Log,
    };
    failures::apply(tx, &obs, now, ACTOR)
}

/// A provisioning observation the poller applied: successful pushes teach the ledger who has an
/// app user where; a deactivation SUCCESS closes the expectation (or hands it to the app check).
pub fn on_observation(
    tx: &Tx<'_>,
    ctx: &Context,
    obs: &Observation,
    now: i64,
) -> Result<(), StoreError> {
    if obs.user_id.is_empty() || obs.failed && obs.operation != Operation::Deactivate {
        return Ok(());
    }
    match obs.operation {
        Operation::Create | Operation::Update | Operation::Reactivate if !obs.failed => {
            exp::note_app_user(
                tx,
                &KnownAppUser {
                    app_id: obs.app_id.clone(),
                    user_id: obs.user_id.clone(),
                    user_login: obs.user_login.clone(),
                    ..Default::default()
                },
                now,
            )?;
        }
        Operation::Deactivate => {
            let live = exp::live_for(tx, &obs.app_id, &obs.user_id)?;
            if !obs.failed {
                exp::forget_app_user(tx, &obs.app_id, &obs.user_id)?;
            }
            let Some(e) = live else { return Ok(()) };
            if obs.failed {
                // Okta itself reports the failure: that failure row carries it from here.
                if let Some(f) =
                    failures::find(tx, &obs.app_id, &obs.user_id, Operation::Deactivate)?
                {
                    exp::set_failure(tx, e.id, f.id)?;
                }
                exp::set_state(
                    tx,
                    e.id,
                    ExpState::Closed,
                    now,
                    Some("Okta reported the deprovisioning failed"),
                )?;
            } else if has_verify(ctx, &obs.app_id, obs.app_label.as_deref()) {
                exp::set_state(tx, e.id, ExpState::Confirmed, now, None)?;
                exp::set_verify(tx, e.id, Verify::Pending, None, None)?;
            } else {
                exp::set_state(
                    tx,
                    e.id,
                    ExpState::Closed,
                    now,
                    Some("Okta reported the deprovisioning"),
                )?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One page of the assignment scan: who has an app user here, under which user name and app id
/// (the `externalId`); an app user Okta shows `DEPROVISIONED` and in sync closes its expectation.
pub fn on_scan_page(
    tx: &Tx<'_>,
    app_id: &str,
    users: &[AppUser],
    fetched_at: i64,
) -> Result<(), StoreError> {
    for au in users {
        if au.status.as_deref() == Some("DEPROVISIONED") && !au.is_error() {
            if let Some(e) = exp::live_for(tx, app_id, &au.id)? {
                if e.state == ExpState::Open {
                    exp::set_state(
                        tx,
                        e.id,
                        ExpState::Closed,
                        fetched_at,
                        Some("the assignment scan shows the app user DEPROVISIONED"),
                    )?;
                }
            }
            continue;
        }
        let app_user_name = au
            .credentials
            .as_ref()
            .and_then(|c| c.get("userName"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        exp::note_app_user(
            tx,
            &KnownAppUser {
                app_id: app_id.to_owned(),
                user_id: au.id.clone(),
                user_login: au.login(),
                app_user_name,
                scim_id: au.external_id.clone(),
            },
            fetched_at,
        )?;
    }
    Ok(())
}
