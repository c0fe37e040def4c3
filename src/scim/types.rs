//! The SCIM resources and messages the client reads and writes: the `User` resource (RFC 7643
//! §4.1, only the attributes the daemon uses; the rest is ignored), `ListResponse` (RFC 7644
//! §3.4.2), `PatchOp` (§3.5.2) and the `Error` body (§3.12). Deserialized leniently: a missing
//! optional attribute is `None`, never an error.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScimUser {
    pub id: String,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    /// RFC 7643 §4.1.1: "active" is optional; an absent value says nothing, which the
    /// checks treat as active (the conservative reading for access removal).
    #[serde(default)]
    pub active: Option<bool>,
}

impl ScimUser {
    pub fn is_active(&self) -> bool {
        self.active != Some(false)
    }
}

/// RFC 7644 §3.4.2 `ListResponse`. `Resources` is absent when there are none.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    #[serde(default)]
    pub total_results: u64,
    #[serde(default)]
    pub start_index: Option<u64>,
    #[serde(default)]
    pub items_per_page: Option<u64>,
    /// Raw, so one malformed resource is skipped rather than losing the page.
    #[serde(default, rename = "Resources")]
    pub resources: Vec<Value>,
}

/// RFC 7644 §3.5.2 `PatchOp`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PatchOp {
    pub schemas: Vec<&'static str>,
    #[serde(rename = "Operations")]
    pub operations: Vec<Value>,
}

impl PatchOp {
    /// `replace` of `active` with `false`: the deactivation the daemon sends, and nothing else.
    pub fn deactivate() -> PatchOp {
        PatchOp {
            schemas: vec![PATCH_SCHEMA],
            operations: vec![json!({"op": "replace", "path": "active", "value": false})],
        }
    }
}

/// RFC 7644 §3.12 error body; `status` is a string there, some servers send a number.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScimErrorBody {
    #[serde(default)]
    pub scim_type: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// The `filter` value for an exact user name (RFC 7644 §3.4.2.2): the name is a JSON string,
/// so quotes and backslashes in it are escaped as JSON escapes them.
pub fn user_name_filter(user_name: &str) -> String {
    format!(
        "userName eq {}",
        serde_json::to_string(user_name).unwrap_or_else(|_| "\"\"".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7643 §8.1 "Minimal User Representation".
    #[test]
    fn rfc7643_minimal_user() {
        let u: ScimUser = serde_json::from_str(
            r#"{
     "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
     "id": "2819c223-7f76-453a-919d-413861904646",
     "userName": "bjensen@example.com",
     "meta": {
       "resourceType": "User",
       "created": "2010-01-23T04:56:22Z",
       "lastModified": "2011-05-13T04:42:34Z",
       "version": "W\/\"3694e05e9dff590\"",
       "location":
        "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646"
     }
   }"#,
        )
        .unwrap();
        assert_eq!(u.id, "2819c223-7f76-453a-919d-413861904646");
        assert_eq!(u.user_name.as_deref(), Some("bjensen@example.com"));
        assert_eq!(u.active, None);
        assert!(u.is_active());
    }

    /// RFC 7644 §3.4.2 example response to `filter=userName Eq "john"`-style queries.
    #[test]
    fn rfc7644_list_response() {
        let l: ListResponse = serde_json::from_str(
            r#"{
     "schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
     "totalResults":2,
     "Resources":[
       {"id":"2819c223-7f76-453a-919d-413861904646", "userName":"bjensen"},
       {"id":"c75ad752-64ae-4823-840d-ffa80929976c", "userName":"jsmith", "active": false}
     ]
   }"#,
        )
        .unwrap();
        assert_eq!(l.total_results, 2);
        let users: Vec<ScimUser> = l
            .resources
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        assert!(!users[1].is_active());
        // No Resources at all (zero results) is a valid, empty page.
        let l: ListResponse = serde_json::from_str(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0}"#,
        )
        .unwrap();
        assert!(l.resources.is_empty());
    }

    /// RFC 7644 §3.5.2.3 shape: `replace` with a path.
    #[test]
    fn patch_deactivate_is_a_replace_of_active() {
        let v = serde_json::to_value(PatchOp::deactivate()).unwrap();
        assert_eq!(
            v,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                   "Operations": [{"op": "replace", "path": "active", "value": false}]})
        );
    }

    /// RFC 7644 §3.12 error example.
    #[test]
    fn rfc7644_error() {
        let e: ScimErrorBody = serde_json::from_str(
            r#"{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
     "scimType":"mutability", "detail":"Attribute 'id' is readOnly", "status": "400"}"#,
        )
        .unwrap();
        assert_eq!(e.scim_type.as_deref(), Some("mutability"));
    }

    #[test]
    fn filter_escapes_quotes() {
        assert_eq!(user_name_filter("bjensen"), r#"userName eq "bjensen""#);
        assert_eq!(user_name_filter(r#"a"b\c"#), r#"userName eq "a\"b\\c""#);
    }
}
