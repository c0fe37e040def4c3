//! The channel-neutral alert message: what the alerting pipeline decided to say, independent
//! of the channel that carries it, and the plain-text form every channel can fall back on.
//!
//! An [`AlertMessage`] is stored as JSON in the outbox and only rendered at send time, so
//! every channel renders the same facts from the same value; each channel in
//! [`super::channels`] owns its own rendering (Slack Block Kit, email text + HTML).
//!
//! Renderers treat every string in the message as untrusted (user logins and Okta error
//! reasons come from the org) and bound every rendering, per line and in total, so that one
//! oversized value can never make a message the receiver refuses. The helpers here
//! (truncation, escaping, one-line folding) are shared by the channels.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Product name used in subjects and footers.
pub const PRODUCT: &str = "okta-provwatch";

/// User lines in a plain-text rendering before collapsing into "…and N more".
pub const TEXT_MAX_LINES: usize = 200;
/// A plain-text rendering stops adding lines past this many bytes ("…and N more" follows), so
/// a message stays far below any mail server's size limit whatever its lines hold.
pub const TEXT_MAX_BYTES: usize = 96 * 1024;
/// The summary is cut to this many characters in any rendering.
pub const MAX_SUMMARY_CHARS: usize = 4000;
/// Each field of a line (login, operation, reason) is cut to this many characters when
/// rendered, whatever the producer stored.
pub const MAX_LINE_FIELD_CHARS: usize = 1000;

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
    /// The app, for messages that span apps (the digest); `None` in a per-app message, whose
    /// title names the app.
    #[serde(default)]
    pub app: Option<String>,
    /// What a person should do about this failure when waiting for the retries is not enough.
    #[serde(default)]
    pub next_step: Option<String>,
    /// The user's page in the Okta admin console, when known (rendered only if http(s)).
    #[serde(default)]
    pub link: Option<String>,
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

pub(crate) fn escape_mrkdwn_char(c: char, out: &mut String) {
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
pub(crate) fn safe_link(url: Option<&str>) -> Option<&str> {
    let url = url?.trim();
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then_some(url)
}

pub(crate) fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub(crate) fn fmt_time(t: &DateTime<Utc>) -> String {
    crate::clock::minute(*t)
}

/// A line's next step is cut to this many characters in any rendering.
pub const MAX_NEXT_STEP_CHARS: usize = 500;

impl AlertLine {
    /// The user, followed by the app when the line carries one: `login (App)`.
    pub fn who(&self) -> String {
        let login = truncate_chars(&one_line(&self.user_login), MAX_LINE_FIELD_CHARS);
        match &self.app {
            Some(app) => format!("{login} ({})", truncate_chars(&one_line(app), 200)),
            None => login,
        }
    }

    /// The line's link when it is safe to render (http(s), no characters that could break
    /// out of a Slack link or an HTML attribute once escaped).
    pub fn safe_link(&self) -> Option<&str> {
        safe_link(self.link.as_deref())
            .filter(|u| u.len() <= 2000 && !u.contains(['|', '<', '>', '"', ' ']))
    }

    /// The next step on one line, bounded; `None` when there is none.
    pub fn next_step_text(&self) -> Option<String> {
        self.next_step
            .as_deref()
            .map(one_line)
            .filter(|s| !s.trim().is_empty())
            .map(|s| truncate_chars(s.trim(), MAX_NEXT_STEP_CHARS))
    }

    pub(crate) fn reason_or_default(&self) -> &str {
        self.reason
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or("no reason given")
    }

    /// `login — operation — reason — first seen … — N attempts[ — next: …]`, plain text.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{} — {} — {} — first seen {} — {}",
            self.who(),
            truncate_chars(&one_line(&self.operation), MAX_LINE_FIELD_CHARS),
            truncate_chars(&one_line(self.reason_or_default()), MAX_LINE_FIELD_CHARS),
            fmt_time(&self.first_seen),
            plural(u64::from(self.attempts), "attempt", "attempts"),
        );
        if let Some(step) = self.next_step_text() {
            out.push_str(" — next: ");
            out.push_str(&step);
        }
        if let Some(url) = self.safe_link() {
            out.push_str(" — ");
            out.push_str(url);
        }
        out
    }
}

impl AlertMessage {
    /// Lines that exist but are not in `lines` (producer-side truncation).
    pub(crate) fn total(&self) -> usize {
        self.total_lines.max(self.lines.len())
    }

    pub(crate) fn subject_tag(&self) -> &'static str {
        match self.kind {
            MessageKind::Resolved => "RESOLVED",
            MessageKind::Test => "TEST",
            _ => self.severity.tag(),
        }
    }

    pub(crate) fn app_display(&self) -> Option<String> {
        match (self.app_label.as_deref(), self.app_id.as_deref()) {
            (Some(l), Some(id)) => Some(format!("{l} ({id})")),
            (Some(l), None) => Some(l.to_string()),
            (None, Some(id)) => Some(id.to_string()),
            (None, None) => None,
        }
    }

    pub(crate) fn footer_text(&self) -> String {
        format!(
            "Severity: {} · {} · group {} · generated {} by {PRODUCT}",
            self.severity.tag(),
            self.kind.label(),
            one_line(&self.group_key),
            fmt_time(&self.created_at),
        )
    }

    /// Plain-text body (email text part, logs, CLI), within [`TEXT_MAX_LINES`] lines and
    /// about [`TEXT_MAX_BYTES`] bytes.
    pub fn render_text(&self) -> String {
        self.render_text_limited(TEXT_MAX_LINES, TEXT_MAX_BYTES)
    }

    /// [`Self::render_text`] with explicit bounds: lines stop once either is reached, and the
    /// rest is counted in "…and N more".
    pub fn render_text_limited(&self, max_lines: usize, max_bytes: usize) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "[{}] {}",
            self.subject_tag(),
            truncate_chars(&one_line(&self.title), MAX_LINE_FIELD_CHARS)
        );
        out.push('\n');
        if !self.summary.trim().is_empty() {
            let _ = writeln!(
                out,
                "{}",
                truncate_chars(self.summary.trim(), MAX_SUMMARY_CHARS)
            );
            out.push('\n');
        }
        let mut shown = 0;
        for line in self.lines.iter().take(max_lines) {
            let text = line.render_text();
            if out.len() + text.len() + 3 > max_bytes {
                break;
            }
            let _ = writeln!(out, "- {text}");
            shown += 1;
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
}

#[cfg(test)]
pub(crate) mod tests {
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
            app: None,
            next_step: None,
            link: None,
        }
    }

    /// A firing message with `n` lines, shared by the channels' tests.
    pub(crate) fn msg(n: usize) -> AlertMessage {
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
    fn lines_name_their_app_and_next_step_when_they_have_one() {
        let mut l = msg(1).lines.remove(0);
        assert_eq!(l.render_text().matches(" — ").count(), 4);
        l.app = Some("Workday".into());
        l.next_step = Some("fix it\nthen retry".into());
        let t = l.render_text();
        assert!(t.starts_with("user0@example.com (Workday) — "), "{t}");
        assert!(t.ends_with(" — next: fix it then retry"), "{t}");
        l.next_step = Some("x".repeat(10_000));
        assert!(l.render_text().len() < 2_000);
        l.next_step = None;
        l.link = Some("javascript:alert(1)".into());
        assert!(!l.render_text().contains("javascript"));
        l.link = Some("https://acme-admin.okta.com/admin/user/profile/view/00u1".into());
        assert!(l
            .render_text()
            .ends_with(" — https://acme-admin.okta.com/admin/user/profile/view/00u1"));
    }

    #[test]
    fn text_is_bounded_per_line_and_in_total() {
        let mut m = msg(150);
        for l in &mut m.lines {
            l.reason = Some("x".repeat(100_000));
        }
        m.summary = "s".repeat(1_000_000);
        let text = m.render_text();
        assert!(text.len() <= TEXT_MAX_BYTES + 4096, "{}", text.len());
        assert!(text.contains("…and"), "the cut lines are counted");
        // A line never grows past its field bounds, so at least a few lines show.
        assert!(text.matches("\n- ").count() >= 10, "{text:.300}");
    }
}
