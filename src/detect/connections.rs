//! App credential/connection failures from the provisioning connection Okta exposes
//! (`GET /api/v1/apps/{id}/connections/default`, `status` ENABLED/DISABLED/UNKNOWN), read on the
//! scan schedule. A provisioning app whose connection is `DISABLED` cannot be provisioned at
//! all: that is one app-wide `integration` failure, which alerts once for the app (the
//! evaluator folds its user failures into it) and opens the app's retry circuit, so its users
//! are not retried one by one until it recovers. Back to `ENABLED` resolves the failure this
//! module opened, and the circuit closes with it. (`application.configuration.update`
//! FAILURE, "couldn't verify API credentials", reaches the same failure row through the
//! classifier.)

use super::DetectError;
use crate::context::Context;
use crate::domain::{Observation, Operation, Source, State};
use crate::okta::types::Application;
use crate::okta::Class;
use crate::store::failures;
use crate::store::{StoreError, Tx};
use serde::Deserialize;

/// The history actor of changes made here.
pub const ACTOR: &str = "scanner:connection";

/// Reason prefix of the failures this module opens (and only those does it resolve: a
/// connection that is ENABLED does not prove credentials or the app's server work).
pub const REASON_PREFIX: &str = "provisioning connection is ";

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Connection {
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub broken: usize,
    pub opened: usize,
    pub resolved: usize,
    pub skipped_apps: usize,
}

/// Applies one app's connection status (read at `fetched_at`).
pub fn apply(
    tx: &Tx<'_>,
    app: &Application,
    status: &str,
    fetched_at: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    let existing = failures::find(tx, &app.id, "", Operation::Integration)?;
    match status {
        "DISABLED" => {
            out.broken += 1;
            if existing.as_ref().is_some_and(|f| {
                f.state == State::Resolved && f.resolved_at.is_some_and(|r| r > fetched_at)
            }) {
                return Ok(());
            }
            let obs = Observation {
                app_id: app.id.clone(),
                app_label: app.label.clone(),
                user_id: String::new(),
                user_login: None,
                operation: Operation::Integration,
                failed: true,
                reason: Some(format!(
                    "{REASON_PREFIX}DISABLED: Okta cannot provision to the app until an admin re-enables the integration (Provisioning > Integration) and its credentials verify"
                )),
                event_uuid: None,
                published_ms: None,
                source: Source::Scan,
            };
            if super::opened(&failures::apply(tx, &obs, fetched_at, ACTOR)?) {
                out.opened += 1;
            }
        }
        "ENABLED" => {
            if let Some(f) = existing.filter(|f| {
                f.state != State::Resolved
                    && f.last_seen <= fetched_at
                    && f.reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(REASON_PREFIX))
            }) {
                if failures::resolve(
                    tx,
                    f.id,
                    fetched_at,
                    Some(fetched_at),
                    ACTOR,
                    "provisioning connection is ENABLED again",
                )? {
                    out.resolved += 1;
                }
            }
        }
        // UNKNOWN: the app type does not expose its connection; nothing to judge.
        _ => {}
    }
    Ok(())
}

/// Reads and applies the connection of every watched app.
pub async fn scan(ctx: &Context, apps: &[Application]) -> Result<Outcome, DetectError> {
    let mut out = Outcome::default();
    for app in apps {
        let enc: String = url::form_urlencoded::byte_serialize(app.id.as_bytes()).collect();
        let fetched_at = ctx.now_ms();
        // Bucket Apps, class Scan; reason: a disabled provisioning connection fails every push
        // of the app and is the Tasks page's app-level entry; one call per app per scan.
        let answer = ctx
            .okta
            .get_json_with::<Connection>(
                Class::Scan,
                &format!("/api/v1/apps/{enc}/connections/default"),
            )
            .await;
        let Some(conn) = super::app_answer(
            answer,
            &app.id,
            "no provisioning connection readable for this app",
            &mut out.skipped_apps,
        )?
        else {
            continue;
        };
        let status = conn.status.unwrap_or_default();
        let app = app.clone();
        let r: Outcome =
            super::apply_for_app(ctx, move |tx, o| apply(tx, &app, &status, fetched_at, o)).await?;
        out.broken += r.broken;
        out.opened += r.opened;
        out.resolved += r.resolved;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::test_app as app;
    use crate::store::Store;

    #[test]
    fn disabled_opens_one_app_wide_failure_and_enabled_resolves_only_its_own() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let mut o = Outcome::default();
            apply(tx, &app(), "DISABLED", 1_000, &mut o)?;
            apply(tx, &app(), "DISABLED", 2_000, &mut o)?;
            assert_eq!(o.opened, 1);
            let f = failures::find(tx, "0oa1", "", Operation::Integration)?.unwrap();
            assert!(f.urgent && f.user_id.is_empty());
            apply(tx, &app(), "UNKNOWN", 3_000, &mut o)?;
            apply(tx, &app(), "ENABLED", 4_000, &mut o)?;
            assert_eq!(o.resolved, 1);
            // An integration failure Okta reported (credentials) is not the connection's to
            // resolve.
            let creds = Observation {
                reason: Some("Okta couldn't verify api credentials".into()),
                ..Observation::failure("0oa1", "", Operation::Integration)
            };
            failures::apply(tx, &creds, 5_000, "poller")?;
            apply(tx, &app(), "ENABLED", 6_000, &mut o)?;
            assert_eq!(o.resolved, 1);
            Ok(())
        })
        .unwrap();
    }
}
