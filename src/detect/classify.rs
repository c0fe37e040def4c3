//! Turns one System Log event into an observation of (app, user, operation) with an outcome.
//!
//! Targets are found by `type`, never by position. Unknown event types and malformed events
//! are reported as such (the poller counts and logs them); nothing here panics on odd input.
//!
//! About 490 of its lines are unit tests, kept beside the code they pin.

use crate::domain::{Observation, Operation, Source};
use crate::okta::types::LogEvent;

/// The System Log filter the poller sends, so that idle polls stay cheap: only the event types
/// that can report provisioning trouble.
pub const LOG_FILTER: &str = concat!(
    "eventType sw \"application.provision.user\"",
    " or eventType sw \"application.provision.group\"",
    " or eventType sw \"application.integration.\"",
    " or eventType eq \"app.user_management.update_from_master_failed\"",
    " or eventType eq \"app.app_instance.provision_sync_job.failed\"",
    " or eventType sw \"system.org.rate_limit\"",
    // Deprovisioning ledger (issue 13): see `classify_lifecycle` below.
    " or eventType eq \"user.lifecycle.deactivate\"",
    " or eventType eq \"user.lifecycle.suspend\"",
    " or eventType eq \"application.user_membership.remove\"",
    " or eventType eq \"application.lifecycle.update\"",
    // A profile change re-arms the one retry of a data error (retry::classes).
    " or eventType eq \"user.account.update_profile\"",
    // Wider detection (issue 14): credentials, sync jobs, imports, success signals, hook health.
    " or eventType eq \"application.configuration.update\"",
    " or eventType sw \"app.user_management.\"",
    " or eventType sw \"app.app_instance.provision_sync_job.\"",
    " or eventType eq \"event_hook.delivery\""
);

/// A user's Okta profile changed: a failure the app rejected for the user's data may go
/// through now, so the retry worker retries such failures once after it.
pub const PROFILE_UPDATE: &str = "user.account.update_profile";

#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    Observation(Observation),
    /// Org-wide rate-limit pressure (`system.org.rate_limit.*`): logged and counted, not a
    /// failure of any app.
    OrgRateLimit {
        event_type: String,
    },
    /// A user's Okta profile changed ([`PROFILE_UPDATE`]).
    ProfileChanged {
        user_id: String,
        published_ms: i64,
    },
    /// An outcome that says nothing about success or failure (SKIPPED, DEFERRED, ...).
    NoOutcome,
    /// A type the filter let through that we do not model.
    Unknown {
        event_type: String,
    },
    Malformed {
        why: String,
    },
}

/// Which operation an event type reports, and whether it concerns the whole app.
pub fn operation_for(event_type: &str) -> Option<(Operation, Scope)> {
    use Operation::*;
    use Scope::*;
    let op = match event_type {
        "application.provision.user.push" | "application.provision.user.verify_exists" => {
            (Create, User)
        }
        "application.provision.user.push_profile" | "application.provision.user.sync" => {
            (Update, User)
        }
        "application.provision.user.deactivate"
        | "application.provision.user.deprovision"
        | "application.provision.user.delete"
        | "application.provision.user.remove_entitlements" => (Deactivate, User),
        "application.provision.user.reactivate" | "application.provision.user.activate" => {
            (Reactivate, User)
        }
        "application.provision.user.password"
        | "application.provision.user.push_password"
        | "application.provision.user.push_okta_password" => (Password, User),
        "application.provision.user.import"
        | "application.provision.user.import_profile"
        | "app.user_management.update_from_master_failed" => (Import, User),
        "app.app_instance.provision_sync_job.failed" => (Integration, App),
        t if t.starts_with("application.integration.") => (Integration, App),
        t if t.starts_with("application.provision.group") => (GroupPush, Group),
        t => return wider_operation_for(t),
    };
    Some(op)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    User,
    Group,
    App,
}

/// Event types whose name is itself the failure, whatever `outcome.result` says. Every
/// `application.integration.*` type reports an error (`api_query` is "Unable to query remote
/// API", `transfer_files` "Unable to transfer files"): none of them may resolve anything.
fn type_means_failure(t: &str) -> bool {
    t.starts_with("application.integration.")
        || t.ends_with("_failure")
        || t.ends_with("_failed")
        || t.ends_with(".failed")
        || t.ends_with("failed.with.error")
        || t.ends_with("rate_limit_exceeded")
}

pub fn published_ms(ev: &LogEvent) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&ev.published)
        .ok()
        .map(|d| d.timestamp_millis())
}

pub fn classify(ev: &LogEvent) -> Classified {
    if ev.event_type == PROFILE_UPDATE {
        let user = ev.target("User").and_then(|t| t.id.clone());
        return match (user, published_ms(ev)) {
            (Some(user_id), Some(published_ms)) if ev.result() != Some("FAILURE") => {
                Classified::ProfileChanged {
                    user_id,
                    published_ms,
                }
            }
            (Some(_), Some(_)) => Classified::NoOutcome,
            (None, _) => Classified::Malformed {
                why: "profile update without a User target".into(),
            },
            (_, None) => Classified::Malformed {
                why: format!("unparseable published {:?}", ev.published),
            },
        };
    }
    if let Some(c) = wider_classify(ev) {
        return c;
    }
    if ev.event_type.starts_with("system.org.rate_limit") {
        return Classified::OrgRateLimit {
            event_type: ev.event_type.clone(),
        };
    }
    let Some((operation, scope)) = operation_for(&ev.event_type) else {
        return Classified::Unknown {
            event_type: ev.event_type.clone(),
        };
    };
    let Some(published) = published_ms(ev) else {
        return Classified::Malformed {
            why: format!("unparseable published {:?}", ev.published),
        };
    };
    let failed = if type_means_failure(&ev.event_type) {
        true
    } else {
        match ev.result() {
            Some("FAILURE") => true,
            Some("SUCCESS") => false,
            Some(_) => return Classified::NoOutcome,
            None => {
                return Classified::Malformed {
                    why: "no outcome.result".into(),
                }
            }
        }
    };
    let Some(app) = ev.target_with_id("AppInstance") else {
        return Classified::Malformed {
            why: "no AppInstance target".into(),
        };
    };
    let (user_id, user_login) = match scope {
        Scope::App => (String::new(), None),
        Scope::User => {
            let Some(u) = ev
                .target_with_id("User")
                .or_else(|| ev.target_with_id("AppUser"))
            else {
                return Classified::Malformed {
                    why: "no User target".into(),
                };
            };
            (u.id.clone().unwrap_or_default(), u.alternate_id.clone())
        }
        Scope::Group => {
            let Some(g) = ev
                .target_with_id("UserGroup")
                .or_else(|| ev.target_with_id("Group"))
                .or_else(|| ev.target_with_id("AppGroup"))
            else {
                return Classified::Malformed {
                    why: "no group target".into(),
                };
            };
            (
                g.id.clone().unwrap_or_default(),
                g.display_name.clone().or_else(|| g.alternate_id.clone()),
            )
        }
    };
    let reason = ev.reason().map(str::to_owned).or_else(|| {
        if failed {
            ev.display_message.clone()
        } else {
            None
        }
    });
    Classified::Observation(Observation {
        app_id: app.id.clone().unwrap_or_default(),
        app_label: app
            .display_name
            .clone()
            .or_else(|| app.alternate_id.clone()),
        user_id,
        user_login,
        operation,
        failed,
        reason,
        event_uuid: Some(ev.uuid.clone()),
        published_ms: Some(published),
        source: Source::Log,
    })
}

// ---- Deprovisioning ledger (issue 13): lifecycle, membership and settings events -------------
//
// These events report no provisioning outcome; they say a deprovisioning is now *owed*
// (a user deactivated, suspended or unassigned) or that an app's outbound provisioning
// settings changed. `crate::deprovision::ledger` turns them into expectations and the
// switched-off alarm. Unassignments through a group arrive as `application.user_membership.remove`
// by Okta System after the `group.user_membership.remove`, so the group event is not needed.

/// A lifecycle, membership or settings event the deprovisioning ledger acts on.
#[derive(Clone, Debug, PartialEq)]
pub enum Lifecycle {
    /// The Okta user was deactivated (or suspended): every app where they have an app user
    /// owes a deprovisioning.
    UserOff(LifecycleEvent),
    /// The user was unassigned from one app.
    Unassigned(LifecycleEvent),
    /// An app's outbound provisioning settings changed (`None`: the event did not say).
    SettingsChanged {
        ev: LifecycleEvent,
        provisioning: Option<bool>,
        deactivate: Option<bool>,
    },
}

/// What every ledger event carries.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LifecycleEvent {
    pub event_type: String,
    pub uuid: String,
    pub published_ms: i64,
    /// The admin (or "Okta System") who did it: login, else display name, else id.
    pub actor: Option<String>,
    /// Empty for settings changes.
    pub user_id: String,
    pub user_login: Option<String>,
    /// Empty for a user deactivation (the apps come from the ledger's own records).
    pub app_id: String,
    pub app_label: Option<String>,
    /// The user name in the app (the AppUser target of an unassignment).
    pub app_user_name: Option<String>,
}

/// `None` for events the ledger does not handle; `Some(Err(why))` for a malformed one.
pub fn classify_lifecycle(ev: &LogEvent) -> Option<Result<Lifecycle, String>> {
    let t = ev.event_type.as_str();
    if !matches!(
        t,
        "user.lifecycle.deactivate"
            | "user.lifecycle.suspend"
            | "application.user_membership.remove"
            | "application.lifecycle.update"
    ) {
        return None;
    }
    // A lifecycle change that failed changed nothing.
    if ev.result().is_some_and(|r| r != "SUCCESS") {
        return Some(Err(format!("outcome {}", ev.result().unwrap_or(""))));
    }
    let Some(published_ms) = published_ms(ev) else {
        return Some(Err(format!("unparseable published {:?}", ev.published)));
    };
    let actor = ev.actor.as_ref().and_then(|a| {
        a.alternate_id
            .clone()
            .or_else(|| a.display_name.clone())
            .or_else(|| a.id.clone())
    });
    let mut base = LifecycleEvent {
        event_type: t.to_owned(),
        uuid: ev.uuid.clone(),
        published_ms,
        actor,
        ..Default::default()
    };
    let user = ev.target("User").filter(|u| u.id.is_some());
    let app = ev.target("AppInstance").filter(|a| a.id.is_some());
    if let Some(u) = user {
        base.user_id = u.id.clone().unwrap_or_default();
        base.user_login = u.alternate_id.clone();
    }
    if let Some(a) = app {
        base.app_id = a.id.clone().unwrap_or_default();
        base.app_label = a.display_name.clone().or_else(|| a.alternate_id.clone());
    }
    base.app_user_name = ev.target("AppUser").and_then(|a| a.alternate_id.clone());
    Some(match t {
        "user.lifecycle.deactivate" | "user.lifecycle.suspend" if user.is_some() => {
            Ok(Lifecycle::UserOff(base))
        }
        "application.user_membership.remove" if user.is_some() && app.is_some() => {
            Ok(Lifecycle::Unassigned(base))
        }
        "application.lifecycle.update" if app.is_some() => {
            let to = app
                .and_then(|a| a.change_details.as_ref())
                .and_then(|d| d.get("to"));
            let flag = |k: &str| {
                to.and_then(|t| t.get(k))
                    .and_then(|v| v.as_str())
                    .map(|s| s.eq_ignore_ascii_case("ENABLED"))
            };
            let provisioning = flag("USER_PROVISIONING");
            // Provisioning off as a whole means nothing is deactivated either.
            let deactivate = match provisioning {
                Some(false) => Some(false),
                _ => flag("lifecycleDeactivate"),
            };
            Ok(Lifecycle::SettingsChanged {
                ev: base,
                provisioning,
                deactivate,
            })
        }
        _ => Err("no User or AppInstance target".to_owned()),
    })
}

// ------------------------------------------------------------------------------------------
// Wider detection (issue 14): the Tasks-page kinds beyond assignment errors, success signals the
// original filter missed, and event hook delivery failures. Kept in one block so that other
// additions to this file (deprovisioning kinds) stay apart.

/// `application.configuration.update` logged as FAILURE: "Okta couldn't verify API
/// credentials" for the app. The same type with SUCCESS is an ordinary settings change.
pub const CREDENTIALS_EVENT: &str = "application.configuration.update";

/// Okta's own event for an event hook delivery it gave up on.
pub const HOOK_DELIVERY_EVENT: &str = "event_hook.delivery";

/// Operations of the event types added by issue 14 (called by [`operation_for`] for types it
/// does not know).
fn wider_operation_for(event_type: &str) -> Option<(Operation, Scope)> {
    use Operation::*;
    use Scope::*;
    Some(match event_type {
        // Credentials the app refuses, a sync job that failed or completed: the integration
        // itself, one app-wide failure that pauses the app's retries (its circuit).
        CREDENTIALS_EVENT | "app.app_instance.provision_sync_job.completed" => (Integration, App),
        // Success signal of a create push that older filters missed.
        "app.user_management.push_new_user_success" => (Create, User),
        // Imports that failed for the app as a whole (a group import, a CSV line).
        "app.user_management.user_group_import.upsert_fail"
        | "app.user_management.user_group_import.create_failure"
        | "app.user_management.user_group_import.update_failure"
        | "app.user_management.import.csv.line.error" => (Import, App),
        _ => return None,
    })
}

/// Classifications decided before the general rules: outcomes that must not count as failures
/// or successes although their type is modelled.
fn wider_classify(ev: &LogEvent) -> Option<Classified> {
    match ev.event_type.as_str() {
        // A settings change that went through says nothing about the integration's health.
        CREDENTIALS_EVENT if ev.result() != Some("FAILURE") => Some(Classified::NoOutcome),
        // "Will be retried" by Okta itself: transient, not a task for anyone (its sibling
        // `...failed.with.error` is the one that needs an admin).
        "application.provision.group_push.mapping.update.or.delete.failed" => {
            Some(Classified::NoOutcome)
        }
        _ => None,
    }
}

/// An `event_hook.delivery` event: Okta gave up delivering to a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookDeliveryFailure {
    pub hook_id: Option<String>,
    /// The hook's URI (Okta puts it in the target's `alternateId`).
    pub uri: Option<String>,
    pub reason: String,
}

/// Reads an `event_hook.delivery` event; `None` for any other event.
pub fn hook_delivery_failure(ev: &LogEvent) -> Option<HookDeliveryFailure> {
    if ev.event_type != HOOK_DELIVERY_EVENT || ev.result() == Some("SUCCESS") {
        return None;
    }
    let hook = ev.target("EventHook");
    Some(HookDeliveryFailure {
        hook_id: hook.and_then(|t| t.id.clone()),
        uri: hook.and_then(|t| t.alternate_id.clone()),
        reason: ev
            .reason()
            .or(ev.display_message.as_deref())
            .unwrap_or("Okta reports a failed event hook delivery")
            .to_string(),
    })
}

#[cfg(test)]
mod lifecycle_tests {
    use super::*;
    use serde_json::json;

    fn ev(v: serde_json::Value) -> LogEvent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn user_deactivation_names_user_and_actor() {
        let e = ev(json!({
            "uuid": "e1", "published": "2026-11-20T10:00:00Z", "eventType": "user.lifecycle.deactivate",
            "outcome": {"result": "SUCCESS"},
            "actor": {"id": "00uA", "type": "User", "alternateId": "hr.admin@x", "displayName": "HR"},
            "target": [{"id": "00u1", "type": "User", "alternateId": "ada@x"}]
        }));
        let Some(Ok(Lifecycle::UserOff(l))) = classify_lifecycle(&e) else {
            panic!()
        };
        assert_eq!(l.user_id, "00u1");
        assert_eq!(l.user_login.as_deref(), Some("ada@x"));
        assert_eq!(l.actor.as_deref(), Some("hr.admin@x"));
        assert!(l.app_id.is_empty());
    }

    #[test]
    fn unassignment_and_settings_change() {
        let e = ev(json!({
            "uuid": "e2", "published": "2026-11-20T10:00:00Z", "eventType": "application.user_membership.remove",
            "outcome": {"result": "SUCCESS"},
            "target": [
                {"id": "0ua1", "type": "AppUser", "alternateId": "ADA@X"},
                {"id": "0oa1", "type": "AppInstance", "displayName": "CRM"},
                {"id": "00u1", "type": "User", "alternateId": "ada@x"}
            ]
        }));
        let Some(Ok(Lifecycle::Unassigned(l))) = classify_lifecycle(&e) else {
            panic!()
        };
        assert_eq!(
            (l.app_id.as_str(), l.app_user_name.as_deref()),
            ("0oa1", Some("ADA@X"))
        );

        let e = ev(json!({
            "uuid": "e3", "published": "2026-11-20T10:00:00Z", "eventType": "application.lifecycle.update",
            "outcome": {"result": "SUCCESS"},
            "actor": {"id": "00uA", "type": "User", "alternateId": "it.admin@x"},
            "target": [{"id": "0oa1", "type": "AppInstance", "displayName": "CRM",
                "changeDetails": {"from": {"USER_PROVISIONING": "ENABLED", "lifecycleDeactivate": "ENABLED"},
                                  "to": {"USER_PROVISIONING": "ENABLED", "lifecycleDeactivate": "DISABLED"}}}]
        }));
        let Some(Ok(Lifecycle::SettingsChanged {
            provisioning,
            deactivate,
            ev: l,
        })) = classify_lifecycle(&e)
        else {
            panic!()
        };
        assert_eq!((provisioning, deactivate), (Some(true), Some(false)));
        assert_eq!(l.actor.as_deref(), Some("it.admin@x"));

        // Provisioning off entirely implies no deactivation; no details: unknown.
        let mut e2 = e.clone();
        e2.target.as_mut().unwrap()[0].change_details =
            Some(json!({"to": {"USER_PROVISIONING": "DISABLED"}}));
        let Some(Ok(Lifecycle::SettingsChanged { deactivate, .. })) = classify_lifecycle(&e2)
        else {
            panic!()
        };
        assert_eq!(deactivate, Some(false));
        e2.target.as_mut().unwrap()[0].change_details = None;
        let Some(Ok(Lifecycle::SettingsChanged {
            provisioning,
            deactivate,
            ..
        })) = classify_lifecycle(&e2)
        else {
            panic!()
        };
        assert_eq!((provisioning, deactivate), (None, None));
    }

    #[test]
    fn failed_or_targetless_events_are_errors_and_others_are_not_ours() {
        let e = ev(json!({
            "uuid": "e4", "published": "2026-11-20T10:00:00Z", "eventType": "user.lifecycle.deactivate",
            "outcome": {"result": "FAILURE"}, "target": [{"id": "00u1", "type": "User"}]
        }));
        assert!(matches!(classify_lifecycle(&e), Some(Err(_))));
        let e = ev(json!({
            "uuid": "e5", "published": "2026-11-20T10:00:00Z", "eventType": "application.user_membership.remove",
            "outcome": {"result": "SUCCESS"}, "target": []
        }));
        assert!(matches!(classify_lifecycle(&e), Some(Err(_))));
        let e = ev(json!({
            "uuid": "e6", "published": "2026-11-20T10:00:00Z", "eventType": "application.provision.user.push",
            "outcome": {"result": "SUCCESS"}, "target": []
        }));
        assert!(classify_lifecycle(&e).is_none());
    }
}

#[cfg(test)]
mod wider_tests {
    use super::*;
    use serde_json::json;

    fn app_event(t: &str, result: &str, extra: Vec<serde_json::Value>) -> LogEvent {
        let mut target = vec![json!({"id": "0oa9", "type": "AppInstance", "displayName": "Zoom"})];
        target.extend(extra);
        serde_json::from_value(json!({
            "uuid": "w1", "published": "2026-11-20T10:00:00Z", "eventType": t,
            "outcome": {"result": result, "reason": "bad token"}, "target": target
        }))
        .unwrap()
    }

    #[test]
    fn credentials_and_sync_jobs_are_app_wide() {
        for t in [
            CREDENTIALS_EVENT,
            "app.app_instance.provision_sync_job.failed",
        ] {
            let Classified::Observation(o) = classify(&app_event(t, "FAILURE", vec![])) else {
                panic!("{t}")
            };
            assert_eq!(
                (o.operation, o.user_id.as_str(), o.failed),
                (Operation::Integration, "", true)
            );
        }
        assert_eq!(
            classify(&app_event(CREDENTIALS_EVENT, "SUCCESS", vec![])),
            Classified::NoOutcome
        );
        let Classified::Observation(o) = classify(&app_event(
            "app.app_instance.provision_sync_job.completed",
            "SUCCESS",
            vec![],
        )) else {
            panic!()
        };
        assert!(!o.failed && o.operation == Operation::Integration);
    }

    #[test]
    fn group_push_errors_success_signals_and_imports() {
        let g = json!({"id": "00g1", "type": "UserGroup", "displayName": "Sales"});
        let Classified::Observation(o) = classify(&app_event(
            "application.provision.group_push.mapping.update.or.delete.failed.with.error",
            "FAILURE",
            vec![g.clone()],
        )) else {
            panic!()
        };
        assert_eq!(
            (o.operation, o.user_id.as_str()),
            (Operation::GroupPush, "00g1")
        );
        assert_eq!(o.reason.as_deref(), Some("bad token"));
        assert_eq!(
            classify(&app_event(
                "application.provision.group_push.mapping.update.or.delete.failed",
                "FAILURE",
                vec![g]
            )),
            Classified::NoOutcome
        );
        let u = json!({"id": "00u1", "type": "User", "alternateId": "ann@acme"});
        let Classified::Observation(o) = classify(&app_event(
            "app.user_management.push_new_user_success",
            "SUCCESS",
            vec![u],
        )) else {
            panic!()
        };
        assert_eq!((o.operation, o.failed), (Operation::Create, false));
        let Classified::Observation(o) = classify(&app_event(
            "app.user_management.user_group_import.upsert_fail",
            "FAILURE",
            vec![],
        )) else {
            panic!()
        };
        assert_eq!((o.operation, o.user_id.as_str()), (Operation::Import, ""));
    }

    #[test]
    fn hook_delivery_failures_name_the_hook() {
        let mut e = app_event(HOOK_DELIVERY_EVENT, "FAILURE", vec![]);
        e.target = Some(vec![serde_json::from_value(
            json!({"id": "who1", "type": "EventHook", "alternateId": "https://x/okta/events"}),
        )
        .unwrap()]);
        let f = hook_delivery_failure(&e).unwrap();
        assert_eq!(f.hook_id.as_deref(), Some("who1"));
        assert_eq!(f.reason, "bad token");
        assert!(hook_delivery_failure(&app_event(CREDENTIALS_EVENT, "FAILURE", vec![])).is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: serde_json::Value) -> LogEvent {
        serde_json::from_value(v).unwrap()
    }

    fn push(event_type: &str, result: &str) -> LogEvent {
        ev(json!({
            "uuid": "e1", "published": "2026-11-20T10:00:00.123Z", "eventType": event_type,
            "outcome": {"result": result, "reason": "Errors reported by remote server: department is required"},
            "target": [
                {"id": "0ua1", "type": "AppUser", "alternateId": "ann@acme"},
                {"id": "0oa9", "type": "AppInstance", "alternateId": "Salesforce", "displayName": "Salesforce.com"},
                {"id": "00u1", "type": "User", "alternateId": "ann@acme", "displayName": "Ann"}
            ]
        }))
    }

    #[test]
    fn user_push_failure() {
        let Classified::Observation(o) =
            classify(&push("application.provision.user.push", "FAILURE"))
        else {
            panic!()
        };
        assert_eq!(o.operation, Operation::Create);
        assert!(o.failed);
        assert_eq!(o.app_id, "0oa9");
        assert_eq!(o.app_label.as_deref(), Some("Salesforce.com"));
        assert_eq!(o.user_id, "00u1");
        assert_eq!(o.user_login.as_deref(), Some("ann@acme"));
        assert_eq!(o.published_ms, Some(1_795_168_800_123));
        assert!(o.reason.unwrap().contains("department is required"));
    }

    #[test]
    fn operations_by_type() {
        for (t, op) in [
            ("application.provision.user.push_profile", Operation::Update),
            ("application.provision.user.sync", Operation::Update),
            (
                "application.provision.user.deactivate",
                Operation::Deactivate,
            ),
            (
                "application.provision.user.deprovision",
                Operation::Deactivate,
            ),
            ("application.provision.user.delete", Operation::Deactivate),
            (
                "application.provision.user.remove_entitlements",
                Operation::Deactivate,
            ),
            (
                "application.provision.user.reactivate",
                Operation::Reactivate,
            ),
            (
                "application.provision.user.push_password",
                Operation::Password,
            ),
        ] {
            let Classified::Observation(o) = classify(&push(t, "SUCCESS")) else {
                panic!("{t}")
            };
            assert_eq!(o.operation, op, "{t}");
            assert!(!o.failed);
        }
    }

    #[test]
    fn integration_errors_are_app_wide_failures() {
        let e = ev(json!({
            "uuid": "e2", "published": "2026-11-20T10:00:00Z",
            "eventType": "application.integration.authentication_failure",
            "outcome": {"result": "SUCCESS"},
            "target": [{"id": "0oa9", "type": "AppInstance", "displayName": "Zoom"}]
        }));
        let Classified::Observation(o) = classify(&e) else {
            panic!()
        };
        assert_eq!(o.operation, Operation::Integration);
        assert!(o.failed);
        assert_eq!(o.user_id, "");
    }

    /// These types are failures by name; Okta may log them with `outcome.result` SUCCESS, which
    /// must not resolve an open failure of the app.
    #[test]
    fn failure_named_types_never_resolve() {
        for t in [
            "application.integration.api_query",
            "application.integration.transfer_files",
            "app.user_management.update_from_master_failed",
        ] {
            let Classified::Observation(o) = classify(&push(t, "SUCCESS")) else {
                panic!("{t}")
            };
            assert!(o.failed, "{t}");
        }
    }

    #[test]
    fn odd_events_are_reported_not_fatal() {
        let mut e = push("application.provision.user.push", "FAILURE");
        e.target = Some(vec![]);
        assert!(matches!(classify(&e), Classified::Malformed { .. }));
        let mut e = push("application.provision.user.push", "FAILURE");
        e.published = "yesterday".into();
        assert!(matches!(classify(&e), Classified::Malformed { .. }));
        let e = push("user.session.start", "SUCCESS");
        assert!(matches!(classify(&e), Classified::Unknown { .. }));
        let e = push("application.provision.user.push", "SKIPPED");
        assert_eq!(classify(&e), Classified::NoOutcome);
        let e = push("system.org.rate_limit.warning", "SUCCESS");
        assert!(matches!(classify(&e), Classified::OrgRateLimit { .. }));
    }
}

/// Property tests (issue 10): the classifier over arbitrary `LogEvent` JSON.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// Every event type the classifier models for one user, plus some it must not.
    const USER_TYPES: &[&str] = &[
        "application.provision.user.push",
        "application.provision.user.verify_exists",
        "application.provision.user.push_profile",
        "application.provision.user.sync",
        "application.provision.user.deactivate",
        "application.provision.user.deprovision",
        "application.provision.user.delete",
        "application.provision.user.remove_entitlements",
        "application.provision.user.reactivate",
        "application.provision.user.activate",
        "application.provision.user.password",
        "application.provision.user.push_password",
        "application.provision.user.push_okta_password",
        "application.provision.user.import",
        "application.provision.user.import_profile",
        "app.user_management.update_from_master_failed",
    ];

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            ".{0,16}".prop_map(Value::String),
            prop::sample::select(vec![
                "User",
                "AppUser",
                "AppInstance",
                "UserGroup",
                "FAILURE",
                "SUCCESS",
                "SKIPPED"
            ])
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "id",
                        "type",
                        "alternateId",
                        "displayName",
                        "result",
                        "reason",
                        "x"
                    ])
                    .prop_map(String::from),
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Event-shaped JSON with any field any shape: whatever serde makes of it.
    fn event_json() -> impl Strategy<Value = Value> {
        (
            prop::option::of(".{0,8}"),
            prop::option::of(prop_oneof![
                Just("2026-11-20T10:00:00.123Z".to_string()),
                ".{0,30}"
            ]),
            prop::option::of(prop_oneof![
                prop::sample::select(USER_TYPES.to_vec()).prop_map(String::from),
                Just("application.integration.api_query".to_string()),
                Just("application.provision.group_push.push".to_string()),
                Just("system.org.rate_limit.warning".to_string()),
                ".{0,40}"
            ]),
            prop::option::of(any_json()),
            prop::option::of(any_json()),
            prop::option::of(any_json()),
        )
            .prop_map(|(uuid, published, event_type, outcome, target, debug)| {
                let mut m = serde_json::Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.to_string(), v);
                    }
                };
                put("uuid", uuid.map(Value::String));
                put("published", published.map(Value::String));
                put("eventType", event_type.map(Value::String));
                put("outcome", outcome);
                put("target", target);
                put("debugContext", debug);
                Value::Object(m)
            })
    }

    proptest! {
        /// No JSON makes the classifier panic, and whatever it returns is consistent with the
        /// event: an observation names the event's app target and uuid.
        #[test]
        fn never_panics(v in event_json()) {
            if let Ok(ev) = serde_json::from_value::<LogEvent>(v) {
                if let Classified::Observation(obs) = classify(&ev) {
                    prop_assert_eq!(obs.event_uuid.as_deref(), Some(ev.uuid.as_str()));
                    let app = ev.target_with_id("AppInstance").and_then(|t| t.id.clone());
                    prop_assert_eq!(Some(obs.app_id.clone()), app);
                }
            }
        }

        /// A well-formed failure event (a modelled user type, a parseable time, FAILURE, an
        /// AppInstance and a User target in any order, any extra targets) always yields a
        /// failed observation of that app and user.
        #[test]
        fn well_formed_failures_always_observe(
            event_type in prop::sample::select(USER_TYPES.to_vec()),
            app in "0oa[a-zA-Z0-9]{1,17}",
            user in "00u[a-zA-Z0-9]{1,17}",
            login in prop::option::of("[a-z]{1,8}@[a-z]{1,8}\\.example"),
            reason in prop::option::of(".{0,64}"),
            extra in prop::collection::vec(any_json(), 0..3),
            app_first in any::<bool>(),
            user_type in prop::sample::select(vec!["User", "AppUser"]),
        ) {
            let app_t = json!({"id": app, "type": "AppInstance", "displayName": "Sales"});
            let user_t = json!({"id": user, "type": user_type, "alternateId": login});
            let mut targets: Vec<Value> = extra
                .into_iter()
                .filter(|t| !matches!(t.get("type").and_then(Value::as_str), Some("AppInstance" | "User" | "AppUser")))
                .collect();
            if app_first {
                targets.insert(0, user_t);
                targets.insert(0, app_t);
            } else {
                targets.push(user_t);
                targets.push(app_t);
            }
            let v = json!({
                "uuid": "e1", "published": "2026-11-20T10:00:00.123Z", "eventType": event_type,
                "outcome": {"result": "FAILURE", "reason": reason},
                "target": targets,
            });
            // Targets of other shapes may not deserialize as targets: then the page's
            // lenient parse skips the event as malformed, which another property covers.
            let Ok(ev) = serde_json::from_value::<LogEvent>(v) else { return Ok(()) };
            match classify(&ev) {
                Classified::Observation(obs) => {
                    prop_assert!(obs.failed);
                    prop_assert_eq!(obs.app_id, app);
                    prop_assert_eq!(obs.user_id, user);
                    prop_assert_eq!(obs.operation, operation_for(event_type).unwrap().0);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
