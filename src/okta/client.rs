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
//! already on the wire is awaited (bounded by `request_timeout`) so its answer is recorded.

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

/// TLS for the Okta API on rustls with the ring provider (reqwest's own default would be
/// aws-lc, a C build this project avoids): the host's CA store, or Mozilla's bundled roots when
/// the host has none, as the Slack channel does.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("configuring TLS for Okta: {e}"))
    };
    Ok(match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(err) => {
            tracing::warn!(error = %err, "no usable system CA certificates; using bundled Mozilla roots for Okta");
            builder()?.with_webpki_roots().with_no_client_auth()
        }
    })
}

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

/// The `rel="next"` target of one or more `Link` headers.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(LINK) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let target = target.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_owned());
            }
        }
    }
    None
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

    /// The `Authorization` header for a request, and its `DPoP` proof when the service app
    /// requires DPoP.
    async fn auth_headers(
        &self,
        class: Class,
        method: &Method,
        url: &Url,
    ) -> Result<(HeaderValue, Option<HeaderValue>), OktaError> {
        let signer = match &self.inner.auth {
            Auth::Ssws(t) => {
                let mut v = HeaderValue::from_str(&format!("SSWS {}", t.expose_secret())).map_err(
                    |_| {
                        OktaError::Config(
                            "the API token has characters not allowed in a header".into(),
                        )
                    },
                )?;
                v.set_sensitive(true);
                return Ok((v, None));
            }
            Auth::OAuth(signer) => signer,
        };
        let tok = {
            let mut slot = signer.cached.lock().await;
            match slot.as_ref() {
                Some((tok, exp)) if Instant::now() < *exp => tok.clone(),
                _ => {
                    let (tok, ttl) = self.fetch_token(signer, class).await?;
                    OAuthSigner::remember(&mut slot, tok.clone(), ttl);
                    tok
                }
            }
        };
        let (enabled, nonce) = {
            let d = dpop_state(signer);
            (d.enabled, d.resource_nonce.clone())
        };
        let scheme = if enabled { "DPoP" } else { "Bearer" };
        let mut v = HeaderValue::from_str(&format!("{scheme} {}", tok.expose_secret()))
            .map_err(|_| OktaError::Config("access token is not a header value".into()))?;
        v.set_sensitive(true);
        if !enabled {
            return Ok((v, None));
        }
        let proof = DpopKey::process()
            .and_then(|k| {
                k.proof(
                    method.as_str(),
                    url,
                    self.inner.opts.clock.now().timestamp(),
                    nonce.as_deref(),
                    Some(tok.expose_secret()),
                )
            })
            .map_err(|e| OktaError::Config(format!("DPoP proof: {e}")))?;
        let mut p = HeaderValue::from_str(&proof)
            .map_err(|_| OktaError::Config("DPoP proof is not a header value".into()))?;
        p.set_sensitive(true);
        Ok((v, Some(p)))
    }

    /// Client credentials grant with a `private_key_jwt` assertion. A service app that requires
    /// DPoP answers `invalid_dpop_proof` to a request without a proof: the client then switches
    /// to DPoP for good, and retries once more when the server asks for a nonce.
    async fn fetch_token(
        &self,
        signer: &OAuthSigner,
        class: Class,
    ) -> Result<(SecretString, Duration), OktaError> {
        let url = self.resolve("/oauth2/v1/token")?;
        let aud = url.as_str().to_owned();
        let mut attempt = 0u32;
        let mut switched = false;
        let mut nonce_retried = false;
        loop {
            attempt += 1;
            let assertion = signer
                .assertion(&aud, &self.inner.opts.clock)
                .map_err(|e| OktaError::Config(format!("signing the client assertion: {e}")))?;
            let scope = signer.scopes.join(" ");
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ];
            let mut req = self
                .inner
                .http
                .post(url.clone())
                .header("Accept", "application/json")
                .form(&form);
            let (dpop_on, nonce) = {
                let d = dpop_state(signer);
                (d.enabled, d.token_nonce.clone())
            };
            if dpop_on {
                let proof = DpopKey::process()
                    .and_then(|k| {
                        k.proof(
                            "POST",
                            &url,
                            self.inner.opts.clock.now().timestamp(),
                            nonce.as_deref(),
                            None,
                        )
                    })
                    .map_err(|e| OktaError::Config(format!("DPoP proof: {e}")))?;
                let mut p = HeaderValue::from_str(&proof)
                    .map_err(|_| OktaError::Config("DPoP proof is not a header value".into()))?;
                p.set_sensitive(true);
                req = req.header("DPoP", p);
            }
            let out = self
                .send_once(Bucket::OAuthToken, class, "/oauth2/v1/token", req, None)
                .await;
            if let Ok((_, headers, _)) = &out {
                if let Some(n) = dpop::nonce(headers).filter(|_| dpop_on) {
                    dpop_state(signer).token_nonce = Some(n);
                }
            }
            match out {
                Ok((status, _, body)) if status.is_success() => {
                    let t: TokenResponse =
                        serde_json::from_slice(&body).map_err(|e| OktaError::Malformed {
                            path: "/oauth2/v1/token".into(),
                            detail: e.to_string(),
                        })?;
                    let expected = if dpop_on { "DPoP" } else { "Bearer" };
                    if t.token_type
                        .as_deref()
                        .is_some_and(|tt| !tt.eq_ignore_ascii_case(expected))
                    {
                        return Err(OktaError::Config(format!(
                            "token endpoint issued a {:?} token; expected {expected}",
                            t.token_type.unwrap_or_default()
                        )));
                    }
                    let ttl = Duration::from_secs(t.expires_in.unwrap_or(3600).clamp(60, 86_400));
                    return Ok((SecretString::from(t.access_token), ttl));
                }
                Ok((status, headers, body)) => {
                    let err = serde_json::from_slice::<OAuthErrorBody>(&body).ok();
                    let code = err.as_ref().map(|e| e.error.as_str()).unwrap_or("");
                    if status == StatusCode::BAD_REQUEST {
                        if code == "invalid_dpop_proof" && !dpop_on && !switched {
                            // The service app requires DPoP: from now on, every token request
                            // carries a proof and every token is DPoP-bound.
                            tracing::info!("the OAuth service app requires DPoP; switching to DPoP-bound tokens");
                            dpop_state(signer).enabled = true;
                            switched = true;
                            attempt -= 1;
                            continue;
                        }
                        if code == "use_dpop_nonce"
                            && dpop_on
                            && !nonce_retried
                            && dpop::nonce(&headers).is_some()
                        {
                            nonce_retried = true;
                            attempt -= 1;
                            continue;
                        }
                    }
                    let detail = err
                        .map(|e| format!("{}: {}", e.error, e.error_description))
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    match self.classify(status, attempt) {
                        Some(wait) => {
                            self.pause(wait).await?;
                            continue;
                        }
                        None if status == StatusCode::BAD_REQUEST
                            || status == StatusCode::UNAUTHORIZED =>
                        {
                            return Err(OktaError::Unauthorized {
                                detail: format!("OAuth token request refused: {detail}"),
                            })
                        }
                        None => {
                            return Err(self.error_for(
                                status,
                                "/oauth2/v1/token",
                                &body,
                                Bucket::OAuthToken,
                            ))
                        }
                    }
                }
                Err(e) => {
                    if matches!(e, OktaError::Cancelled)
                        || attempt >= self.inner.opts.max_transient_attempts
                    {
                        return Err(e);
                    }
                    self.pause(backoff(self.inner.opts.base_backoff, attempt))
                        .await?;
                }
            }
        }
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

    /// GET and deserialize a JSON body ([`DEFAULT_CLASS`]).
    pub async fn get_json<T: DeserializeOwned>(&self, path_or_url: &str) -> Result<T, OktaError> {
        self.get_json_with(DEFAULT_CLASS, path_or_url).await
    }

    /// GET and deserialize a JSON body, as a request of `class`.
    pub async fn get_json_with<T: DeserializeOwned>(
        &self,
        class: Class,
        path_or_url: &str,
    ) -> Result<T, OktaError> {
        let (_, body) = self
            .request_with(class, Method::GET, path_or_url, None)
            .await?;
        parse_body(path_or_url, &body)
    }

    /// GET one page of a list ([`DEFAULT_CLASS`]); see [`OktaClient::get_page_with`].
    pub async fn get_page(&self, path_or_url: &str) -> Result<Page<Value>, OktaError> {
        self.get_page_with(DEFAULT_CLASS, path_or_url).await
    }

    /// GET one page of a list, with its `next` link, as a request of `class`. Items are
    /// returned as raw JSON so that the caller can skip a single malformed object instead of
    /// losing the page.
    pub async fn get_page_with(
        &self,
        class: Class,
        path_or_url: &str,
    ) -> Result<Page<Value>, OktaError> {
        let (headers, body) = self
            .request_with(class, Method::GET, path_or_url, None)
            .await?;
        let items: Vec<Value> = parse_body(path_or_url, &body)?;
        Ok(Page {
            items,
            next: next_link(&headers),
        })
    }

    /// Every page of a list (for small lists such as the org's apps), as requests of `class`.
    pub async fn get_all_with<T: DeserializeOwned>(
        &self,
        class: Class,
        first: &str,
    ) -> Result<Vec<T>, OktaError> {
        let mut out = Vec::new();
        let mut url = first.to_owned();
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = self.get_page_with(class, &url).await?;
            for item in page.items {
                match serde_json::from_value::<T>(item) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        tracing::warn!(error = %e, url = %strip_query(&url), "skipping a malformed object in an Okta list")
                    }
                }
            }
            match page.next {
                Some(n) if seen.insert(n.clone()) && n != url => url = n,
                _ => return Ok(out),
            }
        }
    }

    /// Every page of a list ([`DEFAULT_CLASS`]).
    pub async fn get_all<T: DeserializeOwned>(&self, first: &str) -> Result<Vec<T>, OktaError> {
        self.get_all_with(DEFAULT_CLASS, first).await
    }

    /// The org's active apps ([`DEFAULT_CLASS`]).
    pub async fn list_apps(&self) -> Result<Vec<Application>, OktaError> {
        self.list_apps_with(DEFAULT_CLASS).await
    }

    /// The org's active apps, as requests of `class`.
    pub async fn list_apps_with(&self, class: Class) -> Result<Vec<Application>, OktaError> {
        self.get_all_with(
            class,
            "/api/v1/apps?filter=status%20eq%20%22ACTIVE%22&limit=200",
        )
        .await
    }

    pub async fn get_app(&self, app_id: &str) -> Result<Application, OktaError> {
        self.get_json(&format!("/api/v1/apps/{}", enc(app_id)))
            .await
    }

    pub async fn provisioning_feature(
        &self,
        app_id: &str,
    ) -> Result<ProvisioningFeature, OktaError> {
        self.provisioning_feature_with(DEFAULT_CLASS, app_id).await
    }

    pub async fn provisioning_feature_with(
        &self,
        class: Class,
        app_id: &str,
    ) -> Result<ProvisioningFeature, OktaError> {
        self.get_json_with(
            class,
            &format!("/api/v1/apps/{}/features/USER_PROVISIONING", enc(app_id)),
        )
        .await
    }

    /// The principal rate limits of one principal type (`SSWS_TOKEN` or `OAUTH_CLIENT`; Okta
    /// requires the filter). Needs `okta.principalRateLimits.read` or an admin role that
    /// includes it: otherwise [`OktaError::Forbidden`].
    pub async fn principal_rate_limits_with(
        &self,
        class: Class,
        principal_type: &str,
    ) -> Result<Vec<PrincipalRateLimit>, OktaError> {
        let filter = format!("principalType eq \"{principal_type}\"");
        self.get_all_with(
            class,
            // %20 rather than `+` for spaces: the form of Okta's own examples.
            &format!(
                "/api/v1/principal-rate-limits?filter={}",
                percent_encoding::utf8_percent_encode(&filter, percent_encoding::NON_ALPHANUMERIC)
            ),
        )
        .await
    }

    /// First page URL of an app's users, 500 at a time with the Okta user embedded.
    pub fn app_users_url(app_id: &str) -> String {
        format!("/api/v1/apps/{}/users?limit=500&expand=user", enc(app_id))
    }

    /// Reads an app user ([`DEFAULT_CLASS`]).
    pub async fn get_app_user(&self, app_id: &str, user_id: &str) -> Result<AppUser, OktaError> {
        self.get_app_user_with(DEFAULT_CLASS, app_id, user_id).await
    }

    /// Reads an app user as a request of `class` (a retry's read-back: [`Class::ReadBack`]).
    pub async fn get_app_user_with(
        &self,
        class: Class,
        app_id: &str,
        user_id: &str,
    ) -> Result<AppUser, OktaError> {
        self.get_json_with(
            class,
            &format!(
                "/api/v1/apps/{}/users/{}?expand=user",
                enc(app_id),
                enc(user_id)
            ),
        )
        .await
    }

    /// Posts an app user's profile back, which makes Okta push the user to the app again
    /// ([`DEFAULT_CLASS`]).
    pub async fn update_app_user(
        &self,
        app_id: &str,
        user_id: &str,
        body: &Value,
    ) -> Result<AppUser, OktaError> {
        self.update_app_user_with(DEFAULT_CLASS, app_id, user_id, body)
            .await
    }

    /// Posts an app user's profile back as a request of `class`.
    pub async fn update_app_user_with(
        &self,
        class: Class,
        app_id: &str,
        user_id: &str,
        body: &Value,
    ) -> Result<AppUser, OktaError> {
        self.update_app_user_with_unless(class, app_id, user_id, body, None)
            .await
    }

    /// [`OktaClient::update_app_user_with`] that is not sent once `stop` is cancelled (see
    /// [`OktaClient::request_with_unless`]).
    pub async fn update_app_user_with_unless(
        &self,
        class: Class,
        app_id: &str,
        user_id: &str,
        body: &Value,
        stop: Option<&CancellationToken>,
    ) -> Result<AppUser, OktaError> {
        let path = format!("/api/v1/apps/{}/users/{}", enc(app_id), enc(user_id));
        let (_, b) = self
            .request_with_unless(class, Method::POST, &path, Some(body), stop)
            .await?;
        parse_body(&path, &b)
    }
}

fn dpop_state(signer: &OAuthSigner) -> std::sync::MutexGuard<'_, DpopState> {
    signer.dpop.lock().unwrap_or_else(|e| e.into_inner())
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
    fn parses_link_headers() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://x.okta.com/api/v1/logs?limit=5>; rel=\"self\""),
        );
        h.append(
            LINK,
            HeaderValue::from_static(
                "<https://x.okta.com/api/v1/logs?after=1_2&limit=5>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://x.okta.com/api/v1/logs?after=1_2&limit=5")
        );
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static("<https://a/1>; rel=\"self\", <https://a/2>; rel=\"next\""),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://a/2"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

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

/// Property tests (issue 10): the `Link` header parser.
#[cfg(test)]
mod link_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary header values never panic the parser, and what it returns was between
        /// `<` and `>` in one of them.
        #[test]
        fn never_panics(values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..4)) {
            let mut h = HeaderMap::new();
            for v in &values {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(LINK, v);
                }
            }
            if let Some(next) = next_link(&h) {
                let wrapped = format!("<{}>", next);
                prop_assert!(values.iter().any(|v| String::from_utf8_lossy(v).contains(&wrapped)));
            }
        }

        /// The `next` target is found whatever the order of the links, the spacing around `;`,
        /// the quoting of `rel`, and whether the links share one header or come in several.
        #[test]
        fn finds_next_among_others(
            next in "https://acme\\.okta\\.com/api/v1/logs\\?after=[0-9]{1,13}_[0-9]{1,6}&limit=1000",
            others in prop::collection::vec(("https://acme\\.okta\\.com/[a-z]{0,10}", prop::sample::select(vec!["self", "prev", "first"])), 0..3),
            pos in 0usize..4,
            quoted in any::<bool>(),
            spaced in any::<bool>(),
            one_header in any::<bool>(),
        ) {
            let sep = if spaced { " ; " } else { ";" };
            let rel = |r: &str| if quoted { format!("rel=\"{r}\"") } else { format!("rel={r}") };
            let mut links: Vec<String> = others.iter().map(|(u, r)| format!("<{u}>{sep}{}", rel(r))).collect();
            links.insert(pos.min(links.len()), format!("<{next}>{sep}{}", rel("next")));
            let mut h = HeaderMap::new();
            if one_header {
                h.append(LINK, HeaderValue::from_str(&links.join(", ")).unwrap());
            } else {
                for l in &links {
                    h.append(LINK, HeaderValue::from_str(l).unwrap());
                }
            }
            prop_assert_eq!(next_link(&h), Some(next));
        }
    }
}
