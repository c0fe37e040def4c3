//! `[deprovision]` and `[[verify]]` (issue 13): how long Okta may take to deprovision before
//! that is an URGENT failure, whether suspensions count, and, per app, the app's own SCIM 2.0
//! API to check deprovisionings against (and to reconcile, and optionally to remediate).
//!
//! The SCIM bearer token (and an optional custom header's value) are secrets: read through
//! the same `_env` / `_file` / `_credential` wrapper as every other secret, never inline, and
//! never shown by `Debug` (they are [`SecretString`]s).

use std::time::Duration;

use cron::Schedule;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::env::Env;
use super::error::ConfigError;
use super::parse::{check_duration_max, parse_duration_unbounded, parse_schedule, require_https};
use super::raw::Text;
use super::secret::{pick_one, read_secret, Via};

pub const DEFAULT_SLA: &str = "15m";
/// Reconciliation (orphans) once an hour.
pub const DEFAULT_VERIFY_SCHEDULE: &str = "0 0 * * * *";
/// SCIM requests per minute per app: gentle on apps whose SCIM APIs are often small.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 120;

/// `[deprovision]`.
#[derive(Debug, Clone)]
pub struct DeprovisionConfig {
    /// How long after a deactivation/unassignment Okta may take to report the deprovisioning
    /// before it becomes an URGENT failure.
    pub sla: Duration,
    /// Also expect deprovisioning after `user.lifecycle.suspend`.
    pub include_suspended: bool,
}

impl Default for DeprovisionConfig {
    fn default() -> Self {
        DeprovisionConfig {
            sla: Duration::from_secs(15 * 60),
            include_suspended: false,
        }
    }
}

/// One `[[verify]]` table: an app checked against its own SCIM API.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// App id or label, as written.
    pub app: String,
    /// SCIM base URL (https, or http on loopback), without a trailing `/`.
    pub scim_url: Url,
    pub token: SecretString,
    /// Where the token came from (never the value), for `doctor`/errors.
    pub token_source: String,
    /// An extra header some apps require (`header_name` + `header_value_*`).
    pub header: Option<(String, SecretString)>,
    /// When to reconcile (list orphans).
    pub schedule: Schedule,
    /// Send `PATCH active=false` automatically when the app disagrees with Okta.
    pub remediate: bool,
    /// Our cap on SCIM requests per minute for this app.
    pub requests_per_minute: u32,
}

impl VerifyConfig {
    /// Whether this table is about the app `id` (label compared without case).
    pub fn matches(&self, app_id: &str, app_label: Option<&str>) -> bool {
        self.app == app_id || app_label.is_some_and(|l| l.eq_ignore_ascii_case(&self.app))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeprovision {
    pub sla: Option<Text>,
    pub include_suspended: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    pub app: Option<Text>,
    pub scim_url: Option<Text>,
    pub token_env: Option<Text>,
    pub token_file: Option<Text>,
    pub token_credential: Option<Text>,
    pub header_name: Option<Text>,
    pub header_value_env: Option<Text>,
    pub header_value_file: Option<Text>,
    pub header_value_credential: Option<Text>,
    pub schedule: Option<Text>,
    pub remediate: Option<bool>,
    pub requests_per_minute: Option<i64>,
}

pub(crate) fn deprovision(raw: Option<RawDeprovision>) -> Result<DeprovisionConfig, ConfigError> {
    let raw = raw.unwrap_or_default();
    let written = raw.sla.as_ref().map_or(DEFAULT_SLA, |t| t.0.as_str());
    let sla = parse_duration_unbounded("deprovision.sla", written)?;
    // Under a minute is below the System Log's own delay (events arrive seconds to minutes
    // late), so every deactivation would page someone; over a week nobody would wait for.
    if sla < Duration::from_secs(60) {
        return Err(ConfigError::new(
            "deprovision.sla",
            format!(
                "must be at least 1m (Okta's System Log itself lags by seconds to minutes), got {:?}",
                written.trim()
            ),
        ));
    }
    check_duration_max(
        "deprovision.sla",
        written,
        sla,
        Duration::from_secs(7 * 24 * 3600),
        "7d",
    )?;
    Ok(DeprovisionConfig {
        sla,
        include_suspended: raw.include_suspended.unwrap_or(false),
    })
}

pub(crate) fn verify(raw: Vec<RawVerify>, env: &Env) -> Result<Vec<VerifyConfig>, ConfigError> {
    let mut out: Vec<VerifyConfig> = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("verify[{i}].{k}");
        let app = match r.app.as_ref().map(|t| t.0.trim()) {
            Some(a) if !a.is_empty() => a.to_string(),
            _ => {
                return Err(ConfigError::new(
                    key("app"),
                    "required: the app's id (0oa...) or its label as shown in Okta",
                ))
            }
        };
        if out.iter().any(|v| v.app.eq_ignore_ascii_case(&app)) {
            return Err(ConfigError::new(
                key("app"),
                format!("{app:?} has two [[verify]] tables; keep one"),
            ));
        }
        let url_s = match r.scim_url.as_ref().map(|t| t.0.trim()) {
            Some(u) if !u.is_empty() => u.trim_end_matches('/').to_string(),
            _ => return Err(ConfigError::new(
                key("scim_url"),
                "required: the app's SCIM 2.0 base URL (e.g. \"https://scim.example.com/scim/v2\")",
            )),
        };
        let scim_url = Url::parse(&url_s).map_err(|e| {
            ConfigError::new(key("scim_url"), format!("invalid URL {url_s:?}: {e}"))
        })?;
        require_https(&key("scim_url"), &scim_url)?;
        if !scim_url.username().is_empty() || scim_url.password().is_some() {
            return Err(ConfigError::new(
                key("scim_url"),
                "must not contain a user name or password; use token_env/token_file/token_credential",
            ));
        }
        if scim_url.query().is_some() || scim_url.fragment().is_some() {
            return Err(ConfigError::new(
                key("scim_url"),
                "must be the SCIM base URL without a query or fragment",
            ));
        }
        let section = format!("verify[{i}]");
        let Some((field, via, name)) = pick_one(
            &section,
            &[
                ("token_env", Via::Env, r.token_env.as_ref()),
                ("token_file", Via::File, r.token_file.as_ref()),
                (
                    "token_credential",
                    Via::Credential,
                    r.token_credential.as_ref(),
                ),
            ],
        )?
        else {
            return Err(ConfigError::new(
                section,
                "the app's SCIM bearer token is required: set token_env, token_file or token_credential",
            ));
        };
        let (token, source) = read_secret(&key(field), via, name, env)?;
        let header_value = pick_one(
            &section,
            &[
                ("header_value_env", Via::Env, r.header_value_env.as_ref()),
                ("header_value_file", Via::File, r.header_value_file.as_ref()),
                (
                    "header_value_credential",
                    Via::Credential,
                    r.header_value_credential.as_ref(),
                ),
            ],
        )?;
        let header = match (r.header_name.as_ref().map(|t| t.0.trim()), header_value) {
            (None, None) => None,
            (Some(n), Some((field, via, name))) => {
                if n.is_empty()
                    || !n
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(ConfigError::new(
                        key("header_name"),
                        "must be an HTTP header name (letters, digits, - and _)",
                    ));
                }
                if n.eq_ignore_ascii_case("authorization") {
                    return Err(ConfigError::new(
                        key("header_name"),
                        "Authorization carries the bearer token; name another header",
                    ));
                }
                let (v, _) = read_secret(&key(field), via, name, env)?;
                Some((n.to_string(), v))
            }
            (Some(_), None) => {
                return Err(ConfigError::new(
                    section,
                    "header_name needs its value in header_value_env, header_value_file or header_value_credential",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    key("header_name"),
                    "required with a header value",
                ))
            }
        };
        let schedule = parse_schedule(
            &key("schedule"),
            r.schedule
                .as_ref()
                .map_or(DEFAULT_VERIFY_SCHEDULE, |t| t.0.as_str()),
        )?;
        let rpm = r
            .requests_per_minute
            .unwrap_or(DEFAULT_REQUESTS_PER_MINUTE as i64);
        if !(1..=6000).contains(&rpm) {
            return Err(ConfigError::new(
                key("requests_per_minute"),
                format!("must be between 1 and 6000, got {rpm}"),
            ));
        }
        out.push(VerifyConfig {
            app,
            scim_url,
            token,
            token_source: source.to_string(),
            header,
            schedule,
            remediate: r.remediate.unwrap_or(false),
            requests_per_minute: rpm as u32,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn raw(toml: &str) -> Vec<RawVerify> {
        #[derive(Deserialize)]
        struct W {
            verify: Vec<RawVerify>,
        }
        toml::from_str::<W>(toml).unwrap().verify
    }

    #[test]
    fn sla_default_bounds_and_errors() {
        assert_eq!(deprovision(None).unwrap().sla, Duration::from_secs(900));
        let e = deprovision(Some(RawDeprovision {
            sla: Some(Text("10s".into())),
            include_suspended: None,
        }))
        .unwrap_err();
        assert_eq!(e.key, "deprovision.sla");
        assert!(e.message.contains("at least 1m"), "{e}");
        let e = deprovision(Some(RawDeprovision {
            sla: Some(Text("30d".into())),
            include_suspended: None,
        }))
        .unwrap_err();
        assert!(e.message.contains("at most 7d"), "{e}");
    }

    #[test]
    fn verify_reads_the_token_by_reference_and_never_shows_it() {
        let env = Env::from_map([("CRM_SCIM", "s3cret-token")]);
        let v = verify(
            raw(r#"[[verify]]
app = "Acme CRM"
scim_url = "https://scim.acme.example/scim/v2/"
token_env = "CRM_SCIM"
remediate = true"#),
            &env,
        )
        .unwrap();
        assert_eq!(v[0].token.expose_secret(), "s3cret-token");
        assert_eq!(v[0].scim_url.as_str(), "https://scim.acme.example/scim/v2");
        assert!(v[0].remediate);
        assert!(v[0].matches("0oa1", Some("acme crm")));
        assert!(!format!("{v:?}").contains("s3cret"));
    }

    #[test]
    fn verify_errors_name_the_key() {
        let env = Env::from_map([("T", "x")]);
        let e = verify(
            raw(
                "[[verify]]\napp = \"A\"\nscim_url = \"http://scim.example/v2\"\ntoken_env = \"T\"",
            ),
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "verify[0].scim_url");
        let e = verify(
            raw("[[verify]]\napp = \"A\"\nscim_url = \"https://s/v2\""),
            &env,
        )
        .unwrap_err();
        assert!(e.message.contains("token_env"), "{e}");
        let e = verify(
            raw("[[verify]]\napp = \"A\"\nscim_url = \"https://s/v2\"\ntoken_env = \"T\"\nrequests_per_minute = 0"),
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "verify[0].requests_per_minute");
    }
}
