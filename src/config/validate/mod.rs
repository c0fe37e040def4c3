//! Turns the raw document into a [`Config`]: applies defaults, checks every
//! value, and reads secrets.
//!
//! Sections are checked in file order and the first problem wins, so the
//! error an operator sees is the first one they would meet reading the file.

//!
//! Each section's checks live in their own file (`okta`, `detect`, `retry`, `alert`,
//! `slack`, `email`, `log` with `[http]`); this module owns the defaults, the bounds, the
//! shared parsing helpers, the `[state]` section and the order sections are validated in.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::env::Env;
use super::error::ConfigError;
use super::parse::{
    check_duration_max, is_loopback_host, parse_duration_unbounded, parse_schedule, require_https,
};
use super::raw::{
    RawAlert, RawConfig, RawDetect, RawEmail, RawHttp, RawLog, RawOAuth, RawOkta, RawRetry,
    RawSlack, RawState, Text, TextList,
};
use super::secret::{pick_one, read_secret, SecretSources, Via};
use super::{
    AlertConfig, Config, DetectConfig, EmailConfig, HttpConfig, LogConfig, LogFormat, OAuthConfig,
    OktaAuth, OktaConfig, RetryConfig, SlackConfig, SlackTarget, StateConfig,
};

mod alert;
mod detect;
mod email;
mod log;
mod okta;
mod retry;
mod slack;

use alert::alert;
use detect::detect;
use email::email;
use log::{http, log};
use okta::okta;
use retry::retry;
use slack::slack;

// Defaults. `tests::example_file_values_are_the_defaults` keeps
// config.example.toml in step with these.
pub(crate) const DEFAULT_RATE_LIMIT_SHARE: f64 = 0.5;
pub(crate) const DEFAULT_MAX_IN_FLIGHT: i64 = 2;
pub(crate) const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
pub(crate) const DEFAULT_OAUTH_SCOPES: [&str; 3] =
    ["okta.logs.read", "okta.apps.read", "okta.apps.manage"];
pub(crate) const DEFAULT_STATE_PATH: &str = "/var/lib/okta-provwatch/state.db";
pub(crate) const DEFAULT_POLL_INTERVAL: &str = "60s";
pub(crate) const DEFAULT_INITIAL_LOOKBACK: &str = "24h";
pub(crate) const DEFAULT_SCAN_SCHEDULE: &str = "0 */30 * * * *";
pub(crate) const DEFAULT_RETRY_ENABLED: bool = true;
pub(crate) const DEFAULT_MAX_ATTEMPTS: i64 = 5;
pub(crate) const DEFAULT_INITIAL_BACKOFF: &str = "2m";
pub(crate) const DEFAULT_MAX_BACKOFF: &str = "1h";
pub(crate) const DEFAULT_PER_MINUTE: i64 = 20;
pub(crate) const DEFAULT_PERSIST_AFTER: &str = "30m";
pub(crate) const DEFAULT_REPEAT_INTERVAL: &str = "4h";
pub(crate) const DEFAULT_GROUP_WAIT: &str = "30s";
pub(crate) const DEFAULT_GROUP_INTERVAL: &str = "5m";
pub(crate) const DEFAULT_SEND_RESOLVED: bool = true;
pub(crate) const DEFAULT_DIGEST_SCHEDULE: &str = "0 0 9 * * Mon-Fri";
pub(crate) const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api/";
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9184";
pub(crate) const DEFAULT_LOG_FORMAT: &str = "text";
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";

const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
const MAX_IN_FLIGHT: i64 = 8;

/// The largest value each duration key accepts, with its spelling for messages. Each bound
/// is far above any useful setting yet keeps every schedule, backoff and health judgement
/// well inside `Instant` arithmetic (issue 10: `poll_interval = "500000000000y"` made
/// `/healthz` panic).
mod max {
    use std::time::Duration;
    const fn days(n: u64) -> Duration {
        Duration::from_secs(n * 24 * 3600)
    }
    /// A request slower than this is a dead connection, not a slow Okta.
    pub const REQUEST_TIMEOUT: (Duration, &str) = (Duration::from_secs(600), "10m");
    /// `/healthz` calls the daemon stale after a few missed polls; beyond a day it could
    /// not notice anything.
    pub const POLL_INTERVAL: (Duration, &str) = (days(1), "24h");
    /// Okta keeps System Log events for 90 days; asking for more is an API error.
    pub const LOOKBACK: (Duration, &str) = (days(90), "90d");
    pub const BACKOFF: (Duration, &str) = (days(7), "7d");
    pub const PERSIST_AFTER: (Duration, &str) = (days(7), "7d");
    pub const REPEAT_INTERVAL: (Duration, &str) = (days(30), "30d");
    pub const GROUP_WAIT: (Duration, &str) = (Duration::from_secs(3600), "1h");
    pub const GROUP_INTERVAL: (Duration, &str) = (days(1), "24h");
}

/// Every duration key with its value as the file (or environment) spelt it, defaults
/// included, so `check-config` and `doctor` echo `24h` rather than `1day`.
fn durations_as_written(raw: &RawConfig) -> BTreeMap<String, String> {
    let keys: [(&str, &Option<Text>, &str); 9] = [
        (
            "okta.request_timeout",
            &raw.okta.request_timeout,
            DEFAULT_REQUEST_TIMEOUT,
        ),
        (
            "detect.poll_interval",
            &raw.detect.poll_interval,
            DEFAULT_POLL_INTERVAL,
        ),
        (
            "detect.initial_lookback",
            &raw.detect.initial_lookback,
            DEFAULT_INITIAL_LOOKBACK,
        ),
        (
            "retry.initial_backoff",
            &raw.retry.initial_backoff,
            DEFAULT_INITIAL_BACKOFF,
        ),
        (
            "retry.max_backoff",
            &raw.retry.max_backoff,
            DEFAULT_MAX_BACKOFF,
        ),
        (
            "alert.persist_after",
            &raw.alert.persist_after,
            DEFAULT_PERSIST_AFTER,
        ),
        (
            "alert.repeat_interval",
            &raw.alert.repeat_interval,
            DEFAULT_REPEAT_INTERVAL,
        ),
        (
            "alert.group_wait",
            &raw.alert.group_wait,
            DEFAULT_GROUP_WAIT,
        ),
        (
            "alert.group_interval",
            &raw.alert.group_interval,
            DEFAULT_GROUP_INTERVAL,
        ),
    ];
    keys.into_iter()
        .map(|(k, v, d)| (k.to_string(), text_or(v, d).trim().to_string()))
        .collect()
}

pub(crate) fn validate(raw: RawConfig, env: &Env) -> Result<Config, ConfigError> {
    let mut sources = SecretSources::default();
    let durations_as_written = durations_as_written(&raw);
    let okta = okta(raw.okta, env, &mut sources)?;
    let state = state(raw.state)?;
    let detect = detect(raw.detect)?;
    let retry = retry(raw.retry)?;
    let alert = alert(raw.alert)?;
    let slack = raw.slack.map(|s| slack(s, env, &mut sources)).transpose()?;
    let email = raw.email.map(|e| email(e, env, &mut sources)).transpose()?;
    let http = http(raw.http)?;
    let hooks = match raw.hooks {
        Some(h) => {
            let (h, src) = super::hooks::validate(h, env)?;
            sources.hooks = Some(src);
            Some(h)
        }
        None => None,
    };
    let log = log(raw.log)?;
    let deprovision = super::deprovision::deprovision(raw.deprovision)?;
    let verify = super::deprovision::verify(raw.verify, env)?;
    Ok(Config {
        okta,
        state,
        detect,
        retry,
        alert,
        slack,
        email,
        http,
        hooks,
        log,
        deprovision,
        verify,
        secret_sources: sources,
        durations_as_written,
    })
}

fn text_or<'a>(v: &'a Option<Text>, default: &'a str) -> &'a str {
    v.as_ref().map_or(default, |t| t.0.as_str())
}

/// A duration key: parsed, then held to `max` (value and spelling, see [`max`]).
fn duration(
    key: &str,
    v: &Option<Text>,
    default: &str,
    max: (Duration, &str),
) -> Result<Duration, ConfigError> {
    let written = text_or(v, default);
    let d = parse_duration_unbounded(key, written)?;
    check_duration_max(key, written, d, max.0, max.1)?;
    Ok(d)
}

fn positive_duration(
    key: &str,
    v: &Option<Text>,
    default: &str,
    max: (Duration, &str),
) -> Result<Duration, ConfigError> {
    let d = duration(key, v, default, max)?;
    if d.is_zero() {
        return Err(ConfigError::new(key, "must be greater than 0"));
    }
    Ok(d)
}

fn int_at_least(key: &str, v: Option<i64>, default: i64, min: i64) -> Result<u32, ConfigError> {
    let n = v.unwrap_or(default);
    if n < min {
        return Err(ConfigError::new(
            key,
            format!("must be at least {min}, got {n}"),
        ));
    }
    u32::try_from(n).map_err(|_| ConfigError::new(key, format!("{n} is too large")))
}

fn required<'a>(key: &str, v: &'a Option<Text>, hint: &str) -> Result<&'a str, ConfigError> {
    match v.as_ref().map(|t| t.0.trim()) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ConfigError::new(key, format!("required{hint}"))),
    }
}

// ---------------------------------------------------------------- [state]

pub(crate) fn state(raw: RawState) -> Result<StateConfig, ConfigError> {
    let path = text_or(&raw.path, DEFAULT_STATE_PATH).trim();
    if path.is_empty() {
        return Err(ConfigError::new("state.path", "must not be empty"));
    }
    Ok(StateConfig {
        path: PathBuf::from(path),
    })
}
