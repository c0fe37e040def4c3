//! The Slack channel: delivers an [`AlertMessage`] as Block Kit through an
//! incoming webhook or a bot token (`chat.postMessage`), via slack-morphism.
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

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use url::Url;

use crate::config::{SlackConfig, SlackTarget};

use super::message::AlertMessage;
pub use super::message::DeliveryError;

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
        let content = message_content(msg)?;
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

/// Block Kit JSON from the message model, typed for slack-morphism.
fn message_content(msg: &AlertMessage) -> Result<SlackMessageContent, DeliveryError> {
    let blocks: Vec<SlackBlock> =
        serde_json::from_value(serde_json::Value::Array(msg.slack_blocks())).map_err(|e| {
            // A rendering bug: retrying the same message cannot fix it.
            DeliveryError::permanent(format!("could not encode Slack blocks: {e}"))
        })?;
    Ok(SlackMessageContent::new()
        .with_text(msg.slack_fallback_text())
        .with_blocks(blocks))
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
    use crate::alert::message::{AlertLine, MessageKind, Severity};
    use chrono::{TimeZone, Utc};

    fn sample() -> AlertMessage {
        AlertMessage {
            kind: MessageKind::Firing,
            severity: Severity::Warning,
            title: "Workday: 2 users failing provisioning".into(),
            app_id: Some("0oa2".into()),
            app_label: Some("Workday".into()),
            admin_url: Some("https://acme-admin.okta.com/admin/app/workday/instance/0oa2/".into()),
            summary: "Two users <failed> & more".into(),
            lines: vec![AlertLine {
                user_login: "a@example.com".into(),
                user_id: "00u1".into(),
                operation: "CREATE_USER".into(),
                reason: None,
                first_seen: Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 0).unwrap(),
                attempts: 1,
            }],
            total_lines: 5,
            group_key: "app:0oa2".into(),
            created_at: Utc.with_ymd_and_hms(2024, 1, 2, 4, 0, 0).unwrap(),
        }
    }

    #[test]
    fn blocks_survive_slack_morphism_typing() {
        let msg = sample();
        let content = message_content(&msg).unwrap();
        let typed = serde_json::to_value(content.blocks.unwrap()).unwrap();
        assert_eq!(typed, serde_json::Value::Array(msg.slack_blocks()));
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
