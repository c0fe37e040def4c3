//! Configuration: loading, validation and the typed [`Config`] the daemon runs on.
//!
//! Loading goes defaults → TOML file → `OKTA_PROVWATCH__SECTION__KEY`
//! environment overrides → validation, and either yields a fully checked
//! [`Config`] or one [`ConfigError`] naming the dotted key at fault. Doing all
//! checks up front means the daemon refuses to start rather than discovering a
//! bad schedule or a missing token hours later at 3 a.m.
//!
//! Secrets (Okta token or OAuth key, Slack webhook/bot token, SMTP password)
//! are never written in the file; it names an environment variable, a file or
//! a systemd credential, and the secret is read at load time into a
//! [`SecretString`]. Nothing in this module's `Debug` output or errors ever
//! contains a secret value.
//!
//! `config.example.toml` at the repository root documents every key.

pub mod admin;
mod budget;
mod deprovision;
mod env;
mod error;
mod hooks;
mod parse;
mod raw;
mod secret;
mod summary;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cron::Schedule;
use lettre::message::Mailbox;
use secrecy::SecretString;
use url::Url;

pub use budget::DEFAULT_SCAN_SHARE;
pub use deprovision::{DeprovisionConfig, VerifyConfig};
pub use env::{Env, ENV_PREFIX};
pub use error::ConfigError;
pub use hooks::{HooksConfig, TlsFiles};
pub use parse::{is_loopback_host, parse_duration, parse_schedule, MAX_DURATION};
pub use secret::{SecretSource, SecretSources};

/// Where the config file is looked for when neither `--config` nor
/// `OKTA_PROVWATCH_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/okta-provwatch/config.toml";

/// Environment variable the CLI reads the config path from.
pub const CONFIG_PATH_ENV: &str = "OKTA_PROVWATCH_CONFIG";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub okta: OktaConfig,
    pub state: StateConfig,
    pub detect: DetectConfig,
    pub retry: RetryConfig,
    pub alert: AlertConfig,
    /// `None` when the file has no `[slack]` section: Slack alerts are off.
    pub slack: Option<SlackConfig>,
    /// `None` when the file has no `[email]` section: email alerts are off.
    pub email: Option<EmailConfig>,
    pub http: HttpConfig,
    /// `None` when the file has no `[hooks]` section: no event hook receiver.
    pub hooks: Option<HooksConfig>,
    pub log: LogConfig,
    /// `[deprovision]` (issue 13).
    pub deprovision: DeprovisionConfig,
    /// `[[verify]]` tables, one per app checked against its own SCIM API.
    pub verify: Vec<VerifyConfig>,
    /// Where each secret came from (never the values); used by
    /// [`Config::redacted_summary`]. `Default` is fine for hand-built configs.
    pub secret_sources: SecretSources,
    /// Each duration key (dotted) as the file or environment spelt it, defaults included,
    /// so output echoes `24h` rather than humantime's `1day`. A key missing here (a
    /// hand-built config, or a value changed in code) is shown from its `Duration`.
    pub durations_as_written: std::collections::BTreeMap<String, String>,
}

/// `[okta]`: which org to watch and how hard we may lean on its API.
#[derive(Debug, Clone)]
pub struct OktaConfig {
    /// Base URL of the org, path always `/` (e.g. `https://acme.okta.com/`).
    pub org_url: Url,
    pub auth: OktaAuth,
    /// Largest fraction of any Okta rate-limit bucket this daemon may use, in (0, 1].
    pub rate_limit_share: f64,
    /// Concurrent Okta requests, 1..=8.
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    /// The Okta Admin Console, for links in alerts (`okta.admin_url`; see [`admin`]).
    pub admin_url: Option<Url>,
}

/// How to authenticate to Okta.
#[derive(Debug, Clone)]
pub enum OktaAuth {
    /// An SSWS API token (the bare token, without the `SSWS ` prefix).
    ApiToken(SecretString),
    /// OAuth 2.0 client credentials with a private-key JWT.
    OAuth(OAuthConfig),
}

/// `[okta.oauth]`: an Okta API service app.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub client_id: String,
    /// PEM-encoded private key used to sign the client assertion.
    pub private_key_pem: SecretString,
    /// `kid` to put in the JWT header, if the app has several keys.
    pub key_id: Option<String>,
    pub scopes: Vec<String>,
}

/// `[state]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    /// SQLite database holding cursors, retry bookkeeping and alert state.
    pub path: PathBuf,
}

/// `[detect]`: how failures are found.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// System Log polling period (at least 5s).
    pub poll_interval: Duration,
    /// How far back the first poll reads when there is no saved cursor (at most 90 days).
    pub initial_lookback: Duration,
    /// When to do a full scan of app assignments for errored provisioning.
    pub scan_schedule: Schedule,
    /// App ids or labels to watch; empty means every active app with provisioning.
    pub apps: Vec<String>,
    /// Most of the daemon's share of a bucket that scans (and other background work) may use
    /// per window, in (0, 1].
    pub scan_share: f64,
}

/// `[retry]`: automatic re-provisioning of failed assignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    pub enabled: bool,
    /// Attempts per failure before giving up and alerting (at least 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    /// Backoff cap; never below `initial_backoff`.
    pub max_backoff: Duration,
    /// Global cap on retries started per minute (at least 1).
    pub per_minute: u32,
}

/// `[alert]`: when and how often to tell humans.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// A failure must persist this long (retries included) before it alerts.
    pub persist_after: Duration,
    /// Re-notify for a still-open alert this often.
    pub repeat_interval: Duration,
    /// Batch alerts that open within this window into one message.
    pub group_wait: Duration,
    /// Changes to a group that was already notified are batched this long (Alertmanager's
    /// `group_interval`), so users resolving one by one do not each send a message.
    pub group_interval: Duration,
    /// Also notify when an alert resolves.
    pub send_resolved: bool,
    /// When to send the digest of open alerts.
    pub digest_schedule: Schedule,
}

/// `[slack]`.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub target: SlackTarget,
    /// Web API base for bot tokens, always ending in `/` so `join` works.
    pub api_url: Url,
}

/// Where Slack messages go.
#[derive(Debug, Clone)]
pub enum SlackTarget {
    /// An incoming webhook; the URL embeds a token, so it is a secret.
    Webhook { url: SecretString },
    /// A bot token posting with `chat.postMessage` to `channel`.
    Bot {
        token: SecretString,
        channel: String,
    },
}

/// `[email]`.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// lettre connection URL; validated to hold no password.
    pub smtp_url: String,
    pub password: Option<SecretString>,
    pub from: Mailbox,
    /// At least one recipient.
    pub to: Vec<Mailbox>,
}

/// `[http]`: health and metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive such as `info` or `okta_provwatch=debug,warn`.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (journald adds timestamps).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl Config {
    /// Loads `path` with overrides from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, &Env::system())
    }

    /// Loads `path` with overrides and secrets from `env`.
    pub fn load_with_env(path: &Path, env: &Env) -> Result<Config, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_string(),
                _ => format!("cannot be read: {e}"),
            };
            ConfigError::new(
                "",
                format!(
                    "config file {shown} {why} (choose another with --config or {CONFIG_PATH_ENV})"
                ),
            )
        })?;
        Self::from_toml_str(&text, env).map_err(|mut e| {
            // Only whole-file errors lack a key; they need the file to be findable.
            if e.key.is_empty() {
                e.message = format!("{shown}: {}", e.message);
            }
            e
        })
    }

    /// Only `[state]` of the file at `path` (with environment overrides), for commands that
    /// read or write the state store and nothing else (`status`, `silence`): they must work
    /// for an operator who can read the config and the state file but holds none of the
    /// daemon's secrets. The rest of the file is still parsed, so a typo is still reported.
    pub fn load_state(path: &Path) -> Result<StateConfig, ConfigError> {
        Self::load_state_with_env(path, &Env::system())
    }

    pub fn load_state_with_env(path: &Path, env: &Env) -> Result<StateConfig, ConfigError> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new("", format!("config file {shown} cannot be read: {e}"))
        })?;
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new("", format!("{shown}: invalid TOML: {}", e.message()))
        })?;
        env::apply_overrides(&mut table, env)?;
        let raw = raw::from_table(table)?;
        validate::state(raw.state)
    }

    /// Parses and validates a TOML document, taking overrides and secrets from `env`.
    pub fn from_toml_str(text: &str, env: &Env) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let location = e
                .span()
                .map(|span| {
                    let (line, col) = line_col(text, span.start);
                    format!(" at line {line}, column {col}")
                })
                .unwrap_or_default();
            ConfigError::new("", format!("invalid TOML{location}: {}", e.message()))
        })?;
        let applied = env::apply_overrides(&mut table, env)?;
        let result = raw::from_table(table).and_then(|raw| validate::validate(raw, env));
        result.map_err(|mut e| {
            // Point at the variable, or the operator will search the file in vain.
            if let Some(o) = applied.iter().find(|o| {
                e.key == o.key
                    || e.key.starts_with(&format!("{}.", o.key))
                    || e.key.starts_with(&format!("{}[", o.key))
            }) {
                e.message = format!("{} (set by environment variable {})", e.message, o.var);
            } else if !e.key.is_empty() {
                // Section-level errors (two sources, no destination) may come
                // from a mix of file and environment; list the latter.
                let inside: Vec<&str> = applied
                    .iter()
                    .filter(|o| o.key.starts_with(&format!("{}.", e.key)))
                    .map(|o| o.var.as_str())
                    .collect();
                if !inside.is_empty() {
                    e.message = format!(
                        "{} (environment overrides in this section: {})",
                        e.message,
                        inside.join(", ")
                    );
                }
            }
            e
        })
    }
}

/// 1-based line and column of byte offset `pos`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
