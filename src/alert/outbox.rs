//! The durable outbox between deciding to notify and delivering: one `outbox` row per
//! (notification, channel), holding the rendered [`AlertMessage`] as JSON.
//!
//! The evaluator and the digest write rows in the same transaction as the state change that
//! made them necessary (alert group, failure states, last digest time), so a decision is never
//! half-recorded: either the group says "sent" *and* the rows exist, or neither. The sender
//! (`super::sender`) then delivers due rows per channel and marks them `sent`; transient errors
//! push `next_attempt_at` back (the receiver's `Retry-After` or our own capped, jittered
//! backoff) and leave the row `pending`, so restarts, crashes and hour-long outages lose
//! nothing. Permanent errors mark the row `failed`; [`failed_deliveries`] lists those for
//! `status` and `doctor`.
//!
//! **Delivery is at least once.** The window is between the channel accepting a message and
//! the `sent` mark committing: if the process dies (or the disk refuses the write) there, the
//! row is still `pending` after restart and is delivered a second time. One duplicate per
//! crash per row is the price of never losing an alert; exactly once would need idempotency
//! keys that neither Slack webhooks nor SMTP offer.
//!
//! Channels: `slack` and `email` when configured. With neither configured, rows go to the
//! `console` channel, whose "delivery" is a warn-level log line with the message text, so an
//! alert is never silently decided into the void and the failure's `alerted` state stays true
//! to "someone could have seen it".

use super::message::AlertMessage;
use crate::config::Config;
use crate::store::{outbox as rows, StoreError, Tx};
use rand::RngExt;
use serde::Serialize;
use std::time::Duration;

pub use super::channels::{CONSOLE, EMAIL, SLACK};

/// First retry delay after a transient error; doubled per attempt.
pub const BASE_BACKOFF: Duration = Duration::from_secs(5);
/// No row waits longer than this between attempts, whatever the receiver asks.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Channels rows are written for, in delivery order (see [`super::channels::RECEIVERS`]).
pub fn channels(config: &Config) -> Vec<&'static str> {
    super::channels::configured(config)
}

/// A stored message is at most this large: past it, lines are dropped from the end (the
/// renderers say "…and N more" for them). Composition already bounds each field, so this is
/// the last guard that keeps one message from bloating the store or a receiver.
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024;

/// The message as stored: JSON within [`MAX_PAYLOAD_BYTES`].
pub fn encode(msg: &AlertMessage) -> Result<String, StoreError> {
    let encode = |m: &AlertMessage| {
        serde_json::to_string(m)
            .map_err(|e| StoreError::Join(format!("encoding alert message: {e}")))
    };
    let mut payload = encode(msg)?;
    if payload.len() > MAX_PAYLOAD_BYTES {
        let mut m = msg.clone();
        m.total_lines = m.total_lines.max(m.lines.len());
        while payload.len() > MAX_PAYLOAD_BYTES && !m.lines.is_empty() {
            let keep = m.lines.len() / 2;
            m.lines.truncate(keep);
            payload = encode(&m)?;
        }
    }
    Ok(payload)
}

/// Writes one row per channel for `msg`, in the caller's transaction.
pub fn enqueue(
    tx: &Tx<'_>,
    channels: &[&str],
    kind: &str,
    msg: &AlertMessage,
    now: i64,
) -> Result<Vec<i64>, StoreError> {
    let payload = encode(msg)?;
    channels
        .iter()
        .map(|ch| rows::insert(tx, ch, kind, Some(&msg.group_key), &payload, now))
        .collect()
}

/// How long a row waits after its `attempts`-th transient failure (1-based): exponential
/// from [`BASE_BACKOFF`] with ±20 % jitter, at least the receiver's `retry_after`, at most
/// [`MAX_BACKOFF`].
pub fn backoff(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    // Jitter before the cap, so long outages settle on exactly the cap instead of a random
    // fraction of it.
    let base = BASE_BACKOFF.saturating_mul(1 << exp);
    let jitter = rand::rng().random_range(0.8..1.2);
    let jittered = base.mul_f64(jitter);
    jittered
        .max(retry_after.unwrap_or_default())
        .min(MAX_BACKOFF)
}

/// A notification the outbox gave up on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailedDelivery {
    pub id: i64,
    pub channel: String,
    pub kind: String,
    pub group_key: Option<String>,
    /// The message's title, when the payload still parses.
    pub title: Option<String>,
    pub created_at: i64,
    /// When it was given up on.
    pub failed_at: i64,
    pub attempts: u32,
    /// The channel's error (built from status and error codes only, never secrets).
    pub error: String,
}

/// Every delivery marked `failed`, oldest first, for `status` and `doctor`.
pub fn failed_deliveries(tx: &Tx<'_>) -> Result<Vec<FailedDelivery>, StoreError> {
    Ok(rows::in_state(tx, "failed")?
        .into_iter()
        .map(|r| FailedDelivery {
            id: r.id,
            title: serde_json::from_str::<AlertMessage>(&r.payload)
                .ok()
                .map(|m| m.title),
            channel: r.channel,
            kind: r.kind,
            group_key: r.group_key,
            created_at: r.created_at,
            failed_at: r.next_attempt_at,
            attempts: r.attempts,
            error: r.last_error.unwrap_or_default(),
        })
        .collect())
}

/// Rows still waiting for delivery (for `status`).
pub fn pending_count(tx: &Tx<'_>) -> Result<usize, StoreError> {
    rows::pending_count(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_messages_are_stored_with_fewer_lines_and_say_so() {
        let mut msg: AlertMessage = serde_json::from_value(serde_json::json!({
            "kind": "firing", "severity": "warning", "title": "t", "app_id": null,
            "app_label": null, "admin_url": null, "summary": "", "lines": [],
            "group_key": "app:1", "created_at": "2024-01-01T00:00:00Z"
        }))
        .unwrap();
        let line: crate::alert::message::AlertLine = serde_json::from_value(serde_json::json!({
            "user_login": "a@example.com", "user_id": "00u1", "operation": "PUSH_PROFILE",
            "reason": "r".repeat(10_000), "first_seen": "2024-01-01T00:00:00Z", "attempts": 1
        }))
        .unwrap();
        msg.lines = vec![line; 500];
        msg.total_lines = 700;
        let payload = encode(&msg).unwrap();
        assert!(payload.len() <= MAX_PAYLOAD_BYTES, "{}", payload.len());
        let back: AlertMessage = serde_json::from_str(&payload).unwrap();
        assert!(!back.lines.is_empty() && back.lines.len() < 500);
        assert_eq!(back.total_lines, 700);
        msg.lines.truncate(3);
        assert_eq!(encode(&msg).unwrap(), serde_json::to_string(&msg).unwrap());
    }

    #[test]
    fn backoff_grows_respects_retry_after_and_is_capped() {
        let first = backoff(1, None);
        assert!(first >= Duration::from_secs(4) && first <= Duration::from_secs(6));
        let fourth = backoff(4, None);
        assert!(fourth >= Duration::from_secs(32) && fourth <= Duration::from_secs(48));
        assert!(backoff(1, Some(Duration::from_secs(120))) >= Duration::from_secs(120));
        assert_eq!(backoff(30, None), MAX_BACKOFF);
        assert_eq!(backoff(1, Some(Duration::from_secs(86_400))), MAX_BACKOFF);
    }
}
