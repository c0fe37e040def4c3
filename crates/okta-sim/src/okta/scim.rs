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

use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::clock::SimClock;
use super::org::{Op, User};

pub(super) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(super) const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub(super) const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(super) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
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

pub(super) struct ScimState {
    pub(super) users: BTreeMap<String, ScimUser>,
    pub(super) token: String,
    pub(super) ignore_okta_deactivations: bool,
    pub(super) name_style: NameStyle,
    pub(super) case_exact_filter: bool,
    pub(super) faults: VecDeque<ScimFault>,
    pub(super) limit_per_minute: Option<u32>,
    pub(super) window: Option<(tokio::time::Instant, u32)>,
    pub(super) stats: ScimStats,
    pub(super) requests: Vec<ScimRequest>,
    pub(super) counter: u128,
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
    pub(super) base: String,
    pub(super) clock: SimClock,
    pub(super) state: Mutex<ScimState>,
    pub(super) shutdown: tokio::sync::watch::Sender<bool>,
}

impl ScimShared {
    pub(super) fn lock(&self) -> MutexGuard<'_, ScimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT/scim/v2`, the SCIM base URL.
    pub(crate) fn base_url(&self) -> String {
        self.base.clone()
    }

    /// Whether [`ScimServer::shutdown`] was called: Okta's pushes then fail as unreachable.
    pub(crate) fn is_down(&self) -> bool {
        *self.shutdown.borrow()
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

    pub(super) fn insert(
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
        let (tx, rx) = tokio::sync::watch::channel(false);
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
        let app = Router::new()
            .fallback(super::scim_http::handle)
            .with_state(shared.clone());
        super::serve(listener, app, rx, "okta-sim SCIM server");
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

    /// Stops the listener; Okta's pushes to the app then fail with "Unable to connect to the
    /// remote server." (as with [`crate::Downstream::Down`]).
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }
}
