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

/// Lines stored per message; renderers collapse further for their own limits.
pub const MAX_LINES: usize = 500;
/// A failure reason is cut to this many characters in a message (the stored row keeps its
/// own bound); enough for any real SCIM error, small enough that 500 lines stay well under a
/// megabyte of outbox payload.
pub const MAX_REASON_CHARS: usize = 1000;
/// Logins, ids and similar fields are cut to this many characters.
pub const MAX_FIELD_CHARS: usize = 256;

pub fn to_time(ms: i64) -> DateTime<Utc> {
    crate::clock::from_ms(ms)
}

/// What a person should do about `f`, for every line of a message: the step that ends the
/// failure, with the exact command. A failed push is fixed in the data the app objects to
/// (its reason names the attribute) and then pushed again; a failed deprovisioning cannot be
/// pushed again at all (the user is gone from the app's assignments), so the access is
/// removed in the app by hand and the failure closed with `resolve`.
pub fn next_step(f: &Failure) -> Option<String> {
    let app = truncate_chars(f.app_name(), MAX_FIELD_CHARS);
    let id = f.id;
    Some(match f.operation {
        Operation::Integration => format!(
            "check {app}'s provisioning settings and API credentials in the Okta Admin Console \
             (Provisioning tab); retries of its users resume when Okta reaches {app} again"
        ),
        op if op.is_deprovisioning() => format!(
            "remove the person's access in {app} by hand, then run \
             `okta-provwatch resolve --failure {id} --note \"removed in {app}\"`"
        ),
        Operation::GroupPush => format!(
            "fix what {app} reports, then push the group again from {app}'s Push Groups tab in \
             the Okta Admin Console"
        ),
        Operation::Import => {
            format!("fix what {app} reports, then run the import again from {app}'s Import tab")
        }
        _ if f.user_id.is_empty() => return None,
        _ if f.retry_exhausted => format!(
            "automatic retries gave up: fix the attribute {app} names in the reason (in the \
             user's Okta profile or its mapping), then run `okta-provwatch retry --failure {id}`"
        ),
        _ => format!(
            "fix the attribute {app} names in the reason (in the user's Okta profile or its \
             mapping), then run `okta-provwatch retry --failure {id}`; automatic retries go on \
             meanwhile"
        ),
    })
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
        // When Okta logged the failure (what `status` shows); detection time for scan finds.
        first_seen: to_time(f.event_published.unwrap_or(f.first_seen)),
        attempts: f.attempts,
        app: None,
        next_step: next_step(f),
        link: None,
    }
}

/// The alert group of one app's failures (the evaluator folds an app's failures into it).
pub fn app_group_key(app_id: &str) -> String {
    format!("app:{app_id}")
}

/// The lines an app message shows: the first [`MAX_LINES`] of `failures`, linked; the message's
/// `total_lines` says how many there were in all.
fn app_lines<'a>(s: &Settings, failures: impl IntoIterator<Item = &'a Failure>) -> Vec<AlertLine> {
    failures
        .into_iter()
        .take(MAX_LINES)
        .map(|f| linked_line(s, f))
        .collect()
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
        "{} unresolved.",
        plural(set.len(), "failure", "failures")
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
        lines: app_lines(s, sorted.iter().copied()),
        total_lines: sorted.len(),
        group_key: app_group_key(app_id),
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
    // Nothing of the app is open any more, so the caller may have found no label; the
    // cleared failures still carry the one they were detected with.
    let label = label.or_else(|| cleared.iter().find_map(|f| f.app_label.as_deref()));
    let app = label.unwrap_or(app_id);
    Ok(AlertMessage {
        kind: MessageKind::Resolved,
        severity: Severity::Info,
        title: format!("{app}: provisioning failures resolved"),
        app_id: Some(app_id.to_string()),
        app_label: label.map(str::to_string),
        admin_url: admin_url(s, tx, app_id)?,
        summary: resolved_summary(app, cleared.len()),
        lines: app_lines(s, cleared),
        total_lines: cleared.len(),
        group_key: app_group_key(app_id),
        created_at: to_time(now),
    })
}

/// `cleared` is every failure reported during the episode (the evaluator keeps them all, not
/// only the last message's), so three reported and cleared one by one read "All 3".
fn resolved_summary(app: &str, cleared: usize) -> String {
    match cleared {
        0 => format!("The failures previously reported for {app} cleared."),
        1 => format!("The failure previously reported for {app} cleared."),
        n => format!("All {n} failures previously reported for {app} cleared."),
    }
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
        Cause::HookDelivery => "okta-provwatch: Okta event hook deliveries are not arriving",
    }
    .to_string();
    if cause == Cause::HookDelivery {
        return AlertMessage {
            kind: MessageKind::Health,
            severity: Severity::Urgent,
            title,
            app_id: None,
            app_label: None,
            admin_url: None,
            summary: format!(
                "Since {}: {reason}. Check `okta-provwatch hooks status`, the receiver's TLS or reverse proxy and firewall, then `hooks register` again if the hook is gone.",
                to_time(since).format("%Y-%m-%d %H:%M UTC"),
            ),
            lines: Vec::new(),
            total_lines: 0,
            group_key: HEALTH_GROUP_KEY.into(),
            created_at: to_time(now),
        };
    }
    let mut summary = format!(
        "No System Log poll succeeded since {}: {reason}. Provisioning failures are not being detected until this clears.",
        crate::clock::minute(to_time(since)),
    );
    match cause {
        Cause::Auth => summary
            .push_str(" Check that the API token or OAuth key is valid and has the needed scopes."),
        Cause::Stalled => summary.push_str(
            " Check `okta-provwatch doctor` and the org's rate-limit dashboard: another integration may be using the budget.",
        ),
        Cause::Failing | Cause::HookDelivery => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::evaluator::evaluate;
    use crate::domain::{HistoryKind, Observation, Source};
    use crate::store::{failures as store_failures, outbox as store_outbox, Store};

    fn settings() -> Settings {
        Settings {
            persist_after_ms: 600_000,
            repeat_interval_ms: 4 * 3_600_000,
            group_wait_ms: 30_000,
            group_interval_ms: 300_000,
            urgent_group_wait_ms: 2_000,
            send_resolved: true,
            channels: vec!["console"],
            admin_base: Some("https://acme-admin.okta.com".into()),
            poll_interval_ms: 60_000,
        }
    }

    fn fail(store: &Store, user: &str, op: Operation, at: i64) -> i64 {
        let o = Observation {
            app_id: "0oaS".into(),
            app_label: Some("Sales".into()),
            user_id: format!("00u{user}"),
            user_login: Some(format!("{user}@x.com")),
            operation: op,
            failed: true,
            reason: Some("Remote API error: title is required".into()),
            event_uuid: None,
            published_ms: Some(at - 30_000),
            source: Source::Log,
        };
        match store
            .write_blocking(|tx| store_failures::apply(tx, &o, at, "test"))
            .unwrap()
        {
            store_failures::Applied::Opened(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn messages(store: &Store) -> Vec<AlertMessage> {
        store
            .read_blocking(store_outbox::list)
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.payload).unwrap())
            .collect()
    }

    #[test]
    fn every_user_line_says_what_to_do_next_with_the_command() {
        let store = Store::open_in_memory().unwrap();
        let ann = fail(&store, "ann", Operation::Update, 1_000_000);
        let bob = fail(&store, "bob", Operation::Deactivate, 1_000_000);
        let get = |id| {
            store
                .read_blocking(|tx| store_failures::get(tx, id))
                .unwrap()
                .unwrap()
        };
        let a = line(&get(ann));
        assert_eq!(
            a.next_step.as_deref(),
            Some(&*format!(
                "fix the attribute Sales names in the reason (in the user's Okta profile or its \
                 mapping), then run `okta-provwatch retry --failure {ann}`; automatic retries go \
                 on meanwhile"
            ))
        );
        let b = line(&get(bob));
        assert_eq!(
            b.next_step.as_deref(),
            Some(&*format!(
                "remove the person's access in Sales by hand, then run \
                 `okta-provwatch resolve --failure {bob} --note \"removed in Sales\"`"
            ))
        );
        let gave_up = Failure {
            retry_exhausted: true,
            ..get(ann)
        };
        assert!(line(&gave_up)
            .next_step
            .unwrap()
            .starts_with("automatic retries gave up: fix the attribute Sales names"));
        // The line dates the failure by Okta's event, as `status` does.
        assert_eq!(a.first_seen, to_time(1_000_000 - 30_000));
    }

    #[test]
    fn firing_summary_has_no_boilerplate_and_resolved_counts_the_whole_episode() {
        let store = Store::open_in_memory().unwrap();
        let s = settings();
        let t0 = 1_700_000_000_000;
        let ids: Vec<i64> = ["ann", "bob", "cat"]
            .iter()
            .map(|u| fail(&store, u, Operation::Create, t0))
            .collect();
        let eval = |now: i64| {
            let s = s.clone();
            store
                .write_blocking(move |tx| evaluate(tx, &s, None, now))
                .unwrap()
        };
        eval(t0 + 600_000);
        assert_eq!(eval(t0 + 631_000).firing.len(), 1);
        let first = messages(&store).pop().unwrap();
        assert_eq!(first.summary, "3 failures unresolved.");
        assert!(!first.summary.contains("alert after"));
        assert_eq!(
            first.admin_url.as_deref(),
            Some("https://acme-admin.okta.com/admin/apps/active")
        );

        // Two are fixed early; the update lists the one left.
        for id in &ids[..2] {
            store
                .write_blocking(|tx| {
                    store_failures::resolve(tx, *id, t0 + 700_000, None, "test", "fixed")
                })
                .unwrap();
        }
        eval(t0 + 700_001);
        assert_eq!(eval(t0 + 1_000_000).firing.len(), 1);
        assert_eq!(messages(&store).pop().unwrap().lines.len(), 1);

        // The last one clears: the notice counts all three that were reported.
        store
            .write_blocking(|tx| {
                store_failures::resolve(tx, ids[2], t0 + 1_100_000, None, "test", "fixed")
            })
            .unwrap();
        assert_eq!(eval(t0 + 1_100_001).resolved.len(), 1);
        let resolved = messages(&store).pop().unwrap();
        assert_eq!(
            resolved.summary,
            "All 3 failures previously reported for Sales cleared."
        );
        assert_eq!(resolved.lines.len(), 3);
        // Each failure was marked alerted once, not once per message.
        let alerted = store
            .read_blocking(|tx| {
                crate::store::history::list(tx, ids[2])
                    .map(|h| h.iter().filter(|e| e.kind == HistoryKind::Alerted).count())
            })
            .unwrap();
        assert_eq!(alerted, 1);
    }

    #[test]
    fn one_failure_reads_in_the_singular() {
        assert_eq!(
            resolved_summary("Sales", 1),
            "The failure previously reported for Sales cleared."
        );
    }
}
