//! Turns one System Log event into an observation of (app, user, operation) with an outcome.
//!
//! Targets are found by `type`, never by position. Unknown event types and malformed events
//! are reported as such (the poller counts and logs them); nothing here panics on odd input.

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
    " or eventType sw \"system.org.rate_limit\""
);

#[derive(Clone, Debug, PartialEq)]
pub enum Classified {
    Observation(Observation),
    /// Org-wide rate-limit pressure (`system.org.rate_limit.*`): logged and counted, not a
    /// failure of any app.
    OrgRateLimit {
        event_type: String,
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
        _ => return None,
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
