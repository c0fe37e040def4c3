//! Okta's Event Hooks management API (`/api/v1/eventHooks`), as `hooks register/status/remove`
//! and `doctor` use it.
//!
//! Every call here goes through the shared client, so it takes its place in the rate budget:
//! bucket `Other` (Okta counts `/api/v1/eventHooks` under the org's general management limit),
//! request class `Manual` (run by a person from the CLI, never periodically), and each carries
//! its reason in a comment. The secret is sent once, in the create/replace body; Okta never
//! returns it and nothing here prints it.

use crate::okta::{Class, OktaClient, OktaError};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Every Event Hooks call is a person's command (`hooks register/status/remove`, `doctor`).
const CLASS: Class = Class::Manual;

/// The name our hook carries in Okta, so `status`/`remove` find it even without the stored id.
pub const HOOK_NAME: &str = "okta-provwatch";

/// The scope the Event Hooks API needs for an OAuth service app.
pub const SCOPE: &str = "okta.eventHooks.manage";

/// The parts of Okta's `EventHook` object we show.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventHook {
    pub id: String,
    pub name: String,
    pub status: String,
    #[serde(default)]
    pub verification_status: Option<String>,
    pub events: HookEvents,
    pub channel: HookChannel,
    #[serde(default)]
    pub last_updated: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct HookEvents {
    #[serde(default)]
    pub items: Vec<String>,
    #[serde(default)]
    pub filter: Option<Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct HookChannel {
    pub config: HookChannelConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct HookChannelConfig {
    pub uri: String,
}

impl EventHook {
    pub fn uri(&self) -> &str {
        &self.channel.config.uri
    }
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
    pub fn is_verified(&self) -> bool {
        self.verification_status.as_deref() == Some("VERIFIED")
    }
}

/// The `EventHook` body `register` sends: our name, the embedded event types, the URI and the
/// `Authorization` header Okta will send. With `failures_only`, Okta's event filter keeps
/// successes out (on orgs that support filters); successes then reach us by polling only.
pub fn hook_body(uri: &str, secret: &SecretString, failures_only: bool) -> Value {
    let items = super::event_types();
    let mut events = json!({"type": "EVENT_TYPE", "items": items});
    if failures_only {
        events["filter"] = json!({
            "type": "EXPRESSION_LANGUAGE",
            "eventFilterMap": items.iter().map(|t| json!({
                "event": t,
                "condition": {"expression": "event.outcome.result eq 'FAILURE'"}
            })).collect::<Vec<_>>()
        });
    }
    json!({
        "name": HOOK_NAME,
        "description": "okta-provwatch: provisioning events pushed for detection in seconds",
        "events": events,
        "channel": {
            "type": "HTTP",
            "version": "1.0.0",
            "config": {
                "uri": uri,
                "authScheme": {
                    "type": "HEADER",
                    "key": "Authorization",
                    "value": secret.expose_secret()
                }
            }
        }
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, OktaError> {
    serde_json::from_slice(body).map_err(|e| OktaError::Malformed {
        path: path.to_string(),
        detail: e.to_string(),
    })
}

/// Every event hook of the org. Reason: find ours for status/remove/register.
pub async fn list(okta: &OktaClient) -> Result<Vec<EventHook>, OktaError> {
    // Bucket Other, class Manual (CLASS).
    let (_, body) = okta
        .request_with(CLASS, Method::GET, "/api/v1/eventHooks", None)
        .await?;
    let all: Vec<Value> = parse("/api/v1/eventHooks", &body)?;
    // One odd hook of another integration must not hide ours.
    Ok(all
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// Ours: the one with `id` if given, else the one named [`HOOK_NAME`].
pub async fn find(okta: &OktaClient, id: Option<&str>) -> Result<Option<EventHook>, OktaError> {
    let all = list(okta).await?;
    Ok(match id {
        Some(id) => all.into_iter().find(|h| h.id == id),
        None => all.into_iter().find(|h| h.name == HOOK_NAME),
    })
}

/// Creates the hook, or replaces ours in place (same id) when one exists. Reason: register.
pub async fn create_or_replace(
    okta: &OktaClient,
    existing: Option<&EventHook>,
    body: &Value,
) -> Result<EventHook, OktaError> {
    // Bucket Other, class Manual (CLASS).
    let (method, path) = match existing {
        Some(h) => (Method::PUT, format!("/api/v1/eventHooks/{}", enc(&h.id))),
        None => (Method::POST, "/api/v1/eventHooks".to_string()),
    };
    let (_, b) = okta.request_with(CLASS, method, &path, Some(body)).await?;
    parse(&path, &b)
}

/// `activate`, `deactivate` or `verify`. Reason: register (activate, verify) and remove
/// (deactivate, which Okta requires before a delete). `verify` makes Okta call the receiver.
pub async fn lifecycle(okta: &OktaClient, id: &str, action: &str) -> Result<EventHook, OktaError> {
    // Bucket Other, class Manual (CLASS).
    let path = format!("/api/v1/eventHooks/{}/lifecycle/{action}", enc(id));
    let (_, b) = okta.request_with(CLASS, Method::POST, &path, None).await?;
    parse(&path, &b)
}

/// Deletes an INACTIVE hook. Reason: remove.
pub async fn delete(okta: &OktaClient, id: &str) -> Result<(), OktaError> {
    // Bucket Other, class Manual (CLASS).
    let path = format!("/api/v1/eventHooks/{}", enc(id));
    okta.request_with(CLASS, Method::DELETE, &path, None)
        .await?;
    Ok(())
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_subscribes_the_embedded_types_and_filters_on_request() {
        let s = SecretString::from("0123456789abcdef-secret");
        let b = hook_body("https://h.example/okta/events", &s, false);
        assert_eq!(
            b["events"]["items"].as_array().unwrap().len(),
            super::super::event_types().len()
        );
        assert!(b["events"].get("filter").is_none());
        assert_eq!(b["channel"]["config"]["authScheme"]["key"], "Authorization");
        let f = hook_body("https://h.example/okta/events", &s, true);
        assert_eq!(
            f["events"]["filter"]["eventFilterMap"][0]["condition"]["expression"],
            "event.outcome.result eq 'FAILURE'"
        );
    }
}
