//! OAuth 2.0 Demonstrating Proof of Possession (DPoP, RFC 9449) for service apps that have
//! "Require Demonstrating Proof of Possession (DPoP) header in token requests" on.
//!
//! The proof key is an ephemeral P-256 key generated once per process (it never leaves it and
//! is separate from the `private_key_jwt` client key). Proofs are ES256 JWTs with
//! `typ: dpop+jwt` and the public key as `jwk`; never log them, nor the tokens they carry an
//! `ath` for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::header::HeaderMap;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::sync::OnceLock;
use url::Url;

/// A P-256 key pair that signs DPoP proofs.
pub struct DpopKey {
    key: EncodingKey,
    x: String,
    y: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "generating the DPoP key failed".to_string())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| format!("loading the DPoP key: {e}"))?;
        // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("unexpected P-256 public key encoding".into());
        }
        Ok(Self {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// The key of this process, generated on first use.
    pub fn process() -> Result<&'static DpopKey, String> {
        static KEY: OnceLock<Result<DpopKey, String>> = OnceLock::new();
        KEY.get_or_init(DpopKey::generate)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y})
    }

    /// RFC 7638 thumbprint (`jkt`): base64url SHA-256 of the required members in order.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.x, self.y
        );
        sha256_b64(canonical.as_bytes())
    }

    /// A proof for one request: `htm` is the method, `htu` the URL without query and fragment,
    /// `nonce` the server's last `DPoP-Nonce`, and `access_token` (resource requests only)
    /// becomes `ath`.
    pub fn proof(
        &self,
        htm: &str,
        url: &Url,
        iat: i64,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<String, String> {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = json!({
            "htm": htm,
            "htu": htu(url),
            "iat": iat,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        if let Some(n) = nonce {
            claims["nonce"] = Value::from(n);
        }
        if let Some(t) = access_token {
            claims["ath"] = Value::from(ath(t));
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.key, Algorithm::ES256)
            .map_err(|e| format!("signing the DPoP proof: {e}"))?;
        Ok(format!("{signing_input}.{sig}"))
    }
}

/// The `htu` of a request: its URL without query and fragment.
pub fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// `ath`: base64url SHA-256 of the access token.
pub fn ath(access_token: &str) -> String {
    sha256_b64(access_token.as_bytes())
}

fn sha256_b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// The `DPoP-Nonce` response header, if any.
pub fn nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether a resource server's 401 asks for a nonce: `WWW-Authenticate: DPoP
/// error="use_dpop_nonce"` (with the nonce in `DPoP-Nonce`).
pub fn asks_for_nonce(headers: &HeaderMap) -> bool {
    headers.get_all("www-authenticate").iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            let s = s.trim_start();
            s.len() > 5
                && s[..5].eq_ignore_ascii_case("dpop ")
                && s.replace(' ', "").contains("error=\"use_dpop_nonce\"")
        })
    })
}

/// Per-client DPoP state: off until the token endpoint says DPoP is required, then on for the
/// life of the client, with the last nonces the servers sent.
#[derive(Debug, Default)]
pub(crate) struct DpopState {
    pub enabled: bool,
    pub token_nonce: Option<String>,
    pub resource_nonce: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_shape() {
        let k = DpopKey::generate().unwrap();
        let url = Url::parse("https://acme.okta.com/api/v1/logs?limit=1#x").unwrap();
        let p = k
            .proof("GET", &url, 1_700_000_000, Some("n1"), Some("tok"))
            .unwrap();
        let h = jsonwebtoken::decode_header(&p).unwrap();
        assert_eq!(h.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(h.alg, Algorithm::ES256);
        assert!(h.jwk.is_some());
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let key = jsonwebtoken::DecodingKey::from_ec_components(&k.x, &k.y).unwrap();
        let c = jsonwebtoken::decode::<Value>(&p, &key, &v).unwrap().claims;
        assert_eq!(c["htu"], "https://acme.okta.com/api/v1/logs");
        assert_eq!(c["htm"], "GET");
        assert_eq!(c["nonce"], "n1");
        assert_eq!(c["ath"], ath("tok"));
        assert_eq!(k.thumbprint().len(), 43);
    }

    #[test]
    fn ath_matches_rfc_example() {
        // RFC 9449, section 7.1.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn nonce_challenge() {
        let mut h = HeaderMap::new();
        h.insert(
            "www-authenticate",
            "DPoP error=\"use_dpop_nonce\", error_description=\"x\""
                .parse()
                .unwrap(),
        );
        h.insert("dpop-nonce", "abc".parse().unwrap());
        assert!(asks_for_nonce(&h));
        assert_eq!(nonce(&h).as_deref(), Some("abc"));
        assert!(!asks_for_nonce(&HeaderMap::new()));
    }
}
