//! The `[email]` section: SMTP relay, credentials, sender and recipients.

use super::*;

pub(super) fn email(
    raw: RawEmail,
    env: &Env,
    sources: &mut SecretSources,
) -> Result<EmailConfig, ConfigError> {
    const URL_KEY: &str = "email.smtp_url";
    let smtp_url = required(
        URL_KEY,
        &raw.smtp_url,
        " (e.g. \"smtps://user@smtp.example.com:465\")",
    )?
    .to_string();
    // The URL may hold a password by mistake, so no message here repeats it.
    let url = Url::parse(&smtp_url)
        .map_err(|e| ConfigError::new(URL_KEY, format!("invalid URL: {e}")))?;
    if url.password().is_some() {
        return Err(ConfigError::new(
            URL_KEY,
            "must not contain a password; put it in smtp_password_env \
             (or smtp_password_file / smtp_password_credential)",
        ));
    }
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None | Some("required" | "opportunistic")) | ("smtps", None) => {}
        ("smtp" | "smtps", Some(other)) => {
            return Err(ConfigError::new(
                URL_KEY,
                format!(
                    "unsupported tls={other:?} (smtp:// accepts ?tls=required or ?tls=opportunistic; smtps:// needs none)"
                ),
            ))
        }
        (scheme, _) => {
            return Err(ConfigError::new(
                URL_KEY,
                format!("scheme must be smtp:// or smtps://, got {scheme:?}"),
            ))
        }
    }
    if !matches!(url.host_str(), Some(h) if !h.is_empty()) {
        return Err(ConfigError::new(URL_KEY, "has no host"));
    }

    let password = match pick_one(
        "email",
        &[
            (
                "smtp_password_env",
                Via::Env,
                raw.smtp_password_env.as_ref(),
            ),
            (
                "smtp_password_file",
                Via::File,
                raw.smtp_password_file.as_ref(),
            ),
            (
                "smtp_password_credential",
                Via::Credential,
                raw.smtp_password_credential.as_ref(),
            ),
        ],
    )? {
        None => None,
        Some((field, via, name)) => {
            if url.username().is_empty() {
                return Err(ConfigError::new(
                    URL_KEY,
                    format!(
                        "{field} is set but the URL has no user name: add the login to the URL \
                         (e.g. \"smtps://USER@smtp.example.com\"), or remove {field} if the \
                         relay needs no login"
                    ),
                ));
            }
            if url.scheme() == "smtp" && tls.is_none() && !is_loopback_host(&url) {
                return Err(ConfigError::new(
                    URL_KEY,
                    "plain smtp:// would send the password unencrypted; use smtps:// or add ?tls=required",
                ));
            }
            let (secret, source) = read_secret(&format!("email.{field}"), via, name, env)?;
            sources.smtp_password = Some(source);
            Some(secret)
        }
    };

    let from = required(
        "email.from",
        &raw.from,
        " (e.g. \"okta-provwatch@acme.example\")",
    )?;
    let from = mailbox("email.from", from)?;
    let to_list = raw.to.map(|l| l.0).unwrap_or_default();
    if to_list.is_empty() {
        return Err(ConfigError::new(
            "email.to",
            "must list at least one address (or remove [email] to turn email alerts off)",
        ));
    }
    let to = to_list
        .iter()
        .map(|a| mailbox("email.to", a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EmailConfig {
        smtp_url,
        password,
        from,
        to,
    })
}

fn mailbox(key: &str, s: &str) -> Result<Mailbox, ConfigError> {
    Mailbox::from_str(s.trim())
        .map_err(|e| ConfigError::new(key, format!("invalid address {s:?}: {e}")))
}
