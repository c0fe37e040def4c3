//! Okta Event Hooks: the Management API (`/api/v1/eventHooks`: create, get, list, replace,
//! delete, `lifecycle/activate|deactivate|verify`, in the spec's `EventHook` shape) and the
//! deliverer, which behaves as Okta documents: a one-time verification `GET` with
//! `X-Okta-Verification-Challenge`; events for ACTIVE and VERIFIED hooks only, `POST`ed as
//! `{"eventType": "com.okta.event_hook", "data": {"events": [...]}, ...}` with the configured
//! headers and auth header; 3 s timeout, one retry, no retry on a 4xx; failed deliveries logged
//! as `event_hook.delivery`. Knobs (see [`HookDeliveryKnobs`]) duplicate, reorder (seeded) or
//! hold deliveries, since Okta promises only at-least-once, unordered delivery.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::clock::okta_time;
use super::errors::{self, Reply};
use super::ids::random_alnum;
use super::Inner;

/// Okta's delivery timeout.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// Event types a hook may subscribe to here: the provisioning-related types tagged
/// `event-hook-eligible` in Okta's catalog (event-types.csv). Anything else is refused at
/// creation, as Okta refuses ineligible types.
pub const ELIGIBLE_EVENT_TYPES: &[&str] = &[
    "app.user_management",
    "app.user_management.user_group_import.upsert_success",
    "application.account.decision.confirm",
    "application.account.decision.ignore",
    "application.account.decision.revoke",
    "application.account.detect",
    "application.account.match.update",
    "application.account.remove",
    "application.lifecycle.activate",
    "application.lifecycle.create",
    "application.lifecycle.deactivate",
    "application.lifecycle.delete",
    "application.lifecycle.update",
    "application.policy.sign_on.deny_access",
    "application.provision.group_push.mapping.update.or.delete.failed.with.error",
    "application.provision.user.delete",
    "application.provision.user.delete.schedule",
    "application.provision.user.import_profile",
    "application.provision.user.push",
    "application.provision.user.push_profile",
    "application.provision.user.reactivate",
    "application.provision.user.remove_entitlements",
    "application.provision.user.remove_entitlements.schedule",
    "application.provision.user.sync",
    "application.user_membership.add",
    "application.user_membership.change_password",
    "application.user_membership.remove",
    "application.user_membership.update",
    "group.user_membership.add",
    "group.user_membership.remove",
    "user.lifecycle.activate",
    "user.lifecycle.create",
    "user.lifecycle.deactivate",
    "user.lifecycle.delete.initiated",
    "user.lifecycle.reactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
];

/// Delivery behaviour knobs ([`crate::OktaSim::set_hook_delivery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDeliveryKnobs {
    /// Deliver every request twice (at-least-once).
    pub duplicate: bool,
    /// Shuffle each batch of queued events (seeded by `seed`) before delivering them.
    pub reorder: bool,
    pub seed: u64,
    /// Queue events without delivering until released (lets a test build a batch to reorder).
    pub hold: bool,
    /// Events per request (Okta batches; 1 makes each event its own request).
    pub batch_size: usize,
}

impl Default for HookDeliveryKnobs {
    fn default() -> Self {
        HookDeliveryKnobs {
            duplicate: false,
            reorder: false,
            seed: 0,
            hold: false,
            batch_size: 1,
        }
    }
}

/// One delivery attempt, as the simulator made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookDelivery {
    pub hook_id: String,
    /// 1 for the first attempt, 2 for the retry.
    pub attempt: u8,
    /// The receiver's status, or `None` when it did not answer (timeout, refused).
    pub status: Option<u16>,
    pub error: Option<String>,
    pub event_uuids: Vec<String>,
    pub at: DateTime<Utc>,
}

#[derive(Clone)]
pub(crate) struct EventHook {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub events: Vec<String>,
    pub filter: Option<Value>,
    /// The filter's conditions the simulator evaluates: (event type, JSON pointer, value).
    pub conditions: Vec<(String, String, String)>,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    /// `(key, value)` of the `HEADER` auth scheme; the value is never rendered.
    pub auth: Option<(String, String)>,
    pub active: bool,
    pub verified: bool,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub created_by: String,
}

impl std::fmt::Debug for EventHook {
    // The auth header value is a secret: never in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHook")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("events", &self.events)
            .field("uri", &self.uri)
            .field("auth_key", &self.auth.as_ref().map(|(k, _)| k))
            .field("active", &self.active)
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
}

/// Events waiting for the deliverer.
#[derive(Debug, Default)]
pub(crate) struct HookQueue {
    pub pending: Vec<(String, Value)>,
    pub knobs: HookDeliveryKnobs,
    pub deliveries: Vec<HookDelivery>,
    pub rng_round: u64,
    /// Events taken by the deliverer and not yet delivered (or given up).
    pub in_flight: usize,
}

impl HookQueue {
    /// Queues `ev` for each ACTIVE, VERIFIED hook subscribed to its type.
    pub(crate) fn offer(&mut self, hooks: &BTreeMap<String, EventHook>, ev: &Value) {
        let Some(t) = ev.get("eventType").and_then(Value::as_str) else {
            return;
        };
        for h in hooks.values() {
            let passes = h
                .conditions
                .iter()
                .filter(|(et, _, _)| et == t)
                .all(|(_, ptr, want)| ev.pointer(ptr).and_then(Value::as_str) == Some(want));
            if h.active && h.verified && passes && h.events.iter().any(|e| e == t) {
                self.pending.push((h.id.clone(), ev.clone()));
            }
        }
    }
}

impl EventHook {
    pub(crate) fn json(&self, base: &str) -> Value {
        let href = format!("{base}/api/v1/eventHooks/{}", self.id);
        let mut config = json!({
            "uri": self.uri,
            "method": "POST",
            "headers": self.headers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        if let Some((key, _)) = &self.auth {
            // The secret is write-only: Okta never returns it.
            config["authScheme"] = json!({"type": "HEADER", "key": key});
        }
        let mut events = json!({"type": "EVENT_TYPE", "items": self.events});
        if let Some(f) = &self.filter {
            events["filter"] = f.clone();
        }
        let mut links = json!({"self": {"href": href, "hints": {"allow": ["GET", "PUT", "DELETE"]}},
                               "verify": {"href": format!("{href}/lifecycle/verify"), "hints": {"allow": ["POST"]}}});
        if self.active {
            links["deactivate"] = json!({"href": format!("{href}/lifecycle/deactivate"), "hints": {"allow": ["POST"]}});
        } else {
            links["activate"] =
                json!({"href": format!("{href}/lifecycle/activate"), "hints": {"allow": ["POST"]}});
        }
        json!({
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "status": if self.active { "ACTIVE" } else { "INACTIVE" },
            "verificationStatus": if self.verified { "VERIFIED" } else { "UNVERIFIED" },
            "events": events,
            "channel": {"type": "HTTP", "version": "1.0.0", "config": config},
            "created": okta_time(self.created),
            "createdBy": self.created_by,
            "lastUpdated": okta_time(self.last_updated),
            "_links": links,
        })
    }
}

/// Parses the Okta Expression Language conditions of `events.filter` that the simulator can
/// evaluate: `event.<dotted.path> eq '<value>'` (e.g. `event.outcome.result eq 'FAILURE'`).
/// Anything else is refused, so a test never believes a filter applied that did not.
fn parse_conditions(filter: Option<&Value>) -> Result<Vec<(String, String, String)>, String> {
    let Some(map) = filter.map(|f| &f["eventFilterMap"]) else {
        return Ok(Vec::new());
    };
    let Some(entries) = map.as_array() else {
        return Err("events.filter.eventFilterMap: must be an array".into());
    };
    let mut out = Vec::new();
    for e in entries {
        let event = e["event"]
            .as_str()
            .ok_or("events.filter.eventFilterMap[].event: required")?;
        let expr = e["condition"]["expression"].as_str().unwrap_or("").trim();
        let parsed = (|| {
            let (lhs, rhs) = expr.split_once(" eq ")?;
            let path = lhs.trim().strip_prefix("event.")?;
            let rhs = rhs.trim();
            let value = rhs
                .strip_prefix('\'')
                .and_then(|r| r.strip_suffix('\''))
                .or_else(|| rhs.strip_prefix('"').and_then(|r| r.strip_suffix('"')))?;
            if path.is_empty() || !path.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return None;
            }
            Some((format!("/{}", path.replace('.', "/")), value.to_string()))
        })();
        match parsed {
            Some((ptr, value)) => out.push((event.to_string(), ptr, value)),
            None => {
                return Err(format!(
                    "events.filter: the simulator evaluates only \"event.<path> eq '<value>'\", not {expr:?}"
                ))
            }
        }
    }
    Ok(out)
}

/// Reads an `EventHook` request body; `existing` keeps the secret when a replace omits it.
fn parse_hook(body: &[u8], existing: Option<&EventHook>) -> Result<EventHook, Reply> {
    let bad = |c: &str| errors::validation(c);
    let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
        return Err(errors::okta_error(
            400,
            "E0000003",
            "The request body was not well-formed.",
        ));
    };
    let name = v["name"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| bad("name: The field cannot be left blank"))?;
    if v["events"]["type"].as_str() != Some("EVENT_TYPE") {
        return Err(bad("events.type: must be EVENT_TYPE"));
    }
    let items: Vec<String> = v["events"]["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if items.is_empty() {
        return Err(bad("events.items: at least one event type is required"));
    }
    if let Some(bad_type) = items
        .iter()
        .find(|t| !ELIGIBLE_EVENT_TYPES.contains(&t.as_str()))
    {
        return Err(bad(&format!(
            "events.items: {bad_type} is not an event hook eligible event type"
        )));
    }
    let ch = &v["channel"];
    if ch["type"].as_str() != Some("HTTP") || ch["version"].as_str() != Some("1.0.0") {
        return Err(bad("channel: type must be HTTP and version 1.0.0"));
    }
    let uri = ch["config"]["uri"].as_str().unwrap_or("");
    match url::Url::parse(uri) {
        // Okta requires HTTPS; plain HTTP is accepted for loopback receivers only.
        Ok(u)
            if u.scheme() == "https"
                || (u.scheme() == "http"
                    && matches!(u.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))) => {}
        _ => return Err(bad(
            "channel.config.uri: must be an https URL (http only for loopback in the simulator)",
        )),
    }
    let headers = ch["config"]["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| {
                    Some((
                        h["key"].as_str()?.to_string(),
                        h["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let auth = match &ch["config"]["authScheme"] {
        Value::Null => None,
        a => {
            if a["type"].as_str() != Some("HEADER") {
                return Err(bad("channel.config.authScheme.type: must be HEADER"));
            }
            let key = a["key"]
                .as_str()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| bad("channel.config.authScheme.key: required"))?;
            match a["value"].as_str() {
                Some(val) => Some((key.to_string(), val.to_string())),
                None => match existing.and_then(|e| e.auth.clone()) {
                    Some((_, val)) => Some((key.to_string(), val)),
                    None => return Err(bad("channel.config.authScheme.value: required")),
                },
            }
        }
    };
    let filter = v["events"].get("filter").filter(|f| !f.is_null()).cloned();
    let conditions = parse_conditions(filter.as_ref()).map_err(|e| bad(&e))?;
    let now = Utc::now();
    Ok(EventHook {
        id: existing.map(|e| e.id.clone()).unwrap_or_default(),
        name: name.to_string(),
        description: v["description"].as_str().map(str::to_string),
        events: items,
        filter,
        conditions,
        uri: uri.to_string(),
        headers,
        auth,
        active: existing.is_none_or(|e| e.active),
        // Okta re-verification is needed when the URI changes.
        verified: existing.is_some_and(|e| e.verified && e.uri == uri),
        created: existing.map(|e| e.created).unwrap_or(now),
        last_updated: now,
        created_by: existing.map(|e| e.created_by.clone()).unwrap_or_default(),
    })
}

/// The synchronous event hook routes (everything but `verify`).
pub(crate) fn route(inner: &Inner, method: &str, segs: &[&str], body: &[u8]) -> Reply {
    let now = inner.clock.now();
    let base = &inner.base;
    let mut st = inner.lock();
    let org = &mut st.org;
    match (method, segs) {
        ("GET", []) => Reply::ok(Value::Array(
            org.hooks.values().map(|h| h.json(base)).collect(),
        )),
        ("POST", []) => match parse_hook(body, None) {
            Err(r) => r,
            Ok(mut h) => {
                h.id = format!("who{}", random_alnum(17));
                h.created = now;
                h.last_updated = now;
                h.created_by = "00usimorgadmin0000001".into();
                let v = h.json(base);
                org.hooks.insert(h.id.clone(), h);
                Reply::ok(v)
            }
        },
        (m, [id, ..]) if !org.hooks.contains_key(*id) => {
            let _ = m;
            errors::not_found(id, "EventHook")
        }
        ("GET", [id]) => Reply::ok(org.hooks[*id].json(base)),
        ("PUT", [id]) => match parse_hook(body, org.hooks.get(*id)) {
            Err(r) => r,
            Ok(mut h) => {
                h.last_updated = now;
                let v = h.json(base);
                org.hooks.insert(id.to_string(), h);
                Reply::ok(v)
            }
        },
        ("DELETE", [id]) => {
            if org.hooks[*id].active {
                return errors::okta_error_causes(
                    400,
                    "E0000001",
                    "Api validation failed: eventHook",
                    &["An ACTIVE event hook cannot be deleted: deactivate it first.".to_string()],
                );
            }
            org.hooks.remove(*id);
            org.hook_queue.pending.retain(|(h, _)| h != id);
            Reply {
                status: 204,
                body: Value::Null,
                headers: Vec::new(),
            }
        }
        ("POST", [id, "lifecycle", action @ ("activate" | "deactivate")]) => {
            let h = org.hooks.get_mut(*id).expect("checked above");
            h.active = *action == "activate";
            h.last_updated = now;
            Reply::ok(h.json(base))
        }
        _ => errors::okta_error(
            405,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(uri: &str, secret: Option<&str>) -> Vec<u8> {
        let mut auth = json!({"type": "HEADER", "key": "Authorization"});
        if let Some(s) = secret {
            auth["value"] = json!(s);
        }
        serde_json::to_vec(&json!({
            "name": "h",
            "events": {"type": "EVENT_TYPE", "items": ["user.lifecycle.deactivate"]},
            "channel": {"type": "HTTP", "version": "1.0.0",
                        "config": {"uri": uri, "authScheme": auth}}
        }))
        .unwrap()
    }

    #[test]
    fn hooks_need_https_or_loopback_and_keep_their_secret_on_replace() {
        assert!(parse_hook(&body("http://example.com/x", Some("s")), None).is_err());
        assert!(parse_hook(&body("https://example.com/x", None), None).is_err());
        let mut h = parse_hook(&body("http://127.0.0.1:9/x", Some("s")), None).unwrap();
        h.verified = true;
        let r = parse_hook(&body("http://127.0.0.1:9/x", None), Some(&h)).unwrap();
        assert_eq!(r.auth, Some(("Authorization".into(), "s".into())));
        assert!(r.verified);
        let moved = parse_hook(&body("http://127.0.0.1:10/x", None), Some(&h)).unwrap();
        assert!(!moved.verified, "a new URI needs a new verification");
        assert!(!h.json("http://o").to_string().contains("\"s\""));
    }

    #[test]
    fn filters_on_outcome_are_applied_and_others_refused() {
        let with = |expr: &str| {
            let mut v: Value =
                serde_json::from_slice(&body("https://e.example/x", Some("s"))).unwrap();
            v["events"]["filter"] = json!({"type": "EXPRESSION_LANGUAGE", "eventFilterMap": [
                {"event": "user.lifecycle.deactivate", "condition": {"expression": expr}}]});
            parse_hook(&serde_json::to_vec(&v).unwrap(), None)
        };
        assert!(with("event.target.?[type eq 'UserGroup'].size()>0").is_err());
        let mut h = with("event.outcome.result eq 'FAILURE'").unwrap();
        h.id = "who1".into();
        h.verified = true;
        let hooks = BTreeMap::from([(h.id.clone(), h)]);
        let mut q = HookQueue::default();
        q.offer(
            &hooks,
            &json!({"eventType": "user.lifecycle.deactivate", "outcome": {"result": "SUCCESS"}}),
        );
        assert!(q.pending.is_empty());
        q.offer(
            &hooks,
            &json!({"eventType": "user.lifecycle.deactivate", "outcome": {"result": "FAILURE"}}),
        );
        assert_eq!(q.pending.len(), 1);
    }

    #[test]
    fn only_active_verified_subscribed_hooks_get_events() {
        let mut h = parse_hook(&body("https://example.com/x", Some("s")), None).unwrap();
        h.id = "who1".into();
        let mut hooks = BTreeMap::from([(h.id.clone(), h)]);
        let mut q = HookQueue::default();
        let ev = json!({"eventType": "user.lifecycle.deactivate", "uuid": "u1"});
        q.offer(&hooks, &ev);
        assert!(q.pending.is_empty(), "unverified");
        hooks.get_mut("who1").unwrap().verified = true;
        q.offer(&hooks, &json!({"eventType": "user.lifecycle.suspend"}));
        q.offer(&hooks, &ev);
        assert_eq!(q.pending.len(), 1);
        hooks.get_mut("who1").unwrap().active = false;
        q.offer(&hooks, &ev);
        assert_eq!(q.pending.len(), 1);
    }
}
