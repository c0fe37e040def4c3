//! Alerts about the daemon itself: Okta unreachable, the token rejected or the rate limit
//! exhausted for longer than [`POLLS_BEFORE_ALERT`] poll intervals. While that lasts no
//! provisioning failure can be detected, so silence from provwatch would be misleading.
//!
//! One group, [`GROUP_KEY`], evaluated by the alert evaluator in its transaction from
//! [`HealthState`]. Its `pending_since` holds when the trouble was first seen (durable, so a
//! restart during an outage does not restart the clock). Silences do not apply: they name apps.

use super::message::{AlertMessage, MessageKind, Severity};
use super::outbox;
use super::policy::{to_time, Outcome, Settings};
use crate::health::HealthState;
use crate::store::alerts::{self, AlertGroup};
use crate::store::StoreError;
use rusqlite::Connection;

pub const GROUP_KEY: &str = "daemon:health";
/// Polls that must fail in a row, and poll intervals that must pass, before alerting.
pub const POLLS_BEFORE_ALERT: u32 = 3;

fn cause(h: &HealthState) -> &'static str {
    if h.auth_failing {
        "auth"
    } else {
        "unreachable"
    }
}

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
    let failing = h.consecutive_poll_failures > 0;
    // After a restart the in-memory health is empty until the first poll: that is "unknown",
    // not "recovered", so only a successful poll resolves.
    let recovered = !failing && h.last_poll_ok_ms.is_some();
    if failing {
        let first_seen = *g.pending_since.get_or_insert(now);
        // The last good poll dates the outage better than when we first noticed it.
        let since = h
            .last_poll_ok_ms
            .map_or(first_seen, |ok| ok.min(first_seen));
        let threshold = s
            .poll_interval_ms
            .saturating_mul(i64::from(POLLS_BEFORE_ALERT));
        let long_enough = h.consecutive_poll_failures >= POLLS_BEFORE_ALERT
            && now.saturating_sub(since) >= threshold;
        let fp = cause(h).to_string();
        let due = if !g.firing || g.fingerprint.as_deref() != Some(fp.as_str()) {
            long_enough
        } else {
            g.last_sent_at
                .is_none_or(|t| now >= t.saturating_add(s.repeat_interval_ms))
        };
        if due {
            let msg = firing_message(h, since, now);
            out.rows += outbox::enqueue(c, &s.channels, "health", &msg, now)?.len();
            out.firing.push(GROUP_KEY.to_string());
            g.firing = true;
            g.fingerprint = Some(fp);
            g.last_sent_at = Some(now);
        }
    } else if recovered {
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
    super::policy::save_if_changed(c, &g, &before)
}

fn firing_message(h: &HealthState, since: i64, now: i64) -> AlertMessage {
    let title = if h.auth_failing {
        "okta-provwatch: Okta rejects its credentials".to_string()
    } else {
        "okta-provwatch cannot poll Okta".to_string()
    };
    let mut summary = format!(
        "{} System Log polls in a row failed, since {}. Provisioning failures are not being detected until this clears.",
        h.consecutive_poll_failures,
        to_time(since).format("%Y-%m-%d %H:%M UTC"),
    );
    if h.auth_failing {
        summary
            .push_str(" Check that the API token or OAuth key is valid and has the needed scopes.");
    }
    if let Some(err) = &h.last_poll_error {
        summary.push_str(" Last error: ");
        summary.push_str(err);
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
