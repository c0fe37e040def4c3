//! The channel-neutral alert message and its renderings.
//!
//! An [`AlertMessage`] is what the alerting pipeline decides to say; it is
//! stored as JSON in the outbox and only rendered at send time, so every
//! channel (Slack Block Kit, email text + HTML) renders the same facts from the
//! same value. This module also owns [`DeliveryError`], the retry contract all
//! channels report in.
//!
//! Renderers treat every string in the message as untrusted (user logins and
//! Okta error reasons come from the org): HTML escapes everything, Slack
//! `mrkdwn` escapes `&`, `<`, `>` as Slack requires, and every rendering stays
//! inside the target's size limits by truncating with "…and N more".

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Product name used in subjects and footers.
pub const PRODUCT: &str = "okta-provwatch";

/// Slack Block Kit limits (https://api.slack.com/reference/block-kit).
pub const SLACK_MAX_BLOCKS: usize = 50;
pub const SLACK_MAX_SECTION_TEXT: usize = 3000;
pub const SLACK_MAX_HEADER_TEXT: usize = 150;
pub const SLACK_MAX_BUTTON_TEXT: usize = 75;
pub const SLACK_MAX_BUTTON_URL: usize = 3000;
/// User lines shown as their own section; the rest collapse into
/// "…and N more". Header, summary, overflow note, context and actions take the
/// remaining blocks, with headroom under [`SLACK_MAX_BLOCKS`].
pub const SLACK_MAX_LINE_BLOCKS: usize = 40;
/// User lines listed in an email before collapsing into "…and N more".
pub const EMAIL_MAX_LINES: usize = 200;

/// How loudly to alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Urgent,
    Warning,
    Info,
}

impl Severity {
    /// Upper-case tag used in subjects, e.g. `URGENT`.
    pub fn tag(self) -> &'static str {
        match self {
            Severity::Urgent => "URGENT",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        }
    }

    fn slack_emoji(self) -> &'static str {
        match self {
            Severity::Urgent => ":rotating_light:",
            Severity::Warning => ":warning:",
            Severity::Info => ":information_source:",
        }
    }

    fn html_color(self) -> &'static str {
        match self {
            Severity::Urgent => "#b00020",
            Severity::Warning => "#b26a00",
            Severity::Info => "#1a5fb4",
        }
    }
}

/// Why the message is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Firing,
    Resolved,
    Digest,
    Health,
    Test,
}

impl MessageKind {
    pub fn label(self) -> &'static str {
        match self {
            MessageKind::Firing => "Firing",
            MessageKind::Resolved => "Resolved",
            MessageKind::Digest => "Digest",
            MessageKind::Health => "Health",
            MessageKind::Test => "Test",
        }
    }
}

/// One user's failing provisioning task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertLine {
    pub user_login: String,
    pub user_id: String,
    pub operation: String,
    pub reason: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub attempts: u32,
}

/// One notification, independent of the channel that will carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMessage {
    pub kind: MessageKind,
    pub severity: Severity,
    /// e.g. "Salesforce: 3 users failing provisioning".
    pub title: String,
    pub app_id: Option<String>,
    pub app_label: Option<String>,
    /// Link to the app's page in the Okta admin console.
    pub admin_url: Option<String>,
    /// One paragraph of plain text.
    pub summary: String,
    pub lines: Vec<AlertLine>,
    /// How many lines there were before the producer truncated `lines`; values
    /// below `lines.len()` are treated as `lines.len()`.
    #[serde(default)]
    pub total_lines: usize,
    pub group_key: String,
    pub created_at: DateTime<Utc>,
}

/// Why a channel could not deliver; decides whether the outbox retries.
///
/// Messages are built by the channels from status codes and error codes only,
/// never from URLs or credentials, so they are safe to log and store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: rate limits, 5xx, timeouts, refused connections, SMTP 4xx.
    #[error("transient delivery failure: {message}")]
    Transient {
        message: String,
        /// The receiver's own back-off hint (Slack `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Retrying will not help until configuration changes.
    #[error("permanent delivery failure: {message}")]
    Permanent { message: String },
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError::Transient {
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            message: message.into(),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, DeliveryError::Transient { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DeliveryError::Transient { retry_after, .. } => *retry_after,
            DeliveryError::Permanent { .. } => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            DeliveryError::Transient { message, .. } | DeliveryError::Permanent { message } => {
                message
            }
        }
    }
}

// ---------------------------------------------------------------------------
// escaping and truncation helpers

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn escape_mrkdwn_char(c: char, out: &mut String) {
    // Slack's three control characters; everything else is literal.
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        _ => out.push(c),
    }
}

/// Escapes text for Slack `mrkdwn` so user data cannot form links or mentions.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        escape_mrkdwn_char(c, &mut out);
    }
    out
}

/// Cuts `s` to at most `max` characters, ending in `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Escapes for `mrkdwn` and fits the *escaped* text into `max` characters
/// without splitting an entity, since Slack counts the escaped form.
pub fn escape_mrkdwn_truncated(s: &str, max: usize) -> String {
    let escaped = escape_mrkdwn(s);
    if escaped.chars().count() <= max {
        return escaped;
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    let mut piece = String::new();
    for c in s.chars() {
        piece.clear();
        escape_mrkdwn_char(c, &mut piece);
        let n = piece.chars().count();
        if used + n > budget {
            break;
        }
        out.push_str(&piece);
        used += n;
    }
    out.push('…');
    out
}

/// Only http(s) links are rendered as links or buttons; anything else (a
/// `javascript:` URL from a bad config) is dropped.
fn safe_link(url: Option<&str>) -> Option<&str> {
    let url = url?.trim();
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then_some(url)
}

fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn fmt_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl AlertLine {
    fn reason_or_default(&self) -> &str {
        self.reason
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or("no reason given")
    }

    /// `login — operation — reason — first seen … — N attempts`, plain text.
    pub fn render_text(&self) -> String {
        format!(
            "{} — {} — {} — first seen {} — {}",
            one_line(&self.user_login),
            one_line(&self.operation),
            one_line(self.reason_or_default()),
            fmt_time(&self.first_seen),
            plural(u64::from(self.attempts), "attempt", "attempts"),
        )
    }

    /// The same line as Slack `mrkdwn`, within the section text limit.
    pub fn render_mrkdwn(&self) -> String {
        let login = escape_mrkdwn_truncated(&one_line(&self.user_login), 500);
        let op = escape_mrkdwn_truncated(&one_line(&self.operation), 200);
        let tail = format!(
            " — first seen {} — {}",
            fmt_time(&self.first_seen),
            plural(u64::from(self.attempts), "attempt", "attempts"),
        );
        let head = format!("*{login}* — {op} — ");
        let room =
            SLACK_MAX_SECTION_TEXT.saturating_sub(head.chars().count() + tail.chars().count());
        let reason = escape_mrkdwn_truncated(&one_line(self.reason_or_default()), room);
        format!("{head}{reason}{tail}")
    }
}

impl AlertMessage {
    /// Lines that exist but are not in `lines` (producer-side truncation).
    fn total(&self) -> usize {
        self.total_lines.max(self.lines.len())
    }

    fn subject_tag(&self) -> &'static str {
        match self.kind {
            MessageKind::Resolved => "RESOLVED",
            MessageKind::Test => "TEST",
            _ => self.severity.tag(),
        }
    }

    fn app_display(&self) -> Option<String> {
        match (self.app_label.as_deref(), self.app_id.as_deref()) {
            (Some(l), Some(id)) => Some(format!("{l} ({id})")),
            (Some(l), None) => Some(l.to_string()),
            (None, Some(id)) => Some(id.to_string()),
            (None, None) => None,
        }
    }

    fn footer_text(&self) -> String {
        format!(
            "Severity: {} · {} · group {} · generated {} by {PRODUCT}",
            self.severity.tag(),
            self.kind.label(),
            one_line(&self.group_key),
            fmt_time(&self.created_at),
        )
    }

    /// `[URGENT] Salesforce: 3 users failing provisioning (okta-provwatch)`.
    pub fn email_subject(&self) -> String {
        // A header value must stay on one line whatever the title holds.
        let title = truncate_chars(&one_line(&self.title), 200);
        format!("[{}] {title} ({PRODUCT})", self.subject_tag())
    }

    /// Plain-text body (email text part, logs, CLI).
    pub fn render_text(&self) -> String {
        self.render_text_limited(EMAIL_MAX_LINES)
    }

    fn render_text_limited(&self, max_lines: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "[{}] {}", self.subject_tag(), one_line(&self.title));
        out.push('\n');
        if !self.summary.trim().is_empty() {
            let _ = writeln!(out, "{}", self.summary.trim());
            out.push('\n');
        }
        let shown = self.lines.len().min(max_lines);
        for line in &self.lines[..shown] {
            let _ = writeln!(out, "- {}", line.render_text());
        }
        let hidden = self.total() - shown;
        if hidden > 0 {
            let _ = writeln!(out, "…and {hidden} more");
        }
        if shown > 0 || hidden > 0 {
            out.push('\n');
        }
        if let Some(app) = self.app_display() {
            let _ = writeln!(out, "App: {}", one_line(&app));
        }
        if let Some(url) = safe_link(self.admin_url.as_deref()) {
            let _ = writeln!(out, "Okta admin: {url}");
        }
        let _ = writeln!(out, "{}", self.footer_text());
        out
    }

    /// A complete HTML document with the same content as [`render_text`]
    /// (email HTML part). Every value is escaped.
    ///
    /// [`render_text`]: Self::render_text
    pub fn render_html(&self) -> String {
        let mut out = String::new();
        let color = self.severity.html_color();
        out.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
        out.push_str(&escape_html(&self.email_subject()));
        out.push_str("</title></head>\n<body style=\"font-family:sans-serif\">\n");
        let _ = writeln!(
            out,
            "<h2><span style=\"color:{color}\">[{}]</span> {}</h2>",
            self.subject_tag(),
            escape_html(&one_line(&self.title))
        );
        if !self.summary.trim().is_empty() {
            let _ = writeln!(out, "<p>{}</p>", escape_html(self.summary.trim()));
        }
        let shown = self.lines.len().min(EMAIL_MAX_LINES);
        if shown > 0 {
            out.push_str(
                "<table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\n\
                 <tr><th>User</th><th>Operation</th><th>Reason</th><th>First seen</th><th>Attempts</th></tr>\n",
            );
            for l in &self.lines[..shown] {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape_html(&l.user_login),
                    escape_html(&l.operation),
                    escape_html(l.reason_or_default()),
                    escape_html(&fmt_time(&l.first_seen)),
                    l.attempts,
                );
            }
            out.push_str("</table>\n");
        }
        let hidden = self.total() - shown;
        if hidden > 0 {
            let _ = writeln!(out, "<p>…and {hidden} more</p>");
        }
        if let Some(app) = self.app_display() {
            let _ = writeln!(out, "<p>App: {}</p>", escape_html(&app));
        }
        if let Some(url) = safe_link(self.admin_url.as_deref()) {
            let _ = writeln!(
                out,
                "<p><a href=\"{0}\">Open in Okta admin</a> ({0})</p>",
                escape_html(url)
            );
        }
        let _ = writeln!(
            out,
            "<p style=\"color:#666;font-size:small\">{}</p>",
            escape_html(&self.footer_text())
        );
        out.push_str("</body></html>\n");
        out
    }

    /// Top-level `text` for Slack: shown in notifications and by clients that
    /// cannot render blocks.
    pub fn slack_fallback_text(&self) -> String {
        let s = format!(
            "[{}] {}: {}",
            self.subject_tag(),
            one_line(&self.title),
            one_line(&self.summary)
        );
        escape_mrkdwn_truncated(&s, SLACK_MAX_SECTION_TEXT)
    }

    /// Slack Block Kit blocks: header, summary, one section per user line
    /// (collapsing past [`SLACK_MAX_LINE_BLOCKS`] into "…and N more"),
    /// context with severity, and a button to the Okta admin page. Always
    /// within Slack's block count and text limits.
    pub fn slack_blocks(&self) -> Vec<Value> {
        let mut blocks = Vec::new();
        let header = format!("{} {}", self.subject_tag(), one_line(&self.title).trim());
        blocks.push(json!({
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": truncate_chars(header.trim(), SLACK_MAX_HEADER_TEXT),
                "emoji": true,
            }
        }));
        if !self.summary.trim().is_empty() {
            blocks.push(mrkdwn_section(escape_mrkdwn_truncated(
                self.summary.trim(),
                SLACK_MAX_SECTION_TEXT,
            )));
        }
        let shown = self.lines.len().min(SLACK_MAX_LINE_BLOCKS);
        for line in &self.lines[..shown] {
            blocks.push(mrkdwn_section(line.render_mrkdwn()));
        }
        let hidden = self.total() - shown;
        if hidden > 0 {
            blocks.push(json!({
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": format!("…and {hidden} more")}],
            }));
        }
        let mut context = format!(
            "{} *{}* · {}",
            self.severity.slack_emoji(),
            self.severity.tag(),
            self.kind.label()
        );
        if let Some(app) = self.app_display() {
            let _ = write!(context, " · {}", escape_mrkdwn_truncated(&app, 300));
        }
        let _ = write!(
            context,
            " · group `{}` · {}",
            escape_mrkdwn_truncated(&one_line(&self.group_key), 300),
            fmt_time(&self.created_at)
        );
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": truncate_chars(&context, SLACK_MAX_SECTION_TEXT)}],
        }));
        if let Some(url) = safe_link(self.admin_url.as_deref())
            .filter(|u| u.chars().count() <= SLACK_MAX_BUTTON_URL)
        {
            blocks.push(json!({
                "type": "actions",
                "elements": [{
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in Okta admin", "emoji": true},
                    "url": url,
                    "action_id": "open_okta_admin",
                }],
            }));
        }
        debug_assert!(blocks.len() <= SLACK_MAX_BLOCKS);
        blocks
    }
}

fn mrkdwn_section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn line(i: usize) -> AlertLine {
        AlertLine {
            user_login: format!("user{i}@example.com"),
            user_id: format!("00u{i}"),
            operation: "PUSH_PROFILE".into(),
            reason: Some("Salesforce API: INVALID_FIELD".into()),
            first_seen: Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap(),
            attempts: 3,
        }
    }

    fn msg(n: usize) -> AlertMessage {
        AlertMessage {
            kind: MessageKind::Firing,
            severity: Severity::Urgent,
            title: format!("Salesforce: {n} users failing provisioning"),
            app_id: Some("0oa1salesforce".into()),
            app_label: Some("Salesforce".into()),
            admin_url: Some(
                "https://acme-admin.okta.com/admin/app/salesforce/instance/0oa1salesforce".into(),
            ),
            summary: "Provisioning to Salesforce has failed for 3 users.".into(),
            lines: (0..n).map(line).collect(),
            total_lines: n,
            group_key: "app:0oa1salesforce".into(),
            created_at: Utc.with_ymd_and_hms(2024, 5, 1, 13, 0, 0).unwrap(),
        }
    }

    fn all_text(blocks: &[Value]) -> String {
        serde_json::to_string(blocks).unwrap()
    }

    #[test]
    fn subject_style() {
        assert_eq!(
            msg(3).email_subject(),
            "[URGENT] Salesforce: 3 users failing provisioning (okta-provwatch)"
        );
        let mut m = msg(1);
        m.kind = MessageKind::Resolved;
        m.title = "a\r\nBcc: evil@x.test".into();
        assert_eq!(
            m.email_subject(),
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
        let html = m.render_html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("</td><td></td>"), "{html}");
        assert!(!html.contains("<b>app"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b &quot;quoted&quot; &#39;single&#39;"));
        assert!(html.contains("href=\"https://x.test/?a=1&amp;b=&quot;2&quot;\""));
    }

    #[test]
    fn unsafe_admin_links_are_dropped() {
        let mut m = msg(1);
        m.admin_url = Some("javascript:alert(1)".into());
        assert!(!m.render_html().contains("javascript:"));
        assert!(!m.render_text().contains("javascript:"));
        assert!(!all_text(&m.slack_blocks()).contains("javascript:"));
    }

    #[test]
    fn mrkdwn_escapes_control_characters() {
        let mut m = msg(1);
        m.lines[0].user_login = "<!channel> & <@U123>".into();
        m.summary = "<https://evil.test|click>".into();
        let blocks = m.slack_blocks();
        let s = all_text(&blocks);
        assert!(!s.contains("<!channel>"), "{s}");
        assert!(!s.contains("<https://evil"), "{s}");
        assert!(s.contains("&lt;!channel&gt; &amp; &lt;@U123&gt;"));
        assert_eq!(escape_mrkdwn("a<b>&c"), "a&lt;b&gt;&amp;c");
    }

    #[test]
    fn slack_line_format() {
        let blocks = msg(1).slack_blocks();
        let texts: Vec<&str> = blocks
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        assert!(texts.contains(
            &"*user0@example.com* — PUSH_PROFILE — Salesforce API: INVALID_FIELD — first seen 2024-05-01 12:30 UTC — 3 attempts"
        ), "{texts:?}");
    }

    #[test]
    fn slack_truncates_to_limits() {
        let mut m = msg(120);
        m.total_lines = 130;
        m.title = "T".repeat(400);
        m.summary = "&".repeat(5000);
        m.lines[0].reason = Some("<".repeat(5000));
        let blocks = m.slack_blocks();
        assert!(blocks.len() <= SLACK_MAX_BLOCKS);
        let line_sections = blocks
            .iter()
            .filter(|b| b["type"] == "section")
            .filter(|b| b["text"]["text"].as_str().unwrap().contains("@example.com"))
            .count();
        assert_eq!(line_sections, SLACK_MAX_LINE_BLOCKS);
        assert!(all_text(&blocks).contains(&format!("…and {} more", 130 - SLACK_MAX_LINE_BLOCKS)));
        for b in &blocks {
            let t = b["text"]["text"].as_str().unwrap_or("");
            match b["type"].as_str().unwrap() {
                "header" => assert!(t.chars().count() <= SLACK_MAX_HEADER_TEXT),
                "section" => {
                    assert!(t.chars().count() <= SLACK_MAX_SECTION_TEXT, "{}", t.len());
                    // never cut in the middle of an entity
                    assert!(!t.trim_end_matches('…').ends_with("&amp"));
                    assert!(!t.contains("&l…") && !t.contains("&a…"));
                }
                _ => {}
            }
        }
        assert!(m.slack_fallback_text().chars().count() <= SLACK_MAX_SECTION_TEXT);
    }

    #[test]
    fn email_truncates_with_more_note() {
        let mut m = msg(3);
        m.total_lines = 10;
        let text = m.render_text();
        assert!(text.contains("…and 7 more"), "{text}");
        assert!(m.render_html().contains("…and 7 more"));
        let big = msg(EMAIL_MAX_LINES + 5);
        assert!(big.render_text().contains("…and 5 more"));
    }

    #[test]
    fn text_and_html_carry_the_same_facts() {
        let m = msg(2);
        let (text, html) = (m.render_text(), m.render_html());
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
    fn truncation_helpers() {
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("héllo!", 5), "héll…");
        assert_eq!(escape_mrkdwn_truncated("a&b", 5), "a…");
        assert_eq!(escape_mrkdwn_truncated("a&b", 7), "a&amp;b");
        assert_eq!(escape_mrkdwn_truncated("a&bc", 7), "a&amp;…");
    }

    #[test]
    fn serde_round_trip() {
        let m = msg(2);
        let s = serde_json::to_string(&m).unwrap();
        assert!(s.contains("\"severity\":\"urgent\""));
        assert!(s.contains("\"kind\":\"firing\""));
        let back: AlertMessage = serde_json::from_str(&s).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn delivery_error_accessors() {
        let e = DeliveryError::Transient {
            message: "slack rate limited".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        let p = DeliveryError::permanent("invalid_auth");
        assert!(!p.is_transient());
        assert_eq!(p.to_string(), "permanent delivery failure: invalid_auth");
    }
}
