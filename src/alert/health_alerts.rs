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

use super::compose::{
    health_firing_message, health_resolved_message, log_trouble_message, log_trouble_resolved,
    quarantine_message,
};
use super::group::{save_if_changed, Outcome, Settings};
use super::outbox;
use crate::health::{verdict, HealthState, Verdict};
use crate::store::alert_groups::{self, AlertGroup};
use crate::store::quarantine;
use crate::store::{StoreError, Tx};

pub use super::group::HEALTH_GROUP_KEY as GROUP_KEY;

/// The group of "the System Log cursor cannot move on" (a `next` cycle, a page that cannot be
/// split): polls succeed, so the polling rule above stays healthy, yet nothing new is read.
pub const LOG_GROUP_KEY: &str = "daemon:log";

/// Reports events the poller quarantined (each once: the rows are marked in this transaction)
/// and the System Log cursor being stuck, in the caller's transaction.
pub fn evaluate_detection(
    tx: &Tx<'_>,
    s: &Settings,
    h: &HealthState,
    now: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    let told = quarantine::take_unalerted(tx, now)?;
    if !told.is_empty() {
        let total = quarantine::count(tx)?;
        let msg = quarantine_message(&told, total, now);
        out.rows += outbox::enqueue(tx, &s.channels, "health", &msg, now)?.len();
        out.firing.push(msg.group_key.clone());
    }
    let mut g = alert_groups::get(tx, LOG_GROUP_KEY)?.unwrap_or_else(|| AlertGroup {
        group_key: LOG_GROUP_KEY.to_string(),
        ..AlertGroup::default()
    });
    let before = g.clone();
    match &h.log_trouble {
        Some(why) => {
            let since = *g
                .pending_since
                .get_or_insert(h.log_trouble_since_ms.unwrap_or(now));
            let due = !g.firing
                || g.last_sent_at
                    .is_none_or(|t| now >= t.saturating_add(s.repeat_interval_ms));
            if due {
                let msg = log_trouble_message(why, since, now);
                out.rows += outbox::enqueue(tx, &s.channels, "health", &msg, now)?.len();
                out.firing.push(LOG_GROUP_KEY.to_string());
                g.firing = true;
                g.fingerprint = Some("log".into());
                g.last_sent_at = Some(now);
            }
        }
        None => close_group(tx, s, &mut g, LOG_GROUP_KEY, log_trouble_resolved, now, out)?,
    }
    save_if_changed(tx, &g, &before)
}

/// Evaluates the health group at `now`, in the caller's transaction.
pub fn evaluate(
    tx: &Tx<'_>,
    s: &Settings,
    h: &HealthState,
    now: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    let mut g = alert_groups::get(tx, GROUP_KEY)?.unwrap_or_else(|| AlertGroup {
        group_key: GROUP_KEY.to_string(),
        ..AlertGroup::default()
    });
    let before = g.clone();
    let interval = crate::clock::between(0, s.poll_interval_ms);
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
                let msg = health_firing_message(cause, &reason, since, now);
                out.rows += outbox::enqueue(tx, &s.channels, "health", &msg, now)?.len();
                out.firing.push(GROUP_KEY.to_string());
                g.firing = true;
                g.fingerprint = Some(fp);
                g.last_sent_at = Some(now);
            }
        }
        Verdict::Healthy => {
            close_group(tx, s, &mut g, GROUP_KEY, health_resolved_message, now, out)?
        }
        // After a restart the in-memory health is empty until the first poll: that is
        // "unknown", not "recovered", so only a successful poll resolves.
        Verdict::Unknown => {}
    }
    save_if_changed(tx, &g, &before)
}

/// Ends a daemon-health group's episode: a resolved notice (`message`) when the group was sent
/// as firing and resolved notices are on, then nothing firing or pending.
fn close_group(
    tx: &Tx<'_>,
    s: &Settings,
    g: &mut AlertGroup,
    key: &str,
    message: fn(i64) -> super::message::AlertMessage,
    now: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    if g.firing && s.send_resolved {
        let msg = message(now);
        out.rows += outbox::enqueue(tx, &s.channels, "resolved", &msg, now)?.len();
        out.resolved.push(key.to_string());
        g.last_sent_at = Some(now);
    }
    g.close_episode();
    g.pending_since = None;
    Ok(())
}
