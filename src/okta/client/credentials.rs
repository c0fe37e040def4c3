//! The credentials on each request: the SSWS token or an OAuth access token (fetched and
//! cached with a `private_key_jwt` client credentials grant), with its DPoP proof when the
//! service app requires one.

use super::*;

impl OktaClient {
    /// The `Authorization` header for a request, and its `DPoP` proof when the service app
    /// requires DPoP.
    pub(super) async fn auth_headers(
        &self,
        class: Class,
        method: &Method,
        url: &Url,
    ) -> Result<(HeaderValue, Option<HeaderValue>), OktaError> {
        let signer = match &self.inner.auth {
            Auth::Ssws(t) => {
                let mut v = HeaderValue::from_str(&format!("SSWS {}", t.expose_secret())).map_err(
                    |_| {
                        OktaError::Config(
                            "the API token has characters not allowed in a header".into(),
                        )
                    },
                )?;
                v.set_sensitive(true);
                return Ok((v, None));
            }
            Auth::OAuth(signer) => signer,
        };
        let tok = {
            let mut slot = signer.cached.lock().await;
            match slot.as_ref() {
                Some((tok, exp)) if Instant::now() < *exp => tok.clone(),
                _ => {
                    let (tok, ttl) = self.fetch_token(signer, class).await?;
                    OAuthSigner::remember(&mut slot, tok.clone(), ttl);
                    tok
                }
            }
        };
        let (enabled, nonce) = {
            let d = dpop_state(signer);
            (d.enabled, d.resource_nonce.clone())
        };
        let scheme = if enabled { "DPoP" } else { "Bearer" };
        let mut v = HeaderValue::from_str(&format!("{scheme} {}", tok.expose_secret()))
            .map_err(|_| OktaError::Config("access token is not a header value".into()))?;
        v.set_sensitive(true);
        if !enabled {
            return Ok((v, None));
        }
        let proof = DpopKey::process()
            .and_then(|k| {
                k.proof(
                    method.as_str(),
                    url,
                    self.inner.opts.clock.now().timestamp(),
                    nonce.as_deref(),
                    Some(tok.expose_secret()),
                )
            })
            .map_err(|e| OktaError::Config(format!("DPoP proof: {e}")))?;
        let mut p = HeaderValue::from_str(&proof)
            .map_err(|_| OktaError::Config("DPoP proof is not a header value".into()))?;
        p.set_sensitive(true);
        Ok((v, Some(p)))
    }

    /// Client credentials grant with a `private_key_jwt` assertion. A service app that requires
    /// DPoP answers `invalid_dpop_proof` to a request without a proof: the client then switches
    /// to DPoP for good, and retries once more when the server asks for a nonce.
    async fn fetch_token(
        &self,
        signer: &OAuthSigner,
        class: Class,
    ) -> Result<(SecretString, Duration), OktaError> {
        let url = self.resolve("/oauth2/v1/token")?;
        let aud = url.as_str().to_owned();
        let mut attempt = 0u32;
        let mut switched = false;
        let mut nonce_retried = false;
        loop {
            attempt += 1;
            let assertion = signer
                .assertion(&aud, &self.inner.opts.clock)
                .map_err(|e| OktaError::Config(format!("signing the client assertion: {e}")))?;
            let scope = signer.scopes.join(" ");
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ];
            let mut req = self
                .inner
                .http
                .post(url.clone())
                .header("Accept", "application/json")
                .form(&form);
            let (dpop_on, nonce) = {
                let d = dpop_state(signer);
                (d.enabled, d.token_nonce.clone())
            };
            if dpop_on {
                let proof = DpopKey::process()
                    .and_then(|k| {
                        k.proof(
                            "POST",
                            &url,
                            self.inner.opts.clock.now().timestamp(),
                            nonce.as_deref(),
                            None,
                        )
                    })
                    .map_err(|e| OktaError::Config(format!("DPoP proof: {e}")))?;
                let mut p = HeaderValue::from_str(&proof)
                    .map_err(|_| OktaError::Config("DPoP proof is not a header value".into()))?;
                p.set_sensitive(true);
                req = req.header("DPoP", p);
            }
            let out = self
                .send_once(Bucket::OAuthToken, class, "/oauth2/v1/token", req, None)
                .await;
            if let Ok((_, headers, _)) = &out {
                if let Some(n) = dpop::nonce(headers).filter(|_| dpop_on) {
                    dpop_state(signer).token_nonce = Some(n);
                }
            }
            match out {
                Ok((status, _, body)) if status.is_success() => {
                    let t: TokenResponse =
                        serde_json::from_slice(&body).map_err(|e| OktaError::Malformed {
                            path: "/oauth2/v1/token".into(),
                            detail: e.to_string(),
                        })?;
                    let expected = if dpop_on { "DPoP" } else { "Bearer" };
                    if t.token_type
                        .as_deref()
                        .is_some_and(|tt| !tt.eq_ignore_ascii_case(expected))
                    {
                        return Err(OktaError::Config(format!(
                            "token endpoint issued a {:?} token; expected {expected}",
                            t.token_type.unwrap_or_default()
                        )));
                    }
                    let ttl = Duration::from_secs(t.expires_in.unwrap_or(3600).clamp(60, 86_400));
                    return Ok((SecretString::from(t.access_token), ttl));
                }
                Ok((status, headers, body)) => {
                    let err = serde_json::from_slice::<OAuthErrorBody>(&body).ok();
                    let code = err.as_ref().map(|e| e.error.as_str()).unwrap_or("");
                    if status == StatusCode::BAD_REQUEST {
                        if code == "invalid_dpop_proof" && !dpop_on && !switched {
                            // The service app requires DPoP: from now on, every token request
                            // carries a proof and every token is DPoP-bound.
                            tracing::info!("the OAuth service app requires DPoP; switching to DPoP-bound tokens");
                            dpop_state(signer).enabled = true;
                            switched = true;
                            attempt -= 1;
                            continue;
                        }
                        if code == "use_dpop_nonce"
                            && dpop_on
                            && !nonce_retried
                            && dpop::nonce(&headers).is_some()
                        {
                            nonce_retried = true;
                            attempt -= 1;
                            continue;
                        }
                    }
                    let detail = err
                        .map(|e| format!("{}: {}", e.error, e.error_description))
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    match self.classify(status, attempt) {
                        Some(wait) => {
                            self.pause(wait).await?;
                            continue;
                        }
                        None if status == StatusCode::BAD_REQUEST
                            || status == StatusCode::UNAUTHORIZED =>
                        {
                            return Err(OktaError::Unauthorized {
                                detail: format!("OAuth token request refused: {detail}"),
                            })
                        }
                        None => {
                            return Err(self.error_for(
                                status,
                                "/oauth2/v1/token",
                                &body,
                                Bucket::OAuthToken,
                            ))
                        }
                    }
                }
                Err(e) => {
                    if matches!(e, OktaError::Cancelled)
                        || attempt >= self.inner.opts.max_transient_attempts
                    {
                        return Err(e);
                    }
                    self.pause(backoff(self.inner.opts.base_backoff, attempt))
                        .await?;
                }
            }
        }
    }
}

pub(super) fn dpop_state(signer: &OAuthSigner) -> std::sync::MutexGuard<'_, DpopState> {
    signer.dpop.lock().unwrap_or_else(|e| e.into_inner())
}
