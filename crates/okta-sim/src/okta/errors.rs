//! Okta error bodies (`Error` schema) and OAuth error bodies, as `(status, json)` pairs.

use serde_json::{json, Value};

use super::ids::error_id;

/// A handler's answer before the common headers are added.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: String) -> Reply {
        self.headers.push((name.to_string(), value));
        self
    }
}

pub(crate) fn okta_error_body(code: &str, summary: &str, causes: &[String]) -> Value {
    json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": error_id(),
        "errorCauses": causes.iter().map(|c| json!({"errorSummary": c})).collect::<Vec<_>>(),
    })
}

pub(crate) fn okta_error(status: u16, code: &str, summary: &str) -> Reply {
    Reply {
        status,
        body: okta_error_body(code, summary, &[]),
        headers: Vec::new(),
    }
}

pub(crate) fn okta_error_causes(
    status: u16,
    code: &str,
    summary: &str,
    causes: &[String],
) -> Reply {
    Reply {
        status,
        body: okta_error_body(code, summary, causes),
        headers: Vec::new(),
    }
}

pub(crate) fn invalid_token() -> Reply {
    okta_error(401, "E0000011", "Invalid token provided")
}

pub(crate) fn rate_limited() -> Reply {
    okta_error(
        429,
        "E0000047",
        "API call exceeded rate limit due to too many requests.",
    )
}

pub(crate) fn not_found(resource: &str, kind: &str) -> Reply {
    okta_error(
        404,
        "E0000007",
        &format!("Not found: Resource not found: {resource} ({kind})"),
    )
}

pub(crate) fn validation(cause: &str) -> Reply {
    okta_error_causes(
        400,
        "E0000001",
        "Api validation failed: request",
        &[cause.to_string()],
    )
}

pub(crate) fn invalid_search() -> Reply {
    okta_error(400, "E0000031", "Invalid search criteria.")
}

/// 403 for a Bearer token without the scope a route needs. As Okta sends it: the realm and
/// `authorization_uri` are the org's own URL, `resource` is the path that was requested.
pub(crate) fn forbidden_scope(scope: &str, org: &str, path: &str) -> Reply {
    okta_error(
        403,
        "E0000006",
        "You do not have permission to perform the requested action",
    )
    .with_header(
        "WWW-Authenticate",
        format!(
            "Bearer authorization_uri=\"{org}/oauth2/v1/authorize\", realm=\"{org}\", scope=\"{scope}\", error=\"insufficient_scope\", error_description=\"The access token provided does not contain the required scopes.\", resource=\"{path}\""
        ),
    )
}

pub(crate) fn server_error(status: u16) -> Reply {
    okta_error(status, "E0000009", "Internal Server Error")
}

pub(crate) fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply {
        status,
        body: json!({"error": error, "error_description": description}),
        headers: Vec::new(),
    }
}
