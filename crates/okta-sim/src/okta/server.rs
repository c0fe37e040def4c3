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
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::clock::{http_date, okta_time};
use super::errors::{self, Reply};
use super::filter;
use super::oauth::{sha256_b64url, verify_proof};
use super::org::{Op, Org, Txn};
use super::{hooks, tasks};
use super::{AuthKind, Bucket, FaultKind, Inner, RequestRecord, State, Window};

const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
const LOG_RETENTION_LIMIT_DAYS: i64 = 180;

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

type Params = Vec<(String, String)>;

fn param<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
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
            hooks::verify(inner, id).await
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

// ---- System Log ------------------------------------------------------------------------------

fn log_attr_allowed(a: &str) -> bool {
    matches!(
        a,
        "eventType"
            | "uuid"
            | "published"
            | "severity"
            | "displayMessage"
            | "legacyEventType"
            | "version"
            | "outcome.result"
            | "outcome.reason"
            | "actor.id"
            | "actor.type"
            | "actor.alternateId"
            | "actor.displayName"
            | "target.id"
            | "target.type"
            | "target.alternateId"
            | "target.displayName"
            | "transaction.id"
            | "transaction.type"
            | "client.ipAddress"
            | "client.zone"
            | "client.device"
    ) || a.starts_with("debugContext.debugData.")
}

fn cursor(org: &Org, k: usize, fallback: DateTime<Utc>) -> String {
    let ms = k
        .checked_sub(1)
        .and_then(|i| org.events.get(i))
        .map(|e| e.persisted)
        .unwrap_or(fallback)
        .timestamp_millis();
    format!("{ms}_{k}")
}

fn parse_cursor(s: &str) -> Option<usize> {
    let (ms, k) = s.rsplit_once('_')?;
    ms.parse::<i64>().ok()?;
    k.parse().ok()
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn link(url: &str, rel: &str) -> (String, String) {
    ("Link".to_string(), format!("<{url}>; rel=\"{rel}\""))
}

fn list_logs(st: &State, p: &Params, base: &str, now: DateTime<Utc>) -> Reply {
    let org = &st.org;
    let limit = match param(p, "limit") {
        None => 100usize,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (0..=1000).contains(&n) => n as usize,
            _ => return errors::validation("limit: must be an integer between 0 and 1000"),
        },
    };
    let descending = match param(p, "sortOrder") {
        None | Some("ASCENDING") => false,
        Some("DESCENDING") => true,
        Some(_) => return errors::validation("sortOrder: must be ASCENDING or DESCENDING"),
    };
    let after = param(p, "after");
    let since = match param(p, "since") {
        None => None,
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => return errors::validation("since: must be an ISO 8601 timestamp"),
        },
    };
    if after.is_some() && since.is_some() {
        return errors::validation("since and after cannot be used together");
    }
    if let Some(s) = since {
        if s < now - chrono::Duration::days(LOG_RETENTION_LIMIT_DAYS) {
            return errors::okta_error(
                400,
                "E0000053",
                "Invalid date. 'since' must be later than 180 days ago.",
            );
        }
    }
    let until = match param(p, "until") {
        None => None,
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => return errors::validation("until: must be an ISO 8601 timestamp"),
        },
    };
    let filter_s = param(p, "filter");
    let filter = match filter_s {
        None => None,
        Some(f) => match filter::parse(f, &log_attr_allowed) {
            Ok(f) => Some(f),
            Err(_) => return errors::invalid_search(),
        },
    };
    let q = param(p, "q");
    let keywords: Vec<String> = q
        .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default();
    if keywords.len() > 10 || keywords.iter().any(|k| k.chars().count() > 40) {
        return errors::validation("q: at most 10 keywords of at most 40 characters");
    }
    let matches = |ev: &Value| {
        filter.as_ref().is_none_or(|f| f.matches(ev))
            && (keywords.is_empty() || {
                let text = ev.to_string().to_lowercase();
                keywords.iter().all(|k| text.contains(k.as_str()))
            })
    };
    let self_url = {
        let q: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if q.is_empty() {
            format!("{base}/api/v1/logs")
        } else {
            format!("{base}/api/v1/logs?{}", q.join("&"))
        }
    };
    let mut next_q = Vec::new();
    let extra = |next_q: &mut Vec<String>| {
        next_q.push(format!("limit={limit}"));
        if let Some(f) = filter_s {
            next_q.push(format!("filter={}", encode(f)));
        }
        if let Some(q) = q {
            next_q.push(format!("q={}", encode(q)));
        }
    };
    let default_since = now - chrono::Duration::days(7);

    if until.is_some() || descending {
        // Bounded query: a time window over `published`, sorted; next only while more remain.
        let since = since.unwrap_or(default_since);
        let until = until.unwrap_or(now);
        let mut hits: Vec<(DateTime<Utc>, usize)> = org
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let t = e
                    .event
                    .get("published")
                    .and_then(Value::as_str)
                    .and_then(parse_time)?;
                (t >= since && t < until && matches(&e.event)).then_some((t, i))
            })
            .collect();
        hits.sort_by_key(|(t, _)| *t);
        if descending {
            hits.reverse();
        }
        let start = match after {
            None => 0,
            Some(a) => match parse_cursor(a) {
                Some(k) if k <= hits.len() => k,
                _ => return errors::validation("after: invalid cursor"),
            },
        };
        let end = (start + limit).min(hits.len());
        let page: Vec<Value> = hits[start..end]
            .iter()
            .map(|(_, i)| org.events[*i].event.clone())
            .collect();
        let mut r = Reply::ok(Value::Array(page))
            .with_header("Link", format!("<{self_url}>; rel=\"self\""));
        if end < hits.len() {
            next_q.push(format!("since={}", encode(&okta_time(since))));
            next_q.push(format!("until={}", encode(&okta_time(until))));
            if descending {
                next_q.push("sortOrder=DESCENDING".into());
            }
            extra(&mut next_q);
            next_q.push(format!(
                "after={}",
                encode(&format!("{}_{end}", now.timestamp_millis()))
            ));
            let (n, v) = link(&format!("{base}/api/v1/logs?{}", next_q.join("&")), "next");
            r = r.with_header(&n, v);
        }
        return r;
    }

    // Polling: persistence order from a position; the next link always comes back.
    let start = match after {
        Some(a) => match parse_cursor(a) {
            Some(k) if k <= org.events.len() => k,
            _ => return errors::validation("after: invalid cursor"),
        },
        None => {
            let since = since.unwrap_or(default_since);
            org.events
                .iter()
                .position(|e| e.persisted >= since)
                .unwrap_or(org.events.len())
        }
    };
    let mut page = Vec::new();
    let mut next = org.events.len();
    if limit == 0 {
        next = start;
    } else {
        for (i, e) in org.events.iter().enumerate().skip(start) {
            if matches(&e.event) {
                page.push(e.event.clone());
                if page.len() == limit {
                    next = i + 1;
                    break;
                }
            }
        }
    }
    next_q.push(format!("after={}", encode(&cursor(org, next, now))));
    extra(&mut next_q);
    let next_url = format!("{base}/api/v1/logs?{}", next_q.join("&"));
    let (n1, v1) = link(&self_url, "self");
    let (n2, v2) = link(&next_url, "next");
    Reply::ok(Value::Array(page))
        .with_header(&n1, v1)
        .with_header(&n2, v2)
}

// ---- apps and app users -----------------------------------------------------------------------

fn limit_param(p: &Params, default: usize, max: usize) -> usize {
    param(p, "limit")
        .and_then(|l| l.parse::<i64>().ok())
        .map(|n| {
            if n <= 0 {
                default
            } else {
                (n as usize).min(max)
            }
        })
        .unwrap_or(default)
}

fn page_links(base_url: &str, p: &Params, next_after: Option<&str>) -> Vec<(String, String)> {
    let self_q: Vec<String> = p
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let self_url = if self_q.is_empty() {
        base_url.to_string()
    } else {
        format!("{base_url}?{}", self_q.join("&"))
    };
    let mut out = vec![link(&self_url, "self")];
    if let Some(after) = next_after {
        let mut q: Vec<String> = p
            .iter()
            .filter(|(k, _)| k != "after")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        q.push(format!("after={}", encode(after)));
        out.push(link(&format!("{base_url}?{}", q.join("&")), "next"));
    }
    out
}

fn with_links(mut r: Reply, links: Vec<(String, String)>) -> Reply {
    r.headers.extend(links);
    r
}

fn list_apps(org: &Org, p: &Params) -> Reply {
    let limit = limit_param(p, 20, 200);
    let filter = match param(p, "filter") {
        None => None,
        Some(f) => match filter::parse(f, &|a: &str| {
            matches!(a, "status" | "name" | "label" | "id" | "signOnMode")
        }) {
            Ok(f) => Some(f),
            Err(_) => return errors::invalid_search(),
        },
    };
    let q = param(p, "q").map(str::to_lowercase);
    let after = param(p, "after");
    let mut items = Vec::new();
    let mut more = false;
    for app in org.apps.values() {
        if after.is_some_and(|a| app.id.as_str() <= a) {
            continue;
        }
        if let Some(q) = &q {
            if !(app.label.to_lowercase().starts_with(q) || app.name.to_lowercase().starts_with(q))
            {
                continue;
            }
        }
        let v = org.app_json(app);
        if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(v);
    }
    id_cursor_page(&format!("{}/api/v1/apps", org.base), p, items, more)
}

fn list_app_users(org: &Org, app_id: &str, p: &Params) -> Reply {
    let Some(app) = org.apps.get(app_id) else {
        return errors::not_found(app_id, "AppInstance");
    };
    let limit = limit_param(p, 50, 500);
    let expand = param(p, "expand") == Some("user");
    let q = param(p, "q").map(str::to_lowercase);
    let after = param(p, "after");
    let mut items = Vec::new();
    let mut more = false;
    for au in app.users.values() {
        if after.is_some_and(|a| au.id.as_str() <= a) {
            continue;
        }
        if let Some(q) = &q {
            let user = org.users.get(&au.id);
            let fields = [
                Some(au.user_name.as_str()),
                user.map(|u| u.first.as_str()),
                user.map(|u| u.last.as_str()),
                user.map(|u| u.email.as_str()),
            ];
            if !fields
                .iter()
                .flatten()
                .any(|f| f.to_lowercase().starts_with(q))
            {
                continue;
            }
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(org.app_user_json(app, au, expand));
    }
    id_cursor_page(
        &format!("{}/api/v1/apps/{app_id}/users", org.base),
        p,
        items,
        more,
    )
}

/// A page of a list whose `after` cursor is the last item's id, as Okta's apps and app users
/// lists page: a `next` link only while `more` items remain.
fn id_cursor_page(base: &str, p: &Params, items: Vec<Value>, more: bool) -> Reply {
    let last = items
        .last()
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let links = page_links(base, p, if more { last.as_deref() } else { None });
    with_links(Reply::ok(Value::Array(items)), links)
}

/// The retry route: merges credentials/profile, then Okta pushes the user again.
fn update_app_user(
    org: &mut Org,
    app_id: &str,
    user_id: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Reply {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return errors::okta_error(400, "E0000003", "The request body was not well-formed.");
    };
    let Some(app) = org.apps.get_mut(app_id) else {
        return errors::not_found(app_id, "AppInstance");
    };
    let Some(au) = app.users.get_mut(user_id) else {
        return errors::not_found(user_id, "AppUser");
    };
    if let Some(name) = req
        .get("credentials")
        .and_then(|c| c.get("userName"))
        .and_then(Value::as_str)
    {
        if name.is_empty() || name.chars().count() > 100 {
            return errors::validation("credentials.userName: length must be between 1 and 100");
        }
        au.user_name = name.to_string();
    }
    if let Some(profile) = req.get("profile").and_then(Value::as_object) {
        for (k, v) in profile {
            if v.is_null() {
                au.profile.remove(k);
            } else {
                au.profile.insert(k.clone(), v.clone());
            }
        }
    }
    au.last_updated = now;
    let op = Org::retry_op(au);
    let before = org.app_user_json(&org.apps[app_id], &org.apps[app_id].users[user_id], false);
    org.push(app_id, user_id, op, now, Txn::Web);
    match org.apps[app_id].users.get(user_id) {
        Some(au) => Reply::ok(org.app_user_json(&org.apps[app_id], au, false)),
        None => {
            // The retried deactivation went through: answer with the final state once.
            let mut v = before;
            if op == Op::Deactivate {
                v["status"] = json!("DEPROVISIONED");
                v["syncState"] = json!("SYNCHRONIZED");
                v["statusChanged"] = json!(okta_time(now));
                v["lastSync"] = json!(okta_time(now));
                if let Some(o) = v.as_object_mut() {
                    o.remove("externalId");
                }
            }
            Reply::ok(v)
        }
    }
}
