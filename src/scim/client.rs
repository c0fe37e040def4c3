//! The SCIM HTTP client of one app: bearer token (and optional custom header) on every request,
//! its own rate limit ([`Pacer`], `requests_per_minute` of the app's `[[verify]]`), 429 answers
//! waited out per `Retry-After` (bounded) and 5xx answers retried twice, each request logged
//! with the reason it was made. Errors are typed ([`ScimError`]) because callers branch on them:
//! a 401 or an unreachable app is a verification that could not run, never "still active".
//!
//! The token never appears in an error, a log line or `Debug`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use super::types::{user_name_filter, ListResponse, PatchOp, ScimErrorBody, ScimUser};
use crate::config::VerifyConfig;
use crate::pacer::Pacer;

/// The most a server's `Retry-After` may make us wait in one go.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Attempts per request (the first plus retries after 429/5xx/transport errors).
const ATTEMPTS: u32 = 3;
/// Page size asked for when listing; servers may return fewer (RFC 7644 §3.4.2.4).
pub const PAGE_SIZE: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ScimError {
    #[error("the app's SCIM API refused the token (401 at {url}): check the [[verify]] token for this app")]
    Unauthorized { url: String },
    #[error("the app's SCIM API is unreachable at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the app's SCIM API is rate limiting us (429 at {url}) past {waited:?} of waiting")]
    RateLimited { url: String, waited: Duration },
    #[error("the app's SCIM API answered {status} at {url}: {detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the app's SCIM API sent an unreadable answer at {url}: {detail}")]
    Malformed { url: String, detail: String },
    #[error("SCIM client: {0}")]
    Config(String),
}

impl ScimError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ScimError::Status { status: 404, .. })
    }
}

/// What a request is for: logged with it and counted by `reason` in
/// `provwatch_scim_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Check one deprovisioning (highest priority: a person may still have access).
    Verify,
    /// Deactivate one account (`remediate`).
    Remediate,
    /// Page the app's users for orphans (lowest priority).
    Reconcile,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Verify => "verify",
            Reason::Remediate => "remediate",
            Reason::Reconcile => "reconcile",
        }
    }
}

/// The client of one app's SCIM API. Cheap to clone.
#[derive(Clone)]
pub struct ScimClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    token: SecretString,
    header: Option<(String, SecretString)>,
    pacer: Pacer,
    requests: AtomicU64,
    app: String,
}

impl std::fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimClient")
            .field("app", &self.inner.app)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

fn tls() -> Result<rustls::ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("configuring TLS: {e}"))
    };
    Ok(match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(_) => builder()?.with_webpki_roots().with_no_client_auth(),
    })
}

impl ScimClient {
    pub fn new(cfg: &VerifyConfig, timeout: Duration) -> Result<ScimClient, ScimError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls().map_err(ScimError::Config)?)
            .user_agent(concat!("okta-provwatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            // A redirect could carry the bearer token to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ScimError::Config(format!("HTTP client: {e}")))?;
        let rpm = cfg.requests_per_minute.max(1);
        Ok(ScimClient {
            inner: Arc::new(Inner {
                http,
                base: cfg.scim_url.clone(),
                token: cfg.token.clone(),
                header: cfg.header.clone(),
                pacer: Pacer::new(rpm, Duration::from_secs(60), rpm.min(10)),
                requests: AtomicU64::new(0),
                app: cfg.app.clone(),
            }),
        })
    }

    /// Requests sent so far (every attempt counts), for the benchmark and reconciliation rows.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// `{base}/Users[/id]`.
    pub fn users_url(&self, id: Option<&str>) -> Url {
        let mut u = self.inner.base.clone();
        {
            let mut segs = u.path_segments_mut().expect("http(s) base URL");
            segs.pop_if_empty().push("Users");
            if let Some(id) = id {
                segs.push(id);
            }
        }
        u
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        reason: Reason,
    ) -> Result<Value, ScimError> {
        let shown = strip_query(&url);
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.inner.pacer.take().await;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(app = %self.inner.app, %method, url = %shown, reason = reason.as_str(), attempt, "SCIM request");
            let mut req = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.inner.token.expose_secret())
                .header(header::ACCEPT, "application/scim+json, application/json");
            if let Some((name, value)) = &self.inner.header {
                req = req.header(name.as_str(), value.expose_secret());
            }
            if let Some(b) = body {
                req = req
                    .header(header::CONTENT_TYPE, "application/scim+json")
                    .body(b.to_string());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    // Never `{e}` alone with the URL's query: it may hold the filter only, but
                    // reqwest errors can be long; keep the kind and the shown URL.
                    let detail = if e.is_timeout() {
                        "timed out".to_string()
                    } else if e.is_connect() {
                        "connection failed".to_string()
                    } else {
                        "request failed".to_string()
                    };
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                        continue;
                    }
                    return Err(ScimError::Unreachable { url: shown, detail });
                }
            };
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = resp.bytes().await.map_err(|_| ScimError::Unreachable {
                url: shown.clone(),
                detail: "the answer was cut off".into(),
            })?;
            if status.is_success() {
                if bytes.is_empty() || status == StatusCode::NO_CONTENT {
                    return Ok(Value::Null);
                }
                return serde_json::from_slice(&bytes).map_err(|e| ScimError::Malformed {
                    url: shown,
                    detail: e.to_string(),
                });
            }
            match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(ScimError::Unauthorized { url: shown })
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after.unwrap_or(Duration::from_secs(30));
                    if attempt >= ATTEMPTS || waited + wait > MAX_RETRY_AFTER {
                        return Err(ScimError::RateLimited { url: shown, waited });
                    }
                    tracing::info!(app = %self.inner.app, wait_s = wait.as_secs(), "the app's SCIM API asked us to slow down (429)");
                    waited += wait;
                    tokio::time::sleep(wait).await;
                }
                s if s.is_server_error() && attempt < ATTEMPTS => {
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
                s => {
                    let detail = serde_json::from_slice::<ScimErrorBody>(&bytes)
                        .ok()
                        .and_then(|b| {
                            b.detail.map(|d| match b.scim_type {
                                Some(t) => format!("{t}: {d}"),
                                None => d,
                            })
                        })
                        .unwrap_or_else(|| s.canonical_reason().unwrap_or("error").to_string());
                    return Err(ScimError::Status {
                        url: shown,
                        status: s.as_u16(),
                        detail: detail.chars().take(300).collect(),
                    });
                }
            }
        }
    }

    /// Users whose `userName` equals `user_name` (RFC 7643: case-insensitive on the server).
    pub async fn find_by_user_name(
        &self,
        user_name: &str,
        reason: Reason,
    ) -> Result<Vec<ScimUser>, ScimError> {
        let mut url = self.users_url(None);
        url.query_pairs_mut()
            .append_pair("filter", &user_name_filter(user_name));
        let v = self.send(Method::GET, url.clone(), None, reason).await?;
        let list: ListResponse = serde_json::from_value(v).map_err(|e| ScimError::Malformed {
            url: strip_query(&url),
            detail: e.to_string(),
        })?;
        Ok(list
            .resources
            .into_iter()
            .filter_map(|r| serde_json::from_value(r).ok())
            .collect())
    }

    /// One user by the app's id; `Ok(None)` on 404.
    pub async fn get(&self, id: &str, reason: Reason) -> Result<Option<ScimUser>, ScimError> {
        let url = self.users_url(Some(id));
        match self.send(Method::GET, url.clone(), None, reason).await {
            Ok(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| ScimError::Malformed {
                    url: strip_query(&url),
                    detail: e.to_string(),
                }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `PATCH {base}/Users/{id}` with [`PatchOp::deactivate`]. Never DELETE, never
    /// retried by the caller on failure.
    pub async fn deactivate(&self, id: &str) -> Result<(), ScimError> {
        let body = serde_json::to_value(PatchOp::deactivate()).expect("static body");
        self.send(
            Method::PATCH,
            self.users_url(Some(id)),
            Some(&body),
            Reason::Remediate,
        )
        .await?;
        Ok(())
    }

    /// Every user of the app, paged with `startIndex`/`count`. Stops when a page is short or
    /// `totalResults` is reached; a malformed resource is skipped and counted.
    pub async fn list_all(&self) -> Result<(Vec<ScimUser>, usize), ScimError> {
        let mut out = Vec::new();
        let mut malformed = 0;
        let mut start = 1u64;
        loop {
            let mut url = self.users_url(None);
            url.query_pairs_mut()
                .append_pair("startIndex", &start.to_string())
                .append_pair("count", &PAGE_SIZE.to_string());
            let v = self
                .send(Method::GET, url.clone(), None, Reason::Reconcile)
                .await?;
            let page: ListResponse =
                serde_json::from_value(v).map_err(|e| ScimError::Malformed {
                    url: strip_query(&url),
                    detail: e.to_string(),
                })?;
            let n = page.resources.len() as u64;
            for r in page.resources {
                match serde_json::from_value::<ScimUser>(r) {
                    Ok(u) => out.push(u),
                    Err(_) => malformed += 1,
                }
            }
            start += n;
            // An empty page ends the list whatever totalResults claims (no endless paging).
            if n == 0 || start > page.total_results {
                return Ok((out, malformed));
            }
        }
    }
}

fn strip_query(u: &Url) -> String {
    let mut u = u.clone();
    u.set_query(None);
    u.to_string()
}
