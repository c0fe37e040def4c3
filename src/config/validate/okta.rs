//! The `[okta]` section: org URL, API token or OAuth service app (key, scopes, DPoP), rate
//! limit share and request timeout.

use super::*;

pub(super) fn okta(
    raw: RawOkta,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<OktaConfig, ConfigError> {
    let org_url = org_url(required(
        "okta.org_url",
        &raw.org_url,
        " (your Okta org, e.g. \"https://acme.okta.com\")",
    )?)?;

    let token = pick_one(
        "okta",
        &[
            ("api_token_env", Via::Env, raw.api_token_env.as_ref()),
            ("api_token_file", Via::File, raw.api_token_file.as_ref()),
            (
                "api_token_credential",
                Via::Credential,
                raw.api_token_credential.as_ref(),
            ),
        ],
    )?;
    let auth = match (token, raw.oauth) {
        (Some((field, _, _)), Some(_)) => {
            return Err(ConfigError::new(
                "okta",
                format!("both {field} and an [okta.oauth] table are set; choose one"),
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                "okta",
                "no API credential: set one of api_token_env, api_token_file, \
                 api_token_credential, or an [okta.oauth] table",
            ))
        }
        (Some((field, via, name)), None) => {
            let key = format!("okta.{field}");
            let (token, source) = read_secret(&key, via, name, env)?;
            if token.expose_secret().starts_with("SSWS ") {
                return Err(ConfigError::new(
                    key,
                    format!("{source} starts with \"SSWS \"; store only the token itself"),
                ));
            }
            sources.okta = Some(source);
            OktaAuth::ApiToken(token)
        }
        (None, Some(oauth)) => OktaAuth::OAuth(self::oauth(oauth, env, sources)?),
    };

    let rate_limit_share = raw.rate_limit_share.unwrap_or(DEFAULT_RATE_LIMIT_SHARE);
    // Written so NaN fails too.
    if !(rate_limit_share > 0.0 && rate_limit_share <= 1.0) {
        return Err(ConfigError::new(
            "okta.rate_limit_share",
            format!("must be in (0, 1], got {rate_limit_share}"),
        ));
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
        return Err(ConfigError::new(
            "okta.max_in_flight",
            format!("must be between 1 and {MAX_IN_FLIGHT}, got {max_in_flight}"),
        ));
    }
    let request_timeout = positive_duration(
        "okta.request_timeout",
        &raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
        max::REQUEST_TIMEOUT,
    )?;
    let admin_url = match raw.admin_url.as_ref().map(|t| t.0.as_str()) {
        Some(s) => Some(crate::config::admin::parse(s)?),
        None => None,
    };
    Ok(OktaConfig {
        org_url,
        auth,
        rate_limit_share,
        max_in_flight: max_in_flight as usize,
        request_timeout,
        admin_url,
    })
}

fn org_url(s: &str) -> Result<Url, ConfigError> {
    const KEY: &str = "okta.org_url";
    let url = Url::parse(s).map_err(|e| {
        let hint = if e == url::ParseError::RelativeUrlWithoutBase {
            " (include the scheme, e.g. \"https://acme.okta.com\")"
        } else {
            ""
        };
        ConfigError::new(KEY, format!("invalid URL {s:?}: {e}{hint}"))
    })?;
    require_https(KEY, &url)?;
    let Some(host) = url.host_str() else {
        return Err(ConfigError::new(KEY, format!("{s:?} has no host")));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            KEY,
            "must not contain a user name or password",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::new(
            KEY,
            format!(
                "must be the org's base URL with no path, query or fragment, e.g. \"{}://{}\"",
                url.scheme(),
                url.host_str().unwrap_or("acme.okta.com"),
            ),
        ));
    }
    // The Admin Console host answers some API calls but not all; catch it early.
    let first_label = host.split('.').next().unwrap_or("");
    if first_label.ends_with("-admin") && host.contains("okta") {
        return Err(ConfigError::new(
            KEY,
            format!(
                "{host} is the Admin Console; use the org URL without \"-admin\", e.g. \"https://{}{}\"",
                first_label.trim_end_matches("-admin"),
                &host[first_label.len()..],
            ),
        ));
    }
    Ok(url)
}

fn oauth(
    raw: RawOAuth,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<OAuthConfig, ConfigError> {
    let client_id = required(
        "okta.oauth.client_id",
        &raw.client_id,
        " (the API service app's client ID, e.g. \"0oa...\")",
    )?
    .to_string();
    let key_source = pick_one(
        "okta.oauth",
        &[
            ("private_key_file", Via::File, raw.private_key_file.as_ref()),
            ("private_key_env", Via::Env, raw.private_key_env.as_ref()),
            (
                "private_key_credential",
                Via::Credential,
                raw.private_key_credential.as_ref(),
            ),
        ],
    )?;
    let Some((field, via, name)) = key_source else {
        return Err(ConfigError::new(
            "okta.oauth",
            "no private key: set one of private_key_file, private_key_env, private_key_credential",
        ));
    };
    let key = format!("okta.oauth.{field}");
    let (pem, source) = read_secret(&key, via, name, env)?;
    // Environment variables often carry PEM with literal "\n" escapes.
    let pem = if via == Via::Env && !pem.expose_secret().contains('\n') {
        SecretString::from(pem.expose_secret().replace("\\n", "\n").trim().to_string())
    } else {
        pem
    };
    {
        let text = pem.expose_secret();
        if !(text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----")) {
            return Err(ConfigError::new(
                key,
                format!(
                    "{source} does not hold a PEM private key (expected \"-----BEGIN PRIVATE KEY-----\")"
                ),
            ));
        }
    }
    sources.okta = Some(source);

    let key_id = match &raw.key_id {
        None => None,
        Some(t) if t.0.trim().is_empty() => {
            return Err(ConfigError::new(
                "okta.oauth.key_id",
                "must not be empty (omit it to send no kid)",
            ))
        }
        Some(t) => Some(t.0.trim().to_string()),
    };
    let scopes = match raw.scopes {
        None => DEFAULT_OAUTH_SCOPES.iter().map(|s| s.to_string()).collect(),
        Some(TextList(list)) => {
            if list.is_empty() {
                return Err(ConfigError::new(
                    "okta.oauth.scopes",
                    "must list at least one scope",
                ));
            }
            if let Some(bad) = list
                .iter()
                .find(|s| s.is_empty() || s.contains(char::is_whitespace))
            {
                return Err(ConfigError::new(
                    "okta.oauth.scopes",
                    format!(
                        "invalid scope {bad:?} (one scope per list entry, e.g. \"okta.logs.read\")"
                    ),
                ));
            }
            list
        }
    };
    Ok(OAuthConfig {
        client_id,
        private_key_pem: pem,
        key_id,
        scopes,
    })
}
