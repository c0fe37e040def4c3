//! Environment access and `OKTA_PROVWATCH__SECTION__KEY` overrides.
//!
//! The environment is read through [`Env`] rather than `std::env` directly so
//! tests can describe it with a plain map and run in parallel without racing
//! on the process environment.
//!
//! Overrides are applied to the parsed TOML table before it is deserialized,
//! so an overridden key goes through exactly the same checks (including the
//! unknown-key check, which catches typos in variable names) as one written in
//! the file.

use std::collections::BTreeMap;

use super::error::ConfigError;

/// Prefix of variables that override config keys. Nesting uses `__`, e.g.
/// `OKTA_PROVWATCH__DETECT__POLL_INTERVAL` sets `detect.poll_interval`.
pub const ENV_PREFIX: &str = "OKTA_PROVWATCH__";

/// A snapshot of environment variables.
///
/// Only valid UTF-8 names and values are kept: every value this daemon reads
/// (tokens, URLs, durations) is text, and a non-UTF-8 one would be a mistake
/// best reported as "not set".
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The process environment, captured now.
    pub fn system() -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self { vars }
    }

    /// An environment holding exactly these variables (for tests and embedding).
    pub fn from_map<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// An environment with no variables at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// All variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

// Values may be secrets in the environment (API tokens), so never print them.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One applied override: which dotted key it set and from which variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppliedOverride {
    pub key: String,
    pub var: String,
}

/// Writes every `OKTA_PROVWATCH__…` variable of `env` into `table`.
///
/// Empty values are skipped, so `Environment=OKTA_PROVWATCH__X=` in a unit
/// file (a common way to "comment out") does not blank a key.
pub(crate) fn apply_overrides(
    table: &mut toml::Table,
    env: &Env,
) -> Result<Vec<AppliedOverride>, ConfigError> {
    let mut applied = Vec::new();
    for (var, raw) in env.iter() {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(ConfigError::new(
                "",
                format!(
                    "environment variable {var}: malformed override name \
                     (use {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}DETECT__POLL_INTERVAL)"
                ),
            ));
        }
        let key = segments.join(".");
        set_path(table, &segments, parse_value(raw)).map_err(|parent| {
            ConfigError::new(
                key.clone(),
                format!("cannot set from {var}: {parent} is not a table"),
            )
        })?;
        applied.push(AppliedOverride {
            key,
            var: var.to_string(),
        });
    }
    Ok(applied)
}

/// A TOML scalar (or array, so list keys can be overridden too) when the text
/// parses as one, else the text itself as a string: `30s` and `#alerts` stay
/// strings, `3` becomes an integer, `["a", "b"]` an array.
fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(
                v @ (toml::Value::String(_)
                | toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
                | toml::Value::Array(_)),
            ) if t.is_empty() => v,
            // A date or an inline table is never what an operator means here.
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Sets `path` in `table`, creating intermediate tables. On conflict returns
/// the dotted key of the non-table value in the way.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("path is never empty");
    let mut current = table;
    for (i, seg) in parents.iter().enumerate() {
        let entry = current
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(path[..=i].join(".")),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn values_are_typed_when_they_parse_as_toml() {
        assert_eq!(parse_value("3"), toml::Value::Integer(3));
        assert_eq!(parse_value("0.25"), toml::Value::Float(0.25));
        assert_eq!(parse_value("false"), toml::Value::Boolean(false));
        assert_eq!(parse_value("30s"), toml::Value::String("30s".into()));
        assert_eq!(
            parse_value("#alerts"),
            toml::Value::String("#alerts".into())
        );
        assert_eq!(
            parse_value("https://x.okta.com"),
            toml::Value::String("https://x.okta.com".into())
        );
        assert_eq!(
            parse_value("\"quoted\""),
            toml::Value::String("quoted".into())
        );
        assert_eq!(
            parse_value("[\"a\", \"b\"]"),
            toml::Value::Array(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_value("2024-01-01"),
            toml::Value::String("2024-01-01".into())
        );
        assert_eq!(parse_value("a = 1"), toml::Value::String("a = 1".into()));
    }

    #[test]
    fn overrides_nest_and_create_tables() {
        let mut t = table("[detect]\npoll_interval = \"60s\"\n");
        let env = Env::from_map([
            ("OKTA_PROVWATCH__DETECT__POLL_INTERVAL", "30s"),
            ("OKTA_PROVWATCH__OKTA__OAUTH__CLIENT_ID", "0oa1"),
            ("OKTA_PROVWATCH__RETRY__MAX_ATTEMPTS", "7"),
            ("OKTA_PROVWATCH__LOG__LEVEL", ""),
            ("OKTA_PROVWATCH_CONFIG", "/x.toml"),
            ("UNRELATED", "1"),
        ]);
        let applied = apply_overrides(&mut t, &env).unwrap();
        assert_eq!(t["detect"]["poll_interval"].as_str(), Some("30s"));
        assert_eq!(t["okta"]["oauth"]["client_id"].as_str(), Some("0oa1"));
        assert_eq!(t["retry"]["max_attempts"].as_integer(), Some(7));
        assert!(t.get("log").is_none(), "empty values are ignored");
        let keys: Vec<_> = applied.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "detect.poll_interval",
                "okta.oauth.client_id",
                "retry.max_attempts"
            ]
        );
    }

    #[test]
    fn override_through_a_scalar_is_an_error() {
        let mut t = table("[log]\nlevel = \"info\"\n");
        let env = Env::from_map([("OKTA_PROVWATCH__LOG__LEVEL__X", "1")]);
        let err = apply_overrides(&mut t, &env).unwrap_err();
        assert_eq!(err.key, "log.level.x");
        assert!(err.message.contains("log.level is not a table"), "{err}");
    }

    #[test]
    fn malformed_names_are_errors() {
        let mut t = toml::Table::new();
        let env = Env::from_map([("OKTA_PROVWATCH__DETECT____X", "1")]);
        assert!(apply_overrides(&mut t, &env).is_err());
    }

    #[test]
    fn debug_hides_values() {
        let env = Env::from_map([("OKTA_API_TOKEN", "00supersecret")]);
        let dbg = format!("{env:?}");
        assert!(dbg.contains("OKTA_API_TOKEN"));
        assert!(!dbg.contains("00supersecret"));
    }
}
