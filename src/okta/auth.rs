//! Credentials for Okta's management API: an API token (`SSWS`), or an OAuth 2.0 service app
//! using client credentials with a `private_key_jwt` client assertion, whose access token is
//! cached until shortly before it expires. Service apps that require DPoP get DPoP-bound
//! tokens instead of Bearer ones (see [`super::dpop`]).

use super::dpop::DpopState;
use crate::clock::Clock;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    ApiToken(SecretString),
    OAuth {
        client_id: String,
        private_key_pem: SecretString,
        key_id: Option<String>,
        scopes: Vec<String>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::ApiToken(_) => f.write_str("ApiToken(<redacted>)"),
            Credentials::OAuth {
                client_id, scopes, ..
            } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .field("private_key_pem", &"<redacted>")
                .field("scopes", scopes)
                .finish(),
        }
    }
}

pub(crate) struct OAuthSigner {
    pub client_id: String,
    key: EncodingKey,
    alg: Algorithm,
    key_id: Option<String>,
    pub scopes: Vec<String>,
    /// Held across a refresh so concurrent requests share one token call.
    pub cached: Mutex<Option<(SecretString, Instant)>>,
    /// Whether the service app requires DPoP (learnt from the token endpoint), and the last
    /// nonces the servers sent.
    pub dpop: std::sync::Mutex<DpopState>,
}

impl OAuthSigner {
    pub fn new(
        client_id: &str,
        pem: &SecretString,
        key_id: Option<String>,
        scopes: Vec<String>,
    ) -> Result<Self, String> {
        let pem_bytes = pem.expose_secret().as_bytes();
        // Okta accepts RSA and EC keys for private_key_jwt; the PEM tells which.
        let (key, alg) = if let Ok(k) = EncodingKey::from_rsa_pem(pem_bytes) {
            (k, Algorithm::RS256)
        } else if let Ok(k) = EncodingKey::from_ec_pem(pem_bytes) {
            (k, Algorithm::ES256)
        } else {
            return Err("the OAuth private key is not an RSA or EC (P-256) key in PEM form".into());
        };
        Ok(Self {
            client_id: client_id.to_owned(),
            key,
            alg,
            key_id,
            scopes,
            cached: Mutex::new(None),
            dpop: std::sync::Mutex::new(DpopState::default()),
        })
    }

    /// A fresh client assertion for `aud` (the org's token endpoint).
    pub fn assertion(&self, aud: &str, clock: &Clock) -> Result<String, String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            sub: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
            jti: String,
        }
        let now = clock.now().timestamp();
        let claims = Claims {
            iss: &self.client_id,
            sub: &self.client_id,
            aud,
            iat: now,
            // Okta rejects assertions valid for more than an hour; five minutes is plenty.
            exp: now + 300,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(self.alg);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| e.to_string())
    }

    /// Remembers a token, to be refreshed a minute early so no request leaves with a token
    /// about to lapse.
    pub fn remember(
        slot: &mut Option<(SecretString, Instant)>,
        token: SecretString,
        ttl: Duration,
    ) {
        let margin = Duration::from_secs(60).min(ttl / 2);
        *slot = Some((token, Instant::now() + ttl - margin));
    }
}

#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct OAuthErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let c = Credentials::ApiToken(SecretString::from("00abcdefSECRET"));
        assert!(!format!("{c:?}").contains("SECRET"));
        let c = Credentials::OAuth {
            client_id: "0oa1".into(),
            private_key_pem: SecretString::from("-----BEGIN PRIVATE KEY-----SECRET"),
            key_id: None,
            scopes: vec!["okta.logs.read".into()],
        };
        let s = format!("{c:?}");
        assert!(!s.contains("SECRET") && s.contains("0oa1"));
    }

    #[test]
    fn rejects_garbage_key() {
        let e = OAuthSigner::new("x", &SecretString::from("nope"), None, vec![]);
        assert!(e.is_err());
    }
}
