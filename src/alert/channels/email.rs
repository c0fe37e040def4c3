//! The email channel: delivers an [`AlertMessage`] over SMTP with lettre, as a
//! `multipart/alternative` with a text part and an HTML part carrying the same
//! content.
//!
//! Owns the email layout ([`email_subject`], the text part from
//! [`AlertMessage::render_text`], [`render_html`]), bounded per line and in total so that no
//! failure reason, however large, makes a mail a relay refuses (issue 10 defect 5: a 20 MB
//! reason once made a 41.6 MB mail).
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

pub use super::DeliveryError;
use super::{Channel, ChannelFuture};
use crate::alert::message::{
    escape_html, fmt_time, one_line, safe_link, truncate_chars, AlertLine, AlertMessage, Severity,
    MAX_LINE_FIELD_CHARS, MAX_SUMMARY_CHARS, PRODUCT, TEXT_MAX_BYTES, TEXT_MAX_LINES,
};
use std::fmt::Write as _;

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
            .subject(email_subject(msg))
            .date_now();
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                msg.render_text(),
                render_html(msg),
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

impl Channel for EmailNotifier {
    fn send<'a>(&'a self, msg: &'a AlertMessage) -> ChannelFuture<'a, ()> {
        Box::pin(EmailNotifier::send(self, msg))
    }

    fn check(&self) -> ChannelFuture<'_, String> {
        Box::pin(EmailNotifier::check(self))
    }
}

/// The user (and app), linked to their admin console page when the line has one.
fn user_cell(l: &AlertLine) -> String {
    match l.safe_link() {
        Some(url) => format!(
            "<a href=\"{}\">{}</a>",
            escape_html(url),
            escape_html(&l.who())
        ),
        None => escape_html(&l.who()),
    }
}

/// The reason, and the next step under it when there is one, escaped and bounded.
fn reason_cell(l: &AlertLine) -> String {
    let mut cell = escape_html(&truncate_chars(l.reason_or_default(), MAX_LINE_FIELD_CHARS));
    if let Some(step) = l.next_step_text() {
        cell.push_str("<br><i>Next: ");
        cell.push_str(&escape_html(&step));
        cell.push_str("</i>");
    }
    cell
}

fn html_color(s: Severity) -> &'static str {
    match s {
        Severity::Urgent => "#b00020",
        Severity::Warning => "#b26a00",
        Severity::Info => "#1a5fb4",
    }
}

/// `[URGENT] Salesforce: 3 users failing provisioning (okta-provwatch)`.
pub fn email_subject(msg: &AlertMessage) -> String {
    // A header value must stay on one line whatever the title holds.
    let title = truncate_chars(&one_line(&msg.title), 200);
    format!("[{}] {title} ({PRODUCT})", msg.subject_tag())
}

/// A complete HTML document with the same content as [`AlertMessage::render_text`] (the
/// HTML part), within the same line and byte bounds. Every value is escaped.
pub fn render_html(msg: &AlertMessage) -> String {
    let mut out = String::new();
    let color = html_color(msg.severity);
    out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    out.push_str(&escape_html(&email_subject(msg)));
    out.push_str("</title></head>\n<body style=\"font-family:sans-serif\">\n");
    let _ = writeln!(
        out,
        "<h2><span style=\"color:{color}\">[{}]</span> {}</h2>",
        msg.subject_tag(),
        escape_html(&truncate_chars(&one_line(&msg.title), MAX_LINE_FIELD_CHARS))
    );
    if !msg.summary.trim().is_empty() {
        let _ = writeln!(
            out,
            "<p>{}</p>",
            escape_html(&truncate_chars(msg.summary.trim(), MAX_SUMMARY_CHARS))
        );
    }
    let mut shown = 0;
    if !msg.lines.is_empty() {
        out.push_str(
        "<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\n\
         <tr><th>User</th><th>Operation</th><th>Reason</th><th>First seen</th><th>Attempts</th></tr>\n",
    );
        for l in msg.lines.iter().take(TEXT_MAX_LINES) {
            let row = format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                user_cell(l),
                escape_html(&truncate_chars(&l.operation, MAX_LINE_FIELD_CHARS)),
                reason_cell(l),
                escape_html(&fmt_time(&l.first_seen)),
                l.attempts,
            );
            // Escaping can grow a field sixfold; the byte budget holds whatever the lines say.
            if out.len() + row.len() > TEXT_MAX_BYTES {
                break;
            }
            out.push_str(&row);
            shown += 1;
        }
        out.push_str("</table>\n");
    }
    let hidden = msg.total() - shown;
    if hidden > 0 {
        let _ = writeln!(out, "<p>…and {hidden} more</p>");
    }
    if let Some(app) = msg.app_display() {
        let _ = writeln!(out, "<p>App: {}</p>", escape_html(&app));
    }
    if let Some(url) = safe_link(msg.admin_url.as_deref()) {
        let _ = writeln!(
            out,
            "<p><a href=\"{0}\">Open in Okta admin</a> ({0})</p>",
            escape_html(url)
        );
    }
    let _ = writeln!(
        out,
        "<p style=\"color:#666;font-size:small\">{}</p>",
        escape_html(&msg.footer_text())
    );
    out.push_str("</body></html>\n");
    out
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
    use crate::alert::message::MessageKind;

    fn msg(n: usize) -> AlertMessage {
        crate::alert::message::tests::msg(n)
    }

    #[test]
    fn subject_style() {
        assert_eq!(
            email_subject(&msg(3)),
            "[URGENT] Salesforce: 3 users failing provisioning (okta-provwatch)"
        );
        let mut m = msg(1);
        m.kind = MessageKind::Resolved;
        m.title = "a\r\nBcc: evil@x.test".into();
        assert_eq!(
            email_subject(&m),
            "[RESOLVED] a Bcc: evil@x.test (okta-provwatch)"
        );
    }

    #[test]
    fn html_escapes_everything() {
        let mut m = msg(1);
        m.title = "<script>alert(1)</script>".into();
        m.summary = "a & b \"quoted\" 'single'".into();
        m.lines[0].user_login = "<img src=x onerror=alert(1)>@x".into();
        m.lines[0].reason = Some("</td><td>".into());
        m.app_label = Some("<b>app</b>".into());
        m.admin_url = Some("https://x.test/?a=1&b=\"2\"".into());
        let html = render_html(&m);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("</td><td></td>"), "{html}");
        assert!(!html.contains("<b>app"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b &quot;quoted&quot; &#39;single&#39;"));
        assert!(html.contains("href=\"https://x.test/?a=1&amp;b=&quot;2&quot;\""));
    }

    #[test]
    fn email_truncates_with_more_note() {
        let mut m = msg(3);
        m.total_lines = 10;
        let text = m.render_text();
        assert!(text.contains("…and 7 more"), "{text}");
        assert!(render_html(&m).contains("…and 7 more"));
        let big = msg(TEXT_MAX_LINES + 5);
        assert!(big.render_text().contains("…and 5 more"));
    }

    #[test]
    fn text_and_html_carry_the_same_facts() {
        let m = msg(2);
        let (text, html) = (m.render_text(), render_html(&m));
        for needle in [
            "Salesforce: 2 users failing provisioning",
            "user1@example.com",
            "PUSH_PROFILE",
            "Salesforce API: INVALID_FIELD",
            "2024-05-01 12:30 UTC",
            "https://acme-admin.okta.com/admin/app/salesforce/instance/0oa1salesforce",
        ] {
            assert!(text.contains(needle), "text lacks {needle}");
            assert!(html.contains(needle), "html lacks {needle}");
        }
    }

    #[test]
    fn email_is_bounded_whatever_the_lines_hold() {
        // A row queued before reasons were bounded can hold megabytes per line.
        let mut m = msg(TEXT_MAX_LINES + 50);
        for l in &mut m.lines {
            l.reason = Some("<&>".repeat(200_000));
            l.next_step = Some("n".repeat(100_000));
        }
        m.summary = "s".repeat(5_000_000);
        m.title = "t".repeat(1_000_000);
        let (text, html) = (m.render_text(), render_html(&m));
        assert!(
            text.len() < TEXT_MAX_BYTES + 16 * 1024,
            "text {}",
            text.len()
        );
        assert!(
            html.len() < TEXT_MAX_BYTES + 32 * 1024,
            "html {}",
            html.len()
        );
        assert!(html.contains("…and ") && text.contains("…and "));
        assert!(email_subject(&m).chars().count() < 300);
    }

    #[test]
    fn next_step_is_escaped_in_html() {
        let mut m = msg(1);
        m.lines[0].next_step = Some("<b>retry</b>".into());
        let html = render_html(&m);
        assert!(
            html.contains("<i>Next: &lt;b&gt;retry&lt;/b&gt;</i>"),
            "{html}"
        );
    }

    #[test]
    fn unsafe_admin_links_are_dropped() {
        let mut m = msg(1);
        m.admin_url = Some("javascript:alert(1)".into());
        assert!(!render_html(&m).contains("javascript:"));
        assert!(!m.render_text().contains("javascript:"));
    }

    #[test]
    fn username_is_percent_decoded() {
        assert_eq!(
            percent_encoding_decode("alerts%40example.com").unwrap(),
            "alerts@example.com"
        );
        assert_eq!(percent_encoding_decode("a+b").unwrap(), "a+b");
    }
}
