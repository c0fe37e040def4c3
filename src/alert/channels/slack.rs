//! The Slack channel: renders an [`AlertMessage`] as slack-morphism's typed Block Kit and
//! delivers it through an incoming webhook or a bot token (`chat.postMessage`).
//!
//! Owns the Slack layout: header, summary, one section per failure line (collapsing past
//! [`SLACK_MAX_LINE_BLOCKS`] into "…and N more"), a context line and a button to the Okta
//! admin page, always within Slack's block count and text limits, with every user-supplied
//! string escaped for `mrkdwn` so it cannot form links or mentions.
//!
//! Owns the translation of Slack's failure modes into [`DeliveryError`]:
//! `429` → transient with `Retry-After`; 5xx, connection errors and timeouts →
//! transient; Slack error codes that need a human (`invalid_auth`,
//! `channel_not_found`, `no_service`, `invalid_token`, `invalid_payload`,
//! `channel_is_archived`, …) → permanent.
//!
//! The webhook URL and the bot token are secrets: they are held as
//! [`SecretString`], never formatted into `Debug`, logs or errors, and any
//! error text that does pass through is scrubbed of them.
//!
//! About 130 of its lines are unit tests, kept beside the code they pin.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use url::Url;

use crate::config::{SlackConfig, SlackTarget};

pub use super::DeliveryError;
use super::{Channel, ChannelFuture};
use crate::alert::message::{
    escape_mrkdwn_truncated, fmt_time, one_line, plural, safe_link, truncate_chars, AlertLine,
    AlertMessage, Severity,
};
use std::fmt::Write as _;

/// Slack Block Kit limits (<https://api.slack.com/reference/block-kit>).
pub const SLACK_MAX_BLOCKS: usize = 50;
pub const SLACK_MAX_SECTION_TEXT: usize = 3000;
pub const SLACK_MAX_HEADER_TEXT: usize = 150;
pub const SLACK_MAX_BUTTON_TEXT: usize = 75;
pub const SLACK_MAX_BUTTON_URL: usize = 3000;
/// User lines shown as their own section; the rest collapse into "…and N more". Header,
/// summary, overflow note, context and actions take the remaining blocks, with headroom under
/// [`SLACK_MAX_BLOCKS`].
pub const SLACK_MAX_LINE_BLOCKS: usize = 40;

type Connector = SlackClientHyperHttpsConnector;

enum Target {
    Webhook {
        url: SecretString,
    },
    Bot {
        token: SecretString,
        channel: String,
    },
}

/// Sends alerts to Slack. Cheap to share behind an `Arc`; holds one HTTP
/// connection pool.
pub struct SlackNotifier {
    client: SlackClient<Connector>,
    target: Target,
    /// Only for `Debug`/`check` output: the Web API base has no secret in it.
    api_url: Url,
    timeout: Duration,
}

impl fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SlackNotifier");
        match &self.target {
            Target::Webhook { .. } => d.field("target", &"webhook").field("url", &"[redacted]"),
            Target::Bot { channel, .. } => d
                .field("target", &"bot")
                .field("channel", channel)
                .field("token", &"[redacted]")
                .field("api_url", &self.api_url.as_str()),
        };
        d.field("timeout", &self.timeout).finish()
    }
}

/// TLS for Slack with an explicit ring provider: the dependency graph enables
/// both ring and aws-lc-rs in rustls, and rustls refuses to guess a process
/// default then. System roots first (corporate proxies add their CA there),
/// Mozilla's bundled roots when the host has none.
fn tls_config() -> anyhow::Result<rustls::ClientConfig> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("configuring TLS for Slack")
    };
    let config = match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(err) => {
            tracing::warn!(error = %err, "no usable system CA certificates; using bundled Mozilla roots for Slack");
            builder()?.with_webpki_roots().with_no_client_auth()
        }
    };
    Ok(config)
}

fn build_client(api_url: &Url) -> anyhow::Result<SlackClient<Connector>> {
    // slack-morphism's own `new()` is https-only; tests and the demo point
    // the Web API at a plain-http fake on loopback, so allow both schemes.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    // The connector appends "/{method}" itself; a trailing slash would make
    // "//chat.postMessage", which Slack (and the fake) 404.
    let base = api_url.as_str().trim_end_matches('/');
    let connector = SlackClientHyperConnector::from(https).with_slack_api_url(base);
    Ok(SlackClient::new(connector))
}

impl SlackNotifier {
    pub fn new(cfg: &SlackConfig, timeout: Duration) -> anyhow::Result<Self> {
        if !matches!(cfg.api_url.scheme(), "http" | "https") {
            anyhow::bail!("slack api_url must be an http(s) URL");
        }
        let target = match &cfg.target {
            SlackTarget::Webhook { url } => {
                // Parse once here so `send` can't fail on it later; the error
                // deliberately does not echo the URL.
                let parsed = Url::parse(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("slack webhook URL is not a valid URL ({e})"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    anyhow::bail!("slack webhook URL must be http(s)");
                }
                Target::Webhook { url: url.clone() }
            }
            SlackTarget::Bot { token, channel } => {
                if token.expose_secret().trim().is_empty() {
                    anyhow::bail!("slack bot token is empty");
                }
                if channel.trim().is_empty() {
                    anyhow::bail!("slack channel is empty");
                }
                Target::Bot {
                    token: token.clone(),
                    channel: channel.trim().to_string(),
                }
            }
        };
        Ok(SlackNotifier {
            client: build_client(&cfg.api_url)?,
            target,
            api_url: cfg.api_url.clone(),
            timeout,
        })
    }

    /// Posts `msg`; `Ok` means Slack accepted it.
    pub async fn send(&self, msg: &AlertMessage) -> Result<(), DeliveryError> {
        let content = message_content(msg);
        match &self.target {
            Target::Webhook { url } => {
                let url = Url::parse(url.expose_secret())
                    .map_err(|_| DeliveryError::permanent("slack webhook URL is invalid"))?;
                let req = SlackApiPostWebhookMessageRequest::new(content);
                let fut = self.client.post_webhook_message(&url, &req);
                self.finish("webhook", fut).await.map(|_| ())
            }
            Target::Bot { token, channel } => {
                let token = api_token(token);
                let session = self.client.open_session(&token);
                let req = SlackApiChatPostMessageRequest::new(
                    SlackChannelId::new(channel.clone()),
                    content,
                );
                let fut = session.chat_post_message(&req);
                self.finish("chat.postMessage", fut).await.map(|_| ())
            }
        }
    }

    /// Doctor check. Bots run `auth.test`; webhooks can't be tested without
    /// posting a message, so they are only reported as configured.
    pub async fn check(&self) -> Result<String, DeliveryError> {
        match &self.target {
            Target::Webhook { url } => {
                let host = Url::parse(url.expose_secret())
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_else(|| "?".into());
                Ok(format!(
                    "Slack incoming webhook configured (host {host}); not tested, since a webhook can only be tested by posting"
                ))
            }
            Target::Bot { token, channel } => {
                let token = api_token(token);
                let session = self.client.open_session(&token);
                let res = self.finish("auth.test", session.auth_test()).await?;
                Ok(format!(
                    "Slack bot authenticated as {} ({}) in team {} ({}); posting to {channel}",
                    res.user.as_deref().unwrap_or("?"),
                    res.user_id,
                    res.team,
                    res.team_id,
                ))
            }
        }
    }

    async fn finish<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, SlackClientError>>,
    ) -> Result<T, DeliveryError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(err)) => {
                let mapped = self.scrub(classify(what, err));
                tracing::debug!(error = %mapped, "slack delivery failed");
                Err(mapped)
            }
            Err(_) => Err(DeliveryError::Transient {
                message: format!("Slack {what} timed out after {:?}", self.timeout),
                retry_after: None,
            }),
        }
    }

    /// Belt and braces: error text built from library errors must not carry
    /// the webhook URL (or its secret path) or the token.
    fn scrub(&self, err: DeliveryError) -> DeliveryError {
        let mut secrets: Vec<String> = Vec::new();
        match &self.target {
            Target::Webhook { url } => {
                let url = url.expose_secret();
                secrets.push(url.to_string());
                if let Ok(parsed) = Url::parse(url) {
                    secrets.push(parsed.path().to_string());
                    secrets.extend(
                        parsed
                            .path_segments()
                            .into_iter()
                            .flatten()
                            .filter(|s| s.len() >= 8)
                            .map(str::to_string),
                    );
                }
            }
            Target::Bot { token, .. } => secrets.push(token.expose_secret().to_string()),
        }
        let clean = |m: String| {
            secrets
                .iter()
                .filter(|s| !s.is_empty())
                .fold(m, |m, s| m.replace(s.as_str(), "[redacted]"))
        };
        match err {
            DeliveryError::Transient {
                message,
                retry_after,
            } => DeliveryError::Transient {
                message: clean(message),
                retry_after,
            },
            DeliveryError::Permanent { message } => DeliveryError::Permanent {
                message: clean(message),
            },
        }
    }
}

fn api_token(token: &SecretString) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue::new(token.expose_secret().to_string()))
}

fn emoji(s: Severity) -> &'static str {
    match s {
        Severity::Urgent => ":rotating_light:",
        Severity::Warning => ":warning:",
        Severity::Info => ":information_source:",
    }
}

fn mrkdwn_section(text: String) -> SlackBlock {
    SlackSectionBlock::new()
        .with_text(SlackBlockMarkDownText::new(text).into())
        .into()
}

fn mrkdwn_context(text: String) -> SlackBlock {
    SlackContextBlock::new(vec![SlackBlockMarkDownText::new(text).into()]).into()
}

/// One failure line as Slack `mrkdwn`, within the section text limit.
fn line_mrkdwn(line: &AlertLine) -> String {
    let login = escape_mrkdwn_truncated(&line.who(), 500);
    let op = escape_mrkdwn_truncated(&one_line(&line.operation), 200);
    let mut tail = format!(
        " — first seen {} — {}",
        fmt_time(&line.first_seen),
        plural(u64::from(line.attempts), "attempt", "attempts"),
    );
    if let Some(step) = line.next_step_text() {
        let _ = write!(tail, "\n_Next:_ {}", escape_mrkdwn_truncated(&step, 700));
    }
    let head = match line.safe_link() {
        Some(url) => format!("*<{url}|{login}>* — {op} — "),
        None => format!("*{login}* — {op} — "),
    };
    let room = SLACK_MAX_SECTION_TEXT.saturating_sub(head.chars().count() + tail.chars().count());
    let reason = escape_mrkdwn_truncated(&one_line(line.reason_or_default()), room);
    format!("{head}{reason}{tail}")
}

/// Top-level `text`: shown in notifications and by clients that cannot render blocks.
pub fn fallback_text(msg: &AlertMessage) -> String {
    let s = format!(
        "[{}] {}: {}",
        msg.subject_tag(),
        one_line(&msg.title),
        one_line(&msg.summary)
    );
    escape_mrkdwn_truncated(&s, SLACK_MAX_SECTION_TEXT)
}

/// The Block Kit blocks for `msg`, always within Slack's block count and text limits.
pub fn blocks(msg: &AlertMessage) -> Vec<SlackBlock> {
    let mut blocks: Vec<SlackBlock> = Vec::new();
    let header = format!("{} {}", msg.subject_tag(), one_line(&msg.title).trim());
    blocks.push(
        SlackHeaderBlock::new(
            SlackBlockPlainText::new(truncate_chars(header.trim(), SLACK_MAX_HEADER_TEXT))
                .with_emoji(true)
                .into(),
        )
        .into(),
    );
    if !msg.summary.trim().is_empty() {
        blocks.push(mrkdwn_section(escape_mrkdwn_truncated(
            msg.summary.trim(),
            SLACK_MAX_SECTION_TEXT,
        )));
    }
    let shown = msg.lines.len().min(SLACK_MAX_LINE_BLOCKS);
    for line in &msg.lines[..shown] {
        blocks.push(mrkdwn_section(line_mrkdwn(line)));
    }
    let hidden = msg.total() - shown;
    if hidden > 0 {
        blocks.push(mrkdwn_context(format!("…and {hidden} more")));
    }
    let mut context = format!(
        "{} *{}* · {}",
        emoji(msg.severity),
        msg.severity.tag(),
        msg.kind.label()
    );
    if let Some(app) = msg.app_display() {
        let _ = write!(context, " · {}", escape_mrkdwn_truncated(&app, 300));
    }
    let _ = write!(
        context,
        " · group `{}` · {}",
        escape_mrkdwn_truncated(&one_line(&msg.group_key), 300),
        fmt_time(&msg.created_at)
    );
    blocks.push(mrkdwn_context(truncate_chars(
        &context,
        SLACK_MAX_SECTION_TEXT,
    )));
    if let Some(url) = safe_link(msg.admin_url.as_deref())
        .filter(|u| u.chars().count() <= SLACK_MAX_BUTTON_URL)
        .and_then(|u| Url::parse(u).ok())
    {
        let button = SlackBlockButtonElement::new(
            SlackBlockPlainText::new("Open in Okta admin".into())
                .with_emoji(true)
                .into(),
        )
        .with_action_id(SlackActionId::new("open_okta_admin".into()))
        .with_url(url);
        blocks.push(SlackActionsBlock::new(vec![button.into()]).into());
    }
    debug_assert!(blocks.len() <= SLACK_MAX_BLOCKS);
    blocks
}

fn message_content(msg: &AlertMessage) -> SlackMessageContent {
    SlackMessageContent::new()
        .with_text(fallback_text(msg))
        .with_blocks(blocks(msg))
}

impl Channel for SlackNotifier {
    fn send<'a>(&'a self, msg: &'a AlertMessage) -> ChannelFuture<'a, ()> {
        Box::pin(SlackNotifier::send(self, msg))
    }

    fn check(&self) -> ChannelFuture<'_, String> {
        Box::pin(SlackNotifier::check(self))
    }
}

/// Slack error codes worth retrying; everything else needs a human.
/// (https://api.slack.com/methods/chat.postMessage#errors)
fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "ratelimited"
            | "rate_limited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "team_added_to_org"
    )
}

/// Keeps only a Slack-style error code from a response body; anything else
/// (an HTML error page from a proxy) is not echoed.
fn body_code(body: Option<&str>) -> Option<&str> {
    let b = body?.trim();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    ok.then_some(b)
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut src = err.source();
    while let Some(e) = src {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        src = e.source();
    }
    parts.join(": ")
}

fn classify(what: &str, err: SlackClientError) -> DeliveryError {
    match err {
        SlackClientError::RateLimitError(e) => DeliveryError::Transient {
            message: format!(
                "Slack {what} rate limited (HTTP 429{})",
                e.code.map(|c| format!(", {c}")).unwrap_or_default()
            ),
            retry_after: e.retry_after,
        },
        SlackClientError::ApiError(e) => {
            let message = format!("Slack {what} failed: {}", e.code);
            if is_transient_code(&e.code) {
                DeliveryError::transient(message)
            } else {
                DeliveryError::permanent(message)
            }
        }
        SlackClientError::HttpError(e) => {
            let status = e.status_code;
            let code = body_code(e.http_response_body.as_deref());
            let message = match code {
                Some(code) => format!("Slack {what} failed: HTTP {} {code}", status.as_u16()),
                None => format!("Slack {what} failed: HTTP {}", status.as_u16()),
            };
            let transient = status.is_server_error()
                || status.as_u16() == 408
                || code.is_some_and(is_transient_code);
            if transient {
                DeliveryError::transient(message)
            } else {
                DeliveryError::permanent(message)
            }
        }
        SlackClientError::HttpProtocolError(e) => {
            let detail = e
                .cause
                .as_deref()
                .map(|c| error_chain(c as &(dyn std::error::Error + 'static)))
                .unwrap_or_else(|| "unknown".into());
            DeliveryError::transient(format!("Slack {what} connection error: {detail}"))
        }
        // A body we could not decode is most likely a proxy or an outage page.
        SlackClientError::ProtocolError(_) => {
            DeliveryError::transient(format!("Slack {what} returned an unexpected response"))
        }
        other => DeliveryError::transient(format!(
            "Slack {what} failed: {}",
            match other {
                SlackClientError::EndOfStream(_) => "connection closed",
                _ => "client error",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::message::escape_mrkdwn;
    use serde_json::Value;

    fn msg(n: usize) -> AlertMessage {
        crate::alert::message::tests::msg(n)
    }

    fn json(m: &AlertMessage) -> Vec<Value> {
        match serde_json::to_value(blocks(m)).unwrap() {
            Value::Array(v) => v,
            v => panic!("{v}"),
        }
    }

    fn all_text(blocks: &[Value]) -> String {
        serde_json::to_string(blocks).unwrap()
    }

    #[test]
    fn mrkdwn_escapes_control_characters() {
        let mut m = msg(1);
        m.lines[0].user_login = "<!channel> & <@U123>".into();
        m.summary = "<https://evil.test|click>".into();
        let blocks = json(&m);
        let s = all_text(&blocks);
        assert!(!s.contains("<!channel>"), "{s}");
        assert!(!s.contains("<https://evil"), "{s}");
        assert!(s.contains("&lt;!channel&gt; &amp; &lt;@U123&gt;"));
        assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
    }

    #[test]
    fn slack_line_format() {
        let blocks = json(&msg(1));
        let texts: Vec<&str> = blocks
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert!(texts.contains(
            &"*user0@example.com* — PUSH_PROFILE — Salesforce API: INVALID_FIELD — first seen 2024-05-01 12:30 UTC — 3 attempts"
        ), "{texts:?}");
    }

    #[test]
    fn slack_truncates_to_limits() {
        let mut m = msg(120);
        m.total_lines = 130;
        m.title = "T".repeat(400);
        m.summary = "&".repeat(5000);
        m.lines[0].reason = Some("<".repeat(5000));
        let blocks = json(&m);
        assert!(blocks.len() <= SLACK_MAX_BLOCKS);
        let line_sections = blocks
            .iter()
            .filter(|b| b["type"] == "section")
            .filter(|b| b["text"]["text"].as_str().unwrap().contains("@example.com"))
            .count();
        assert_eq!(line_sections, SLACK_MAX_LINE_BLOCKS);
        assert!(all_text(&blocks).contains(&format!("…and {} more", 130 - SLACK_MAX_LINE_BLOCKS)));
        for b in &blocks {
            let t = b["text"]["text"].as_str().unwrap_or("");
            match b["type"].as_str().unwrap() {
                "header" => assert!(t.chars().count() <= SLACK_MAX_HEADER_TEXT),
                "section" => {
                    assert!(t.chars().count() <= SLACK_MAX_SECTION_TEXT, "{}", t.len());
                    // never cut in the middle of an entity
                    assert!(!t.trim_end_matches('…').ends_with("&amp"));
                    assert!(!t.contains("&l…") && !t.contains("&a…"));
                }
                _ => {}
            }
        }
        assert!(fallback_text(&m).chars().count() <= SLACK_MAX_SECTION_TEXT);
    }

    #[test]
    fn next_step_and_app_show_escaped_within_the_section_limit() {
        let mut m = msg(1);
        m.lines[0].app = Some("<Work&day>".into());
        m.lines[0].next_step = Some(format!(
            "run `okta-provwatch retry` <@U1> {}",
            "y".repeat(5000)
        ));
        m.lines[0].reason = Some("r".repeat(5000));
        let blocks = json(&m);
        let section = blocks
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap())
            .find(|t| t.contains("user0"))
            .unwrap();
        assert!(section.chars().count() <= SLACK_MAX_SECTION_TEXT);
        assert!(
            section.starts_with("*user0@example.com (&lt;Work&amp;day&gt;)*"),
            "{section:.80}"
        );
        assert!(section.contains("\n_Next:_ run `okta-provwatch retry` &lt;@U1&gt;"));
        m.lines[0].link = Some("https://acme-admin.okta.com/admin/user/profile/view/00u1".into());
        let text = all_text(&json(&m));
        assert!(text.contains("*<https://acme-admin.okta.com/admin/user/profile/view/00u1|user0@example.com (&lt;Work&amp;day&gt;)>*"), "{text:.400}");
        m.lines[0].link = Some("https://x.test/a|<!channel>".into());
        assert!(!all_text(&json(&m)).contains("x.test"));
    }

    #[test]
    fn unsafe_admin_links_are_dropped() {
        let mut m = msg(1);
        m.admin_url = Some("javascript:alert(1)".into());
        assert!(!all_text(&json(&m)).contains("javascript:"));
        m.admin_url = Some("https://acme-admin.okta.com/admin/apps/active".into());
        assert!(all_text(&json(&m)).contains("open_okta_admin"));
    }

    #[test]
    fn error_codes_classify() {
        assert!(is_transient_code("ratelimited"));
        assert!(is_transient_code("internal_error"));
        for code in [
            "invalid_auth",
            "channel_not_found",
            "not_in_channel",
            "no_service",
        ] {
            assert!(!is_transient_code(code), "{code}");
        }
        assert_eq!(body_code(Some("no_service\n")), Some("no_service"));
        assert_eq!(body_code(Some("<html>oops</html>")), None);
    }
}
