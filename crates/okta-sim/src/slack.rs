//! A fake Slack that speaks the real wire shapes of the two delivery paths
//! provwatch uses: incoming webhooks (`POST /services/T…/B…/secret`, plain-text
//! `ok` or error-code bodies with Slack's documented HTTP statuses) and the Web
//! API (`POST /api/chat.postMessage`, `POST /api/auth.test`, always HTTP 200
//! with `{"ok":false,"error":…}` except for rate limiting).
//!
//! It validates payloads the way Slack does (text-or-blocks, Block Kit shape and
//! size limits), rate-limits with `429` + `Retry-After`, and records every
//! accepted message so tests can assert on the exact Block Kit that arrived.
//! The server runs as a task on the caller's tokio runtime so tests using
//! paused time keep working; dropping the [`FakeSlack`] stops it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use serde_json::{json, Map, Value};

/// Team / bot ids of the fake workspace; the webhook path embeds them like
/// Slack's does.
const TEAM_ID: &str = "T0000FAKE";
const WEBHOOK_BOT_ID: &str = "B0000HOOK";
const WEBHOOK_SECRET: &str = "fAkEwEbHoOkSeCrEt0123456";
const BOT_TOKEN: &str = "xoxb-0000000000-0000000000000-fAkEbOtToKeNsEcReT01";
const BOT_USER_ID: &str = "U0000BOT1";
const BOT_ID: &str = "B0000BOT1";

/// Slack's documented Block Kit limits; the fake rejects what Slack rejects.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_SECTION_FIELD_TEXT: usize = 2000;
pub const MAX_SECTION_FIELDS: usize = 10;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_ACTIONS_ELEMENTS: usize = 25;
pub const MAX_BUTTON_TEXT: usize = 75;
pub const MAX_BUTTON_URL: usize = 3000;

/// How the fake answers requests that get past routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlackMode {
    /// Normal operation.
    Up,
    /// HTTP 500, as during a Slack incident: plain-text `rollup_error` on the webhook (the
    /// body Slack documents for webhook 500s), `internal_error` on the Web API.
    Down,
    /// HTTP 503 `service_unavailable`.
    Unavailable,
    /// HTTP 429 with `Retry-After: retry_after_secs`.
    RateLimited { retry_after_secs: u64 },
    /// A permanent Slack error code (`channel_not_found`, `invalid_auth`,
    /// `no_service`, `channel_is_archived`, …), rendered per endpoint: the
    /// webhook's documented HTTP status + plain-text code, or the Web API's
    /// `200 {"ok":false,"error":code}`.
    Permanent(String),
}

/// Which delivery path a recorded message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackVia {
    Webhook,
    ChatPostMessage,
}

/// One message Slack accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSlack {
    pub via: SlackVia,
    /// The channel as the client sent it (`chat.postMessage` only).
    pub channel: Option<String>,
    /// The JSON payload as received (form posts are converted to JSON, with
    /// `blocks` parsed).
    pub body: Value,
}

#[derive(Debug)]
struct SlackState {
    mode: SlackMode,
    fail_next: VecDeque<SlackMode>,
    messages: Vec<ReceivedSlack>,
    request_count: usize,
    ts_counter: u64,
}

struct Shared {
    state: Mutex<SlackState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SlackState> {
        // A panicking test thread must not wedge every later assertion.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the request and returns the failure mode to apply, if any.
    fn admit(&self) -> Option<SlackMode> {
        let mut st = self.lock();
        st.request_count += 1;
        let mode = st.fail_next.pop_front().unwrap_or_else(|| st.mode.clone());
        (mode != SlackMode::Up).then_some(mode)
    }
}

/// A fake Slack workspace on `127.0.0.1:<ephemeral>`.
pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlack {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start() -> io::Result<FakeSlack> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(SlackState {
                mode: SlackMode::Up,
                fail_next: VecDeque::new(),
                messages: Vec::new(),
                request_count: 0,
                ts_counter: 0,
            }),
        });
        let app = Router::new()
            .route("/services/{team}/{bot}/{secret}", post(webhook))
            .route("/api/chat.postMessage", post(chat_post_message))
            .route("/api/auth.test", post(auth_test).get(auth_test))
            .route("/api/{method}", any(unknown_method))
            .fallback(not_found)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(error = %err, "fake Slack server stopped");
            }
        });
        Ok(FakeSlack {
            addr,
            shared,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The one incoming-webhook URL this workspace accepts.
    pub fn webhook_url(&self) -> String {
        format!(
            "{}/services/{TEAM_ID}/{WEBHOOK_BOT_ID}/{WEBHOOK_SECRET}",
            self.base_url()
        )
    }

    /// The secret path segment of [`webhook_url`](Self::webhook_url), for
    /// asserting it never leaks into logs or errors.
    pub fn webhook_secret(&self) -> &'static str {
        WEBHOOK_SECRET
    }

    /// A webhook URL for this workspace whose secret is wrong (Slack answers
    /// `403 invalid_token`).
    pub fn webhook_url_with_bad_secret(&self) -> String {
        format!(
            "{}/services/{TEAM_ID}/{WEBHOOK_BOT_ID}/NoTtHeSeCrEt000000000000",
            self.base_url()
        )
    }

    /// A webhook URL that was never configured / was removed (Slack answers
    /// `404 no_service`).
    pub fn removed_webhook_url(&self) -> String {
        format!(
            "{}/services/{TEAM_ID}/B9999GONE/{WEBHOOK_SECRET}",
            self.base_url()
        )
    }

    /// The Web API base, `http://127.0.0.1:PORT/api/`.
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.base_url())
    }

    /// The bot token the Web API accepts; anything else is `invalid_auth`.
    pub fn bot_token(&self) -> &'static str {
        BOT_TOKEN
    }

    /// Sets the steady-state behaviour.
    pub fn set_mode(&self, mode: SlackMode) {
        self.shared.lock().mode = mode;
    }

    /// Makes the next `n` requests (any endpoint) behave as `kind`, after
    /// which the steady-state mode applies again.
    pub fn fail_next(&self, n: usize, kind: SlackMode) {
        let mut st = self.shared.lock();
        for _ in 0..n {
            st.fail_next.push_back(kind.clone());
        }
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedSlack> {
        self.shared.lock().messages.clone()
    }

    /// Every request that reached a Slack endpoint, accepted or not.
    pub fn request_count(&self) -> usize {
        self.shared.lock().request_count
    }
}

// ---------------------------------------------------------------------------
// responses

fn text_response(status: StatusCode, body: &'static str) -> Response {
    text_owned(status, body.to_string())
}

fn text_owned(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html")], // what Slack's webhook edge sends
        body,
    )
        .into_response()
}

fn api_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn api_error(code: &str) -> Response {
    api_json(StatusCode::OK, json!({"ok": false, "error": code}))
}

fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Slack's documented HTTP status for each webhook error code.
fn webhook_status(code: &str) -> StatusCode {
    match code {
        "invalid_token" | "action_prohibited" | "posting_to_general_channel_denied" => {
            StatusCode::FORBIDDEN
        }
        "no_service" | "channel_not_found" | "no_team" => StatusCode::NOT_FOUND,
        "channel_is_archived" | "team_disabled" => StatusCode::GONE,
        "rollup_error" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn webhook_failure(mode: SlackMode) -> Response {
    match mode {
        SlackMode::Up => text_response(StatusCode::OK, "ok"),
        // Slack's webhook error table: HTTP 500 answers `rollup_error`.
        SlackMode::Down => text_response(StatusCode::INTERNAL_SERVER_ERROR, "rollup_error"),
        SlackMode::Unavailable => {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
        }
        SlackMode::RateLimited { retry_after_secs } => with_retry_after(
            text_response(StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            retry_after_secs,
        ),
        SlackMode::Permanent(code) => text_owned(webhook_status(&code), code),
    }
}

fn api_failure(mode: SlackMode) -> Response {
    match mode {
        SlackMode::Up => api_json(StatusCode::OK, json!({"ok": true})),
        SlackMode::Down => text_response(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        SlackMode::Unavailable => {
            text_response(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
        }
        SlackMode::RateLimited { retry_after_secs } => with_retry_after(
            api_json(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"ok": false, "error": "ratelimited"}),
            ),
            retry_after_secs,
        ),
        SlackMode::Permanent(code) => api_error(&code),
    }
}

async fn not_found() -> Response {
    text_response(StatusCode::NOT_FOUND, "not_found")
}

/// A Web API method this fake does not implement: Slack answers any unknown method with HTTP
/// 200 and `{"ok":false,"error":"unknown_method"}`, like every other Web API error.
async fn unknown_method(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(mode) = shared.admit() {
        return api_failure(mode);
    }
    api_error("unknown_method")
}

// ---------------------------------------------------------------------------
// request decoding

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_form(headers: &HeaderMap) -> bool {
    content_type(headers).starts_with("application/x-www-form-urlencoded")
}

/// Turns a form post into the JSON object Slack would have received; `blocks`
/// (and `attachments`) arrive as JSON strings in forms.
fn form_to_json(body: &[u8]) -> Result<Map<String, Value>, &'static str> {
    let mut obj = Map::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        let value = match k.as_ref() {
            "blocks" | "attachments" | "metadata" => {
                serde_json::from_str(&v).map_err(|_| "invalid_blocks_format")?
            }
            _ => Value::String(v.into_owned()),
        };
        obj.insert(k.into_owned(), value);
    }
    Ok(obj)
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = raw.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Web API auth: header token first, then a `token` form field, as Slack
/// accepts both.
fn check_auth(headers: &HeaderMap, form: Option<&Map<String, Value>>) -> Result<(), &'static str> {
    let token = bearer_token(headers).or_else(|| {
        form.and_then(|f| f.get("token"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match token {
        None => Err("not_authed"),
        Some(t) if t == BOT_TOKEN => Ok(()),
        Some(_) => Err("invalid_auth"),
    }
}

// ---------------------------------------------------------------------------
// payload validation (Block Kit)

fn char_len(s: &str) -> usize {
    s.chars().count()
}

fn text_object(v: &Value, max: usize, plain_only: bool) -> Result<(), &'static str> {
    let obj = v.as_object().ok_or("invalid_blocks")?;
    match obj.get("type").and_then(Value::as_str) {
        Some("plain_text") => {}
        Some("mrkdwn") if !plain_only => {}
        _ => return Err("invalid_blocks"),
    }
    let text = obj
        .get("text")
        .and_then(Value::as_str)
        .ok_or("invalid_blocks")?;
    if text.is_empty() || char_len(text) > max {
        return Err("invalid_blocks");
    }
    Ok(())
}

fn element(v: &Value) -> Result<(), &'static str> {
    let obj = v.as_object().ok_or("invalid_blocks")?;
    match obj.get("type").and_then(Value::as_str) {
        Some("button") => {
            text_object(
                obj.get("text").ok_or("invalid_blocks")?,
                MAX_BUTTON_TEXT,
                true,
            )?;
            if let Some(url) = obj.get("url") {
                let url = url.as_str().ok_or("invalid_blocks")?;
                if url.is_empty() || char_len(url) > MAX_BUTTON_URL {
                    return Err("invalid_blocks");
                }
            }
            Ok(())
        }
        Some(_) => Ok(()),
        None => Err("invalid_blocks"),
    }
}

fn validate_block(block: &Value) -> Result<(), &'static str> {
    let obj = block.as_object().ok_or("invalid_blocks")?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or("invalid_blocks")?;
    match kind {
        "header" => text_object(
            obj.get("text").ok_or("invalid_blocks")?,
            MAX_HEADER_TEXT,
            true,
        ),
        "section" => {
            let text = obj.get("text");
            let fields = obj.get("fields");
            if text.is_none() && fields.is_none() {
                return Err("invalid_blocks");
            }
            if let Some(text) = text {
                text_object(text, MAX_SECTION_TEXT, false)?;
            }
            if let Some(fields) = fields {
                let fields = fields.as_array().ok_or("invalid_blocks")?;
                if fields.is_empty() || fields.len() > MAX_SECTION_FIELDS {
                    return Err("invalid_blocks");
                }
                for f in fields {
                    text_object(f, MAX_SECTION_FIELD_TEXT, false)?;
                }
            }
            if let Some(acc) = obj.get("accessory") {
                element(acc)?;
            }
            Ok(())
        }
        "context" => {
            let elements = obj
                .get("elements")
                .and_then(Value::as_array)
                .ok_or("invalid_blocks")?;
            if elements.is_empty() || elements.len() > MAX_CONTEXT_ELEMENTS {
                return Err("invalid_blocks");
            }
            for e in elements {
                let t = e.get("type").and_then(Value::as_str);
                match t {
                    Some("plain_text") | Some("mrkdwn") => text_object(e, MAX_SECTION_TEXT, false)?,
                    Some("image") => {}
                    _ => return Err("invalid_blocks"),
                }
            }
            Ok(())
        }
        "actions" => {
            let elements = obj
                .get("elements")
                .and_then(Value::as_array)
                .ok_or("invalid_blocks")?;
            if elements.is_empty() || elements.len() > MAX_ACTIONS_ELEMENTS {
                return Err("invalid_blocks");
            }
            elements.iter().try_for_each(element)
        }
        // Other block types exist; the fake only checks the ones provwatch uses.
        _ => Ok(()),
    }
}

/// Slack's checks on a message body: `text` or `blocks` required, blocks must
/// be an array of typed objects within the Block Kit limits.
fn validate_message(body: &Map<String, Value>) -> Result<(), &'static str> {
    let has_text = body
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    match body.get("blocks") {
        None | Some(Value::Null) => {
            if has_text {
                Ok(())
            } else {
                Err("no_text")
            }
        }
        Some(Value::Array(blocks)) => {
            if blocks.is_empty() && !has_text {
                return Err("no_text");
            }
            if blocks.len() > MAX_BLOCKS {
                return Err("invalid_blocks");
            }
            blocks.iter().try_for_each(validate_block)
        }
        Some(_) => Err("invalid_blocks"),
    }
}

// ---------------------------------------------------------------------------
// handlers

async fn webhook(
    State(shared): State<Arc<Shared>>,
    Path((team, bot, secret)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(mode) = shared.admit() {
        return webhook_failure(mode);
    }
    if team != TEAM_ID || bot != WEBHOOK_BOT_ID {
        return webhook_failure(SlackMode::Permanent("no_service".into()));
    }
    if secret != WEBHOOK_SECRET {
        return webhook_failure(SlackMode::Permanent("invalid_token".into()));
    }
    // Webhooks take a JSON body, or a form with the JSON in `payload`.
    let parsed: Option<Value> = if is_form(&headers) {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "payload")
            .and_then(|(_, v)| serde_json::from_str(&v).ok())
    } else {
        serde_json::from_slice(&body).ok()
    };
    let Some(Value::Object(obj)) = parsed else {
        return webhook_failure(SlackMode::Permanent("invalid_payload".into()));
    };
    if let Err(code) = validate_message(&obj) {
        // Slack reports a missing text as `no_text` and bad Block Kit as
        // `invalid_blocks`, both 400.
        return webhook_failure(SlackMode::Permanent(code.into()));
    }
    shared.lock().messages.push(ReceivedSlack {
        via: SlackVia::Webhook,
        channel: None,
        body: Value::Object(obj),
    });
    text_response(StatusCode::OK, "ok")
}

/// Channel names map to a stable fake id; ids are passed through.
fn channel_id(channel: &str) -> String {
    let looks_like_id = channel.len() >= 9
        && channel.starts_with(['C', 'G', 'D'])
        && channel
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if looks_like_id {
        return channel.to_string();
    }
    let name = channel.trim_start_matches('#');
    // FNV-1a: stable across runs, unlike std's RandomState.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("C{:08X}", h as u32)
}

async fn chat_post_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(mode) = shared.admit() {
        return api_failure(mode);
    }
    let form = is_form(&headers);
    let obj = if form {
        match form_to_json(&body) {
            Ok(obj) => obj,
            Err(code) => return api_error(code),
        }
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(obj)) => obj,
            _ => return api_error("invalid_json"),
        }
    };
    if let Err(code) = check_auth(&headers, form.then_some(&obj)) {
        return api_error(code);
    }
    let channel = match obj.get("channel").and_then(Value::as_str) {
        Some(c) if !c.trim().is_empty() => c.to_string(),
        _ => return api_error("channel_not_found"),
    };
    if let Err(code) = validate_message(&obj) {
        return api_error(code);
    }
    let ts = {
        let mut st = shared.lock();
        st.ts_counter += 1;
        let ts = format!("1700000000.{:06}", st.ts_counter * 100);
        st.messages.push(ReceivedSlack {
            via: SlackVia::ChatPostMessage,
            channel: Some(channel.clone()),
            body: Value::Object(obj.clone()),
        });
        ts
    };
    let mut message = json!({
        "type": "message",
        "subtype": "bot_message",
        "text": obj.get("text").cloned().unwrap_or(Value::String(String::new())),
        "user": BOT_USER_ID,
        "bot_id": BOT_ID,
        "ts": ts,
        "team": TEAM_ID,
    });
    if let Some(blocks) = obj.get("blocks") {
        message["blocks"] = blocks.clone();
    }
    api_json(
        StatusCode::OK,
        json!({
            "ok": true,
            "channel": channel_id(&channel),
            "ts": ts,
            "message": message,
        }),
    )
}

async fn auth_test(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(mode) = shared.admit() {
        return api_failure(mode);
    }
    let form = if is_form(&headers) {
        form_to_json(&body).ok()
    } else {
        None
    };
    if let Err(code) = check_auth(&headers, form.as_ref()) {
        return api_error(code);
    }
    api_json(
        StatusCode::OK,
        json!({
            "ok": true,
            "url": "https://provwatch-fake.slack.com/",
            "team": "Provwatch Fake",
            "user": "provwatch",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn text_or_blocks_required() {
        assert_eq!(validate_message(&obj(json!({}))), Err("no_text"));
        assert_eq!(
            validate_message(&obj(json!({"text": "  "}))),
            Err("no_text")
        );
        assert_eq!(validate_message(&obj(json!({"text": "hi"}))), Ok(()));
        assert_eq!(
            validate_message(&obj(json!({"blocks": "nope"}))),
            Err("invalid_blocks")
        );
    }

    #[test]
    fn block_kit_limits() {
        let section =
            |n: usize| json!({"type":"section","text":{"type":"mrkdwn","text":"x".repeat(n)}});
        assert!(validate_message(&obj(json!({"blocks": [section(3000)]}))).is_ok());
        assert_eq!(
            validate_message(&obj(json!({"blocks": [section(3001)]}))),
            Err("invalid_blocks")
        );
        let header =
            |n: usize| json!({"type":"header","text":{"type":"plain_text","text":"h".repeat(n)}});
        assert!(validate_message(&obj(json!({"blocks": [header(150)]}))).is_ok());
        assert_eq!(
            validate_message(&obj(json!({"blocks": [header(151)]}))),
            Err("invalid_blocks")
        );
        let many: Vec<Value> = (0..51).map(|_| section(1)).collect();
        assert_eq!(
            validate_message(&obj(json!({"blocks": many}))),
            Err("invalid_blocks")
        );
        assert_eq!(
            validate_message(&obj(json!({"blocks": [{"text": "untyped"}]}))),
            Err("invalid_blocks")
        );
        assert_eq!(
            validate_message(&obj(json!({"blocks": [42]}))),
            Err("invalid_blocks")
        );
    }

    #[test]
    fn channel_ids_are_stable() {
        assert_eq!(channel_id("C0123ABCD"), "C0123ABCD");
        assert_eq!(channel_id("#alerts"), channel_id("alerts"));
        assert!(channel_id("#alerts").starts_with('C'));
    }
}
