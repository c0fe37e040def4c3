//! Message composition: turns failure rows and the daemon's health into the channel-neutral
//! [`AlertMessage`] (title, severity, summary, one line per failure, admin link). What to say
//! lives here; whether and when to say it in [`super::evaluator`] and
//! [`super::health_alerts`]; how it looks in each channel in [`super::channels`].

use super::group::{Settings, HEALTH_GROUP_KEY};
use super::message::{truncate_chars, AlertLine, AlertMessage, MessageKind, Severity};
use crate::health::Cause;
use crate::store::alert_groups;
use crate::store::failures::{Failure, Operation};
use crate::store::{StoreError, Tx};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::time::Duration;

/// Lines stored per message; renderers collapse further for their own limits.
pub const MAX_LINES: usize = 500;
/// A failure reason is cut to this many characters in a message (the stored row keeps its
/// own bound); enough for any real SCIM error, small enough that 500 lines stay well under a
/// megabyte of outbox payload.
pub const MAX_REASON_CHARS: usize = 1000;
/// Logins, ids and similar fields are cut to this many characters.
pub const MAX_FIELD_CHARS: usize = 256;

pub fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// What a person should do about `f` beyond waiting for the automatic retries, if anything.
pub fn next_step(f: &Failure) -> Option<String> {
    let app = truncate_chars(f.app_name(), MAX_FIELD_CHARS);
    if f.retry_exhausted {
        Some(format!(
            "automatic retries gave up: fix the cause in {app} or Okta, then run `okta-provwatch retry --failure {}`",
            f.id
        ))
    } else if f.operation == Operation::Integration {
        Some(format!(
            "check {app}'s provisioning settings and API credentials in the Okta admin console (Provisioning tab)"
        ))
    } else if f.operation.is_deprovisioning() {
        Some(format!(
            "the person may still have access to {app}: confirm it is removed there if this does not clear"
        ))
    } else {
        None
    }
}

/// One failure as a message line. Every field is bounded here, where the message is made: a
/// reason Okta reports can be megabytes, and the message is stored in the outbox and rendered
/// for every channel (issue 10 defect 5).
pub fn line(f: &Failure) -> AlertLine {
    let mut operation = f.operation.as_str().to_string();
    if f.retry_exhausted {
        operation.push_str(" (retries exhausted)");
    }
    AlertLine {
        user_login: if f.user_id.is_empty() {
            "(app-wide)".to_string()
        } else {
            truncate_chars(f.user_name(), MAX_FIELD_CHARS)
        },
        user_id: truncate_chars(&f.user_id, MAX_FIELD_CHARS),
        operation,
        reason: f
            .reason
            .as_deref()
            .map(|r| truncate_chars(r, MAX_REASON_CHARS)),
        first_seen: to_time(f.first_seen),
        attempts: f.attempts,
        app: None,
        next_step: next_step(f),
        link: None,
    }
}

/// `line` with the user's admin console page, on Okta hosts (see [`Settings::admin_base`]).
fn linked_line(s: &Settings, f: &Failure) -> AlertLine {
    let mut l = line(f);
    if let Some(base) = s.admin_base.as_deref().filter(|_| !f.user_id.is_empty()) {
        // Okta ids are URL-safe; anything else is not a user id we should link.
        if f.user_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            l.link = Some(format!("{base}/admin/user/profile/view/{}", f.user_id));
        }
    }
    l
}

fn admin_url(s: &Settings, tx: &Tx<'_>, app_id: &str) -> Result<Option<String>, StoreError> {
    let Some(base) = &s.admin_base else {
        return Ok(None);
    };
    Ok(Some(match alert_groups::app_name(tx, app_id)? {
        Some(name) => format!("{base}/admin/app/{name}/instance/{app_id}/"),
        None => format!("{base}/admin/apps/active"),
    }))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub fn firing_message(
    s: &Settings,
    app_id: &str,
    label: Option<&str>,
    tx: &Tx<'_>,
    set: &[&Failure],
    integration: bool,
    now: i64,
) -> Result<AlertMessage, StoreError> {
    let app = label.unwrap_or(app_id);
    let mut sorted: Vec<&Failure> = set.to_vec();
    // App-wide first, then deprovisioning, then by user: the most important line on top.
    sorted.sort_by(|a, b| {
        (
            !a.user_id.is_empty(),
            !a.operation.is_deprovisioning(),
            a.user_name(),
        )
            .cmp(&(
                !b.user_id.is_empty(),
                !b.operation.is_deprovisioning(),
                b.user_name(),
            ))
    });
    let users: BTreeSet<&str> = set
        .iter()
        .filter(|f| !f.user_id.is_empty())
        .map(|f| f.user_id.as_str())
        .collect();
    let deprov = set
        .iter()
        .filter(|f| f.operation.is_deprovisioning())
        .count();
    let exhausted = set.iter().filter(|f| f.retry_exhausted).count();
    let title = if integration {
        format!(
            "{app}: provisioning integration failing ({} affected)",
            plural(users.len(), "user", "users")
        )
    } else {
        format!(
            "{app}: {} failing provisioning",
            plural(users.len(), "user", "users")
        )
    };
    let mut summary = Vec::new();
    if integration {
        summary.push(format!(
            "Okta cannot provision to {app} at all (app-wide failure); user failures of this app are listed here rather than alerted separately."
        ));
    }
    if deprov > 0 {
        summary.push(format!(
            "{} failed: people removed in Okta may still have access to {app}.",
            plural(deprov, "deprovisioning", "deprovisionings")
        ));
    }
    if exhausted > 0 {
        summary.push(format!(
            "Automatic retries gave up on {}.",
            plural(exhausted, "failure", "failures")
        ));
    }
    summary.push(format!(
        "{} unresolved; failures alert after {} unless urgent.",
        plural(set.len(), "failure", "failures"),
        humantime::format_duration(Duration::from_millis(s.persist_after_ms.max(0) as u64))
    ));
    Ok(AlertMessage {
        kind: MessageKind::Firing,
        severity: if set.iter().any(|f| f.urgent) {
            Severity::Urgent
        } else {
            Severity::Warning
        },
        title,
        app_id: Some(app_id.to_string()),
        app_label: label.map(str::to_string),
        admin_url: admin_url(s, tx, app_id)?,
        summary: summary.join(" "),
        lines: sorted
            .iter()
            .take(MAX_LINES)
            .map(|f| linked_line(s, f))
            .collect(),
        total_lines: sorted.len(),
        group_key: format!("app:{app_id}"),
        created_at: to_time(now),
    })
}

pub fn resolved_message(
    s: &Settings,
    app_id: &str,
    label: Option<&str>,
    tx: &Tx<'_>,
    cleared: &[Failure],
    now: i64,
) -> Result<AlertMessage, StoreError> {
    let app = label.unwrap_or(app_id);
    Ok(AlertMessage {
        kind: MessageKind::Resolved,
        severity: Severity::Info,
        title: format!("{app}: provisioning failures resolved"),
        app_id: Some(app_id.to_string()),
        app_label: label.map(str::to_string),
        admin_url: admin_url(s, tx, app_id)?,
        summary: format!(
            "All {} previously reported for {app} cleared.",
            plural(cleared.len(), "failure", "failures")
        ),
        lines: cleared
            .iter()
            .take(MAX_LINES)
            .map(|f| linked_line(s, f))
            .collect(),
        total_lines: cleared.len(),
        group_key: format!("app:{app_id}"),
        created_at: to_time(now),
    })
}

/// The resolved notice of the daemon-health group.
pub fn health_resolved_message(now: i64) -> AlertMessage {
    AlertMessage {
        kind: MessageKind::Resolved,
        severity: Severity::Info,
        title: "okta-provwatch reaches Okta again".into(),
        app_id: None,
        app_label: None,
        admin_url: None,
        summary: "System Log polling works again; failures that happened meanwhile are picked up from the log.".into(),
        lines: Vec::new(),
        total_lines: 0,
        group_key: HEALTH_GROUP_KEY.into(),
        created_at: to_time(now),
    }
}

/// Events the System Log poller quarantined (issue 10): told once per batch.
pub fn quarantine_message(
    told: &[crate::store::quarantine::Entry],
    total: i64,
    now: i64,
) -> AlertMessage {
    let mut summary = format!(
        "{} System Log event(s) could not be parsed and were quarantined ({total} in all); detection carried on past them. Okta does not normally send such events: keep the rows (`okta-provwatch status` counts them) and report them to Okta support if they recur.",
        told.len()
    );
    for e in told.iter().take(3) {
        summary.push_str(&format!(
            " Event {} of a page, {} bytes: {}.",
            e.position + 1,
            e.raw_len,
            truncate_chars(&e.error, 200)
        ));
    }
    AlertMessage {
        kind: MessageKind::Health,
        severity: Severity::Warning,
        title: "okta-provwatch quarantined System Log events it could not parse".into(),
        app_id: None,
        app_label: None,
        admin_url: None,
        summary,
        lines: Vec::new(),
        total_lines: 0,
        group_key: "daemon:quarantine".into(),
        created_at: to_time(now),
    }
}

/// The System Log cursor cannot move on although polls succeed.
pub fn log_trouble_message(why: &str, since: i64, now: i64) -> AlertMessage {
    AlertMessage {
        kind: MessageKind::Health,
        severity: Severity::Urgent,
        title: "okta-provwatch: the System Log cursor is stuck".into(),
        app_id: None,
        app_label: None,
        admin_url: None,
        summary: format!(
            "Since {}: {}. New provisioning failures are not being read from the System Log until this clears (the assignment scan still runs).",
            to_time(since).format("%Y-%m-%d %H:%M UTC"),
            truncate_chars(why, 1000)
        ),
        lines: Vec::new(),
        total_lines: 0,
        group_key: crate::alert::health_alerts::LOG_GROUP_KEY.into(),
        created_at: to_time(now),
    }
}

pub fn log_trouble_resolved(now: i64) -> AlertMessage {
    AlertMessage {
        kind: MessageKind::Resolved,
        severity: Severity::Info,
        title: "okta-provwatch: the System Log cursor moves again".into(),
        app_id: None,
        app_label: None,
        admin_url: None,
        summary: "The System Log is read past the page that held it up.".into(),
        lines: Vec::new(),
        total_lines: 0,
        group_key: crate::alert::health_alerts::LOG_GROUP_KEY.into(),
        created_at: to_time(now),
    }
}

pub fn health_firing_message(cause: Cause, reason: &str, since: i64, now: i64) -> AlertMessage {
    let title = match cause {
        Cause::Auth => "okta-provwatch: Okta rejects its credentials",
        Cause::Failing => "okta-provwatch cannot poll Okta",
        Cause::Stalled => "okta-provwatch: System Log polling stalled",
    }
    .to_string();
    let mut summary = format!(
        "No System Log poll succeeded since {}: {reason}. Provisioning failures are not being detected until this clears.",
        to_time(since).format("%Y-%m-%d %H:%M UTC"),
    );
    match cause {
        Cause::Auth => summary
            .push_str(" Check that the API token or OAuth key is valid and has the needed scopes."),
        Cause::Stalled => summary.push_str(
            " Check `okta-provwatch doctor` and the org's rate-limit dashboard: another integration may be using the budget.",
        ),
        Cause::Failing => {}
    }
    AlertMessage {
        kind: MessageKind::Health,
        severity: Severity::Urgent,
        title,
        app_id: None,
        app_label: None,
        admin_url: None,
        summary,
        lines: Vec::new(),
        total_lines: 0,
        group_key: HEALTH_GROUP_KEY.into(),
        created_at: to_time(now),
    }
}
