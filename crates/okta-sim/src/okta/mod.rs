//! A fake Okta org served over real HTTP on a loopback port: System Log, apps, app users,
//! provisioning features, OAuth client credentials, rate limits and injectable faults; plus a
//! SCIM 2.0 server per app ([`ScimServer`]), event hooks with delivery, lifecycle and
//! Tasks-page events ([`knobs`] lists the methods tests drive them with; see README.md).
//!
//! The server runs on the caller's tokio runtime and reads time only through tokio's clock
//! (plus the wall-clock epoch captured at start), so `tokio::time::pause()` / `advance()` move
//! event timestamps, the `Date` header and rate-limit windows.
//!
//! Semantics worth knowing (where Okta leaves room):
//! - App user ids are the Okta user ids (as in Okta's REST API); System Log `AppUser` targets
//!   carry a separate internal `0ua…` id, so correlate log events by their `User` target.
//! - A failed create leaves the app user `STAGED` / `ERROR`; a failed profile push leaves the
//!   status and sets `ERROR`; a failed deactivation (unassignment) keeps the app user listed as
//!   `REVOKED` / `ERROR`. A successful deactivation removes the app user (GET answers 404).
//! - The retry route (`POST /api/v1/apps/{appId}/users/{userId}`) re-runs the pending
//!   operation: create for a `STAGED` user, deactivation for a user whose deactivation failed
//!   (so a retry never brings an unassigned user back), a profile push otherwise.
//! - With "Create Users" disabled a create push fails ("no matching user, creating users is
//!   disabled"); with "Update User Attributes" disabled profile pushes are skipped silently; with
//!   "Deactivate Users" disabled an unassignment removes the app user without any push or event.
//! - A user deactivation deprovisions every app user the user has (per the app's
//!   [`DeprovisionMode`]); a suspension pushes nothing.
//! - A 429 does not consume the window's quota; 401s and other errors do.
//! - System Log `since` (and `until`) compare with persistence time in polling mode, as Okta
//!   documents; `until` or `sortOrder=DESCENDING` makes a bounded query sorted by `published`.

mod apps;
mod clock;
mod errors;
mod filter;
mod hook_delivery;
mod hooks;
mod ids;
mod knobs;
mod lifecycle;
mod logs;
mod oauth;
mod org;
mod render;
mod scim;
mod scim_http;
mod server;
mod tasks;
pub mod test_keys;

pub use hooks::{HookDelivery, HookDeliveryKnobs, ELIGIBLE_EVENT_TYPES, HOOK_TIMEOUT};
pub use knobs::{AgentStatus, ProvisioningSettings};
pub use scim::{
    NameStyle, ScimFault, ScimFaultKind, ScimRequest, ScimServer, ScimStats, ScimUser,
    SCIM_MAX_COUNT,
};

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use clock::SimClock;
use oauth::OAuthState;
use org::{Caps, Op, Org, Txn};

/// How the simulated downstream app (the SCIM server behind an Okta app) answers pushes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Downstream {
    #[default]
    Healthy,
    /// Every push fails with "Unable to connect to the remote server.".
    Down,
    /// Pushes for these logins fail with `reason` as `outcome.reason` (e.g. "Bad Request.
    /// Errors reported by remote server: department is required"); others succeed.
    Reject { logins: Vec<String>, reason: String },
    /// Credentials rejected: pushes fail, and `application.integration.authentication_failure`
    /// is logged too.
    AuthFailure,
}

/// What Okta does when it deprovisions a user of an app whose "Deactivate Users" is on and whose
/// downstream accepts the push (issue 13's blind spots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeprovisionMode {
    /// The deactivation is pushed (mirrored into the app's SCIM server) and logged.
    #[default]
    Logged,
    /// Okta removes the app user and logs nothing at all: no SUCCESS, no FAILURE.
    Silent,
    /// Okta logs SUCCESS but the app is never told: its SCIM server keeps the user active.
    SuccessNotPushed,
}

/// Okta rate-limit buckets, by endpoint family, as Okta publishes them (NOTES.md "Rate
/// limits"): explicit app reads/updates are apart from everything else under `/api/v1/apps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// `/api/v1/logs*`
    Logs,
    /// `/api/v1/apps` and every `/api/v1/apps/*` path other than `/api/v1/apps/{id}` itself:
    /// app lists, app users (pages, reads, the retry `POST`), features, group push, connections.
    Apps,
    /// Exactly `/api/v1/apps/{id}` (get, update, delete the app itself).
    AppInstance,
    /// Exactly `/api/v1/users/{idOrLogin}`; user lists and sub-resources fall under `Other`.
    Users,
    /// `/oauth2/v1/token`
    OAuthToken,
    /// Anything else.
    Other,
}

impl Bucket {
    pub const ALL: [Bucket; 6] = [
        Bucket::Logs,
        Bucket::Apps,
        Bucket::AppInstance,
        Bucket::Users,
        Bucket::OAuthToken,
        Bucket::Other,
    ];

    /// The bucket of a request path (without query).
    pub fn for_path(path: &str) -> Bucket {
        let under = |prefix: &str| {
            path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
        };
        let one_segment_under = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|id| !id.is_empty() && !id.contains('/'))
        };
        if under("/api/v1/logs") {
            Bucket::Logs
        } else if one_segment_under("/api/v1/apps") {
            Bucket::AppInstance
        } else if under("/api/v1/apps") {
            Bucket::Apps
        } else if one_segment_under("/api/v1/users") {
            Bucket::Users
        } else if path == "/oauth2/v1/token" {
            Bucket::OAuthToken
        } else {
            Bucket::Other
        }
    }

    /// Per-minute limits the simulator starts with.
    pub fn default_limit(self) -> u32 {
        match self {
            Bucket::Logs => 120,
            Bucket::Apps => 100,
            Bucket::AppInstance => 500,
            Bucket::Users | Bucket::OAuthToken | Bucket::Other => 600,
        }
    }
}

/// A queued fault: applies to the next `times` requests of `bucket` (any bucket when `None`)
/// that pass rate limiting and authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fault {
    pub bucket: Option<Bucket>,
    pub kind: FaultKind,
    pub times: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// This status (500/502/503…) with an Okta `E0000009` body.
    ServerError(u16),
    /// Answer normally after this delay (tokio time).
    Slow(Duration),
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// 401 `E0000011` "Invalid token provided".
    Unauthorized,
    /// A `/api/v1/logs` page whose `rel="next"` is the request URL itself. Only consumed by
    /// System Log requests.
    LogNextLoop,
    /// Required fields removed from listed items: events lose `eventType`, `uuid` or `target`
    /// (in turn); app users lose `id` or `status`+`syncState`; apps lose `label`+`signOnMode`
    /// or `id`. Only consumed by GETs of logs, apps and app users.
    MissingFields,
}

/// Counters over everything the simulator served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub total: u64,
    pub by_bucket: HashMap<Bucket, u64>,
    /// 429s served (window and concurrency limits).
    pub rate_limited: u64,
    pub max_in_flight: usize,
    /// Most non-429 requests served in any one rate-limit window, per bucket.
    pub max_per_window: HashMap<Bucket, u32>,
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// No `Authorization` header (and not a token request).
    None,
    /// `SSWS <api token>` that matched.
    Ssws,
    /// `Bearer <access token>` that matched (possibly lacking a scope).
    Bearer,
    /// `DPoP <access token>` with a valid DPoP proof for a token bound to the proof's key
    /// (possibly lacking a scope).
    Dpop,
    /// A token request (`/oauth2/v1/token`), authenticated by its client assertion.
    ClientAssertion,
    /// An `Authorization` header that did not match anything valid (or an expired token).
    Invalid,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub bucket: Bucket,
    pub status: u16,
    /// Sim time when the request arrived.
    pub at: DateTime<Utc>,
    pub auth: AuthKind,
}

/// Serves `app` on `listener` in a task of its own until `shutdown` turns true (or its sender
/// is dropped), letting requests in flight finish. The org server and each app's SCIM server
/// stop this way when their handle is shut down.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
) {
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    return;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!("{what} stopped: {e}");
        }
    });
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub start: tokio::time::Instant,
    pub start_sim: DateTime<Utc>,
    pub served: u32,
}

#[derive(Debug)]
pub(crate) struct State {
    pub org: Org,
    pub limits: HashMap<Bucket, u32>,
    pub windows: HashMap<Bucket, Window>,
    pub concurrency_limit: usize,
    pub faults: VecDeque<Fault>,
    pub oauth: OAuthState,
    pub stats: SimStats,
    pub requests: Vec<RequestRecord>,
    pub api_token: String,
    /// The admin whose API token the SSWS requests use: the actor of API-made changes.
    pub api_token_owner: String,
    pub agent_pools: Vec<tasks::AgentPoolState>,
    pub principal_limits: tasks::PrincipalLimits,
    /// Raw bodies the next System Log polls answer with instead of their JSON (hardening
    /// tests: poison events, broken pages), keeping their Link headers.
    pub raw_log_pages: VecDeque<Vec<u8>>,
    /// `(from, to)`: a polling page whose next position is `from` links to `to` instead (a
    /// `next` link cycle when `to` is behind).
    pub log_next_redirect: Option<(usize, usize)>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub clock: SimClock,
    pub base: String,
    pub state: Mutex<State>,
    pub in_flight: AtomicUsize,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Wakes the event hook deliverer after the org changed.
    pub hook_wake: tokio::sync::Notify,
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge every later request.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The simulated org. Cheap to clone; all clones drive the same server.
#[derive(Debug, Clone)]
pub struct OktaSim {
    inner: Arc<Inner>,
}

impl OktaSim {
    /// Serves on `127.0.0.1:0` (a free port).
    pub async fn start() -> std::io::Result<OktaSim> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves on `addr` with `tokio::spawn` on the current runtime.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<OktaSim> {
        crate::ensure_crypto_provider();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else if local.is_ipv6() {
            format!("[{}]", local.ip())
        } else {
            local.ip().to_string()
        };
        let base = format!("http://{host}:{}", local.port());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let clock = SimClock::new();
        let inner = Arc::new(Inner {
            clock,
            base: base.clone(),
            state: Mutex::new(State {
                org: Org::new(base),
                limits: Bucket::ALL
                    .iter()
                    .map(|b| (*b, b.default_limit()))
                    .collect(),
                windows: HashMap::new(),
                concurrency_limit: 75,
                faults: VecDeque::new(),
                raw_log_pages: VecDeque::new(),
                log_next_redirect: None,
                oauth: OAuthState::default(),
                stats: SimStats::default(),
                requests: Vec::new(),
                api_token: format!("00{}", ids::random_alnum(40)),
                api_token_owner: "okta.admin@example.com".into(),
                agent_pools: Vec::new(),
                principal_limits: tasks::PrincipalLimits {
                    default_percentage: 50,
                    default_concurrency_percentage: 50,
                    created: clock.now(),
                },
            }),
            in_flight: AtomicUsize::new(0),
            shutdown: tx,
            hook_wake: tokio::sync::Notify::new(),
        });
        tokio::spawn(hook_delivery::deliver_loop(inner.clone()));
        let app = server::router(inner.clone());
        serve(listener, app, rx, "okta-sim server");
        Ok(OktaSim { inner })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash; also the org URL.
    pub fn base_url(&self) -> String {
        self.inner.base.clone()
    }

    /// The API token accepted as `Authorization: SSWS <token>`.
    pub fn api_token(&self) -> String {
        self.inner.lock().api_token.clone()
    }

    /// Replaces the accepted API token (for a demo with a fixed configuration).
    pub fn set_api_token(&self, token: &str) {
        self.inner.lock().api_token = token.to_string();
    }

    /// Stops accepting connections; open connections close once idle.
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Current sim time.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn with_org<R>(&self, f: impl FnOnce(&mut Org, DateTime<Utc>) -> R) -> R {
        let now = self.inner.clock.now();
        let r = {
            let mut st = self.inner.lock();
            f(&mut st.org, now)
        };
        // Whatever the change logged may be due to an event hook.
        self.inner.hook_wake.notify_one();
        r
    }

    /// Adds an ACTIVE SAML 2.0 app with USER_PROVISIONING (create, update, deactivate enabled)
    /// and a healthy downstream. Returns its `0oa…` id.
    pub fn add_app(&self, label: &str) -> String {
        self.with_org(|org, now| org.add_app(label, now))
    }

    pub fn set_app_status(&self, app_id: &str, active: bool) {
        self.with_org(|org, now| {
            let app = org.apps.get_mut(app_id).expect("okta-sim: unknown app");
            app.active = active;
            app.last_updated = now;
        })
    }

    /// Sets the USER_PROVISIONING capabilities (re-adding the feature if it was removed).
    pub fn set_provisioning(&self, app_id: &str, create: bool, update: bool, deactivate: bool) {
        self.with_org(|org, now| {
            let app = org.apps.get_mut(app_id).expect("okta-sim: unknown app");
            app.provisioning = Some(Caps {
                create,
                update,
                deactivate,
            });
            app.last_updated = now;
        })
    }

    /// The app becomes SSO-only: no USER_PROVISIONING feature, nothing is pushed.
    pub fn remove_provisioning_feature(&self, app_id: &str) {
        self.with_org(|org, now| {
            let app = org.apps.get_mut(app_id).expect("okta-sim: unknown app");
            app.provisioning = None;
            app.last_updated = now;
        })
    }

    /// Adds an ACTIVE user; first/last name and email derive from `login`. Returns `00u…`.
    pub fn add_user(&self, login: &str) -> String {
        self.with_org(|org, now| org.add_user(login, now))
    }

    /// Assigns the user to the app and runs the create push now. Returns the app user id,
    /// which (as in Okta's API) is the user id.
    pub fn assign(&self, app_id: &str, user_id: &str) -> String {
        self.with_org(|org, now| org.assign(app_id, user_id, now))
    }

    /// A profile change in Okta: runs a profile push now.
    pub fn update_profile(&self, app_id: &str, user_id: &str) {
        self.with_org(|org, now| org.push(app_id, user_id, Op::Update, now, Txn::Job))
    }

    /// Unassigns the user: runs a deactivation push now. On success (or when "Deactivate
    /// Users" is disabled) the app user is removed; on failure it stays `REVOKED` / `ERROR`.
    pub fn deactivate(&self, app_id: &str, user_id: &str) {
        self.with_org(|org, now| org.push(app_id, user_id, Op::Deactivate, now, Txn::Job))
    }

    pub fn set_downstream(&self, app_id: &str, d: Downstream) {
        self.with_org(|org, _| {
            org.apps
                .get_mut(app_id)
                .expect("okta-sim: unknown app")
                .downstream = d;
        })
    }

    /// The app user as `GET /api/v1/apps/{appId}/users/{userId}` would return it.
    pub fn app_user(&self, app_id: &str, user_id: &str) -> Option<Value> {
        let st = self.inner.lock();
        let app = st.org.apps.get(app_id)?;
        let au = app.users.get(user_id)?;
        Some(st.org.app_user_json(app, au, false))
    }

    /// Appends a raw event as-is (persisted now, whatever its `published`).
    pub fn push_log_event(&self, ev: Value) {
        self.with_org(|org, now| org.push_raw(ev, now))
    }

    pub fn log_event_count(&self) -> usize {
        self.inner.lock().org.events.len()
    }

    /// Every event in persistence order.
    pub fn log_events(&self) -> Vec<Value> {
        self.inner
            .lock()
            .org
            .events
            .iter()
            .map(|e| e.event.clone())
            .collect()
    }

    pub fn set_rate_limit(&self, bucket: Bucket, limit_per_minute: u32) {
        self.inner.lock().limits.insert(bucket, limit_per_minute);
    }

    /// More requests in flight than `n` get 429 `E0000047`.
    pub fn set_concurrency_limit(&self, n: usize) {
        self.inner.lock().concurrency_limit = n;
    }

    /// The next System Log request that would answer 200 answers with `body` as is (any
    /// bytes: poison events, a cut array), with the Link headers of the real page. Queued:
    /// each call serves one request.
    pub fn serve_raw_log_page(&self, body: Vec<u8>) {
        self.inner.lock().raw_log_pages.push_back(body);
    }

    /// From now on a polling System Log page whose `next` would start at event position
    /// `from` links to position `to` instead: with `to < from` the links go round a cycle.
    /// `None` restores normal links.
    pub fn set_log_next_redirect(&self, redirect: Option<(usize, usize)>) {
        self.inner.lock().log_next_redirect = redirect;
    }

    pub fn inject_fault(&self, f: Fault) {
        if f.times > 0 {
            self.inner.lock().faults.push_back(f);
        }
    }

    /// Registers a service app for `private_key_jwt` (RSA or EC public key PEM) with the
    /// scopes it was granted.
    pub fn register_oauth_client(&self, client_id: &str, public_key_pem: &str, scopes: &[&str]) {
        self.inner
            .lock()
            .oauth
            .register(client_id, public_key_pem, scopes);
    }

    /// Like [`Self::register_oauth_client`], for a service app with "Require Demonstrating
    /// Proof of Possession (DPoP) header in token requests": token requests need a `DPoP` proof
    /// carrying the server's nonce, and the tokens issued are `DPoP` tokens bound to the proof
    /// key, accepted only as `Authorization: DPoP` with a proof (with `ath`) by the same key.
    pub fn register_oauth_client_dpop(
        &self,
        client_id: &str,
        public_key_pem: &str,
        scopes: &[&str],
    ) {
        self.inner
            .lock()
            .oauth
            .register_with(client_id, public_key_pem, scopes, true);
    }

    /// Makes the API routes demand the resource server's nonce in DPoP proofs (401
    /// `use_dpop_nonce` with a `DPoP-Nonce` header otherwise); a new nonce each time it is set.
    pub fn require_dpop_resource_nonce(&self, on: bool) {
        let mut st = self.inner.lock();
        st.oauth.resource_nonce_required = on;
        st.oauth.resource_nonce = None;
    }

    pub fn stats(&self) -> SimStats {
        self.inner.lock().stats.clone()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.lock().requests.clone()
    }
}
