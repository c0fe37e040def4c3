//! The fake org's data: apps, users, app assignments, the System Log, and the provisioning
//! engine that pushes users to each app's simulated downstream and logs what happened.
//!
//! Everything here is plain data behind the simulator's mutex; the HTTP layer renders it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::clock::okta_time;
use super::hooks::{EventHook, HookQueue};
use super::ids::{okta_id, random_alnum};
use super::scim::ScimShared;
use super::{DeprovisionMode, Downstream};

/// Okta caps `outcome.reason` at 255 characters (spec `maxLength`).
const REASON_MAX: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    Update,
    Deactivate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Txn {
    /// Background provisioning started inside Okta (assignment, profile change, unassignment).
    Job,
    /// Provisioning triggered by an API request (the retry route).
    Web,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub create: bool,
    pub update: bool,
    pub deactivate: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct App {
    pub id: String,
    pub label: String,
    pub name: String,
    pub active: bool,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub provisioning: Option<Caps>,
    pub downstream: Downstream,
    pub users: BTreeMap<String, AppUser>,
    /// The app's own SCIM 2.0 server, when the test started one: Okta's pushes mirror into it.
    pub scim: Option<Arc<ScimShared>>,
    /// What Okta does (and logs) when it deprovisions a user of this app.
    pub deprovision: DeprovisionMode,
    /// Groups assigned to the app: their members are assigned through them.
    pub groups: BTreeSet<String>,
    /// Group push mappings by id.
    pub group_push: BTreeMap<String, super::tasks::GroupPushMapping>,
    /// `ENABLED`, `DISABLED` or `UNKNOWN` (`/connections/default`).
    pub connection: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub id: String,
    pub login: String,
    pub first: String,
    pub last: String,
    pub email: String,
    pub created: DateTime<Utc>,
    /// `ACTIVE`, `SUSPENDED` or `DEPROVISIONED`.
    pub status: &'static str,
    pub status_changed: DateTime<Utc>,
}

impl User {
    fn display(&self) -> String {
        format!("{} {}", self.first, self.last)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AppUser {
    /// Same as the Okta user id, as in Okta's REST API.
    pub id: String,
    /// The internal `0ua…` id Okta shows in System Log `AppUser` targets.
    pub target_id: String,
    pub external_id: Option<String>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub status: &'static str,
    pub status_changed: DateTime<Utc>,
    pub sync_state: &'static str,
    pub last_sync: Option<DateTime<Utc>>,
    pub user_name: String,
    pub profile: Map<String, Value>,
    /// The operation that failed last and is waiting for a retry.
    pub pending: Option<Op>,
    /// Assigned to the user directly (not only through a group).
    pub direct: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub persisted: DateTime<Utc>,
    pub event: Value,
}

#[derive(Debug)]
pub(crate) struct Org {
    pub base: String,
    pub apps: BTreeMap<String, App>,
    pub users: BTreeMap<String, User>,
    pub events: Vec<StoredEvent>,
    pub groups: BTreeMap<String, super::lifecycle::Group>,
    pub hooks: BTreeMap<String, EventHook>,
    /// Events waiting for the event hook deliverer, by hook.
    pub hook_queue: HookQueue,
    /// Also log `app.user_management.push_new_user_success` after each successful create push.
    pub legacy_success_events: bool,
    pub(crate) counter: u64,
    system_actor_id: String,
    pub(crate) org_id: String,
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn truncate(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    s.chars().take(max).collect()
}

fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('_').to_string();
    if s.is_empty() {
        "app".into()
    } else {
        s
    }
}

impl Org {
    pub(crate) fn new(base: String) -> Org {
        Org {
            base,
            apps: BTreeMap::new(),
            users: BTreeMap::new(),
            events: Vec::new(),
            groups: BTreeMap::new(),
            hooks: BTreeMap::new(),
            hook_queue: HookQueue::default(),
            legacy_success_events: false,
            counter: 0,
            system_actor_id: okta_id("0oa", 0),
            org_id: okta_id("00o", 0),
        }
    }

    pub(crate) fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        okta_id(prefix, self.counter)
    }

    pub(crate) fn add_app(&mut self, label: &str, now: DateTime<Utc>) -> String {
        let id = self.next_id("0oa");
        let name = format!("{}_{}", slug(label), self.counter);
        self.apps.insert(
            id.clone(),
            App {
                id: id.clone(),
                label: label.to_string(),
                name,
                active: true,
                created: now,
                last_updated: now,
                provisioning: Some(Caps {
                    create: true,
                    update: true,
                    deactivate: true,
                }),
                downstream: Downstream::Healthy,
                users: BTreeMap::new(),
                scim: None,
                deprovision: DeprovisionMode::Logged,
                groups: BTreeSet::new(),
                group_push: BTreeMap::new(),
                connection: "ENABLED",
            },
        );
        id
    }

    pub(crate) fn add_user(&mut self, login: &str, now: DateTime<Utc>) -> String {
        let id = self.next_id("00u");
        let local = login.split('@').next().unwrap_or(login);
        let parts: Vec<&str> = local
            .split(['.', '_', '-', '+'])
            .filter(|p| !p.is_empty())
            .collect();
        let first = parts.first().map(|p| capitalize(p)).unwrap_or_default();
        let last = if parts.len() > 1 {
            parts[1..]
                .iter()
                .map(|p| capitalize(p))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            "User".to_string()
        };
        let email = if login.contains('@') {
            login.to_string()
        } else {
            format!("{login}@example.com")
        };
        self.users.insert(
            id.clone(),
            User {
                id: id.clone(),
                login: login.to_string(),
                first: if first.is_empty() {
                    "Sim".into()
                } else {
                    first
                },
                last,
                email,
                created: now,
                status: "ACTIVE",
                status_changed: now,
            },
        );
        id
    }

    /// Creates the assignment (STAGED) and runs the create push. Returns the app user id.
    pub(crate) fn assign(&mut self, app_id: &str, user_id: &str, now: DateTime<Utc>) -> String {
        let target_id = self.next_id("0ua");
        let Some(user) = self.users.get(user_id).cloned() else {
            panic!("okta-sim: assign: unknown user {user_id}");
        };
        let Some(app) = self.apps.get_mut(app_id) else {
            panic!("okta-sim: assign: unknown app {app_id}");
        };
        let mut profile = Map::new();
        profile.insert("email".into(), json!(user.email));
        profile.insert("firstName".into(), json!(user.first));
        profile.insert("lastName".into(), json!(user.last));
        profile.insert("displayName".into(), json!(user.display()));
        app.users.insert(
            user_id.to_string(),
            AppUser {
                id: user_id.to_string(),
                target_id,
                external_id: None,
                created: now,
                last_updated: now,
                status: "STAGED",
                status_changed: now,
                sync_state: "SYNCING",
                last_sync: None,
                user_name: user.login.clone(),
                profile,
                pending: None,
                direct: true,
            },
        );
        self.push(app_id, user_id, Op::Create, now, Txn::Job);
        user_id.to_string()
    }

    /// The operation a retry (app user update) re-runs: a failed deactivation is retried as a
    /// deactivation, a never-provisioned user as a create, anything else as a profile push.
    pub(crate) fn retry_op(au: &AppUser) -> Op {
        match au.pending {
            Some(Op::Deactivate) => Op::Deactivate,
            _ if au.status == "STAGED" => Op::Create,
            _ => Op::Update,
        }
    }

    /// Pushes one operation to the app's downstream, updates the app user and logs the outcome.
    pub(crate) fn push(
        &mut self,
        app_id: &str,
        user_id: &str,
        op: Op,
        now: DateTime<Utc>,
        txn: Txn,
    ) {
        let Some(user) = self.users.get(user_id).cloned() else {
            return;
        };
        let Some(app) = self.apps.get_mut(app_id) else {
            return;
        };
        let label = app.label.clone();
        let Some(au) = app.users.get_mut(user_id) else {
            return;
        };
        au.last_updated = now;

        // An inactive app pushes nothing; an unassignment still takes effect in Okta.
        if !app.active {
            if op == Op::Deactivate {
                app.users.remove(user_id);
            }
            return;
        }
        let Some(caps) = app.provisioning else {
            // SSO-only app: no provisioning, nothing to log.
            match op {
                Op::Create => {
                    au.status = "ACTIVE";
                    au.status_changed = now;
                    au.sync_state = "DISABLED";
                }
                Op::Update => {}
                Op::Deactivate => {
                    app.users.remove(user_id);
                }
            }
            return;
        };

        let cause: Option<String> = match op {
            Op::Create if !caps.create => Some(format!(
                "Could not find a matching user for {} in {label}, and creating users is disabled for this app.",
                user.login
            )),
            Op::Update if !caps.update => return,
            Op::Deactivate if !caps.deactivate => {
                // "Deactivate Users" unticked: Okta drops the assignment without telling the app.
                app.users.remove(user_id);
                return;
            }
            _ => match &app.downstream {
                // A SCIM server that was shut down is an app Okta cannot reach.
                Downstream::Healthy if app.scim.as_ref().is_some_and(|s| s.is_down()) => {
                    Some("Unable to connect to the remote server.".into())
                }
                Downstream::Healthy => None,
                Downstream::Down => Some("Unable to connect to the remote server.".into()),
                Downstream::AuthFailure => Some(
                    "Authentication failed: the remote server rejected the configured credentials (401 Unauthorized).".into(),
                ),
                Downstream::Reject { logins, reason } => {
                    if logins.iter().any(|l| l == &user.login || l == &au.user_name) {
                        Some(reason.clone())
                    } else {
                        None
                    }
                }
            },
        };
        let auth_failure = cause.is_some() && app.downstream == Downstream::AuthFailure;
        let rejected = matches!(app.downstream, Downstream::Reject { .. });

        // The deprovisioning modes model Okta's blind spots: nothing logged at all, or SUCCESS
        // logged while the app was never told (so the app keeps the account active).
        let mut mirror = true;
        if op == Op::Deactivate && cause.is_none() {
            match app.deprovision {
                DeprovisionMode::Logged => {}
                DeprovisionMode::Silent => {
                    app.users.remove(user_id);
                    return;
                }
                DeprovisionMode::SuccessNotPushed => mirror = false,
            }
        }
        // A successful push reaches the app's SCIM server, when it has one; the SCIM id becomes
        // the app user's `externalId`, as Okta records it.
        let scim_id = match (&app.scim, &cause, mirror) {
            (Some(scim), None, true) => {
                scim.mirror(op, au.external_id.as_deref(), &au.user_name, &user)
            }
            _ => None,
        };
        let target_id = au.target_id.clone();
        let app_user_name = au.user_name.clone();
        match (&cause, op) {
            (None, Op::Create) => {
                au.status = "PROVISIONED";
                au.status_changed = now;
                au.external_id = Some(scim_id.unwrap_or_else(|| random_alnum(32).to_lowercase()));
                au.sync_state = "SYNCHRONIZED";
                au.last_sync = Some(now);
                au.pending = None;
            }
            (None, Op::Update) => {
                au.sync_state = "SYNCHRONIZED";
                au.last_sync = Some(now);
                au.pending = None;
            }
            (None, Op::Deactivate) => {
                app.users.remove(user_id);
            }
            (Some(_), Op::Create) => {
                au.status = "STAGED";
                au.sync_state = "ERROR";
                au.pending = Some(Op::Create);
            }
            (Some(_), Op::Update) => {
                au.sync_state = "ERROR";
                au.pending = Some(Op::Update);
            }
            (Some(_), Op::Deactivate) => {
                if au.status != "REVOKED" {
                    au.status = "REVOKED";
                    au.status_changed = now;
                }
                au.sync_state = "ERROR";
                au.pending = Some(Op::Deactivate);
            }
        }

        let display = user.display();
        let reason = cause.map(|c| {
            let full = if rejected && !auth_failure && !c.starts_with("Could not find") {
                // Remote-server rejections are logged verbatim, as Okta relays them.
                c
            } else {
                match op {
                    Op::Create => format!(
                        "Automatic provisioning of user {display} to app {label} failed: Error while creating user {}: {c}",
                        user.login
                    ),
                    Op::Update => format!(
                        "Automatic profile push of user {display} to app {label} failed: Error while pushing profile of user {}: {c}",
                        user.login
                    ),
                    Op::Deactivate => format!(
                        "Automatic deactivation of user {display} in app {label} failed: Error while deactivating user {}: {c}",
                        user.login
                    ),
                }
            };
            truncate(full, REASON_MAX)
        });
        let (event_type, message, legacy) = match op {
            Op::Create => (
                "application.provision.user.push",
                "Push new user to external application",
                "app.user_management.push_new_user",
            ),
            Op::Update => (
                "application.provision.user.push_profile",
                "Push user's profile to external application",
                "app.user_management.push_profile",
            ),
            Op::Deactivate => (
                "application.provision.user.deactivate",
                "Push user deactivation to external application",
                "app.user_management.deactivate_user",
            ),
        };
        let failed = reason.is_some();
        let severity = match (failed, op) {
            (false, _) => "INFO",
            (true, Op::Deactivate) => "ERROR",
            (true, _) => "WARN",
        };
        let legacy = format!("{legacy}{}", if failed { "_failed" } else { "_success" });
        let mut targets = vec![
            json!({"id": app_id, "type": "AppInstance", "alternateId": label, "displayName": label}),
            json!({"id": target_id, "type": "AppUser", "alternateId": app_user_name, "displayName": display}),
            json!({"id": user.id, "type": "User", "alternateId": user.login, "displayName": display}),
        ];
        // Okta does not keep target positions stable: consumers must look targets up by type.
        let n = self.events.len();
        targets.rotate_left(n % 3);
        if (n / 3) % 2 == 1 {
            targets.reverse();
        }
        let txn_id = random_alnum(27);
        let debug = json!({
            "appname": app_name_of(&self.apps, app_id),
            "requestId": txn_id,
            "requestUri": format!("/api/v1/apps/{app_id}/users/{user_id}"),
        });
        self.log_as(
            None,
            event_type,
            message,
            &legacy,
            severity,
            reason.clone(),
            targets,
            txn,
            txn_id.clone(),
            debug.clone(),
            now,
        );
        if auth_failure {
            let t = vec![
                json!({"id": app_id, "type": "AppInstance", "alternateId": label, "displayName": label}),
            ];
            self.log_as(
                None,
                "application.integration.authentication_failure",
                "Error authenticating",
                "app.api.error.authentication_failure",
                "ERROR",
                Some(format!(
                    "Could not authenticate to {label}: the remote server rejected the configured credentials (401 Unauthorized)."
                )),
                t,
                txn,
                txn_id,
                debug.clone(),
                now,
            );
        }
        if self.legacy_success_events && !failed && op == Op::Create {
            let t = vec![
                json!({"id": app_id, "type": "AppInstance", "alternateId": label, "displayName": label}),
                json!({"id": user.id, "type": "User", "alternateId": user.login, "displayName": display}),
            ];
            self.log_as(
                None,
                "app.user_management.push_new_user_success",
                "Successfully pushed new user account to app",
                "app.user_management.push_new_user_success",
                "INFO",
                None,
                t,
                txn,
                random_alnum(27),
                debug,
                now,
            );
        }
    }

    /// Logs one event; `actor` is the admin or client that acted (`None`: Okta System).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log_as(
        &mut self,
        actor: Option<Value>,
        event_type: &str,
        message: &str,
        legacy: &str,
        severity: &str,
        reason: Option<String>,
        targets: Vec<Value>,
        txn: Txn,
        txn_id: String,
        debug: Value,
        now: DateTime<Utc>,
    ) {
        let mut outcome = json!({"result": if reason.is_some() { "FAILURE" } else { "SUCCESS" }});
        if let Some(r) = reason {
            outcome["reason"] = json!(r);
        }
        let actor = actor.unwrap_or_else(|| {
            json!({
                "id": self.system_actor_id,
                "type": "SystemPrincipal",
                "alternateId": "system@okta.com",
                "displayName": "Okta System"
            })
        });
        let mut ev = json!({
            "actor": actor,
            "client": {
                "userAgent": {"rawUserAgent": "UNKNOWN", "os": "Unknown", "browser": "UNKNOWN"},
                "zone": "null",
                "device": "Unknown"
            },
            "authenticationContext": {"authenticationStep": 0, "externalSessionId": format!("trs{}", random_alnum(22))},
            "displayMessage": message,
            "eventType": event_type,
            "outcome": outcome,
            "published": okta_time(now),
            "securityContext": {},
            "severity": severity,
            "debugContext": {"debugData": debug},
            "legacyEventType": legacy,
            "transaction": {
                "type": match txn { Txn::Job => "JOB", Txn::Web => "WEB" },
                "id": txn_id,
                "detail": {}
            },
            "uuid": uuid::Uuid::new_v4().to_string(),
            "version": "0",
            "request": {"ipChain": []},
            "target": targets,
        });
        if legacy.is_empty() {
            // Many newer event types carry no legacy name.
            if let Some(o) = ev.as_object_mut() {
                o.remove("legacyEventType");
            }
        }
        self.push_raw(ev, now);
    }

    /// Persists an event and queues it for every event hook that subscribes to it.
    pub(crate) fn push_raw(&mut self, ev: Value, now: DateTime<Utc>) {
        self.hook_queue.offer(&self.hooks, &ev);
        self.events.push(StoredEvent {
            persisted: now,
            event: ev,
        });
    }
}

fn app_name_of(apps: &BTreeMap<String, App>, id: &str) -> String {
    apps.get(id).map(|a| a.name.clone()).unwrap_or_default()
}
