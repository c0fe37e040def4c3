//! Alerts about the daemon itself: while System Log polling does not succeed (Okta
//! unreachable, the credentials rejected, a 429 storm or a slow Okta that makes polls wait) no
//! provisioning failure can be detected, so silence from provwatch would be misleading.
//!
//! Whether polling is healthy is [`crate::health::verdict`]'s call, the same rule `/healthz`
//! uses: this module only turns that verdict into notifications.
//!
//! One group, [`GROUP_KEY`], evaluated by the alert evaluator in its transaction from
//! [`HealthState`]. Its `pending_since` holds when the trouble was first seen (durable, so a
//! restart during an outage does not restart the clock). Silences do not apply: they name apps.

use super::message::{AlertMessage, MessageKind, Severity};
use super::outbox;
use super::policy::{to_time, Outcome, Settings};
use crate::health::{verdict, Cause, HealthState, Verdict};
use crate::store::alerts::{self, AlertGroup};
use crate::store::StoreError;
use rusqlite::Connection;
use std::time::Duration;

pub const GROUP_KEY: &str = "daemon:health";

/// Evaluates the health group at `now`, in the caller's transaction.
pub fn evaluate(
    c: &Connection,
    s: &Settings,
    h: &HealthState,
    now: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    let mut g = alerts::get_group(c, GROUP_KEY)?.unwrap_or_else(|| AlertGroup {
        group_key: GROUP_KEY.to_string(),
        ..AlertGroup::default()
    });
    let before = g.clone();
    let interval = Duration::from_millis(u64::try_from(s.poll_interval_ms).unwrap_or(0));
    match verdict(h, interval, h.started_ms, now) {
        Verdict::Unhealthy {
            cause,
            since_ms,
            reason,
        } => {
            // The durable first sighting dates an outage that spans a restart better than the
            // fresh in-memory record does.
            let since = (*g.pending_since.get_or_insert(since_ms)).min(since_ms);
            let fp = cause.as_str().to_string();
            let due = if !g.firing || g.fingerprint.as_deref() != Some(fp.as_str()) {
                true
            } else {
                g.last_sent_at
                    .is_none_or(|t| now >= t.saturating_add(s.repeat_interval_ms))
            };
            if due {
                let msg = firing_message(cause, &reason, since, now);
                out.rows += outbox::enqueue(c, &s.channels, "health", &msg, now)?.len();
                out.firing.push(GROUP_KEY.to_string());
                g.firing = true;
                g.fingerprint = Some(fp);
                g.last_sent_at = Some(now);
            }
        }
        Verdict::Healthy => {
            if g.firing && s.send_resolved {
                let msg = AlertMessage {
                    kind: MessageKind::Resolved,
                    severity: Severity::Info,
                    title: "okta-provwatch reaches Okta again".into(),
                    app_id: None,
                    app_label: None,
                    admin_url: None,
                    summary: "System Log polling works again; failures that happened meanwhile are picked up from the log.".into(),
                    lines: Vec::new(),
                    total_lines: 0,
                    group_key: GROUP_KEY.into(),
                    created_at: to_time(now),
                };
                out.rows += outbox::enqueue(c, &s.channels, "resolved", &msg, now)?.len();
                out.resolved.push(GROUP_KEY.to_string());
                g.last_sent_at = Some(now);
            }
            g.close_episode();
            g.pending_since = None;
        }
        // After a restart the in-memory health is empty until the first poll: that is
        // "unknown", not "recovered", so only a successful poll resolves.
        Verdict::Unknown => {}
    }
    super::policy::save_if_changed(c, &g, &before)
}

fn firing_message(cause: Cause, reason: &str, since: i64, now: i64) -> AlertMessage {
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
        group_key: GROUP_KEY.into(),
        created_at: to_time(now),
    }
}
