//! `[hooks]`: the Okta Event Hook receiver (its own listener, apart from `[http]`).
//!
//! ```toml
//! [hooks]
//! listen = "0.0.0.0:9185"
//! path = "/okta/events"
//! secret_env = "OKTA_HOOK_SECRET"   # or secret_file / secret_credential
//! # tls_cert_file = "...", tls_key_file = "..."
//! ```
//!
//! The secret is the exact `Authorization` header value Okta is configured to send; like every
//! other secret it is named here, never written here. TLS is optional: without it the receiver
//! speaks plain HTTP and must sit behind a TLS-terminating reverse proxy (Okta only calls
//! `https` URLs). The certificate files are read at start (and on reload), so a bad path fails
//! `check-config` rather than the first delivery.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::env::Env;
use super::error::ConfigError;
use super::raw::Text;
use super::secret::{pick_one, read_secret, SecretSource, Via};

/// Default receiver address: all interfaces, one port above `[http]`'s default.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9185";
/// Default request path Okta posts to.
pub const DEFAULT_PATH: &str = "/okta/events";
/// Default largest request body accepted. Okta batches at most a few hundred events per
/// request (a few KiB each); 1 MiB leaves room without letting a stranger fill memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The secret is a header value: Okta limits it to 1,024 characters.
const MAX_SECRET_LEN: usize = 1024;

/// `[hooks]` as the file spells it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHooks {
    pub listen: Option<Text>,
    pub path: Option<Text>,
    pub secret_env: Option<Text>,
    pub secret_file: Option<Text>,
    pub secret_credential: Option<Text>,
    pub tls_cert_file: Option<Text>,
    pub tls_key_file: Option<Text>,
    pub max_body_bytes: Option<i64>,
}

/// The validated `[hooks]` section.
#[derive(Clone)]
pub struct HooksConfig {
    pub listen: SocketAddr,
    /// Always starts with `/`.
    pub path: String,
    /// The exact `Authorization` header value Okta sends.
    pub secret: SecretString,
    /// Certificate chain and key (PEM) when the receiver terminates TLS itself.
    pub tls: Option<TlsFiles>,
    pub max_body_bytes: usize,
}

/// PEM files for the receiver's own TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl std::fmt::Debug for HooksConfig {
    // The secret never appears in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooksConfig")
            .field("listen", &self.listen)
            .field("path", &self.path)
            .field("secret", &"<redacted>")
            .field("tls", &self.tls)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

fn text(v: &Option<Text>) -> Option<&str> {
    v.as_ref().map(|t| t.0.trim()).filter(|s| !s.is_empty())
}

/// Validates `[hooks]`; returns the config and where its secret came from.
pub(crate) fn validate(
    raw: RawHooks,
    env: &Env,
) -> Result<(HooksConfig, SecretSource), ConfigError> {
    let s = text(&raw.listen).unwrap_or(DEFAULT_LISTEN);
    let listen = SocketAddr::from_str(s).map_err(|_| {
        ConfigError::new(
            "hooks.listen",
            format!("invalid address {s:?} (expected IP:port, e.g. \"0.0.0.0:9185\")"),
        )
    })?;
    let path = text(&raw.path).unwrap_or(DEFAULT_PATH).to_string();
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(ConfigError::new(
            "hooks.path",
            format!("{path:?} must be a URL path starting with '/', without query or spaces (e.g. \"/okta/events\")"),
        ));
    }
    let picked = pick_one(
        "hooks",
        &[
            ("secret_env", Via::Env, raw.secret_env.as_ref()),
            ("secret_file", Via::File, raw.secret_file.as_ref()),
            (
                "secret_credential",
                Via::Credential,
                raw.secret_credential.as_ref(),
            ),
        ],
    )?;
    let Some((name, via, value)) = picked else {
        return Err(ConfigError::new(
            "hooks",
            "no secret: set secret_env, secret_file or secret_credential to the Authorization \
             header value Okta sends (an unauthenticated receiver would let anyone inject events)",
        ));
    };
    let key = format!("hooks.{name}");
    let (secret, source) = read_secret(&key, via, value, env)?;
    let len = secret.expose_secret().len();
    if !(16..=MAX_SECRET_LEN).contains(&len)
        || secret.expose_secret().chars().any(|c| c.is_control())
    {
        return Err(ConfigError::new(
            key,
            format!(
                "the secret must be 16 to {MAX_SECRET_LEN} printable characters (it is sent as a \
                 header value; generate one with `openssl rand -hex 32`)"
            ),
        ));
    }
    let tls = match (text(&raw.tls_cert_file), text(&raw.tls_key_file)) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            for (key, p) in [("hooks.tls_cert_file", c), ("hooks.tls_key_file", k)] {
                if !std::path::Path::new(p).is_file() {
                    return Err(ConfigError::new(
                        key,
                        format!("{p} does not exist or is not a file"),
                    ));
                }
            }
            Some(TlsFiles {
                cert_file: c.into(),
                key_file: k.into(),
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::new(
                "hooks.tls_key_file",
                "tls_cert_file is set but tls_key_file is not; set both, or neither to serve \
                 plain HTTP behind a TLS-terminating reverse proxy",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "hooks.tls_cert_file",
                "tls_key_file is set but tls_cert_file is not; set both, or neither",
            ))
        }
    };
    let max_body_bytes = match raw.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) if (4096..=16 * 1024 * 1024).contains(&n) => n as usize,
        Some(n) => {
            return Err(ConfigError::new(
                "hooks.max_body_bytes",
                format!("{n} is out of range (4096 to 16777216 bytes)"),
            ))
        }
    };
    Ok((
        HooksConfig {
            listen,
            path,
            secret,
            tls,
            max_body_bytes,
        },
        source,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml_text: &str) -> RawHooks {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_and_secret_from_env() {
        let env = Env::from_map([("OKTA_HOOK_SECRET", "0123456789abcdef0123")]);
        let (c, src) = validate(raw("secret_env = \"OKTA_HOOK_SECRET\""), &env).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.path, DEFAULT_PATH);
        assert!(c.tls.is_none());
        assert_eq!(src.to_string(), "env OKTA_HOOK_SECRET");
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_values_name_their_key_and_never_the_secret() {
        let env = Env::from_map([("S", "short")]);
        let e = validate(raw("secret_env = \"S\""), &env).unwrap_err();
        assert_eq!(e.key, "hooks.secret_env");
        assert!(!e.message.contains("short"), "{e}");
        let e = validate(raw(""), &env).unwrap_err();
        assert_eq!(e.key, "hooks");
        let env = Env::from_map([("S", "0123456789abcdef0123")]);
        let e = validate(raw("secret_env = \"S\"\npath = \"okta\""), &env).unwrap_err();
        assert_eq!(e.key, "hooks.path");
        let e = validate(raw("secret_env = \"S\"\nlisten = \"x\""), &env).unwrap_err();
        assert_eq!(e.key, "hooks.listen");
        let e = validate(
            raw("secret_env = \"S\"\ntls_cert_file = \"/etc/hosts\""),
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "hooks.tls_key_file");
        let e = validate(
            raw("secret_env = \"S\"\ntls_cert_file = \"/nonexistent/c\"\ntls_key_file = \"/nonexistent/k\""),
            &env,
        )
        .unwrap_err();
        assert_eq!(e.key, "hooks.tls_cert_file");
    }
}
