//! Turns the raw document into a [`Config`]: applies defaults, checks every
//! value, and reads secrets.
//!
//! Sections are checked in file order and the first problem wins, so the
//! error an operator sees is the first one they would meet reading the file.

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

// ---------------------------------------------------------------- [okta]

fn okta(raw: RawOkta, env: &Env, sources: &mut SecretSources) -> Result<OktaConfig, ConfigError> {
    let org_url = org_url(required(
        "okta.org_url",
        &raw.org_url,
        " (your Okta org, e.g. \"https://acme.okta.com\")",
    )?)?;

    let token = pick_one(
        "okta",
        &[
            ("api_token_env", Via::Env, raw.api_token_env.as_ref()),
            ("api_token_file", Via::File, raw.api_token_file.as_ref()),
            (
                "api_token_credential",
                Via::Credential,
                raw.api_token_credential.as_ref(),
            ),
        ],
    )?;
    let auth = match (token, raw.oauth) {
        (Some((field, _, _)), Some(_)) => {
            return Err(ConfigError::new(
                "okta",
                format!("both {field} and an [okta.oauth] table are set; choose one"),
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "okta",
                "no API credential: set one of api_token_env, api_token_file, \
                 api_token_credential, or an [okta.oauth] table",
            ))
        }
        (Some((field, via, name)), None) => {
            let key = format!("okta.{field}");
            let (token, source) = read_secret(&key, via, name, env)?;
            if token.expose_secret().starts_with("SSWS ") {
                return Err(ConfigError::new(
                    key,
                    format!("{source} starts with \"SSWS \"; store only the token itself"),
                ));
            }
            sources.okta = Some(source);
            OktaAuth::ApiToken(token)
        }
        (None, Some(oauth)) => OktaAuth::OAuth(self::oauth(oauth, env, sources)?),
    };

    let rate_limit_share = raw.rate_limit_share.unwrap_or(DEFAULT_RATE_LIMIT_SHARE);
    // Written so NaN fails too.
    if !(rate_limit_share > 0.0 && rate_limit_share <= 1.0) {
        return Err(ConfigError::new(
            "okta.rate_limit_share",
            format!("must be in (0, 1], got {rate_limit_share}"),
        ));
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
        return Err(ConfigError::new(
            "okta.max_in_flight",
            format!("must be between 1 and {MAX_IN_FLIGHT}, got {max_in_flight}"),
        ));
    }
    let request_timeout = positive_duration(
        "okta.request_timeout",
        &raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
        max::REQUEST_TIMEOUT,
    )?;
    let admin_url = match raw.admin_url.as_ref().map(|t| t.0.as_str()) {
        Some(s) => Some(super::admin::parse(s)?),
        None => None,
    };
    Ok(OktaConfig {
        org_url,
        auth,
        rate_limit_share,
        max_in_flight: max_in_flight as usize,
        request_timeout,
        admin_url,
    })
}

fn org_url(s: &str) -> Result<Url, ConfigError> {
    const KEY: &str = "okta.org_url";
    let url = Url::parse(s).map_err(|e| {
        let hint = if e == url::ParseError::RelativeUrlWithoutBase {
            " (include the scheme, e.g. \"https://acme.okta.com\")"
        } else {
            ""
        };
        ConfigError::new(KEY, format!("invalid URL {s:?}: {e}{hint}"))
    })?;
    require_https(KEY, &url)?;
    let Some(host) = url.host_str() else {
        return Err(ConfigError::new(KEY, format!("{s:?} has no host")));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            KEY,
            "must not contain a user name or password",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            KEY,
            format!(
                "must be the org's base URL with no path, query or fragment, e.g. \"{}://{}\"",
                url.scheme(),
                url.host_str().unwrap_or("acme.okta.com"),
            ),
        ));
    }
    // The Admin Console host answers some API calls but not all; catch it early.
    let first_label = host.split('.').next().unwrap_or("");
    if first_label.ends_with("-admin") && host.contains("okta") {
        return Err(ConfigError::new(
            KEY,
            format!(
                "{host} is the Admin Console; use the org URL without \"-admin\", e.g. \"https://{}{}\"",
                first_label.trim_end_matches("-admin"),
                &host[first_label.len()..],
            ),
        ));
    }
    Ok(url)
}

fn oauth(
    raw: RawOAuth,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<OAuthConfig, ConfigError> {
    let client_id = required(
        "okta.oauth.client_id",
        &raw.client_id,
        " (the API service app's client ID, e.g. \"0oa...\")",
    )?
    .to_string();
    let key_source = pick_one(
        "okta.oauth",
        &[
            ("private_key_file", Via::File, raw.private_key_file.as_ref()),
            ("private_key_env", Via::Env, raw.private_key_env.as_ref()),
            (
                "private_key_credential",
                Via::Credential,
                raw.private_key_credential.as_ref(),
            ),
        ],
    )?;
    let Some((field, via, name)) = key_source else {
        return Err(ConfigError::new(
            "okta.oauth",
            "no private key: set one of private_key_file, private_key_env, private_key_credential",
        ));
    };
    let key = format!("okta.oauth.{field}");
    let (pem, source) = read_secret(&key, via, name, env)?;
    // Environment variables often carry PEM with literal "\n" escapes.
    let pem = if via == Via::Env && !pem.expose_secret().contains('\n') {
        SecretString::from(pem.expose_secret().replace("\\n", "\n").trim().to_string())
    } else {
        pem
    };
    {
        let text = pem.expose_secret();
        if !(text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----")) {
            return Err(ConfigError::new(
                key,
                format!(
                    "{source} does not hold a PEM private key (expected \"-----BEGIN PRIVATE KEY-----\")"
                ),
            ));
        }
    }
    sources.okta = Some(source);

    let key_id = match &raw.key_id {
        None => None,
        Some(t) if t.0.trim().is_empty() => {
            return Err(ConfigError::new(
                "okta.oauth.key_id",
                "must not be empty (omit it to send no kid)",
            ))
        }
        Some(t) => Some(t.0.trim().to_string()),
    };
    let scopes = match raw.scopes {
        None => DEFAULT_OAUTH_SCOPES.iter().map(|s| s.to_string()).collect(),
        Some(TextList(list)) => {
            if list.is_empty() {
                return Err(ConfigError::new(
                    "okta.oauth.scopes",
                    "must list at least one scope",
                ));
            }
            if let Some(bad) = list
                .iter()
                .find(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(ConfigError::new(
                    "okta.oauth.scopes",
                    format!(
                        "invalid scope {bad:?} (one scope per list entry, e.g. \"okta.logs.read\")"
                    ),
                ));
            }
            list
        }
    };
    Ok(OAuthConfig {
        client_id,
        private_key_pem: pem,
        key_id,
        scopes,
    })
}

// ---------------------------------------------------------------- [state], [detect], [retry], [alert]

pub(crate) fn state(raw: RawState) -> Result<StateConfig, ConfigError> {
    let path = text_or(&raw.path, DEFAULT_STATE_PATH).trim();
    if path.is_empty() {
        return Err(ConfigError::new("state.path", "must not be empty"));
    }
    Ok(StateConfig {
        path: PathBuf::from(path),
    })
}

fn detect(raw: RawDetect) -> Result<DetectConfig, ConfigError> {
    let poll_interval = duration(
        "detect.poll_interval",
        &raw.poll_interval,
        DEFAULT_POLL_INTERVAL,
        max::POLL_INTERVAL,
    )?;
    if poll_interval < MIN_POLL_INTERVAL {
        return Err(ConfigError::new(
            "detect.poll_interval",
            format!(
                "must be at least 5s, got {:?}",
                text_or(&raw.poll_interval, DEFAULT_POLL_INTERVAL).trim()
            ),
        ));
    }
    let initial_lookback = duration(
        "detect.initial_lookback",
        &raw.initial_lookback,
        DEFAULT_INITIAL_LOOKBACK,
        max::LOOKBACK,
    )
    .map_err(|mut e| {
        if e.message.starts_with("must be at most") {
            e.message
                .push_str(" (Okta keeps System Log events for 90 days)");
        }
        e
    })?;
    let scan_schedule = parse_schedule(
        "detect.scan_schedule",
        text_or(&raw.scan_schedule, DEFAULT_SCAN_SCHEDULE),
    )?;
    let mut apps: Vec<String> = Vec::new();
    for app in raw.apps.map(|l| l.0).unwrap_or_default() {
        let app = app.trim().to_string();
        if app.is_empty() {
            return Err(ConfigError::new(
                "detect.apps",
                "entries must not be empty (use [] to watch every provisioning app)",
            ));
        }
        if !apps.contains(&app) {
            apps.push(app);
        }
    }
    Ok(DetectConfig {
        poll_interval,
        initial_lookback,
        scan_schedule,
        apps,
        scan_share: super::budget::scan_share(raw.scan_share)?,
    })
}

fn retry(raw: RawRetry) -> Result<RetryConfig, ConfigError> {
    let max_attempts = int_at_least(
        "retry.max_attempts",
        raw.max_attempts,
        DEFAULT_MAX_ATTEMPTS,
        1,
    )?;
    let initial_backoff = positive_duration(
        "retry.initial_backoff",
        &raw.initial_backoff,
        DEFAULT_INITIAL_BACKOFF,
        max::BACKOFF,
    )?;
    let max_backoff = duration(
        "retry.max_backoff",
        &raw.max_backoff,
        DEFAULT_MAX_BACKOFF,
        max::BACKOFF,
    )?;
    if initial_backoff > max_backoff {
        return Err(ConfigError::new(
            "retry.initial_backoff",
            format!(
                "must not exceed retry.max_backoff ({} > {})",
                text_or(&raw.initial_backoff, DEFAULT_INITIAL_BACKOFF).trim(),
                text_or(&raw.max_backoff, DEFAULT_MAX_BACKOFF).trim()
            ),
        ));
    }
    let per_minute = int_at_least("retry.per_minute", raw.per_minute, DEFAULT_PER_MINUTE, 1)?;
    Ok(RetryConfig {
        enabled: raw.enabled.unwrap_or(DEFAULT_RETRY_ENABLED),
        max_attempts,
        initial_backoff,
        max_backoff,
        per_minute,
    })
}

fn alert(raw: RawAlert) -> Result<AlertConfig, ConfigError> {
    Ok(AlertConfig {
        persist_after: duration(
            "alert.persist_after",
            &raw.persist_after,
            DEFAULT_PERSIST_AFTER,
            max::PERSIST_AFTER,
        )?,
        repeat_interval: positive_duration(
            "alert.repeat_interval",
            &raw.repeat_interval,
            DEFAULT_REPEAT_INTERVAL,
            max::REPEAT_INTERVAL,
        )?,
        group_wait: duration(
            "alert.group_wait",
            &raw.group_wait,
            DEFAULT_GROUP_WAIT,
            max::GROUP_WAIT,
        )?,
        group_interval: duration(
            "alert.group_interval",
            &raw.group_interval,
            DEFAULT_GROUP_INTERVAL,
            max::GROUP_INTERVAL,
        )?,
        send_resolved: raw.send_resolved.unwrap_or(DEFAULT_SEND_RESOLVED),
        digest_schedule: parse_schedule(
            "alert.digest_schedule",
            text_or(&raw.digest_schedule, DEFAULT_DIGEST_SCHEDULE),
        )?,
    })
}

// ---------------------------------------------------------------- [slack]

fn slack(
    raw: RawSlack,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<SlackConfig, ConfigError> {
    let webhook = pick_one(
        "slack",
        &[
            ("webhook_url_env", Via::Env, raw.webhook_url_env.as_ref()),
            ("webhook_url_file", Via::File, raw.webhook_url_file.as_ref()),
            (
                "webhook_url_credential",
                Via::Credential,
                raw.webhook_url_credential.as_ref(),
            ),
        ],
    )?;
    let bot = pick_one(
        "slack",
        &[
            ("bot_token_env", Via::Env, raw.bot_token_env.as_ref()),
            ("bot_token_file", Via::File, raw.bot_token_file.as_ref()),
            (
                "bot_token_credential",
                Via::Credential,
                raw.bot_token_credential.as_ref(),
            ),
        ],
    )?;
    let channel = raw
        .channel
        .as_ref()
        .map(|t| t.0.trim().to_string())
        .filter(|c| !c.is_empty());

    let target = match (webhook, bot) {
        (Some((w, _, _)), Some((b, _, _))) => {
            return Err(ConfigError::new(
                "slack",
                format!("both a webhook URL ({w}) and a bot token ({b}) are set; choose one"),
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "slack",
                "no destination: set one of webhook_url_env, webhook_url_file, \
                 webhook_url_credential, or bot_token_env/_file/_credential with channel \
                 (or remove [slack] to turn Slack alerts off)",
            ))
        }
        (Some((field, via, name)), None) => {
            let key = format!("slack.{field}");
            if raw.channel.is_some() {
                return Err(ConfigError::new(
                    "slack.channel",
                    "only used with a bot token (a webhook always posts to the channel it was created for)",
                ));
            }
            let (url, source) = read_secret(&key, via, name, env)?;
            // The URL embeds a token: errors name the source, never the URL.
            let parsed = Url::parse(url.expose_secret()).map_err(|_| {
                ConfigError::new(key.clone(), format!("{source} does not hold a valid URL"))
            })?;
            require_https(&key, &parsed)?;
            sources.slack = Some(source);
            SlackTarget::Webhook { url }
        }
        (None, Some((field, via, name))) => {
            let key = format!("slack.{field}");
            let Some(channel) = channel else {
                return Err(ConfigError::new(
                    "slack.channel",
                    "required with a bot token (e.g. \"#okta-alerts\" or a channel ID)",
                ));
            };
            let (token, source) = read_secret(&key, via, name, env)?;
            if token.expose_secret().starts_with("http") {
                return Err(ConfigError::new(
                    key,
                    format!(
                        "{source} holds a URL, not a bot token; use webhook_url_* for webhooks"
                    ),
                ));
            }
            sources.slack = Some(source);
            SlackTarget::Bot { token, channel }
        }
    };

    let api_url = text_or(&raw.api_url, DEFAULT_SLACK_API_URL).trim();
    let mut api_url = Url::parse(api_url)
        .map_err(|e| ConfigError::new("slack.api_url", format!("invalid URL {api_url:?}: {e}")))?;
    require_https("slack.api_url", &api_url)?;
    // Without the trailing slash, `join("chat.postMessage")` would replace
    // the last path segment instead of appending.
    if !api_url.path().ends_with('/') {
        let path = format!("{}/", api_url.path());
        api_url.set_path(&path);
    }
    Ok(SlackConfig { target, api_url })
}

// ---------------------------------------------------------------- [email]

fn email(
    raw: RawEmail,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<EmailConfig, ConfigError> {
    const URL_KEY: &str = "email.smtp_url";
    let smtp_url = required(
        URL_KEY,
        &raw.smtp_url,
        " (e.g. \"smtps://user@smtp.example.com:465\")",
    )?
    .to_string();
    // The URL may hold a password by mistake, so no message here repeats it.
    let url = Url::parse(&smtp_url)
        .map_err(|e| ConfigError::new(URL_KEY, format!("invalid URL: {e}")))?;
    if url.password().is_some() {
        return Err(ConfigError::new(
            URL_KEY,
            "must not contain a password; put it in smtp_password_env \
             (or smtp_password_file / smtp_password_credential)",
        ));
    }
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("required" | "opportunistic")) | ("smtps", None) => {}
        ("smtp" | "smtps", Some(other)) => {
            return Err(ConfigError::new(
                URL_KEY,
                format!(
                    "unsupported tls={other:?} (smtp:// accepts ?tls=required or ?tls=opportunistic; smtps:// needs none)"
                ),
            ))
        }
        (scheme, _) => {
            return Err(ConfigError::new(
                URL_KEY,
                format!("scheme must be smtp:// or smtps://, got {scheme:?}"),
            ))
        }
    }
    if !matches!(url.host_str(), Some(h) if !h.is_empty()) {
        return Err(ConfigError::new(URL_KEY, "has no host"));
    }

    let password = match pick_one(
        "email",
        &[
            (
                "smtp_password_env",
                Via::Env,
                raw.smtp_password_env.as_ref(),
            ),
            (
                "smtp_password_file",
                Via::File,
                raw.smtp_password_file.as_ref(),
            ),
            (
                "smtp_password_credential",
                Via::Credential,
                raw.smtp_password_credential.as_ref(),
            ),
        ],
    )? {
        None => None,
        Some((field, via, name)) => {
            if url.username().is_empty() {
                return Err(ConfigError::new(
                    URL_KEY,
                    format!(
                        "{field} is set but the URL has no user name: add the login to the URL \
                         (e.g. \"smtps://USER@smtp.example.com\"), or remove {field} if the \
                         relay needs no login"
                    ),
                ));
            }
            if url.scheme() == "smtp" && tls.is_none() && !is_loopback_host(&url) {
                return Err(ConfigError::new(
                    URL_KEY,
                    "plain smtp:// would send the password unencrypted; use smtps:// or add ?tls=required",
                ));
            }
            let (secret, source) = read_secret(&format!("email.{field}"), via, name, env)?;
            sources.smtp_password = Some(source);
            Some(secret)
        }
    };

    let from = required(
        "email.from",
        &raw.from,
        " (e.g. \"okta-provwatch@acme.example\")",
    )?;
    let from = mailbox("email.from", from)?;
    let to_list = raw.to.map(|l| l.0).unwrap_or_default();
    if to_list.is_empty() {
        return Err(ConfigError::new(
            "email.to",
            "must list at least one address (or remove [email] to turn email alerts off)",
        ));
    }
    let to = to_list
        .iter()
        .map(|a| mailbox("email.to", a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmailConfig {
        smtp_url,
        password,
        from,
        to,
    })
}

fn mailbox(key: &str, s: &str) -> Result<Mailbox, ConfigError> {
    Mailbox::from_str(s.trim())
        .map_err(|e| ConfigError::new(key, format!("invalid address {s:?}: {e}")))
}

// ---------------------------------------------------------------- [http], [log]

fn http(raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let s = text_or(&raw.listen, DEFAULT_LISTEN).trim();
    let listen = SocketAddr::from_str(s).map_err(|_| {
        ConfigError::new(
            "http.listen",
            format!(
                "invalid address {s:?} (expected IP:port, e.g. \"127.0.0.1:9184\" or \"[::]:9184\")"
            ),
        )
    })?;
    Ok(HttpConfig { listen })
}

fn log(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let format = match text_or(&raw.format, DEFAULT_LOG_FORMAT)
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::new(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            ))
        }
    };
    let level = text_or(&raw.level, DEFAULT_LOG_LEVEL).trim().to_string();
    check_log_level(&level).map_err(|why| {
        ConfigError::new(
            "log.level",
            format!(
                "{why}; must be one of trace, debug, info, warn, error, off, or a filter such as \
                 \"okta_provwatch=debug,warn\""
            ),
        )
    })?;
    Ok(LogConfig { format, level })
}

/// Checks a `log.level` filter the way the logger will parse it, so a bogus one is refused
/// here rather than silently replaced by `info` at start-up (issue 10). Stricter than
/// `EnvFilter` in one way: a bare word must be a level, because `EnvFilter` takes an
/// unknown word (`warning`, `verbose`) as a target name and the daemon would then log
/// almost nothing; a target alone is written `target=trace`.
fn check_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.is_empty() {
        return Err("must not be empty".into());
    }
    for directive in level.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err(format!("empty directive in {level:?}"));
        }
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LEVELS.iter().any(|l| directive.eq_ignore_ascii_case(l)) {
            return Err(format!("{directive:?} is not a level"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|e| format!("invalid filter {level:?}: {e}"))
}
