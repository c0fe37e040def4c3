//! The Okta management API client: one concrete struct built from the org URL, credentials and
//! a timeout. Every request goes through the shared [`RateBudget`] and an in-flight cap, is
//! retried on 429 (after the bucket's reset), 5xx and timeouts (exponential backoff with jitter),
//! and fails with a typed [`OktaError`] otherwise. Pagination follows `Link: rel="next"`.
//!
//! Every request declares a [`Class`] (why it is made), which decides its place in the queue
//! for a bucket when calls are scarce (see [`super::ratelimit`]). The `*_with(class, ..)`
//! methods take it; the older methods without one use [`DEFAULT_CLASS`]. [`OktaClient::stop`]
//! (or a token given to [`OktaClient::stop_on`]) ends every wait on the budget, the in-flight
//! cap and the backoff between attempts at once with [`OktaError::Cancelled`]; a request
//! already on the wire is awaited (bounded by `request_timeout`) so its answer is recorded.//!
//! By job: `tls` builds the TLS config, `credentials` puts the token (or OAuth access
//! token and DPoP proof) on each request, `pagination` reads lists, `endpoints` holds the
//! typed calls; this module owns the client, its options and the send/retry pipeline.

mod credentials;
mod endpoints;
mod pagination;
mod tls;

use credentials::dpop_state;
pub use pagination::next_link;
pub(crate) use tls::tls_config;

use super::auth::{Credentials, OAuthErrorBody, OAuthSigner, TokenResponse};
use super::dpop::{self, DpopKey, DpopState};
use super::error::{describe_transport, host_port, OktaError, OktaErrorBody};
use super::ratelimit::{Bucket, Class, PrincipalRateLimit, RateBudget, RateHeaders};
use super::types::{AppUser, Application, ProvisioningFeature};
use crate::clock::Clock;
use crate::metrics::Metrics;
use rand::RngExt;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LINK};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Everything needed to build a client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub org_url: Url,
    pub credentials: Credentials,
    /// The most of any bucket this daemon may use per window, in (0, 1].
    pub rate_limit_share: f64,
    /// The most of that share scans, `doctor` and reconciliations may use per window, in
    /// (0, 1] (`detect.scan_share`).
    pub background_share: f64,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    /// Attempts for 5xx/timeouts before giving up on one call.
    pub max_transient_attempts: u32,
    /// 429s tolerated on one call (each waits for the reset) before giving up.
    pub max_rate_limited_attempts: u32,
    /// First backoff after a 5xx/timeout; doubles per attempt, capped at 30 s.
    pub base_backoff: Duration,
    /// Reuse connections. Off only in paused-time tests, where the idle-pool timer would make
    /// tokio's paused clock jump while a request waits on a socket.
    pub keep_alive: bool,
    pub clock: Clock,
    pub metrics: Metrics,
}

impl ClientOptions {
    pub fn new(org_url: Url, credentials: Credentials) -> Self {
        Self {
            org_url,
            credentials,
            rate_limit_share: 0.5,
            background_share: crate::config::DEFAULT_SCAN_SHARE,
            max_in_flight: 2,
            request_timeout: Duration::from_secs(30),
            max_transient_attempts: 4,
            max_rate_limited_attempts: 3,
            base_backoff: Duration::from_secs(1),
            keep_alive: true,
            clock: Clock::system(),
            metrics: Metrics::new(),
        }
    }
}

/// The class of a request made through a method that does not name one: most such callers
/// are retries (the worker and `retry` reading and posting app users).
pub const DEFAULT_CLASS: Class = Class::Retry;

/// One page of a paginated list.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The `rel="next"` URL, if Okta sent one.
    pub next: Option<String>,
}

enum Auth {
    Ssws(SecretString),
    OAuth(Box<OAuthSigner>),
}

struct Inner {
    http: reqwest::Client,
    org: Url,
    auth: Auth,
    budget: RateBudget,
    in_flight: Semaphore,
    /// Cancelled on shutdown: ends every wait of every request at once.
    stop: CancellationToken,
    opts: ClientOptions,
}

/// Cheaply cloneable Okta client.
#[derive(Clone)]
pub struct OktaClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OktaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktaClient")
            .field("org", &self.inner.org.as_str())
            .field("credentials", &self.inner.opts.credentials)
            .finish()
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    // Full jitter (AWS architecture blog): spreads retries of many clients evenly.
    let cap = Duration::from_secs(30);
    let exp = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let ms = exp.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

impl OktaClient {
    pub fn new(opts: ClientOptions) -> Result<Self, OktaError> {
        let mut org = opts.org_url.clone();
        org.set_path("");
        org.set_query(None);
        let auth = match &opts.credentials {
            Credentials::ApiToken(t) => Auth::Ssws(t.clone()),
            Credentials::OAuth {
                client_id,
                private_key_pem,
                key_id,
                scopes,
            } => Auth::OAuth(Box::new(
                OAuthSigner::new(client_id, private_key_pem, key_id.clone(), scopes.clone())
                    .map_err(OktaError::Config)?,
            )),
        };
        let mut http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config().map_err(OktaError::Config)?);
        if !opts.keep_alive {
            http = http.pool_max_idle_per_host(0);
        }
        let http = http
            .user_agent(concat!("okta-provwatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.request_timeout.min(Duration::from_secs(10)))
            // Redirects could carry the Authorization header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OktaError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                org,
                auth,
                budget: RateBudget::with_background_share(
                    opts.rate_limit_share,
                    opts.background_share,
                ),
                in_flight: Semaphore::new(opts.max_in_flight.clamp(1, 8)),
                stop: CancellationToken::new(),
                opts,
            }),
        })
    }

    pub fn org_url(&self) -> &Url {
        &self.inner.org
    }

    pub fn budget(&self) -> &RateBudget {
        &self.inner.budget
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.opts.metrics
    }

    /// Ends every wait on the budget, the in-flight cap and retry backoff now and for good:
    /// those requests fail with [`OktaError::Cancelled`] having sent nothing. Requests already
    /// sent are still awaited.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    /// Whether [`OktaClient::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.stop.is_cancelled()
    }

    /// Stops this client when `shutdown` fires (the daemon's shutdown token). Needs a tokio
    /// runtime: a small task waits for either.
    pub fn stop_on(&self, shutdown: CancellationToken) {
        let stop = self.inner.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => stop.cancel(),
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Sleeps `d` unless the client is stopped first.
    async fn pause(&self, d: Duration) -> Result<(), OktaError> {
        tokio::select! {
            biased;
            _ = self.inner.stop.cancelled() => Err(OktaError::Cancelled),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Resolves a path (`/api/v1/...`) or an absolute URL, refusing absolute URLs on another
    /// origin: a `next` link must never take the token elsewhere.
    pub fn resolve(&self, path_or_url: &str) -> Result<Url, OktaError> {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            Url::parse(path_or_url).map_err(|e| OktaError::Malformed {
                path: path_or_url.to_owned(),
                detail: format!("bad URL: {e}"),
            })?
        } else {
            self.inner
                .org
                .join(path_or_url)
                .map_err(|e| OktaError::Config(format!("bad path {path_or_url}: {e}")))?
        };
        if url.origin() != self.inner.org.origin() {
            return Err(OktaError::Malformed {
                path: url.path().to_owned(),
                detail: format!(
                    "refusing to follow a link to another origin ({})",
                    url.origin().ascii_serialization()
                ),
            });
        }
        Ok(url)
    }

    /// One request through the budget and the in-flight cap; no retries.
    async fn send_once(
        &self,
        bucket: Bucket,
        class: Class,
        path: &str,
        req: reqwest::RequestBuilder,
        stop: Option<&CancellationToken>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), OktaError> {
        let not_sent = || OktaError::NotSent {
            path: path.to_owned(),
        };
        // Budget first: a request waiting out its bucket's window must not hold one of the few
        // in-flight slots that requests to other buckets need meanwhile. The client's stop (the
        // daemon's shutdown) and the caller's stop token both end the wait: nothing was sent.
        let asked = Instant::now();
        let acquire = self.inner.budget.acquire(bucket, class, &self.inner.stop);
        match stop {
            Some(s) => tokio::select! {
                biased;
                _ = s.cancelled() => return Err(not_sent()),
                r = acquire => r.map_err(|_| OktaError::Cancelled)?,
            },
            None => acquire.await.map_err(|_| OktaError::Cancelled)?,
        }
        self.inner.opts.metrics.observe(
            "okta_budget_wait_seconds",
            &[("class", class.as_str())],
            asked.elapsed().as_secs_f64(),
        );
        // However this future ends (an answer, an error, or dropped by a shutdown or a caller's
        // timeout), a bucket whose limit is still unknown must get its probe back.
        let _probe = ProbeGuard {
            budget: &self.inner.budget,
            bucket,
        };
        // The call is counted: if a stop comes while waiting for an in-flight slot, nothing
        // was sent and the count only makes us more careful until the window ends.
        let never = CancellationToken::new();
        let caller_stop = stop.unwrap_or(&never);
        let _permit = tokio::select! {
            biased;
            _ = self.inner.stop.cancelled() => return Err(OktaError::Cancelled),
            _ = caller_stop.cancelled() => return Err(not_sent()),
            p = self.inner.in_flight.acquire() => {
                p.map_err(|_| OktaError::Config("client closed".into()))?
            }
        };
        let metrics = &self.inner.opts.metrics;
        let sent = tokio::time::timeout(self.inner.opts.request_timeout, async {
            let resp = req.send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        })
        .await;
        match sent {
            Ok(Ok((status, headers, body))) => {
                let rh = RateHeaders::parse(&headers, self.inner.opts.clock.now().timestamp());
                if status == StatusCode::TOO_MANY_REQUESTS {
                    self.inner
                        .budget
                        .on_rate_limited(bucket, rh, Instant::now());
                } else {
                    self.inner.budget.observe(bucket, rh, Instant::now());
                }
                if let Some(rh) = rh {
                    metrics.set(
                        "okta_rate_limit_remaining",
                        &[("bucket", bucket.as_str())],
                        rh.remaining as f64,
                    );
                    metrics.set(
                        "okta_rate_limit_limit",
                        &[("bucket", bucket.as_str())],
                        rh.limit as f64,
                    );
                }
                metrics.inc(
                    "okta_requests_total",
                    &[("bucket", bucket.as_str()), ("status", status.as_str())],
                );
                Ok((status, headers, body.to_vec()))
            }
            Ok(Err(e)) => {
                metrics.inc(
                    "okta_requests_total",
                    &[("bucket", bucket.as_str()), ("status", "error")],
                );
                // Named by host and cause, never by URL (the query may carry ids) and never
                // with a header.
                let host = e
                    .url()
                    .map(host_port)
                    .unwrap_or_else(|| host_port(&self.inner.opts.org_url));
                Err(OktaError::Retryable {
                    path: path.to_owned(),
                    detail: describe_transport(&host, &e),
                })
            }
            Err(_) => {
                metrics.inc(
                    "okta_requests_total",
                    &[("bucket", bucket.as_str()), ("status", "timeout")],
                );
                Err(OktaError::Retryable {
                    path: path.to_owned(),
                    detail: format!(
                        "no answer from {} within {} (okta.request_timeout)",
                        host_port(&self.inner.opts.org_url),
                        humantime::format_duration(self.inner.opts.request_timeout)
                    ),
                })
            }
        }
    }

    /// For a non-success answer: how long to wait before retrying, or `None` to give up.
    fn classify(&self, status: StatusCode, attempt: u32) -> Option<Duration> {
        let o = &self.inner.opts;
        if status == StatusCode::TOO_MANY_REQUESTS {
            if attempt >= o.max_rate_limited_attempts {
                return None;
            }
            // The budget already blocks the bucket until its reset; acquire() waits that out.
            return Some(Duration::ZERO);
        }
        if status.is_server_error() && attempt < o.max_transient_attempts {
            return Some(backoff(o.base_backoff, attempt));
        }
        None
    }

    fn error_for(&self, status: StatusCode, path: &str, body: &[u8], bucket: Bucket) -> OktaError {
        let detail = OktaErrorBody::parse(body)
            .map(|b| b.describe())
            .unwrap_or_else(|| format!("HTTP {status}"));
        let path = path.to_owned();
        match status.as_u16() {
            429 => OktaError::RateLimited {
                bucket,
                retry_after: self
                    .inner
                    .budget
                    .blocked_for(bucket, Instant::now())
                    .unwrap_or(Duration::from_secs(60)),
            },
            401 => OktaError::Unauthorized { detail },
            403 => OktaError::Forbidden { path, detail },
            404 => OktaError::NotFound { path, detail },
            s if (400..500).contains(&s) => OktaError::Permanent {
                status: s,
                path,
                detail,
            },
            _ => OktaError::Retryable { path, detail },
        }
    }

    /// Sends a request of [`DEFAULT_CLASS`] with retries; returns the body and headers of a 2xx
    /// answer.
    pub async fn request(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<(HeaderMap, Vec<u8>), OktaError> {
        self.request_with_unless(DEFAULT_CLASS, method, path_or_url, body, None)
            .await
    }

    /// Sends a request of `class` with retries; returns the body and headers of a 2xx answer.
    pub async fn request_with(
        &self,
        class: Class,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<(HeaderMap, Vec<u8>), OktaError> {
        self.request_with_unless(class, method, path_or_url, body, None)
            .await
    }

    /// [`OktaClient::request_with`] that sends nothing once `stop` is cancelled: waits for the
    /// budget or an in-flight slot end with [`OktaError::NotSent`], and a retry of an
    /// answered attempt is not sent (its answer is returned). A request already on the wire
    /// is awaited (bounded by `okta.request_timeout`), so its result can be recorded.
    pub async fn request_with_unless(
        &self,
        class: Class,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
        stop: Option<&CancellationToken>,
    ) -> Result<(HeaderMap, Vec<u8>), OktaError> {
        if self.is_stopped() {
            return Err(OktaError::Cancelled);
        }
        let url = self.resolve(path_or_url)?;
        let bucket = Bucket::for_path(url.path());
        let path = url.path().to_owned();
        let mut attempt = 0u32;
        let mut reauthed = false;
        let mut nonce_retried = false;
        loop {
            attempt += 1;
            let (auth, proof) = self.auth_headers(class, &method, &url).await?;
            let mut req = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, auth)
                .header("Accept", "application/json");
            if let Some(p) = proof.as_ref() {
                req = req.header("DPoP", p.clone());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let out = self.send_once(bucket, class, &path, req, stop).await;
            let stopping = stop.is_some_and(|s| s.is_cancelled());
            if let (Ok((_, headers, _)), Auth::OAuth(signer), Some(_)) =
                (&out, &self.inner.auth, &proof)
            {
                if let Some(n) = dpop::nonce(headers) {
                    dpop_state(signer).resource_nonce = Some(n);
                }
            }
            match out {
                Ok((status, headers, body)) if status.is_success() => return Ok((headers, body)),
                Ok((status, headers, rbody)) => {
                    if status == StatusCode::UNAUTHORIZED
                        && proof.is_some()
                        && !nonce_retried
                        && dpop::asks_for_nonce(&headers)
                        && dpop::nonce(&headers).is_some()
                    {
                        // The resource server wants a fresh nonce in the proof (kept above).
                        nonce_retried = true;
                        attempt -= 1;
                        continue;
                    }
                    if status == StatusCode::UNAUTHORIZED && !reauthed {
                        if let Auth::OAuth(signer) = &self.inner.auth {
                            // The access token may have been revoked early: fetch one more.
                            *signer.cached.lock().await = None;
                            reauthed = true;
                            continue;
                        }
                    }
                    match self.classify(status, attempt).filter(|_| !stopping) {
                        Some(wait) => {
                            tracing::debug!(%status, path = %path, attempt, "Okta answered an error; retrying");
                            self.pause(wait).await?;
                        }
                        None => return Err(self.error_for(status, &path, &rbody, bucket)),
                    }
                }
                Err(e) => {
                    if matches!(e, OktaError::Cancelled)
                        || attempt >= self.inner.opts.max_transient_attempts
                        || stopping
                    {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, attempt, "Okta request failed; backing off");
                    self.pause(backoff(self.inner.opts.base_backoff, attempt))
                        .await?;
                }
            }
        }
    }
}

/// Gives back an unknown bucket's probe when a request ends without an answer.
struct ProbeGuard<'a> {
    budget: &'a RateBudget,
    bucket: Bucket,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.budget.release_probe(self.bucket);
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn strip_query(u: &str) -> &str {
    u.split('?').next().unwrap_or(u)
}

fn parse_body<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, OktaError> {
    serde_json::from_slice(body).map_err(|e| OktaError::Malformed {
        path: strip_query(path).to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn backoff_grows_and_caps() {
        let b = backoff(Duration::from_secs(1), 1);
        assert!(b >= Duration::from_secs(1) && b <= Duration::from_secs(2));
        let b = backoff(Duration::from_secs(1), 10);
        assert!(b <= Duration::from_secs(30) && b >= Duration::from_secs(15));
    }

    #[test]
    fn refuses_other_origins() {
        let c = OktaClient::new(ClientOptions::new(
            Url::parse("https://acme.okta.com").unwrap(),
            Credentials::ApiToken(SecretString::from("t")),
        ))
        .unwrap();
        assert!(c.resolve("https://evil.example/api/v1/logs").is_err());
        assert!(c
            .resolve("https://acme.okta.com/api/v1/logs?after=x")
            .is_ok());
        assert_eq!(
            c.resolve("/api/v1/logs").unwrap().as_str(),
            "https://acme.okta.com/api/v1/logs"
        );
    }
}
