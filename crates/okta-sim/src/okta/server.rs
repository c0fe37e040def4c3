//! The HTTP front: one axum fallback handler that does what Okta's edge does (concurrency and
//! per-bucket rate limits, authentication, scopes), applies injected faults, routes to the
//! org's resources, and stamps the rate-limit and `Date` headers on every answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

use super::apps::{list_app_users, list_apps, update_app_user};
use super::clock::http_date;
use super::errors::{self, Reply};
use super::logs::list_logs;
use super::oauth::{sha256_b64url, verify_proof};
use super::{hook_delivery, hooks, tasks};
use super::{AuthKind, Bucket, FaultKind, Inner, RequestRecord, Window};

const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new().fallback(handle).with_state(inner)
}

struct InFlight<'a>(&'a Inner);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Limits {
    limit: u32,
    remaining: u32,
    reset: i64,
}

pub(crate) type Params = Vec<(String, String)>;

pub(crate) fn param<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

async fn handle(AxState(inner): AxState<Arc<Inner>>, req: Request) -> Response {
    let at = inner.clock.now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let path_q = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let query = uri.query().unwrap_or("").to_string();
    let bucket = Bucket::for_path(&path);
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let dpop_header = req
        .headers()
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let dpop = dpop_header.as_deref();

    let n = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight(&inner);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();

    let (limits, admitted) = admit(&inner, bucket, n);
    let auth;
    let mut malformed = false;
    let reply = if !admitted {
        auth = classify_auth(&inner, auth_header.as_deref(), &path);
        errors::rate_limited()
    } else {
        match authenticate(&inner, auth_header.as_deref(), dpop, &path, &method) {
            Err((kind, reply)) => {
                auth = kind;
                reply
            }
            Ok(kind) => {
                auth = kind;
                let fault = take_fault(&inner, bucket, &method, &path);
                match fault {
                    Some(FaultKind::ServerError(code)) => errors::server_error(code),
                    Some(FaultKind::Unauthorized) => errors::invalid_token(),
                    Some(FaultKind::Slow(d)) => {
                        tokio::time::sleep(d).await;
                        dispatch(&inner, &method, &path, &query, &body, dpop).await
                    }
                    Some(FaultKind::MalformedJson) => {
                        malformed = true;
                        dispatch(&inner, &method, &path, &query, &body, dpop).await
                    }
                    Some(FaultKind::LogNextLoop) => {
                        let mut r = dispatch(&inner, &method, &path, &query, &body, dpop).await;
                        let self_url = format!("{}{}", inner.base, path_q);
                        for (name, value) in r.headers.iter_mut() {
                            if name == "Link" && value.ends_with("rel=\"next\"") {
                                *value = format!("<{self_url}>; rel=\"next\"");
                            }
                        }
                        r
                    }
                    Some(FaultKind::MissingFields) => {
                        let mut r = dispatch(&inner, &method, &path, &query, &body, dpop).await;
                        strip_required(&mut r.body);
                        r
                    }
                    None => dispatch(&inner, &method, &path, &query, &body, dpop).await,
                }
            }
        }
    };

    // Whatever the request changed may be due to an event hook.
    inner.hook_wake.notify_one();
    let status = reply.status;
    let mut bytes = if status == 204 {
        Vec::new()
    } else {
        serde_json::to_vec(&reply.body).unwrap_or_default()
    };
    if status == 200 && method == Method::GET && path == "/api/v1/logs" {
        if let Some(raw) = inner.lock().raw_log_pages.pop_front() {
            bytes = raw;
        }
    }
    if malformed {
        // Cut mid-document so no JSON parser accepts it.
        let keep = (bytes.len() / 2).max(2);
        bytes.truncate(keep.min(bytes.len()));
        if serde_json::from_slice::<Value>(&bytes).is_ok() {
            bytes = b"[{\"uuid\":".to_vec();
        }
    }
    let now = inner.clock.now();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::DATE, hv(&http_date(now)));
    h.insert("x-rate-limit-limit", hv(&limits.limit.to_string()));
    h.insert("x-rate-limit-remaining", hv(&limits.remaining.to_string()));
    h.insert("x-rate-limit-reset", hv(&limits.reset.to_string()));
    for (name, value) in &reply.headers {
        if let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) {
            h.append(name, hv(value));
        }
    }
    inner.lock().requests.push(RequestRecord {
        method: method.to_string(),
        path: path_q,
        bucket,
        status,
        at,
        auth,
    });
    resp
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Counts the request, and decides whether the concurrency and window limits admit it.
fn admit(inner: &Inner, bucket: Bucket, in_flight: usize) -> (Limits, bool) {
    let now_i = inner.clock.instant();
    let now = inner.clock.now();
    let mut st = inner.lock();
    let st = &mut *st;
    st.stats.total += 1;
    *st.stats.by_bucket.entry(bucket).or_insert(0) += 1;
    st.stats.max_in_flight = st.stats.max_in_flight.max(in_flight);
    let limit = st.limits.get(&bucket).copied().unwrap_or(600);
    let expired = st
        .windows
        .get(&bucket)
        .is_none_or(|w| now_i.duration_since(w.start) >= WINDOW);
    if expired {
        st.windows.insert(
            bucket,
            Window {
                start: now_i,
                start_sim: now,
                served: 0,
            },
        );
    }
    let w = st.windows.get_mut(&bucket).expect("window just ensured");
    let reset_at = w.start_sim + chrono::Duration::seconds(60);
    // Round up: a client sleeping until Reset must land in the next window.
    let reset = reset_at.timestamp() + i64::from(reset_at.timestamp_subsec_nanos() > 0);
    if in_flight > st.concurrency_limit {
        // Okta: when a request exceeds the concurrent limit, the three headers "report the
        // concurrent values" instead of the per-minute bucket: the concurrency ceiling, none
        // remaining, and an estimated (not guaranteed) time by which requests in flight finish.
        st.stats.rate_limited += 1;
        let soon = now + chrono::Duration::seconds(1);
        let reset = soon.timestamp() + i64::from(soon.timestamp_subsec_nanos() > 0);
        let limit = u32::try_from(st.concurrency_limit).unwrap_or(u32::MAX);
        return (
            Limits {
                limit,
                remaining: 0,
                reset,
            },
            false,
        );
    }
    let admitted = w.served < limit;
    if admitted {
        w.served += 1;
        let m = st.stats.max_per_window.entry(bucket).or_insert(0);
        *m = (*m).max(w.served);
    } else {
        st.stats.rate_limited += 1;
    }
    (
        Limits {
            limit,
            remaining: limit.saturating_sub(w.served),
            reset,
        },
        admitted,
    )
}

fn classify_auth(inner: &Inner, header: Option<&str>, path: &str) -> AuthKind {
    if path == "/oauth2/v1/token" {
        return AuthKind::ClientAssertion;
    }
    let now = inner.clock.now();
    let st = inner.lock();
    match header {
        None => AuthKind::None,
        Some(h) => {
            if let Some(t) = h.strip_prefix("SSWS ") {
                if t.trim() == st.api_token {
                    return AuthKind::Ssws;
                }
            } else if let Some(t) = h.strip_prefix("Bearer ") {
                if st
                    .oauth
                    .tokens
                    .get(t.trim())
                    .is_some_and(|tok| tok.expires > now)
                {
                    return AuthKind::Bearer;
                }
            } else if let Some(t) = h.strip_prefix("DPoP ") {
                if st
                    .oauth
                    .tokens
                    .get(t.trim())
                    .is_some_and(|tok| tok.expires > now && tok.jkt.is_some())
                {
                    return AuthKind::Dpop;
                }
            }
            AuthKind::Invalid
        }
    }
}

/// The scope a Bearer token needs for this route (alternatives: any one is enough).
fn required_scopes(method: &Method, path: &str) -> &'static [&'static str] {
    match (Bucket::for_path(path), method.as_str()) {
        (Bucket::Logs, _) => &["okta.logs.read"],
        (Bucket::Apps | Bucket::AppInstance, "GET") => &["okta.apps.read", "okta.apps.manage"],
        (Bucket::Apps | Bucket::AppInstance, _) => &["okta.apps.manage"],
        (Bucket::Users, "GET") => &["okta.users.read", "okta.users.manage"],
        (Bucket::Users, _) => &["okta.users.manage"],
        _ if path.starts_with("/api/v1/eventHooks") && method == Method::GET => {
            &["okta.eventHooks.read", "okta.eventHooks.manage"]
        }
        _ if path.starts_with("/api/v1/eventHooks") => &["okta.eventHooks.manage"],
        _ if path.starts_with("/api/v1/agentPools") => &["okta.agentPools.read"],
        _ if path.starts_with("/api/v1/principal-rate-limits") => &[
            "okta.principalRateLimits.read",
            "okta.principalRateLimits.manage",
        ],
        _ => &[],
    }
}

/// 401 for a DPoP-bound token presented without a valid proof (RFC 9449, section 7.1).
fn dpop_refused(error: &str, description: &str) -> Reply {
    errors::invalid_token().with_header(
        "WWW-Authenticate",
        format!(
            "DPoP algs=\"ES256\", error=\"{error}\", error_description=\"{}\"",
            description.replace('"', "'")
        ),
    )
}

fn authenticate(
    inner: &Inner,
    header: Option<&str>,
    dpop: Option<&str>,
    path: &str,
    method: &Method,
) -> Result<AuthKind, (AuthKind, Reply)> {
    if !path.starts_with("/api/") {
        return Ok(classify_auth(inner, header, path));
    }
    let now = inner.clock.now();
    let mut st = inner.lock();
    let Some(h) = header else {
        return Err((AuthKind::None, errors::invalid_token()));
    };
    if let Some(t) = h.strip_prefix("SSWS ") {
        if t.trim() == st.api_token {
            return Ok(AuthKind::Ssws);
        }
    } else if let Some(t) = h.strip_prefix("DPoP ") {
        let t = t.trim();
        let refuse = |d: &str| Err((AuthKind::Invalid, dpop_refused("invalid_dpop_proof", d)));
        let Some(tok) = st.oauth.tokens.get(t).cloned() else {
            return Err((AuthKind::Invalid, errors::invalid_token()));
        };
        let Some(jkt) = tok.jkt.as_deref().filter(|_| tok.expires > now) else {
            return Err((AuthKind::Invalid, errors::invalid_token()));
        };
        let Some(proof) = dpop else {
            return refuse("The DPoP proof JWT header is missing.");
        };
        let htu = format!("{}{}", inner.base, path);
        let p = match verify_proof(proof, method.as_str(), &htu, now, &st.oauth.dpop_jti) {
            Ok(p) => p,
            Err(d) => return refuse(&d),
        };
        if p.jkt != jkt {
            return refuse("The DPoP proof key is not the key the access token is bound to.");
        }
        if p.ath.as_deref() != Some(sha256_b64url(t.as_bytes()).as_str()) {
            return refuse("The DPoP proof 'ath' does not match the access token.");
        }
        if st.oauth.resource_nonce_required {
            let nonce = st
                .oauth
                .resource_nonce
                .get_or_insert_with(|| super::ids::random_alnum(32))
                .clone();
            if p.nonce.as_deref() != Some(nonce.as_str()) {
                return Err((
                    AuthKind::Invalid,
                    dpop_refused(
                        "use_dpop_nonce",
                        "Resource server requires nonce in DPoP proof.",
                    )
                    .with_header("DPoP-Nonce", nonce),
                ));
            }
        }
        st.oauth.dpop_jti.insert(p.jti);
        let need = required_scopes(method, path);
        if need.is_empty() || need.iter().any(|s| tok.scopes.contains(*s)) {
            return Ok(AuthKind::Dpop);
        }
        return Err((
            AuthKind::Dpop,
            errors::forbidden_scope(need[0], &inner.base, path),
        ));
    } else if let Some(t) = h.strip_prefix("Bearer ") {
        if let Some(tok) = st.oauth.tokens.get(t.trim()) {
            if tok.jkt.is_some() {
                return Err((
                    AuthKind::Invalid,
                    dpop_refused(
                        "invalid_dpop_proof",
                        "A DPoP-bound access token must be presented with the DPoP scheme and a proof.",
                    ),
                ));
            }
            if tok.expires > now {
                let need = required_scopes(method, path);
                if need.is_empty() || need.iter().any(|s| tok.scopes.contains(*s)) {
                    return Ok(AuthKind::Bearer);
                }
                return Err((
                    AuthKind::Bearer,
                    errors::forbidden_scope(need[0], &inner.base, path),
                ));
            }
        }
    }
    Err((AuthKind::Invalid, errors::invalid_token()))
}

fn take_fault(inner: &Inner, bucket: Bucket, method: &Method, path: &str) -> Option<FaultKind> {
    let mut st = inner.lock();
    let is_get = method == Method::GET;
    let is_logs = is_get && path == "/api/v1/logs";
    let lists =
        is_get && (is_logs || path.starts_with("/api/v1/apps")) && !path.contains("/features");
    let idx = st.faults.iter().position(|f| {
        f.bucket.is_none_or(|b| b == bucket)
            && match f.kind {
                FaultKind::LogNextLoop => is_logs,
                FaultKind::MissingFields => lists,
                _ => true,
            }
    })?;
    let f = &mut st.faults[idx];
    let kind = f.kind;
    f.times -= 1;
    if f.times == 0 {
        st.faults.remove(idx);
    }
    Some(kind)
}

/// Removes spec-required or key fields from listed items, for `FaultKind::MissingFields`.
fn strip_required(body: &mut Value) {
    let strip = |i: usize, v: &mut Value| {
        let Some(o) = v.as_object_mut() else { return };
        if o.contains_key("eventType") {
            let key = ["eventType", "uuid", "target"][i % 3];
            o.remove(key);
        } else if o.contains_key("syncState") {
            if i % 2 == 0 {
                o.remove("id");
            } else {
                o.remove("status");
                o.remove("syncState");
            }
        } else if o.contains_key("signOnMode") {
            if i % 2 == 0 {
                o.remove("label");
                o.remove("signOnMode");
            } else {
                o.remove("id");
            }
        }
    };
    match body {
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                strip(i, v);
            }
        }
        v @ Value::Object(_) => strip(0, v),
        _ => {}
    }
}

/// Routes that take their own locks (event hooks, whose verification waits on the network),
/// then everything else under one lock.
async fn dispatch(
    inner: &Inner,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    dpop: Option<&str>,
) -> Reply {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["api", "v1", "eventHooks", id, "lifecycle", "verify"] if method == Method::POST => {
            hook_delivery::verify(inner, id).await
        }
        ["api", "v1", "eventHooks", rest @ ..] => hooks::route(inner, method.as_str(), rest, body),
        _ => route(inner, method, path, query, body, dpop),
    }
}

fn route(
    inner: &Inner,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    dpop: Option<&str>,
) -> Reply {
    let params: Params = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let now = inner.clock.now();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    let not_allowed = || {
        errors::okta_error(
            405,
            "E0000022",
            "The endpoint does not support the provided HTTP method",
        )
    };
    let mut st = inner.lock();
    match segs.as_slice() {
        ["oauth2", "v1", "token"] if post => {
            let url = format!("{}/oauth2/v1/token", inner.base);
            st.oauth.token(body, &url, dpop, now)
        }
        ["oauth2", "v1", "token"] => not_allowed(),
        ["api", "v1", "logs"] if get => list_logs(&st, &params, &inner.base, now),
        ["api", "v1", "apps"] if get => list_apps(&st.org, &params),
        ["api", "v1", "apps", app_id] if get => match st.org.apps.get(*app_id) {
            Some(app) => Reply::ok(st.org.app_json(app)),
            None => errors::not_found(app_id, "AppInstance"),
        },
        ["api", "v1", "apps", app_id, "features"] if get => match st.org.apps.get(*app_id) {
            Some(app) => Reply::ok(Value::Array(st.org.feature_json(app).into_iter().collect())),
            None => errors::not_found(app_id, "AppInstance"),
        },
        ["api", "v1", "apps", app_id, "features", name] if get => match st.org.apps.get(*app_id) {
            None => errors::not_found(app_id, "AppInstance"),
            Some(app) => match st.org.feature_json(app) {
                Some(f) if *name == "USER_PROVISIONING" => Reply::ok(f),
                _ => errors::not_found(name, "ApplicationFeature"),
            },
        },
        ["api", "v1", "apps", app_id, "features", "USER_PROVISIONING"] if method == Method::PUT => {
            let owner = st.api_token_owner.clone();
            let org = &mut st.org;
            let Some(app) = org.apps.get(*app_id) else {
                return errors::not_found(app_id, "AppInstance");
            };
            let caps = match tasks::caps_from_body(app.provisioning, body) {
                Ok(c) => c,
                Err(r) => return r,
            };
            let actor = org.admin_actor(&owner, now);
            org.set_caps_as(app_id, Some(caps), actor, now);
            match org.feature_json(&org.apps[*app_id]) {
                Some(f) => Reply::ok(f),
                None => errors::not_found("USER_PROVISIONING", "ApplicationFeature"),
            }
        }
        ["api", "v1", "apps", app_id, "group-push", "mappings"] if get => {
            tasks::list_group_push(&st.org, app_id, &params)
        }
        ["api", "v1", "apps", app_id, "connections", "default"] if get => {
            tasks::connection(&st.org, app_id)
        }
        ["api", "v1", "agentPools"] if get => {
            tasks::list_agent_pools(&st.agent_pools, &inner.base, &params)
        }
        ["api", "v1", "principal-rate-limits"] if get => {
            let mut clients: Vec<String> = st.oauth.clients.keys().cloned().collect();
            clients.sort();
            // A stable id for the API token that does not reveal it.
            let token_id = format!("00T{}", &sha256_b64url(st.api_token.as_bytes())[..17]);
            let org_id = super::ids::okta_id("00o", 0);
            tasks::list_principal_limits(
                &st.principal_limits,
                &token_id,
                &clients,
                &org_id,
                &params,
            )
        }
        ["api", "v1", "apps", app_id, "users"] if get => list_app_users(&st.org, app_id, &params),
        ["api", "v1", "apps", app_id, "users", user_id] if get => {
            let expand = param(&params, "expand") == Some("user");
            match st.org.apps.get(*app_id) {
                None => errors::not_found(app_id, "AppInstance"),
                Some(app) => match app.users.get(*user_id) {
                    Some(au) => Reply::ok(st.org.app_user_json(app, au, expand)),
                    None => errors::not_found(user_id, "AppUser"),
                },
            }
        }
        ["api", "v1", "apps", app_id, "users", user_id] if post => {
            update_app_user(&mut st.org, app_id, user_id, body, now)
        }
        ["api", "v1", "users", user_id] if get => match st.org.users.get(*user_id) {
            Some(u) => Reply::ok(st.org.user_json(u)),
            None => errors::not_found(user_id, "User"),
        },
        ["api", "v1", "logs"]
        | ["api", "v1", "apps"]
        | ["api", "v1", "apps", _]
        | ["api", "v1", "apps", _, "features"]
        | ["api", "v1", "apps", _, "features", _]
        | ["api", "v1", "apps", _, "users"]
        | ["api", "v1", "apps", _, "users", _]
        | ["api", "v1", "apps", _, "group-push", "mappings"]
        | ["api", "v1", "apps", _, "connections", "default"]
        | ["api", "v1", "agentPools"]
        | ["api", "v1", "principal-rate-limits"]
        | ["api", "v1", "users", _] => not_allowed(),
        _ => errors::not_found(path, "Path"),
    }
}
