//! The parts of Okta's resources the daemon reads, deserialized leniently: every field the
//! daemon can live without is optional, so one odd object is skipped rather than failing a page.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogEvent {
    pub uuid: String,
    pub published: String,
    pub event_type: String,
    #[serde(default)]
    pub display_message: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default)]
    pub outcome: Option<LogOutcome>,
    #[serde(default)]
    pub target: Option<Vec<LogTarget>>,
    #[serde(default)]
    pub actor: Option<LogTarget>,
    #[serde(default)]
    pub debug_context: Option<Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogOutcome {
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogTarget {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub alternate_id: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// `from`/`to` of a settings change (`application.lifecycle.update`'s AppInstance target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_details: Option<Value>,
}

impl LogEvent {
    /// The first target of the given `type` ("User", "AppInstance", "AppUser"); Okta does not
    /// promise any order in `target[]`.
    pub fn target(&self, kind: &str) -> Option<&LogTarget> {
        self.target
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|t| t.kind.as_deref() == Some(kind))
    }

    /// The first target of the given `type` that carries an `id`: a stray id-less target of
    /// the same type (seen by the classifier's property test) must not hide the real one.
    pub fn target_with_id(&self, kind: &str) -> Option<&LogTarget> {
        self.target
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|t| t.kind.as_deref() == Some(kind) && t.id.is_some())
    }

    pub fn result(&self) -> Option<&str> {
        self.outcome.as_ref().and_then(|o| o.result.as_deref())
    }

    pub fn reason(&self) -> Option<&str> {
        self.outcome.as_ref().and_then(|o| o.reason.as_deref())
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppUser {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub sync_state: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub last_sync: Option<String>,
    #[serde(default)]
    pub credentials: Option<Value>,
    #[serde(default)]
    pub profile: Option<Value>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default, rename = "_embedded")]
    pub embedded: Option<Value>,
}

impl AppUser {
    /// The Okta login, from `_embedded.user` (expand=user) or the app credentials' userName.
    pub fn login(&self) -> Option<String> {
        self.embedded
            .as_ref()
            .and_then(|e| e.pointer("/user/profile/login"))
            .and_then(|v| v.as_str())
            .or_else(|| {
                self.credentials
                    .as_ref()
                    .and_then(|c| c.get("userName"))
                    .and_then(|v| v.as_str())
            })
            .map(str::to_owned)
    }

    pub fn is_error(&self) -> bool {
        self.sync_state.as_deref() == Some("ERROR")
    }

    pub fn is_synchronized(&self) -> bool {
        self.sync_state.as_deref() == Some("SYNCHRONIZED")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
}

impl Application {
    pub fn display(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.id)
    }
}

/// `GET /api/v1/apps/{id}/features/USER_PROVISIONING`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningFeature {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub capabilities: Option<Value>,
}

impl ProvisioningFeature {
    fn cap(&self, pointer: &str) -> Option<bool> {
        self.capabilities
            .as_ref()
            .and_then(|c| c.pointer(pointer))
            .and_then(|v| v.as_str())
            .map(|s| s == "ENABLED")
    }
    /// "Create Users".
    pub fn create_enabled(&self) -> Option<bool> {
        self.cap("/create/lifecycleCreate/status")
    }
    /// "Update User Attributes".
    pub fn update_enabled(&self) -> Option<bool> {
        self.cap("/update/profile/status")
    }
    /// "Deactivate Users".
    pub fn deactivate_enabled(&self) -> Option<bool> {
        self.cap("/update/lifecycleDeactivate/status")
    }
    pub fn enabled(&self) -> bool {
        self.status.as_deref() == Some("ENABLED")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_found_by_type_not_position() {
        let ev: LogEvent = serde_json::from_value(serde_json::json!({
            "uuid": "u1", "published": "2026-01-01T00:00:00.000Z",
            "eventType": "application.provision.user.push",
            "outcome": {"result": "FAILURE", "reason": "boom"},
            "target": [
                {"id": "00u1", "type": "User", "alternateId": "a@x", "displayName": "A"},
                {"id": "0oa1", "type": "AppInstance", "alternateId": "Sales", "displayName": "Sales"}
            ]
        }))
        .unwrap();
        assert_eq!(
            ev.target("AppInstance").unwrap().id.as_deref(),
            Some("0oa1")
        );
        assert_eq!(
            ev.target("User").unwrap().alternate_id.as_deref(),
            Some("a@x")
        );
        assert!(ev.target("AppUser").is_none());
        assert_eq!(ev.result(), Some("FAILURE"));
    }

    #[test]
    fn provisioning_capabilities() {
        let f: ProvisioningFeature = serde_json::from_value(serde_json::json!({
            "name": "USER_PROVISIONING", "status": "ENABLED",
            "capabilities": {"create": {"lifecycleCreate": {"status": "DISABLED"}},
              "update": {"profile": {"status": "ENABLED"}, "lifecycleDeactivate": {"status": "ENABLED"}}}
        }))
        .unwrap();
        assert_eq!(f.create_enabled(), Some(false));
        assert_eq!(f.update_enabled(), Some(true));
        assert_eq!(f.deactivate_enabled(), Some(true));
    }
}
