//! The email channel: delivers an [`AlertMessage`] over SMTP with lettre, as a
//! `multipart/alternative` with a text part and an HTML part carrying the same
//! content.
//!
//! Owns the translation of SMTP outcomes into [`DeliveryError`]: 4xx replies,
//! refused or dropped connections and timeouts are transient; 5xx replies
//! (bad recipient, auth rejected, policy) and TLS/config problems are
//! permanent. The SMTP password is held as a [`SecretString`] and never
//! appears in `Debug`, logs or errors.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::config::EmailConfig;

use super::message::AlertMessage;
pub use super::message::DeliveryError;

/// Sends alerts by email through one SMTP relay.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// `host:port`, for messages; never includes userinfo.
    server: String,
    username: Option<String>,
    /// Kept only to scrub it from error text a server might echo back.
    password: Option<SecretString>,
    timeout: Duration,
}

impl fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("server", &self.server)
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_some() {
                    "[redacted]"
                } else {
                    "none"
                },
            )
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl EmailNotifier {
    pub fn new(cfg: &EmailConfig, timeout: Duration) -> anyhow::Result<Self> {
        let url = url::Url::parse(&cfg.smtp_url).context("email smtp_url is not a valid URL")?;
        if url.password().is_some() {
            // Config validation should already refuse this; don't rely on it.
            anyhow::bail!("email smtp_url must not contain a password; configure it separately");
        }
        if cfg.to.is_empty() {
            anyhow::bail!("email needs at least one recipient");
        }
        let host = url.host_str().context("email smtp_url has no host")?;
        let server = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let username = (!url.username().is_empty())
            .then(|| {
                percent_encoding_decode(url.username())
                    .context("email smtp_url username is not valid UTF-8")
            })
            .transpose()?;

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&cfg.smtp_url)
            .map_err(|e| anyhow::anyhow!("email smtp_url not usable: {e}"))?
            .timeout(Some(timeout))
            // Alerts are bursty and rare: a couple of warm connections is
            // plenty, and idle ones are dropped before relays time them out.
            .pool_config(
                PoolConfig::new()
                    .max_size(2)
                    .idle_timeout(Duration::from_secs(60)),
            );
        if let Some(password) = &cfg.password {
            let user = username
                .clone()
                .context("email password is set but smtp_url has no username (smtp://USER@host)")?;
            builder =
                builder.credentials(Credentials::new(user, password.expose_secret().to_string()));
        }
        Ok(EmailNotifier {
            transport: builder.build(),
            from: cfg.from.clone(),
            to: cfg.to.clone(),
            server,
            username,
            password: cfg.password.clone(),
            timeout,
        })
    }

    /// Builds the email for `msg` without sending it (also used by tests and
    /// `--dry-run` style previews).
    pub fn build_message(&self, msg: &AlertMessage) -> Result<Message, DeliveryError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(msg.email_subject())
            .date_now();
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                msg.render_text(),
                msg.render_html(),
            ))
            // Addresses were validated at config time, so this is a bug, not
            // something a retry could fix.
            .map_err(|e| DeliveryError::permanent(format!("could not build email: {e}")))
    }

    /// Sends `msg` to every configured recipient; `Ok` means the relay
    /// accepted it for all of them.
    pub async fn send(&self, msg: &AlertMessage) -> Result<(), DeliveryError> {
        let email = self.build_message(msg)?;
        match tokio::time::timeout(self.timeout, self.transport.send(email)).await {
            Ok(Ok(_response)) => Ok(()),
            Ok(Err(err)) => {
                let mapped = self.classify(&err);
                tracing::debug!(error = %mapped, "email delivery failed");
                Err(mapped)
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Doctor check: connects (and authenticates, when configured) and sends
    /// NOOP, without sending mail.
    pub async fn check(&self) -> Result<String, DeliveryError> {
        match tokio::time::timeout(self.timeout, self.transport.test_connection()).await {
            Ok(Ok(true)) => Ok(format!(
                "SMTP server {} reachable{}",
                self.server,
                match &self.username {
                    Some(u) if self.password.is_some() => format!(", authenticated as {u}"),
                    _ => String::new(),
                }
            )),
            Ok(Ok(false)) => Err(DeliveryError::transient(format!(
                "SMTP server {} connected but did not answer NOOP",
                self.server
            ))),
            Ok(Err(err)) => Err(self.classify(&err)),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> DeliveryError {
        DeliveryError::transient(format!(
            "SMTP server {} timed out after {:?}",
            self.server, self.timeout
        ))
    }

    fn classify(&self, err: &lettre::transport::smtp::Error) -> DeliveryError {
        let mut text = format!("SMTP server {}: {}", self.server, error_chain(err));
        if let Some(pw) = &self.password {
            let pw = pw.expose_secret();
            if !pw.is_empty() {
                // A relay that echoes the AUTH exchange would show it base64-encoded.
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD;
                let user = self.username.as_deref().unwrap_or_default();
                for form in [
                    pw.to_owned(),
                    b64.encode(pw),
                    b64.encode(format!("\0{user}\0{pw}")),
                ] {
                    text = text.replace(&form, "[redacted]");
                }
            }
        }
        // Permanent only when retrying cannot help: the relay said 5xx, the
        // TLS setup is wrong, or lettre found the configuration unusable
        // (e.g. no common AUTH mechanism). Everything else, including
        // refused connections and 4xx replies, is retried.
        if err.is_permanent() || err.is_tls() || err.is_client() {
            DeliveryError::permanent(text)
        } else {
            DeliveryError::transient(text)
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        src = e.source();
    }
    out
}

/// `url` keeps userinfo percent-encoded; lettre's own URL parsing decodes it,
/// so do the same for the username.
fn percent_encoding_decode(s: &str) -> anyhow::Result<String> {
    Ok(percent_encoding::percent_decode_str(s)
        .decode_utf8()?
        .into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_is_percent_decoded() {
        assert_eq!(
            percent_encoding_decode("alerts%40example.com").unwrap(),
            "alerts@example.com"
        );
        assert_eq!(percent_encoding_decode("a+b").unwrap(), "a+b");
    }
}
