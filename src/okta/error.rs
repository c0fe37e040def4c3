//! Typed errors of the Okta client: callers branch on what kind of failure it was.
//!
//! Also owns how a transport failure is worded: `reqwest` shows only its outermost layer
//! ("error sending request"), which tells an operator nothing; [`describe_transport`]
//! walks the source chain once and names the host and the cause (connection refused, DNS,
//! TLS, timeout).

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
    #[error("Okta rate limit exhausted for the {} bucket; retry in {}", bucket.as_str(), whole_seconds(*retry_after))]
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

/// `d` rounded up to whole seconds, as people write it (`13s`, `1m 5s`), never Rust's
/// `Debug` form (`12.345678s`).
fn whole_seconds(d: Duration) -> humantime::FormattedDuration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    humantime::format_duration(Duration::from_secs(secs))
}

/// `host:port` of `url`, for messages (`dev-1.okta.com:443`).
pub fn host_port(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or("(no host)");
    match url.port_or_known_default() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// One line for a request that got no HTTP answer: `cannot reach dev-1.okta.com:443:
/// connection refused`. `host` is `host:port`; the cause comes from the error's source
/// chain, named once. Never contains a URL path or query (they may carry ids), nor any
/// header.
pub fn describe_transport(host: &str, err: &reqwest::Error) -> String {
    let cause = transport_cause(err);
    if err.is_timeout() {
        format!("no answer from {host}: {cause}")
    } else if err.is_connect() {
        format!("cannot reach {host}: {cause}")
    } else {
        format!("connection to {host} failed: {cause}")
    }
}

/// The cause of a transport failure in plain words, from the innermost error that says
/// something specific. `io::Error` hides the error it wraps from `source()`, so each
/// level's wrapped error is looked at too.
pub fn transport_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut levels: Vec<&(dyn std::error::Error + 'static)> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        levels.push(e);
        // `io::Error::source()` is its wrapped error's source: step into the wrapped error
        // itself instead (TLS errors arrive as an io::Error in an io::Error).
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
        if levels.len() > 32 {
            break; // a cyclic chain would be a bug elsewhere; never spin on it
        }
    }
    // Deepest first: the outer layers only repeat "error sending request".
    let is_dns = levels.iter().any(|e| {
        let text = e.to_string();
        text.starts_with("dns error") || text.contains("failed to lookup address")
    });
    let innermost = levels
        .last()
        .map(|e| e.to_string())
        .unwrap_or_else(|| err.to_string());
    if is_dns {
        return format!("DNS lookup failed ({innermost})");
    }
    for e in levels.iter().rev() {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return format!("TLS handshake failed: {tls}");
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let plain = match io.kind() {
                K::ConnectionRefused => Some("connection refused (nothing listens on that port?)"),
                K::ConnectionReset => Some("connection reset by the peer"),
                K::ConnectionAborted => Some("connection aborted"),
                K::TimedOut => Some("timed out"),
                K::NetworkUnreachable => Some("network unreachable"),
                K::HostUnreachable => Some("host unreachable"),
                K::AddrNotAvailable => Some("address not available"),
                K::UnexpectedEof => Some("the connection closed before an answer"),
                _ => None,
            };
            if let Some(p) = plain {
                return p.to_string();
            }
        }
    }
    if let Some(r) = err.downcast_ref::<reqwest::Error>() {
        if r.is_timeout() {
            return "timed out".to_string();
        }
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn transport_error(url: &str) -> reqwest::Error {
        // reqwest is built without a crypto provider of its own: install ring as the process
        // default here rather than rely on another test having done it first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn refused_connection_names_host_and_cause_once() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/api/v1/logs?since=x");
        let e = transport_error(&url).await;
        let host = host_port(&url::Url::parse(&url).unwrap());
        assert_eq!(
            describe_transport(&host, &e),
            format!(
                "cannot reach 127.0.0.1:{port}: connection refused (nothing listens on that port?)"
            )
        );
    }

    #[tokio::test]
    async fn dns_failure_says_dns() {
        // `.invalid` never resolves (RFC 2606), with or without a network.
        let url = url::Url::parse("https://dev-1.okta.invalid/api/v1/logs").unwrap();
        let e = transport_error(url.as_str()).await;
        let shown = describe_transport(&host_port(&url), &e);
        assert!(
            shown.starts_with("cannot reach dev-1.okta.invalid:443: DNS lookup failed ("),
            "{shown}"
        );
        assert!(!shown.contains("error sending request"), "{shown}");
        assert!(!shown.contains("/api/v1/logs"), "{shown}");
    }

    #[tokio::test]
    async fn tls_failure_says_tls() {
        // A listener that answers a TLS ClientHello with plain HTTP.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let url = url::Url::parse(&format!("https://127.0.0.1:{port}/")).unwrap();
        let e = transport_error(url.as_str()).await;
        let shown = describe_transport(&host_port(&url), &e);
        assert!(
            shown.starts_with(&format!(
                "cannot reach 127.0.0.1:{port}: TLS handshake failed: "
            )),
            "{shown}"
        );
    }

    #[test]
    fn rate_limited_message_has_no_debug_durations() {
        let e = OktaError::RateLimited {
            bucket: Bucket::Logs,
            retry_after: Duration::from_millis(64_250),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "Okta rate limit exhausted for the {} bucket; retry in 1m 5s",
                Bucket::Logs.as_str()
            )
        );
    }

    #[test]
    fn cause_falls_back_to_the_innermost_message() {
        let inner = std::io::Error::other("proxy said no");
        assert_eq!(transport_cause(&inner), "proxy said no");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            transport_cause(&refused),
            "connection refused (nothing listens on that port?)"
        );
    }

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
