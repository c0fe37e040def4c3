//! Checking a deprovisioning against the app's own SCIM API, remediating (PATCH active=false),
//! and reconciling (orphans). The SCIM calls happen outside any transaction; their results are
//! written in one transaction each.
//!
//! The rules that keep this safe: an account is "still active" only when the app returned it,
//! under the expected user name, with `active` not false. A check that cannot run (401,
//! unreachable, no such user name but the app's id for the account is unknown, a user name
//! that differs) is a failure of the *verification* (operation `verification`), never a false
//! "still active"; and a remediation is one PATCH, recorded, never retried blindly.

use crate::context::Context;
use crate::domain::{HistoryKind, Observation, Operation, Source};
use crate::scim::client::Reason;
use crate::scim::{ScimClient, ScimError, ScimUser};
use crate::store::expectations::{self as exp, ExpState, Expectation, Reconciliation, Verify};
use crate::store::failures::{self, Applied};
use crate::store::{history, StoreError, Tx};
use std::collections::HashSet;

use super::ledger::ACTOR;

/// What the app says about one account.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Present and `active: false`.
    Inactive { scim_id: String },
    /// Gone: the app's id for it answers 404.
    Gone,
    /// Present and active.
    Active { scim_id: String, user_name: String },
    /// The check could not tell (the reason says why and what to do).
    Inconclusive(String),
}

/// Looks the account up: by `userName`, then by the app's id when the name finds nothing.
pub async fn check(
    client: &ScimClient,
    user_name: Option<&str>,
    scim_id: Option<&str>,
) -> Result<Check, ScimError> {
    let Some(name) = user_name else {
        return Ok(Check::Inconclusive(
            "the user name Okta pushed to the app is unknown (no assignment scan has seen this user yet)".into(),
        ));
    };
    let found: Vec<ScimUser> = client
        .find_by_user_name(name, Reason::Verify)
        .await?
        .into_iter()
        // RFC 7643 makes userName case-insensitive; servers that filter case-exactly still
        // answer, and one that ignores the filter must not make a stranger "the" account.
        .filter(|u| {
            u.user_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .collect();
    match found.as_slice() {
        [u] => Ok(if u.is_active() {
            Check::Active {
                scim_id: u.id.clone(),
                user_name: u.user_name.clone().unwrap_or_default(),
            }
        } else {
            Check::Inactive {
                scim_id: u.id.clone(),
            }
        }),
        [] => match scim_id {
            None => Ok(Check::Inconclusive(format!(
                "the app has no user named {name:?} and Okta's id for the account in the app is unknown, \
                 so a deleted account cannot be told from one stored under another name"
            ))),
            Some(id) => match client.get(id, Reason::Verify).await? {
                None => Ok(Check::Gone),
                Some(u) if !u.is_active() => Ok(Check::Inactive { scim_id: u.id }),
                Some(u) => Ok(Check::Inconclusive(format!(
                    "the app stores this account as {:?}, not {name:?} as Okta pushed it (case or suffix), \
                     and shows it active; check it in the app and close the failure with `okta-provwatch resolve`",
                    u.user_name.unwrap_or_default()
                ))),
            },
        },
        many => Ok(Check::Inconclusive(format!(
            "the app has {} users named {name:?}; check it by hand",
            many.len()
        ))),
    }
}

/// Writes one check's outcome; returns the failure opened or refreshed, if any.
pub fn record(
    tx: &Tx<'_>,
    e: &Expectation,
    result: &Result<Check, ScimError>,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    let obs = |op: Operation, failed: bool, reason: Option<String>| Observation {
        app_id: e.app_id.clone(),
        app_label: e.app_label.clone(),
        user_id: e.user_id.clone(),
        user_login: e.user_login.clone(),
        operation: op,
        failed,
        reason,
        event_uuid: None,
        published_ms: None,
        source: Source::Scan,
    };
    // A verification that runs again clears its own earlier "could not check" failure.
    let clear_verification = |tx: &Tx<'_>| -> Result<(), StoreError> {
        if let Some(f) = failures::find(tx, &e.app_id, &e.user_id, Operation::Verification)? {
            failures::resolve(
                tx,
                f.id,
                now,
                None,
                ACTOR,
                "the app's SCIM API answered again",
            )?;
        }
        Ok(())
    };
    match result {
        Ok(Check::Inactive { scim_id }) | Ok(Check::Active { scim_id, .. })
            if e.scim_id.as_deref() != Some(scim_id.as_str()) =>
        {
            exp::set_scim_id(tx, e.id, scim_id)?;
        }
        _ => {}
    }
    match result {
        Ok(Check::Inactive { .. }) | Ok(Check::Gone) => {
            clear_verification(tx)?;
            let detail = match result {
                Ok(Check::Gone) => "the app's SCIM API no longer has the account",
                _ => "the app's SCIM API shows the account inactive",
            };
            exp::set_verify(tx, e.id, Verify::Verified, Some(detail), Some(now))?;
            exp::set_state(tx, e.id, ExpState::Closed, now, Some(detail))?;
            if let Some(f) = failures::find(tx, &e.app_id, &e.user_id, Operation::Deactivate)? {
                failures::resolve_as(tx, f.id, now, None, HistoryKind::Verified, ACTOR, detail)?;
            }
            Ok(None)
        }
        Ok(Check::Active { scim_id, user_name }) => {
            clear_verification(tx)?;
            let detail = format!("active in the app as {user_name:?} (SCIM id {scim_id})");
            if e.state == ExpState::Open {
                // Okta has not reported yet and the SLA is still running: nothing to say.
                exp::set_verify(tx, e.id, Verify::Scheduled, Some(&detail), Some(now))?;
                return Ok(None);
            }
            exp::set_verify(tx, e.id, Verify::StillActive, Some(&detail), Some(now))?;
            let reason = format!(
                "Okta reports deprovisioned, the app still has an active account ({detail}). \
                 Next: `okta-provwatch remediate --failure ID` shows the SCIM PATCH that deactivates it \
                 (add --yes to send it), or remove it in the app and run `okta-provwatch resolve --failure ID --note ...`"
            );
            let applied = failures::apply(
                tx,
                &obs(Operation::Deactivate, true, Some(reason)),
                now,
                ACTOR,
            )?;
            let id = match applied {
                Applied::Opened(id) | Applied::Reopened(id) | Applied::Refreshed(id) => id,
                _ => return Ok(None),
            };
            if matches!(applied, Applied::Opened(_) | Applied::Reopened(_)) {
                history::add(tx, id, now, HistoryKind::StillActive, ACTOR, Some(&detail))?;
            }
            exp::set_failure(tx, e.id, id)?;
            if e.state == ExpState::Confirmed {
                exp::set_state(tx, e.id, ExpState::Expired, now, None)?;
            }
            Ok(Some(id))
        }
        Ok(Check::Inconclusive(why)) => verification_failed(tx, e, why, now, &obs),
        Err(err) => verification_failed(tx, e, &err.to_string(), now, &obs),
    }
}

fn verification_failed(
    tx: &Tx<'_>,
    e: &Expectation,
    why: &str,
    now: i64,
    obs: &dyn Fn(Operation, bool, Option<String>) -> Observation,
) -> Result<Option<i64>, StoreError> {
    exp::set_verify(tx, e.id, Verify::Error, Some(why), Some(now))?;
    let reason = format!(
        "could not check {} in {} against the app's SCIM API: {why}. Nothing is known about the \
         account either way; fix the app's [[verify]] settings or check the account by hand",
        e.user_name(),
        e.app_name()
    );
    let applied = failures::apply(
        tx,
        &obs(Operation::Verification, true, Some(reason)),
        now,
        ACTOR,
    )?;
    match applied {
        Applied::Opened(id) | Applied::Reopened(id) => {
            history::add(
                tx,
                id,
                now,
                HistoryKind::VerificationFailed,
                ACTOR,
                Some(why),
            )?;
            Ok(Some(id))
        }
        Applied::Refreshed(id) => Ok(Some(id)),
        _ => Ok(None),
    }
}

/// The exact request a remediation sends, for `remediate` (dry run) and the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub url: String,
    pub body: serde_json::Value,
    pub scim_id: String,
}

impl Plan {
    pub fn new(client: &ScimClient, scim_id: &str) -> Plan {
        Plan {
            url: client.users_url(Some(scim_id)).to_string(),
            body: serde_json::to_value(crate::scim::PatchOp::deactivate()).expect("static body"),
            scim_id: scim_id.to_owned(),
        }
    }

    /// The request as a person would type it; the token is never shown.
    pub fn render(&self) -> String {
        format!(
            "PATCH {}\nAuthorization: Bearer <token from [[verify]]>\nContent-Type: application/scim+json\n\n{}",
            self.url,
            serde_json::to_string_pretty(&self.body).unwrap_or_default()
        )
    }
}

/// Sends one remediation and records it in the failure's history (who, what, when); never
/// retried here or by the caller.
pub async fn remediate(
    ctx_store: &crate::store::Store,
    client: &ScimClient,
    plan: &Plan,
    failure_id: i64,
    actor: &str,
    now: i64,
) -> anyhow::Result<Result<(), ScimError>> {
    let sent = client.deactivate(&plan.scim_id).await;
    let (kind, detail) = match &sent {
        Ok(()) => (
            HistoryKind::Remediated,
            format!("PATCH {} active=false sent by {actor}", plan.url),
        ),
        Err(e) => (
            HistoryKind::RemediationFailed,
            format!(
                "PATCH {} active=false by {actor} failed: {e}; not retried",
                plan.url
            ),
        ),
    };
    let actor = actor.to_owned();
    ctx_store
        .write(move |tx| history::add(tx, failure_id, now, kind, &actor, Some(&detail)))
        .await?;
    Ok(sent)
}

/// Whether a failure's history already holds a remediation attempt (automatic mode tries once).
pub fn remediated_before(tx: &Tx<'_>, failure_id: i64) -> Result<bool, StoreError> {
    Ok(history::list(tx, failure_id)?.iter().any(|h| {
        matches!(
            h.kind,
            HistoryKind::Remediated | HistoryKind::RemediationFailed
        )
    }))
}

/// One reconciliation of an app: every SCIM user active in the app whose account matches no
/// app user Okta has for an ACTIVE Okta user is an orphan. Returns the stored row.
pub async fn reconcile(
    ctx: &Context,
    client: &ScimClient,
    app_id: &str,
) -> anyhow::Result<Reconciliation> {
    let before = client.requests();
    let okta_users = ctx
        .okta
        .get_all::<crate::okta::types::AppUser>(&crate::okta::client::OktaClient::app_users_url(
            app_id,
        ))
        .await;
    let scim = match okta_users {
        Ok(list) => client
            .list_all()
            .await
            .map(|s| (list, s))
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("listing the app's users in Okta: {e}")),
    };
    let now = ctx.now_ms();
    let requests = (client.requests() - before) as i64;
    let (row, orphans) = match scim {
        Err(error) => (
            Reconciliation {
                app_id: app_id.to_owned(),
                finished_at: now,
                scim_users: 0,
                orphans: 0,
                requests,
                error: Some(error),
            },
            None,
        ),
        Ok((okta, (scim, _malformed))) => {
            let mut ids = HashSet::new();
            let mut names = HashSet::new();
            for au in &okta {
                let okta_active = au
                    .embedded
                    .as_ref()
                    .and_then(|e| e.pointer("/user/status"))
                    .and_then(|v| v.as_str())
                    .is_none_or(|s| {
                        s == "ACTIVE"
                            || s == "PROVISIONED"
                            || s == "RECOVERY"
                            || s == "PASSWORD_EXPIRED"
                            || s == "LOCKED_OUT"
                    });
                if !okta_active || au.status.as_deref() == Some("DEPROVISIONED") {
                    continue;
                }
                if let Some(x) = &au.external_id {
                    ids.insert(x.clone());
                }
                if let Some(n) = au
                    .credentials
                    .as_ref()
                    .and_then(|c| c.get("userName"))
                    .and_then(|v| v.as_str())
                {
                    names.insert(n.to_lowercase());
                }
            }
            let orphans: Vec<(String, Option<String>)> = scim
                .iter()
                .filter(|u| u.is_active())
                .filter(|u| {
                    !ids.contains(&u.id)
                        && !u
                            .user_name
                            .as_deref()
                            .is_some_and(|n| names.contains(&n.to_lowercase()))
                })
                .map(|u| (u.id.clone(), u.user_name.clone()))
                .collect();
            (
                Reconciliation {
                    app_id: app_id.to_owned(),
                    finished_at: now,
                    scim_users: scim.len() as i64,
                    orphans: orphans.len() as i64,
                    requests,
                    error: None,
                },
                Some(orphans),
            )
        }
    };
    let r = row.clone();
    ctx.store
        .write(move |tx| exp::record_reconciliation(tx, &r, orphans.as_deref()))
        .await?;
    Ok(row)
}
