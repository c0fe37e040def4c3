//! The file's shape, as serde sees it, before any validation.
//!
//! Every field is optional here: defaults are applied during validation, in
//! one place, so the rules about what may be omitted live next to the rules
//! about what is valid. Every struct denies unknown fields, because a
//! misspelt key silently falling back to its default (say, a retry limit) is
//! worse than refusing to start.
//!
//! Scalars that end up as strings use [`Text`], which also accepts numbers and
//! booleans: environment overrides are typed by guessing (`KEY_ID=123` arrives
//! as an integer), and refusing that would make overrides a trap.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::error::ConfigError;

/// The top-level document. Field names here are the user-facing contract.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub okta: RawOkta,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub detect: RawDetect,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub alert: RawAlert,
    pub slack: Option<RawSlack>,
    pub email: Option<RawEmail>,
    #[serde(default)]
    pub http: RawHttp,
    pub hooks: Option<super::hooks::RawHooks>,
    #[serde(default)]
    pub log: RawLog,
    pub deprovision: Option<super::deprovision::RawDeprovision>,
    #[serde(default)]
    pub verify: Vec<super::deprovision::RawVerify>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOkta {
    pub org_url: Option<Text>,
    pub api_token_env: Option<Text>,
    pub api_token_file: Option<Text>,
    pub api_token_credential: Option<Text>,
    pub oauth: Option<RawOAuth>,
    pub rate_limit_share: Option<f64>,
    pub max_in_flight: Option<i64>,
    pub request_timeout: Option<Text>,
    pub admin_url: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    pub client_id: Option<Text>,
    pub private_key_file: Option<Text>,
    pub private_key_env: Option<Text>,
    pub private_key_credential: Option<Text>,
    pub key_id: Option<Text>,
    pub scopes: Option<TextList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub path: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDetect {
    pub poll_interval: Option<Text>,
    pub initial_lookback: Option<Text>,
    pub scan_schedule: Option<Text>,
    pub apps: Option<TextList>,
    pub scan_share: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub enabled: Option<bool>,
    pub max_attempts: Option<i64>,
    pub initial_backoff: Option<Text>,
    pub max_backoff: Option<Text>,
    pub per_minute: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlert {
    pub persist_after: Option<Text>,
    pub repeat_interval: Option<Text>,
    pub group_wait: Option<Text>,
    pub group_interval: Option<Text>,
    pub send_resolved: Option<bool>,
    pub digest_schedule: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    pub webhook_url_env: Option<Text>,
    pub webhook_url_file: Option<Text>,
    pub webhook_url_credential: Option<Text>,
    pub bot_token_env: Option<Text>,
    pub bot_token_file: Option<Text>,
    pub bot_token_credential: Option<Text>,
    pub channel: Option<Text>,
    pub api_url: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    pub smtp_url: Option<Text>,
    pub smtp_password_env: Option<Text>,
    pub smtp_password_file: Option<Text>,
    pub smtp_password_credential: Option<Text>,
    pub from: Option<Text>,
    pub to: Option<TextList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub listen: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub format: Option<Text>,
    pub level: Option<Text>,
}

/// A string that also accepts a number or boolean, rendered as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings; a lone string is accepted as a one-element list so an
/// environment override of a list key needs no TOML array syntax.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TextList(pub Vec<String>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TextList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TextList, E> {
                Ok(TextList(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextList, A::Error> {
                let mut out = Vec::new();
                while let Some(Text(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(TextList(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserializes the (already overridden) table, mapping serde's errors to a
/// [`ConfigError`] keyed by the full dotted path of the offending key.
pub(crate) fn from_table(table: toml::Table) -> Result<RawConfig, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.into_inner();
        map_serde_error(path, inner.message())
    })
}

fn map_serde_error(path: String, message: &str) -> ConfigError {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
        // serde_path_to_error already includes the rejected key in the path;
        // tolerate versions that stop at its parent.
        let key = if path == name || path.ends_with(&format!(".{name}")) {
            path.clone()
        } else if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        let suggestion = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|candidate| is_close(name, candidate))
            .min_by_key(|candidate| edit_distance(name, candidate));
        let expects = |k: &str| expected.split('`').skip(1).step_by(2).any(|c| c == k);
        // A secret written inline (`api_token = "..."`): the generic rule is that every
        // secret key `X` exists only as `X_env`, `X_file` and `X_credential`, so the
        // operator learns where the value belongs, not just that the key is wrong. The
        // value itself is never echoed.
        let secret_forms = ["env", "file", "credential"].map(|via| format!("{name}_{via}"));
        let message = if secret_forms.iter().all(|k| expects(k)) {
            format!(
                "secrets are not written in the config file (it is often world-readable and \
                 ends up in backups); put the value in an environment variable, a file or a \
                 systemd credential and name it with `{}`, `{}` or `{}`",
                secret_forms[0], secret_forms[1], secret_forms[2]
            )
        } else {
            match suggestion {
                Some(s) => format!("unknown key (did you mean `{s}`?)"),
                None => "unknown key".to_string(),
            }
        };
        return ConfigError::new(key, message);
    }
    let key = if path.is_empty() {
        "<root>".to_string()
    } else {
        path
    };
    ConfigError::new(key, message.to_string())
}

fn is_close(a: &str, b: &str) -> bool {
    let limit = (a.len().max(b.len()) / 4).max(1);
    edit_distance(a, b) <= limit
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RawConfig, ConfigError> {
        from_table(s.parse().unwrap())
    }

    #[test]
    fn unknown_keys_are_reported_with_their_full_path() {
        let e = parse("[detect]\npoll_intervall = \"1m\"\n").unwrap_err();
        assert_eq!(e.key, "detect.poll_intervall");
        assert_eq!(e.message, "unknown key (did you mean `poll_interval`?)");

        let e = parse("[okta.oauth]\nclient = \"x\"\n").unwrap_err();
        assert_eq!(e.key, "okta.oauth.client");
        assert!(e.message.starts_with("unknown key"), "{e}");

        let e = parse("[foo]\nbar = 1\n").unwrap_err();
        assert_eq!(e.key, "foo");
        assert_eq!(e.message, "unknown key");
    }

    #[test]
    fn inline_secrets_point_at_the_three_sources() {
        for (toml, key, stem) in [
            (
                "[okta]\napi_token = \"00abc\"\n",
                "okta.api_token",
                "api_token",
            ),
            (
                "[okta.oauth]\nprivate_key = \"-----BEGIN\"\n",
                "okta.oauth.private_key",
                "private_key",
            ),
            (
                "[slack]\nwebhook_url = \"https://h\"\n",
                "slack.webhook_url",
                "webhook_url",
            ),
            (
                "[slack]\nbot_token = \"xoxb\"\n",
                "slack.bot_token",
                "bot_token",
            ),
            (
                "[email]\nsmtp_password = \"pw\"\n",
                "email.smtp_password",
                "smtp_password",
            ),
        ] {
            let e = parse(toml).unwrap_err();
            assert_eq!(e.key, key);
            assert_eq!(
                e.message,
                format!(
                    "secrets are not written in the config file (it is often world-readable and \
                     ends up in backups); put the value in an environment variable, a file or a \
                     systemd credential and name it with `{stem}_env`, `{stem}_file` or \
                     `{stem}_credential`"
                )
            );
            assert!(!e.to_string().contains("00abc") && !e.to_string().contains("xoxb"));
        }
        // A plain typo near a secret key is still a typo.
        let e = parse("[okta]\napi_token_envv = \"X\"\n").unwrap_err();
        assert_eq!(e.message, "unknown key (did you mean `api_token_env`?)");
    }

    #[test]
    fn type_errors_name_the_key() {
        let e = parse("[retry]\nmax_attempts = \"five\"\n").unwrap_err();
        assert_eq!(e.key, "retry.max_attempts");
        assert!(e.message.contains("invalid type"), "{e}");

        let e = parse("[email]\nto = [\"a@b.c\", {x = 1}]\n").unwrap_err();
        assert_eq!(e.key, "email.to[1]");
    }

    #[test]
    fn lenient_text_and_lists() {
        let raw = parse(
            "[okta.oauth]\nkey_id = 123\nscopes = \"okta.logs.read\"\n[detect]\napps = [\"a\", 7]\n",
        )
        .unwrap();
        let oauth = raw.okta.oauth.unwrap();
        assert_eq!(oauth.key_id, Some(Text("123".into())));
        assert_eq!(oauth.scopes.unwrap().0, ["okta.logs.read"]);
        assert_eq!(raw.detect.apps.unwrap().0, ["a", "7"]);
    }

    #[test]
    fn sections_may_be_omitted() {
        let raw = parse("").unwrap();
        assert!(raw.slack.is_none() && raw.email.is_none());
        assert!(raw.okta.org_url.is_none());
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert!(is_close("poll_intervall", "poll_interval"));
        assert!(!is_close("bar", "path"));
    }
}
