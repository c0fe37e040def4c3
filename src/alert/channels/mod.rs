//! Alert receivers, after Alertmanager's `notify/<receiver>/`: one file per receiver, each
//! owning its rendering of the channel-neutral [`AlertMessage`] and the translation of its
//! failures into [`DeliveryError`], behind the one [`Channel`] trait the outbox sender drives.
//!
//! - [`slack`]: Block Kit through an incoming webhook or `chat.postMessage`.
//! - [`email`]: `multipart/alternative` text + HTML over SMTP.
//! - [`Console`]: no receiver configured; "delivers" by logging the message text.
//! - [`Broken`]: a configured receiver that could not be built; fails every row permanently.
//!
//! [`RECEIVERS`] is the table from config section to channel: the outbox writes rows for, and
//! the sender builds, exactly the receivers whose section is present.

pub mod email;
pub mod slack;

use super::message::AlertMessage;
use crate::config::Config;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future a [`Channel`] returns (boxed so channels can live behind `dyn Channel`).
pub type ChannelFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DeliveryError>> + Send + 'a>>;

/// One alert receiver.
///
/// **Adding a receiver** (PagerDuty, a generic webhook, Teams, Jira) is one new file plus a
/// config table:
/// 1. `src/alert/channels/<name>.rs`: a struct built from its config section that implements
///    `Channel`. `send` renders the [`AlertMessage`] its own way (bounded to the receiver's
///    size limits; every string in the message is untrusted) and maps every failure to
///    [`DeliveryError::Transient`] (rate limits, 5xx, timeouts, refused connections: the
///    outbox retries with backoff and holds the channel back) or [`DeliveryError::Permanent`]
///    (bad credentials, unknown destination, a payload the receiver will never take: the row
///    is marked `failed` and shown by `status` and `doctor`). Error text must not carry
///    secrets (tokens, webhook URLs, passwords). `check` is `doctor`'s probe; it must not
///    notify anyone.
/// 2. A `[<name>]` table in `config` (an `Option<...Config>` field on [`Config`], secrets
///    through `*_env` keys like `[slack]`).
/// 3. One [`Receiver`] entry in [`RECEIVERS`] naming the channel, telling whether its
///    section is present, and building it.
///
/// Nothing else changes: the evaluator, digest and health alert write one outbox row per
/// configured receiver, and the sender delivers them.
pub trait Channel: Send + Sync {
    /// Delivers `msg`; `Ok` means the receiver accepted it.
    fn send<'a>(&'a self, msg: &'a AlertMessage) -> ChannelFuture<'a, ()>;

    /// Checks the receiver is reachable and the credentials work, without notifying anyone;
    /// `Ok` holds a one-line description for `doctor`.
    fn check(&self) -> ChannelFuture<'_, String>;
}

/// Why a channel could not deliver; decides whether the outbox retries.
///
/// Messages are built by the channels from status codes and error codes only, never from
/// URLs or credentials, so they are safe to log and store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: rate limits, 5xx, timeouts, refused connections, SMTP 4xx.
    #[error("transient delivery failure: {message}")]
    Transient {
        message: String,
        /// The receiver's own back-off hint (Slack `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Retrying will not help until configuration changes.
    #[error("permanent delivery failure: {message}")]
    Permanent { message: String },
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DeliveryError::Transient { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Transient { retry_after, .. } => *retry_after,
            DeliveryError::Permanent { .. } => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DeliveryError::Transient { message, .. } | DeliveryError::Permanent { message } => {
                message
            }
        }
    }
}

/// One row of the receiver table.
pub struct Receiver {
    /// The outbox channel name (stored in every row; never rename one that has shipped).
    pub name: &'static str,
    /// Whether the config has this receiver's section.
    pub configured: fn(&Config) -> bool,
    /// Builds the channel from its section, with the per-message timeout. Errors must not
    /// carry secrets.
    pub build: fn(&Config, Duration) -> anyhow::Result<Box<dyn Channel>>,
}

/// Every receiver provwatch knows, in delivery order.
pub const RECEIVERS: &[Receiver] = &[
    Receiver {
        name: SLACK,
        configured: |c| c.slack.is_some(),
        build: |c, timeout| match &c.slack {
            Some(cfg) => Ok(Box::new(slack::SlackNotifier::new(cfg, timeout)?)),
            None => anyhow::bail!("no [slack] section"),
        },
    },
    Receiver {
        name: EMAIL,
        configured: |c| c.email.is_some(),
        build: |c, timeout| match &c.email {
            Some(cfg) => Ok(Box::new(email::EmailNotifier::new(cfg, timeout)?)),
            None => anyhow::bail!("no [email] section"),
        },
    },
];

pub const SLACK: &str = "slack";
pub const EMAIL: &str = "email";
/// The fallback channel when no receiver is configured.
pub const CONSOLE: &str = "console";

/// Channels rows are written for, in delivery order: the configured receivers, or
/// [`CONSOLE`] when there are none, so an alert is never decided into the void.
pub fn configured(config: &Config) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = RECEIVERS
        .iter()
        .filter(|r| (r.configured)(config))
        .map(|r| r.name)
        .collect();
    if out.is_empty() {
        out.push(CONSOLE);
    }
    out
}

/// Builds the channel named `name` (one of [`configured`]'s); a receiver that cannot be built
/// becomes [`Broken`], so its rows fail visibly instead of waiting forever.
pub fn build(config: &Config, name: &'static str, timeout: Duration) -> Option<Box<dyn Channel>> {
    if name == CONSOLE {
        return Some(Box::new(Console));
    }
    let receiver = RECEIVERS.iter().find(|r| r.name == name)?;
    Some(match (receiver.build)(config, timeout) {
        Ok(ch) => ch,
        Err(e) => {
            // The channels' errors never include the webhook URL, token or password.
            tracing::error!(channel = name, error = %e, "alert channel unusable; its alerts will be marked failed");
            Box::new(Broken(format!("{name} channel unusable: {e}")))
        }
    })
}

/// No receiver configured: "deliver" by logging the message text at warn level.
pub struct Console;

impl Channel for Console {
    fn send<'a>(&'a self, msg: &'a AlertMessage) -> ChannelFuture<'a, ()> {
        Box::pin(async move {
            tracing::warn!(
                group = %msg.group_key,
                kind = msg.kind.label(),
                "alert (no channel configured):\n{}",
                msg.render_text()
            );
            Ok(())
        })
    }

    fn check(&self) -> ChannelFuture<'_, String> {
        Box::pin(async { Ok("no [slack] or [email] configured: alerts go to the log".into()) })
    }
}

/// A configured channel whose notifier could not be built; every row fails permanently with
/// this (secret-free) reason, so the problem shows in `status` and `doctor`.
pub struct Broken(pub String);

impl Channel for Broken {
    fn send<'a>(&'a self, _msg: &'a AlertMessage) -> ChannelFuture<'a, ()> {
        Box::pin(async move { Err(DeliveryError::permanent(self.0.clone())) })
    }

    fn check(&self) -> ChannelFuture<'_, String> {
        Box::pin(async move { Err(DeliveryError::permanent(self.0.clone())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_error_accessors() {
        let e = DeliveryError::Transient {
            message: "slack rate limited".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        let p = DeliveryError::permanent("invalid_auth");
        assert!(!p.is_transient());
        assert_eq!(p.to_string(), "permanent delivery failure: invalid_auth");
    }

    #[tokio::test]
    async fn broken_channels_fail_permanently_with_their_reason() {
        let b: Box<dyn Channel> = Box::new(Broken("slack channel unusable: bad URL".into()));
        let msg: AlertMessage = serde_json::from_value(serde_json::json!({
            "kind": "test", "severity": "info", "title": "t", "app_id": null,
            "app_label": null, "admin_url": null, "summary": "", "lines": [],
            "group_key": "g", "created_at": "2024-01-01T00:00:00Z"
        }))
        .unwrap();
        let e = b.send(&msg).await.unwrap_err();
        assert!(!e.is_transient() && e.message().contains("bad URL"), "{e}");
        assert!(Console.send(&msg).await.is_ok());
    }
}
