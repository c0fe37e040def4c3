//! Typed errors of the Okta client: callers branch on what kind of failure it was.

use super::ratelimit::Bucket;
use serde::Deserialize;
use std::time::Duration;

/// Okta's error body (`errorCode`, `errorSummary`, `errorId`, `errorCauses`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OktaErrorBody {
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub error_summary: String,
    #[serde(default)]
    pub error_id: String,
    #[serde(default)]
    pub error_causes: Vec<ErrorCause>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCause {
    #[serde(default)]
    pub error_summary: String,
}

impl OktaErrorBody {
    pub fn parse(body: &[u8]) -> Option<OktaErrorBody> {
        serde_json::from_slice::<OktaErrorBody>(body)
            .ok()
            .filter(|b| !b.error_code.is_empty() || !b.error_summary.is_empty())
    }

    /// `E0000047: API call exceeded rate limit (errorId oae1...; cause: ...)`
    pub fn describe(&self) -> String {
        let mut s = format!("{}: {}", self.error_code, self.error_summary);
        for c in &self.error_causes {
            if !c.error_summary.is_empty() {
                s.push_str("; cause: ");
                s.push_str(&c.error_summary);
            }
        }
        if !self.error_id.is_empty() {
            s.push_str(&format!(" (errorId {})", self.error_id));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OktaError {
    /// 429 persisted past the client's patience; the bucket is blocked until `retry_after`.
    #[error("Okta rate limit exhausted for the {} bucket; retry in {retry_after:?}", bucket.as_str())]
    RateLimited {
        bucket: Bucket,
        retry_after: Duration,
    },
    /// 401: the API token or access token was rejected.
    #[error("Okta rejected the credentials (401): {detail}")]
    Unauthorized { detail: String },
    /// 403: authenticated but not allowed, usually a missing OAuth scope or admin role.
    #[error("Okta refused the request (403) for {path}: {detail}")]
    Forbidden { path: String, detail: String },
    #[error("not found (404) at {path}: {detail}")]
    NotFound { path: String, detail: String },
    /// A 4xx other than the above: the request itself is wrong; retrying it will not help.
    #[error("Okta rejected the request ({status}) at {path}: {detail}")]
    Permanent {
        status: u16,
        path: String,
        detail: String,
    },
    /// 5xx, timeouts, connection errors: worth retrying later.
    #[error("Okta request to {path} failed, retryable: {detail}")]
    Retryable { path: String, detail: String },
    /// A 2xx whose body is not what the API documents.
    #[error("malformed Okta response from {path}: {detail}")]
    Malformed { path: String, detail: String },
    /// Configuration or OAuth key problems found while building a request.
    #[error("Okta client misconfigured: {0}")]
    Config(String),
}

impl OktaError {
    /// Whether trying the same call again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OktaError::RateLimited { .. }
                | OktaError::Retryable { .. }
                | OktaError::Malformed { .. }
        )
    }

    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            OktaError::Unauthorized { .. } | OktaError::Forbidden { .. }
        )
    }

    /// Short label for metrics and history rows.
    pub fn kind(&self) -> &'static str {
        match self {
            OktaError::RateLimited { .. } => "rate_limited",
            OktaError::Unauthorized { .. } => "unauthorized",
            OktaError::Forbidden { .. } => "forbidden",
            OktaError::NotFound { .. } => "not_found",
            OktaError::Permanent { .. } => "permanent",
            OktaError::Retryable { .. } => "retryable",
            OktaError::Malformed { .. } => "malformed",
            OktaError::Config(_) => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_okta_error_body() {
        let b = br#"{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests.","errorLink":"E0000047","errorId":"oae123","errorCauses":[{"errorSummary":"x"}]}"#;
        let e = OktaErrorBody::parse(b).unwrap();
        assert_eq!(e.error_code, "E0000047");
        assert_eq!(
            e.describe(),
            "E0000047: API call exceeded rate limit due to too many requests.; cause: x (errorId oae123)"
        );
        assert!(OktaErrorBody::parse(b"<html>").is_none());
        assert!(OktaErrorBody::parse(b"{}").is_none());
    }
}
