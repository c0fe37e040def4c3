//! `POST /oauth2/v1/token`: client credentials with `private_key_jwt` client assertions, and the
//! access tokens it issues (checked by the API routes as `Authorization: Bearer`). Clients
//! registered as requiring DPoP (RFC 9449) must send a `DPoP` proof (with a server nonce) and
//! get `DPoP` tokens bound to the proof key's thumbprint, checked with `Authorization: DPoP`.
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
    dpop: bool,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("rsa", &self.rsa)
            .field("scopes", &self.scopes)
            .field("dpop", &self.dpop)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct IssuedToken {
    pub scopes: HashSet<String>,
    pub expires: DateTime<Utc>,
    /// RFC 7638 thumbprint of the DPoP key the token is bound to (`None`: a Bearer token).
    pub jkt: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct OAuthState {
    pub clients: HashMap<String, OAuthClient>,
    pub tokens: HashMap<String, IssuedToken>,
    /// The token endpoint's current DPoP nonce (issued on first demand).
    pub dpop_nonce: Option<String>,
    /// `jti`s of accepted DPoP proofs (token endpoint and resources alike).
    pub dpop_jti: HashSet<String>,
    /// Whether the API routes demand a nonce in DPoP proofs, and the current one.
    pub resource_nonce_required: bool,
    pub resource_nonce: Option<String>,
}

impl OAuthState {
    pub(crate) fn register(&mut self, client_id: &str, public_key_pem: &str, scopes: &[&str]) {
        self.register_with(client_id, public_key_pem, scopes, false);
    }

    pub(crate) fn register_with(
        &mut self,
        client_id: &str,
        public_key_pem: &str,
        scopes: &[&str],
        dpop: bool,
    ) {
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
                dpop,
            },
        );
    }

    /// Handles a token request body (form-encoded). `token_url` is the expected `aud` (and the
    /// `htu` of a DPoP proof, sent in `dpop`).
    pub(crate) fn token(
        &mut self,
        body: &[u8],
        token_url: &str,
        dpop: Option<&str>,
        now: DateTime<Utc>,
    ) -> Reply {
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
        let Ok(claims) = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(assertion) else {
            return invalid("The client_assertion is not a valid JWT.");
        };
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
        let mut jkt = None;
        if client.dpop {
            let Some(proof) = dpop else {
                return oauth_error(
                    400,
                    "invalid_dpop_proof",
                    "The DPoP proof JWT header is missing.",
                );
            };
            let nonce = self
                .dpop_nonce
                .get_or_insert_with(|| random_alnum(32))
                .clone();
            match verify_proof(proof, "POST", token_url, now, &self.dpop_jti) {
                Err(d) => return oauth_error(400, "invalid_dpop_proof", &d),
                Ok(p) if p.nonce.as_deref() != Some(nonce.as_str()) => {
                    return oauth_error(
                        400,
                        "use_dpop_nonce",
                        "Authorization server requires nonce in DPoP proof.",
                    )
                    .with_header("DPoP-Nonce", nonce);
                }
                Ok(p) => {
                    self.dpop_jti.insert(p.jti);
                    jkt = Some(p.jkt);
                }
            }
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
                jkt: jkt.clone(),
            },
        );
        Reply::ok(json!({
            "token_type": if jkt.is_some() { "DPoP" } else { "Bearer" },
            "expires_in": TOKEN_TTL_SECS,
            "access_token": token,
            "scope": requested.join(" "),
        }))
    }
}

/// A DPoP proof that passed [`verify_proof`].
pub(crate) struct Proof {
    pub jkt: String,
    pub jti: String,
    pub nonce: Option<String>,
    pub ath: Option<String>,
}

/// Checks a DPoP proof (RFC 9449, section 4.3) for a request `htm` `htu` at `now`: `typ`,
/// `alg` ES256, the signature with the embedded P-256 `jwk`, `htm`/`htu`, `iat` within five
/// minutes, and a `jti` not seen before (recorded by the caller once the request is accepted).
/// The nonce and `ath` are the caller's to check.
pub(crate) fn verify_proof(
    proof: &str,
    htm: &str,
    htu: &str,
    now: DateTime<Utc>,
    seen_jti: &HashSet<String>,
) -> Result<Proof, String> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    let bad = |d: &str| Err(format!("The DPoP proof JWT is invalid: {d}"));
    let Ok(header) = jsonwebtoken::decode_header(proof) else {
        return bad("not a JWT.");
    };
    if header.typ.as_deref() != Some("dpop+jwt") {
        return bad("'typ' must be 'dpop+jwt'.");
    }
    if header.alg != Algorithm::ES256 {
        return bad("unsupported 'alg'.");
    }
    let Some(jwk) = header.jwk else {
        return bad("no 'jwk' header.");
    };
    let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm else {
        return bad("'jwk' is not an EC key.");
    };
    if ec.curve != EllipticCurve::P256 {
        return bad("'jwk' is not a P-256 key.");
    }
    let Ok(key) = DecodingKey::from_ec_components(&ec.x, &ec.y) else {
        return bad("'jwk' is not a valid key.");
    };
    let mut v = Validation::new(Algorithm::ES256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    let Ok(data) = jsonwebtoken::decode::<Value>(proof, &key, &v) else {
        return bad("the signature does not verify with its 'jwk'.");
    };
    let c = data.claims;
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    if s("htm") != Some(htm) {
        return bad("'htm' does not match the request method.");
    }
    if s("htu") != Some(htu) {
        return bad("'htu' does not match the request URL.");
    }
    let Some(iat) = c.get("iat").and_then(Value::as_i64) else {
        return bad("no 'iat' claim.");
    };
    if (iat - now.timestamp()).abs() > 300 {
        return bad("'iat' is too far from the current time.");
    }
    let jti = s("jti").unwrap_or("");
    if jti.is_empty() {
        return bad("no 'jti' claim.");
    }
    if seen_jti.contains(jti) {
        return bad("'jti' has already been used.");
    }
    let canonical = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        ec.x, ec.y
    );
    Ok(Proof {
        jkt: sha256_b64url(canonical.as_bytes()),
        jti: jti.to_string(),
        nonce: s("nonce").map(str::to_string),
        ath: s("ath").map(str::to_string),
    })
}

/// base64url (no padding) SHA-256, for `jkt` and `ath`.
pub(crate) fn sha256_b64url(data: &[u8]) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn b64url(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_base64url() {
        assert_eq!(
            sha256_b64url(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        assert_eq!(
            sha256_b64url(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        // 56 bytes: padding spills into a second block.
        assert_eq!(
            sha256_b64url(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "JI1qYdIGOLjlwCaTDD5gOaM85Flk_yFn9uzt1BnbBsE"
        );
        // RFC 9449, section 7.1: the `ath` of its example token.
        assert_eq!(
            sha256_b64url(b"Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
    }
}
