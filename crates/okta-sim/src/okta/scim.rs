//! A SCIM 2.0 service provider (RFC 7643/7644) for one simulated app, on its own loopback
//! listener: `GET /scim/v2/Users` (`filter`, `startIndex`/`count`, `ListResponse`),
//! `GET`/`PATCH /scim/v2/Users/{id}` (PatchOp), `POST /scim/v2/Users`, bearer-token auth, SCIM
//! `Error` bodies, a per-minute limit answered with 429 + `Retry-After`, injectable faults and
//! request counters.
//!
//! Okta's provisioning of the app mirrors into it ([`ScimShared::mirror`]): a create push creates
//! (or matches) the SCIM user, a profile push updates it, a deactivation push sets
//! `active: false`; knobs make the app disagree with Okta on purpose.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::clock::{okta_time, SimClock};
use super::org::{Op, User};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Largest page the server returns whatever `count` asks (RFC 7644 3.4.2.4 lets it cap).
pub const SCIM_MAX_COUNT: usize = 1000;

/// How the app stores the user names Okta pushes (to test matching that is not exact).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NameStyle {
    /// As Okta sends them.
    #[default]
    AsOkta,
    /// Upper-cased (`ADA@EXAMPLE.COM`): still found by an RFC-conformant, case-insensitive
    /// `userName eq` filter, unless the filter is made case-exact.
    Uppercase,
    /// The local part only, with this suffix (`ada` + `@corp.example`): not found by the
    /// Okta login.
    Suffix(String),
}

/// A fault for the next `times` requests that pass the rate limit and authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScimFault {
    pub kind: ScimFaultKind,
    pub times: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimFaultKind {
    /// This 5xx status with a SCIM `Error` body.
    ServerError(u16),
    /// 429 with `Retry-After: secs`.
    RateLimited { retry_after_secs: u64 },
    /// 401 as for a wrong token.
    Unauthorized,
    /// Answer normally after this delay (tokio time).
    Slow(Duration),
}

/// One user as the app stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    pub id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub active: bool,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
}

/// One request the SCIM server answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub status: u16,
    /// The JSON body of a `PATCH`/`POST`, when it parsed.
    pub body: Option<Value>,
}

/// Counters for benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimStats {
    pub total: u64,
    /// By route: `"GET /Users"`, `"GET /Users/{id}"`, `"PATCH /Users/{id}"`, `"POST /Users"`,
    /// `"other"`.
    pub by_route: BTreeMap<String, u64>,
    pub unauthorized: u64,
    pub rate_limited: u64,
    pub server_errors: u64,
}

struct ScimState {
    users: BTreeMap<String, ScimUser>,
    token: String,
    ignore_okta_deactivations: bool,
    name_style: NameStyle,
    case_exact_filter: bool,
    faults: VecDeque<ScimFault>,
    limit_per_minute: Option<u32>,
    window: Option<(tokio::time::Instant, u32)>,
    stats: ScimStats,
    requests: Vec<ScimRequest>,
    counter: u128,
}

impl std::fmt::Debug for ScimState {
    // The bearer token is a secret: never in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimState")
            .field("users", &self.users.len())
            .field("ignore_okta_deactivations", &self.ignore_okta_deactivations)
            .field("name_style", &self.name_style)
            .field("faults", &self.faults)
            .field("limit_per_minute", &self.limit_per_minute)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The state one app's SCIM server and Okta's provisioning engine share.
#[derive(Debug)]
pub struct ScimShared {
    base: String,
    clock: SimClock,
    state: Mutex<ScimState>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl ScimShared {
    fn lock(&self) -> MutexGuard<'_, ScimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT/scim/v2`, the SCIM base URL.
    pub(crate) fn base_url(&self) -> String {
        self.base.clone()
    }

    /// Mirrors one successful Okta push. Returns the SCIM id for a create (the app user's
    /// `externalId` in Okta).
    pub(crate) fn mirror(
        &self,
        op: Op,
        external_id: Option<&str>,
        user_name: &str,
        user: &User,
    ) -> Option<String> {
        let now = self.clock.now();
        let mut st = self.lock();
        let stored = match &st.name_style {
            NameStyle::AsOkta => user_name.to_string(),
            NameStyle::Uppercase => user_name.to_uppercase(),
            NameStyle::Suffix(s) => format!("{}{s}", user_name.split('@').next().unwrap_or("")),
        };
        let by_ext = external_id.and_then(|x| st.users.get_mut(x));
        match op {
            Op::Create => {
                // Okta matches an existing account by user name before creating one.
                if let Some(u) = st.users.values_mut().find(|u| u.user_name == stored) {
                    u.active = true;
                    u.external_id = Some(user.id.clone());
                    u.last_modified = now;
                    return Some(u.id.clone());
                }
                let id = st.insert(stored, Some(user.id.clone()), user, now);
                Some(id)
            }
            Op::Update => {
                if let Some(u) = by_ext {
                    u.given_name = user.first.clone();
                    u.family_name = user.last.clone();
                    u.email = user.email.clone();
                    u.last_modified = now;
                }
                None
            }
            Op::Deactivate => {
                let ignore = st.ignore_okta_deactivations;
                if let Some(u) = external_id.and_then(|x| st.users.get_mut(x)) {
                    if !ignore {
                        u.active = false;
                        u.last_modified = now;
                    }
                }
                None
            }
        }
    }
}

impl ScimState {
    fn next_id(&mut self) -> String {
        self.counter += 1;
        uuid::Uuid::from_u128(0x5c1a_0000_0000_4000_8000_0000_0000_0000 | self.counter).to_string()
    }

    fn insert(
        &mut self,
        user_name: String,
        ext: Option<String>,
        u: &User,
        now: DateTime<Utc>,
    ) -> String {
        let id = self.next_id();
        self.users.insert(
            id.clone(),
            ScimUser {
                id: id.clone(),
                user_name,
                external_id: ext,
                given_name: u.first.clone(),
                family_name: u.last.clone(),
                email: u.email.clone(),
                active: true,
                created: now,
                last_modified: now,
            },
        );
        id
    }
}

/// Handle on one app's SCIM server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ScimServer {
    pub(crate) shared: Arc<ScimShared>,
}

impl ScimServer {
    /// Binds `127.0.0.1:0` and serves on the current runtime.
    pub(crate) async fn start() -> std::io::Result<ScimServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let shared = Arc::new(ScimShared {
            base: format!("http://127.0.0.1:{port}/scim/v2"),
            clock: SimClock::new(),
            state: Mutex::new(ScimState {
                users: BTreeMap::new(),
                token: format!("scim-{}", super::ids::random_alnum(32)),
                ignore_okta_deactivations: false,
                name_style: NameStyle::AsOkta,
                case_exact_filter: false,
                faults: VecDeque::new(),
                limit_per_minute: None,
                window: None,
                stats: ScimStats::default(),
                requests: Vec::new(),
                counter: 0,
            }),
            shutdown: tx,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            let stop = async move {
                while !*rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!("okta-sim SCIM server stopped: {e}");
            }
        });
        Ok(ScimServer { shared })
    }

    /// The SCIM base URL, `http://127.0.0.1:PORT/scim/v2` (no trailing slash).
    pub fn base_url(&self) -> String {
        self.shared.base_url()
    }

    /// The bearer token the server accepts.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    pub fn set_token(&self, token: &str) {
        self.shared.lock().token = token.to_string();
    }

    /// Okta's mirrored deactivations are acknowledged but ignored: Okta says deprovisioned, the
    /// app keeps the account active. A SCIM `PATCH` from a client still deactivates.
    pub fn ignore_okta_deactivations(&self, on: bool) {
        self.shared.lock().ignore_okta_deactivations = on;
    }

    /// How user names pushed by Okta from now on are stored.
    pub fn set_name_style(&self, style: NameStyle) {
        self.shared.lock().name_style = style;
    }

    /// A non-conformant app whose `userName eq` filter is case-sensitive (RFC 7643 makes
    /// `userName` `caseExact: false`).
    pub fn set_case_exact_filter(&self, on: bool) {
        self.shared.lock().case_exact_filter = on;
    }

    /// Requests over `per_minute` in a 60 s window get 429 with `Retry-After`; `None` = no limit.
    pub fn set_rate_limit(&self, per_minute: Option<u32>) {
        let mut st = self.shared.lock();
        st.limit_per_minute = per_minute;
        st.window = None;
    }

    pub fn inject_fault(&self, f: ScimFault) {
        if f.times > 0 {
            self.shared.lock().faults.push_back(f);
        }
    }

    /// Adds an account directly in the app (as its own admin would: an orphan unless Okta
    /// knows it). Returns the SCIM id.
    pub fn add_user(&self, user_name: &str, active: bool) -> String {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        let local = user_name.split('@').next().unwrap_or(user_name);
        let u = User {
            id: String::new(),
            login: user_name.to_string(),
            first: local.to_string(),
            last: "Local".into(),
            email: if user_name.contains('@') {
                user_name.to_string()
            } else {
                format!("{user_name}@app.example")
            },
            created: now,
            status: "ACTIVE",
            status_changed: now,
        };
        let id = st.insert(user_name.to_string(), None, &u, now);
        if let Some(u) = st.users.get_mut(&id) {
            u.active = active;
        }
        id
    }

    /// Sets a user's `active` directly in the app. Returns false for an unknown id.
    pub fn set_active(&self, id: &str, active: bool) -> bool {
        let now = self.shared.clock.now();
        let mut st = self.shared.lock();
        match st.users.get_mut(id) {
            Some(u) => {
                u.active = active;
                u.last_modified = now;
                true
            }
            None => false,
        }
    }

    pub fn users(&self) -> Vec<ScimUser> {
        self.shared.lock().users.values().cloned().collect()
    }

    /// The user with exactly this stored user name.
    pub fn user_by_name(&self, user_name: &str) -> Option<ScimUser> {
        self.shared
            .lock()
            .users
            .values()
            .find(|u| u.user_name == user_name)
            .cloned()
    }

    pub fn user(&self, id: &str) -> Option<ScimUser> {
        self.shared.lock().users.get(id).cloned()
    }

    pub fn stats(&self) -> ScimStats {
        self.shared.lock().stats.clone()
    }

    pub fn requests(&self) -> Vec<ScimRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }
}

// ---- HTTP ------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        headers: Vec::new(),
    }
}

/// RFC 7644 3.12 error body (`status` is a string there).
fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Answer {
    let mut b = json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
    if let Some(t) = scim_type {
        b["scimType"] = json!(t);
    }
    answer(status, b)
}

fn user_json(base: &str, u: &ScimUser) -> Value {
    let mut v = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": u.user_name,
        "name": {"givenName": u.given_name, "familyName": u.family_name,
                 "formatted": format!("{} {}", u.given_name, u.family_name)},
        "displayName": format!("{} {}", u.given_name, u.family_name),
        "emails": [{"value": u.email, "type": "work", "primary": true}],
        "active": u.active,
        "meta": {
            "resourceType": "User",
            "created": okta_time(u.created),
            "lastModified": okta_time(u.last_modified),
            "location": format!("{base}/Users/{}", u.id),
            "version": format!("W/\"{}\"", u.last_modified.timestamp_millis()),
        }
    });
    if let Some(x) = &u.external_id {
        v["externalId"] = json!(x);
    }
    v
}

async fn handle(AxState(shared): AxState<Arc<ScimShared>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path_q = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let rest = uri
        .path()
        .strip_prefix("/scim/v2")
        .unwrap_or("")
        .trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').skip(1).collect();
    let route_name = match (method.as_str(), segs.as_slice()) {
        ("GET", ["Users"]) => "GET /Users",
        ("POST", ["Users"]) => "POST /Users",
        ("GET", ["Users", _]) => "GET /Users/{id}",
        ("PATCH", ["Users", _]) => "PATCH /Users/{id}",
        _ => "other",
    };

    let mut slow = None;
    let early = {
        let now_i = tokio::time::Instant::now();
        let mut st = shared.lock();
        st.stats.total += 1;
        *st.stats.by_route.entry(route_name.to_string()).or_insert(0) += 1;
        let mut early = None;
        if let Some(limit) = st.limit_per_minute {
            let w = match st.window {
                Some((start, n)) if now_i.duration_since(start) < Duration::from_secs(60) => {
                    (start, n)
                }
                _ => (now_i, 0),
            };
            if w.1 >= limit {
                st.stats.rate_limited += 1;
                let left = Duration::from_secs(60).saturating_sub(now_i.duration_since(w.0));
                let mut a = scim_error(
                    429,
                    None,
                    "Too many requests: retry after the indicated delay.",
                );
                a.headers
                    .push(("Retry-After", left.as_secs().max(1).to_string()));
                early = Some(a);
            }
            st.window = Some((w.0, w.1 + 1));
        }
        let token_ok = auth
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == st.token);
        if early.is_none() && !token_ok {
            st.stats.unauthorized += 1;
            let mut a = scim_error(
                401,
                None,
                "Authentication failed: a valid bearer token is required.",
            );
            a.headers
                .push(("WWW-Authenticate", "Bearer realm=\"okta-sim-scim\"".into()));
            early = Some(a);
        }
        if early.is_none() {
            if let Some(f) = st.faults.front_mut() {
                let kind = f.kind;
                f.times -= 1;
                if f.times == 0 {
                    st.faults.pop_front();
                }
                match kind {
                    ScimFaultKind::ServerError(code) => {
                        st.stats.server_errors += 1;
                        early = Some(scim_error(
                            code,
                            None,
                            "The service is temporarily unavailable.",
                        ));
                    }
                    ScimFaultKind::RateLimited { retry_after_secs } => {
                        st.stats.rate_limited += 1;
                        let mut a = scim_error(
                            429,
                            None,
                            "Too many requests: retry after the indicated delay.",
                        );
                        a.headers
                            .push(("Retry-After", retry_after_secs.to_string()));
                        early = Some(a);
                    }
                    ScimFaultKind::Unauthorized => {
                        st.stats.unauthorized += 1;
                        early = Some(scim_error(
                            401,
                            None,
                            "Authentication failed: the token was revoked.",
                        ));
                    }
                    ScimFaultKind::Slow(d) => slow = Some(d),
                }
            }
        }
        early
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    let a = match early {
        Some(a) => a,
        None => route(
            &shared,
            &method,
            segs.as_slice(),
            uri.query().unwrap_or(""),
            body.as_ref(),
        ),
    };
    let mut st = shared.lock();
    st.requests.push(ScimRequest {
        method: method.to_string(),
        path: path_q,
        status: a.status,
        body: if method == Method::GET { None } else { body },
    });
    drop(st);
    let mut resp = Response::new(Body::from(serde_json::to_vec(&a.body).unwrap_or_default()));
    *resp.status_mut() =
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    for (k, v) in a.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// A parsed `attr eq "value"` / `active eq true` filter (the subset apps are asked for).
#[derive(Debug, PartialEq)]
enum Filter {
    Eq { attr: String, value: Value },
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    let f = f.trim();
    let (attr, rest) = f
        .split_once(char::is_whitespace)
        .ok_or("expected: attribute eq value")?;
    let (op, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or("expected: attribute eq value")?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(format!("operator {op} is not supported (only eq)"));
    }
    let attr = attr.to_ascii_lowercase();
    if !matches!(attr.as_str(), "username" | "externalid" | "id" | "active") {
        return Err(format!("attribute {attr} is not filterable"));
    }
    let value: Value = serde_json::from_str(value.trim())
        .map_err(|_| "the value must be a JSON string or boolean".to_string())?;
    Ok(Filter::Eq { attr, value })
}

fn matches(f: &Filter, u: &ScimUser, case_exact: bool) -> bool {
    let Filter::Eq { attr, value } = f;
    match (attr.as_str(), value) {
        ("username", Value::String(s)) => {
            if case_exact {
                &u.user_name == s
            } else {
                u.user_name.eq_ignore_ascii_case(s)
            }
        }
        ("externalid", Value::String(s)) => u.external_id.as_deref() == Some(s.as_str()),
        ("id", Value::String(s)) => &u.id == s,
        ("active", Value::Bool(b)) => u.active == *b,
        _ => false,
    }
}

fn route(
    shared: &ScimShared,
    method: &Method,
    segs: &[&str],
    query: &str,
    body: Option<&Value>,
) -> Answer {
    let now = shared.clock.now();
    let base = &shared.base;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let p = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let mut st = shared.lock();
    match (method.as_str(), segs) {
        ("GET", ["Users"]) => {
            let filter = match p("filter").map(parse_filter) {
                None => None,
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => {
                    return scim_error(400, Some("invalidFilter"), &format!("Invalid filter: {e}"))
                }
            };
            // RFC 7644 3.4.2.4: startIndex < 1 is read as 1, a negative count as 0.
            let start = p("startIndex")
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(1)
                .max(1) as usize;
            let count = p("count")
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(100)
                .max(0) as usize;
            let count = count.min(SCIM_MAX_COUNT);
            let exact = st.case_exact_filter;
            let all: Vec<&ScimUser> = st
                .users
                .values()
                .filter(|u| filter.as_ref().is_none_or(|f| matches(f, u, exact)))
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(start - 1)
                .take(count)
                .map(|u| user_json(base, u))
                .collect();
            answer(
                200,
                json!({
                    "schemas": [LIST_SCHEMA],
                    "totalResults": all.len(),
                    "startIndex": start,
                    "itemsPerPage": page.len(),
                    "Resources": page,
                }),
            )
        }
        ("GET", ["Users", id]) => match st.users.get(*id) {
            Some(u) => answer(200, user_json(base, u)),
            None => scim_error(404, None, &format!("Resource {id} not found")),
        },
        ("PATCH", ["Users", id]) => {
            let Some(b) = body else {
                return scim_error(400, Some("invalidSyntax"), "The request body is not JSON.");
            };
            let is_patch = b["schemas"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == PATCH_SCHEMA));
            let Some(ops) = b["Operations"].as_array().filter(|_| is_patch) else {
                return scim_error(400, Some("invalidSyntax"), "Expected a PatchOp with schemas [\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"] and Operations.");
            };
            let Some(mut u) = st.users.get(*id).cloned() else {
                return scim_error(404, None, &format!("Resource {id} not found"));
            };
            for op in ops {
                let kind = op["op"].as_str().unwrap_or("").to_ascii_lowercase();
                if kind != "replace" && kind != "add" {
                    return scim_error(
                        400,
                        Some("invalidValue"),
                        &format!(
                            "Operation op {:?} is not supported (replace, add).",
                            op["op"]
                        ),
                    );
                }
                let pairs: Vec<(String, Value)> = match op["path"].as_str() {
                    Some(path) => vec![(path.to_string(), op["value"].clone())],
                    None => match op["value"].as_object() {
                        Some(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        None => {
                            return scim_error(
                                400,
                                Some("invalidValue"),
                                "An operation without a path needs an object value.",
                            )
                        }
                    },
                };
                for (path, v) in pairs {
                    match (path.to_ascii_lowercase().as_str(), v) {
                        ("active", Value::Bool(a)) => u.active = a,
                        ("username", Value::String(s)) if !s.is_empty() => u.user_name = s,
                        ("externalid", Value::String(s)) => u.external_id = Some(s),
                        ("name.givenname", Value::String(s)) => u.given_name = s,
                        ("name.familyname", Value::String(s)) => u.family_name = s,
                        (other, _) => {
                            return scim_error(
                                400,
                                Some("invalidPath"),
                                &format!("Attribute {other} cannot be set to that value."),
                            );
                        }
                    }
                }
            }
            u.last_modified = now;
            let out = user_json(base, &u);
            st.users.insert(u.id.clone(), u);
            answer(200, out)
        }
        ("POST", ["Users"]) => {
            let Some(b) = body else {
                return scim_error(400, Some("invalidSyntax"), "The request body is not JSON.");
            };
            let Some(name) = b["userName"].as_str().filter(|s| !s.is_empty()) else {
                return scim_error(400, Some("invalidValue"), "userName is required.");
            };
            if st
                .users
                .values()
                .any(|u| u.user_name.eq_ignore_ascii_case(name))
            {
                return scim_error(
                    409,
                    Some("uniqueness"),
                    &format!("A user with userName {name} already exists."),
                );
            }
            let s = |p: &str| {
                b.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let u = User {
                id: String::new(),
                login: name.to_string(),
                first: s("/name/givenName"),
                last: s("/name/familyName"),
                email: b
                    .pointer("/emails/0/value")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .to_string(),
                created: now,
                status: "ACTIVE",
                status_changed: now,
            };
            let ext = b["externalId"].as_str().map(str::to_string);
            let id = st.insert(name.to_string(), ext, &u, now);
            if let Some(false) = b["active"].as_bool() {
                if let Some(x) = st.users.get_mut(&id) {
                    x.active = false;
                }
            }
            let mut a = answer(201, user_json(base, &st.users[&id]));
            a.headers.push(("Location", format!("{base}/Users/{id}")));
            a
        }
        (_, ["Users"]) | (_, ["Users", _]) => scim_error(405, None, "Method not allowed."),
        _ => scim_error(404, None, "Unknown endpoint."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_rfc_7644_examples() {
        // RFC 7644 3.4.2.2: `filter=userName eq "bjensen"`; attribute names are case-insensitive.
        assert_eq!(
            parse_filter("userName eq \"bjensen\"").unwrap(),
            Filter::Eq {
                attr: "username".into(),
                value: json!("bjensen")
            }
        );
        assert!(parse_filter("UserName Eq \"x\"").is_ok());
        assert!(parse_filter("active eq true").is_ok());
        assert!(parse_filter("userName sw \"b\"")
            .unwrap_err()
            .contains("sw"));
        assert!(parse_filter("title eq \"x\"").is_err());
        assert!(parse_filter("userName eq bjensen").is_err());
        let now = Utc::now();
        let u = ScimUser {
            id: "1".into(),
            user_name: "BJensen@Example.com".into(),
            external_id: None,
            given_name: "B".into(),
            family_name: "J".into(),
            email: "b@e".into(),
            active: true,
            created: now,
            last_modified: now,
        };
        let f = parse_filter("userName eq \"bjensen@example.com\"").unwrap();
        assert!(
            matches(&f, &u, false),
            "userName is caseExact=false (RFC 7643 4.1.1)"
        );
        assert!(!matches(&f, &u, true));
    }

    #[test]
    fn errors_use_the_scim_error_schema_with_a_string_status() {
        let a = scim_error(404, None, "Resource 2819c223 not found");
        assert_eq!(a.body["schemas"][0], ERROR_SCHEMA);
        assert_eq!(a.body["status"], "404");
        let a = scim_error(400, Some("invalidFilter"), "bad");
        assert_eq!(a.body["scimType"], "invalidFilter");
    }
}
