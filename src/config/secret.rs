//! Reading secrets from the environment, files and systemd credentials.
//!
//! Secrets never live in the config file itself: the file is usually
//! world-readable under /etc and ends up in backups and support tickets. The
//! file only says *where* each secret is; this module fetches it, and
//! remembers the place (never the value) so `doctor` can show it.
//!
//! Every error here names the key and the place (variable, path, credential)
//! but never any content read.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::env::Env;
use super::error::ConfigError;
use super::raw::Text;

/// Where a secret was read from. Shown by `doctor`; holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env { var: String },
    /// A file.
    File { path: PathBuf },
    /// A systemd credential (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    Credential { name: String, path: PathBuf },
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env { var } => write!(f, "env {var}"),
            SecretSource::File { path } => write!(f, "file {}", path.display()),
            SecretSource::Credential { name, .. } => write!(f, "credential {name}"),
        }
    }
}

/// Where each loaded secret came from, for [`super::Config::redacted_summary`].
///
/// `Default` (all `None`) is fine for configs built by hand in tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSources {
    /// The Okta API token, or the OAuth private key.
    pub okta: Option<SecretSource>,
    /// The Slack webhook URL or bot token.
    pub slack: Option<SecretSource>,
    /// The SMTP password.
    pub smtp_password: Option<SecretSource>,
    /// The event hook receiver's Authorization header value.
    pub hooks: Option<SecretSource>,
}

/// The three ways a secret can be supplied, by key suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Env,
    File,
    Credential,
}

/// Picks the one configured source among `candidates` (field name, via,
/// value). Two set at once is an error keyed by `section`: guessing which one
/// wins would hide a stale setting.
pub(crate) fn pick_one<'a>(
    section: &str,
    candidates: &[(&'a str, Via, Option<&'a Text>)],
) -> Result<Option<(&'a str, Via, &'a str)>, ConfigError> {
    let set: Vec<_> = candidates
        .iter()
        .filter_map(|(name, via, v)| v.map(|t| (*name, *via, t.0.as_str())))
        .collect();
    match set.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        [a, b, ..] => Err(ConfigError::new(
            section,
            format!("{} and {} are both set; choose one", a.0, b.0),
        )),
    }
}

/// Reads the secret named by `value` through `via`. `key` is the full dotted
/// key (e.g. `okta.api_token_env`) used in errors.
pub(crate) fn read_secret(
    key: &str,
    via: Via,
    value: &str,
    env: &Env,
) -> Result<(SecretString, SecretSource), ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    match via {
        Via::Env => {
            // A pasted secret instead of a variable name would otherwise be
            // echoed in "variable … is not set"; refuse without repeating it.
            if !is_env_name(value) {
                return Err(ConfigError::new(
                    key,
                    "must name an environment variable (letters, digits and _, e.g. \"OKTA_API_TOKEN\"), not hold the secret itself",
                ));
            }
            let secret = env
                .get(value)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    // Variable names are conventionally upper case; anything else may be a
                    // pasted secret that happens to be alphanumeric, so it is not repeated.
                    let named = if is_conventional_env_name(value) {
                        format!("environment variable {value}")
                    } else {
                        "the environment variable named here".to_string()
                    };
                    ConfigError::new(key, format!("{named} is not set or empty"))
                })?;
            Ok((
                SecretString::from(secret.to_string()),
                SecretSource::Env {
                    var: value.to_string(),
                },
            ))
        }
        Via::File => {
            let path = PathBuf::from(value);
            // Relative paths would depend on the service's working directory;
            // also, a pasted secret is not absolute, so it is never echoed.
            if !path.is_absolute() {
                return Err(ConfigError::new(
                    key,
                    "must be an absolute path to a file holding the secret (e.g. \"/etc/okta-provwatch/secret\")",
                ));
            }
            let secret = read_file(key, &path, "file")?;
            Ok((secret, SecretSource::File { path }))
        }
        Via::Credential => {
            // Never echo the value when it is not a plausible name: it may be a pasted secret.
            if !is_credential_name(value) {
                return Err(ConfigError::new(
                    key,
                    "must be a credential name (the name given to LoadCredential=, e.g. \"okta-api-token\"), not a path or the secret itself",
                ));
            }
            let dir = env
                .get("CREDENTIALS_DIRECTORY")
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    ConfigError::new(
                        key,
                        format!(
                            "CREDENTIALS_DIRECTORY is not set, so credential {value} cannot be read \
                             (run under systemd, which hands over /etc/credstore/{value}, or use the _env or _file form)"
                        ),
                    )
                })?;
            let path = Path::new(dir).join(value);
            let secret = read_file(key, &path, &format!("credential {value}:")).map_err(|mut e| {
                // The shipped unit looks every credential up in the credstore and skips a
                // missing one, so "does not exist" means the file was never installed.
                if !path.exists() {
                    let store = if value.ends_with(".encrypted") {
                        format!(
                            "/etc/credstore.encrypted/{value} (systemd-creds encrypt plain.txt /etc/credstore.encrypted/{value})"
                        )
                    } else {
                        format!("/etc/credstore/{value} (root:root, mode 0600)")
                    };
                    e.message.push_str(&format!(
                        "; install it as {store}, or add LoadCredential={value}:/path in a drop-in"
                    ));
                }
                e
            })?;
            Ok((
                secret,
                SecretSource::Credential {
                    name: value.to_string(),
                    path,
                },
            ))
        }
    }
}

fn is_conventional_env_name(s: &str) -> bool {
    is_env_name(s) && !s.chars().any(|c| c.is_ascii_lowercase())
}

/// A systemd credential name as people write them: short, of name characters, and not shaped
/// like a token (Okta API tokens start with "00", Slack's with "xox").
fn is_credential_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && !s.starts_with("xox")
        && !(s.starts_with("00") && s.len() >= 30)
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_file(key: &str, path: &Path, what: &str) -> Result<SecretString, ConfigError> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            ErrorKind::NotFound => "does not exist".to_string(),
            ErrorKind::PermissionDenied => {
                "is not readable by this user (permission denied)".to_string()
            }
            _ => format!("cannot be read: {e}"),
        };
        ConfigError::new(key, format!("{what} {shown} {why}"))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::new(key, format!("{what} {shown} is not UTF-8 text")))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::new(key, format!("{what} {shown} is empty")));
    }
    Ok(SecretString::from(trimmed.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_that_look_like_secrets_are_refused_without_echo() {
        assert!(is_credential_name("okta-api-token"));
        assert!(is_credential_name("slack.webhook"));
        for pasted in [
            "00aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcd",
            "xoxb-1234-5678-abcdef",
            "https://hooks.slack.com/services/T/B/X",
            "../etc/passwd",
            "",
        ] {
            assert!(!is_credential_name(pasted), "{pasted}");
        }
        assert!(is_conventional_env_name("OKTA_API_TOKEN"));
        assert!(!is_conventional_env_name("hunter2password"));
    }
    use secrecy::ExposeSecret;
    use std::io::Write;

    #[test]
    fn from_env_is_trimmed_and_required() {
        let env = Env::from_map([("TOK", "  abc\n"), ("BLANK", " ")]);
        let (s, src) = read_secret("okta.api_token_env", Via::Env, "TOK", &env).unwrap();
        assert_eq!(s.expose_secret(), "abc");
        assert_eq!(src.to_string(), "env TOK");
        for name in ["BLANK", "MISSING"] {
            let e = read_secret("okta.api_token_env", Via::Env, name, &env).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("okta.api_token_env: environment variable {name} is not set or empty")
            );
        }
    }

    #[test]
    fn pasted_secrets_are_refused_without_echo() {
        let env = Env::empty();
        for (via, value) in [
            (Via::Env, "00aBcDeF-ghij_klmnop"),
            (Via::Env, "xoxb-123-456"),
            (Via::Env, "https://hooks.slack.com/services/T/B/x"),
            (Via::File, "00aBcDeF-ghij_klmnop"),
        ] {
            let e = read_secret("k", via, value, &env).unwrap_err();
            assert!(!e.to_string().contains(value), "{e}");
        }
        assert!(is_env_name("OKTA_API_TOKEN") && is_env_name("_x1"));
        assert!(!is_env_name("1X") && !is_env_name("A-B") && !is_env_name(""));
    }

    #[test]
    fn from_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "s3cr3t-value").unwrap();
        let p = f.path().to_str().unwrap().to_string();
        let (s, src) = read_secret("k", Via::File, &p, &Env::empty()).unwrap();
        assert_eq!(s.expose_secret(), "s3cr3t-value");
        assert_eq!(src, SecretSource::File { path: p.into() });

        let empty = tempfile::NamedTempFile::new().unwrap();
        let p = empty.path().to_str().unwrap();
        let e = read_secret("k", Via::File, p, &Env::empty()).unwrap_err();
        assert!(
            e.message.contains(p) && e.message.ends_with("is empty"),
            "{e}"
        );

        let e = read_secret("k", Via::File, "/nonexistent/x", &Env::empty()).unwrap_err();
        assert_eq!(e.to_string(), "k: file /nonexistent/x does not exist");
    }

    #[test]
    fn from_credential() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("okta-token"), "tok\n").unwrap();
        let env = Env::from_map([("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
        let (s, src) = read_secret("k", Via::Credential, "okta-token", &env).unwrap();
        assert_eq!(s.expose_secret(), "tok");
        assert_eq!(src.to_string(), "credential okta-token");

        assert!(read_secret("k", Via::Credential, "../etc/passwd", &env).is_err());
        let e = read_secret("k", Via::Credential, "missing", &env).unwrap_err();
        assert!(e.message.contains("does not exist"), "{e}");
        let e = read_secret("k", Via::Credential, "okta-token", &Env::empty()).unwrap_err();
        assert!(e.message.contains("CREDENTIALS_DIRECTORY"), "{e}");
    }

    #[test]
    fn two_sources_conflict() {
        let a = Text("A".into());
        let b = Text("B".into());
        let e = pick_one(
            "okta",
            &[
                ("api_token_env", Via::Env, Some(&a)),
                ("api_token_file", Via::File, Some(&b)),
                ("api_token_credential", Via::Credential, None),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "okta: api_token_env and api_token_file are both set; choose one"
        );
        let one = pick_one("okta", &[("x", Via::Env, Some(&a)), ("y", Via::File, None)]).unwrap();
        assert_eq!(one, Some(("x", Via::Env, "A")));
    }
}
