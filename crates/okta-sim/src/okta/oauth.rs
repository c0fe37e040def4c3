//! `POST /oauth2/v1/token`: client credentials with `private_key_jwt` client assertions, and the
//! access tokens it issues (checked by the API routes as `Authorization: Bearer`).
//!
//! `jsonwebtoken` only checks the signature here: time claims are checked by hand against the
//! simulator's clock, because the library reads the system clock, which a paused test clock
//! does not move.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use super::errors::{oauth_error, Reply};
use super::ids::random_alnum;

pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const TOKEN_TTL_SECS: i64 = 3600;

#[derive(Clone)]
pub(crate) struct OAuthClient {
    key: DecodingKey,
    rsa: bool,
    scopes: HashSet<String>,
    used_jti: HashSet<String>,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("rsa", &self.rsa)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub scopes: HashSet<String>,
    pub expires: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub(crate) struct OAuthState {
    pub clients: HashMap<String, OAuthClient>,
    pub tokens: HashMap<String, IssuedToken>,
}

impl OAuthState {
    pub(crate) fn register(&mut self, client_id: &str, public_key_pem: &str, scopes: &[&str]) {
        let (key, rsa) = match DecodingKey::from_rsa_pem(public_key_pem.as_bytes()) {
            Ok(k) => (k, true),
            Err(_) => match DecodingKey::from_ec_pem(public_key_pem.as_bytes()) {
                Ok(k) => (k, false),
                Err(e) => {
                    panic!("okta-sim: register_oauth_client: not an RSA or EC public key PEM: {e}")
                }
            },
        };
        self.clients.insert(
            client_id.to_string(),
            OAuthClient {
                key,
                rsa,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                used_jti: HashSet::new(),
            },
        );
    }

    /// Handles a token request body (form-encoded). `token_url` is the expected `aud`.
    pub(crate) fn token(&mut self, body: &[u8], token_url: &str, now: DateTime<Utc>) -> Reply {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if get("grant_type") != "client_credentials" {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "'grant_type' must be client_credentials.",
            );
        }
        if get("client_assertion_type") != ASSERTION_TYPE {
            return oauth_error(
                400,
                "invalid_request",
                "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            );
        }
        let assertion = get("client_assertion");
        let invalid = |d: &str| oauth_error(401, "invalid_client", d);
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return invalid("The client_assertion is not a valid JWT.");
        };
        // Peek at the claims to find the client; the signature is verified below.
        let mut peek = Validation::new(header.alg);
        peek.insecure_disable_signature_validation();
        peek.validate_exp = false;
        peek.validate_aud = false;
        peek.required_spec_claims = HashSet::new();
        let Ok(unverified) =
            jsonwebtoken::decode::<Value>(assertion, &DecodingKey::from_secret(&[]), &peek)
        else {
            return invalid("The client_assertion is not a valid JWT.");
        };
        let claims = unverified.claims;
        let claim = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
        let client_id = match form.get("client_id") {
            Some(c) => c.clone(),
            None => claim("sub").to_string(),
        };
        let Some(client) = self.clients.get_mut(&client_id) else {
            return invalid("Invalid value for 'client_id' parameter.");
        };
        let alg_ok = match header.alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => client.rsa,
            Algorithm::ES256 | Algorithm::ES384 => !client.rsa,
            _ => false,
        };
        if !alg_ok {
            return invalid(
                "The client_assertion signature algorithm is not supported for this client's key.",
            );
        }
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims = HashSet::new();
        if jsonwebtoken::decode::<Value>(assertion, &client.key, &v).is_err() {
            return invalid("The client_assertion signature is invalid.");
        }
        if claim("iss") != client_id || claim("sub") != client_id {
            return invalid(
                "The client_assertion token must have 'iss' and 'sub' equal to the client_id.",
            );
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == token_url,
            Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(token_url)),
            _ => false,
        };
        if !aud_ok {
            return invalid(&format!(
                "The audience claim for client_assertion must be the endpoint invoked for the request: {token_url}"
            ));
        }
        let now_s = now.timestamp();
        let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
            return invalid("The client_assertion token must contain an 'exp' claim.");
        };
        if exp <= now_s {
            return invalid("The client_assertion token is expired.");
        }
        if exp > now_s + TOKEN_TTL_SECS {
            return invalid("The client_assertion token has an expiration too far in the future.");
        }
        if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64) {
            if nbf > now_s + 60 {
                return invalid("The client_assertion token is not valid yet.");
            }
        }
        let jti = claim("jti");
        if jti.is_empty() {
            return invalid("The client_assertion token must contain a 'jti' claim.");
        }
        if !client.used_jti.insert(jti.to_string()) {
            return invalid("The client_assertion token has already been used.");
        }
        let requested: Vec<&str> = get("scope").split_whitespace().collect();
        if requested.is_empty() {
            return oauth_error(
                400,
                "invalid_scope",
                "The authorization server resource does not have any configured default scopes, 'scope' must be provided.",
            );
        }
        let denied: Vec<&str> = requested
            .iter()
            .copied()
            .filter(|s| !client.scopes.contains(*s))
            .collect();
        if !denied.is_empty() {
            return oauth_error(
                400,
                "invalid_scope",
                &format!("The following scopes are not allowed: {}", denied.join(" ")),
            );
        }
        let token = format!("sim.{}", random_alnum(64));
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                scopes: requested.iter().map(|s| s.to_string()).collect(),
                expires: now + chrono::Duration::seconds(TOKEN_TTL_SECS),
            },
        );
        Reply::ok(json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECS,
            "access_token": token,
            "scope": requested.join(" "),
        }))
    }
}
