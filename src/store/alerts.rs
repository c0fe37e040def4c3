//! Rows of the alerting pipeline: alert groups (what each group last told people) and the
//! outbox (notifications decided but not yet delivered, one row per channel). Silences live
//! in [`super::silences`].
//!
//! Plain SQL over a `&Connection`, like [`super::failures`], so the evaluator can change a
//! group, mark failures and enqueue its notifications in one transaction. The policy lives in
//! `crate::alert`; nothing here decides when to notify.

use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

// ---------------------------------------------------------------- alert groups

/// One alert group (`app:<app_id>` or `daemon:health`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertGroup {
    pub group_key: String,
    pub app_id: Option<String>,
    /// The last notification sent for the group was a firing one (an episode is open).
    pub firing: bool,
    /// Fingerprint of the failure set in the last firing notification.
    pub fingerprint: Option<String>,
    /// Failure ids sent as firing during the current episode.
    pub sent_failures: Vec<i64>,
    /// When the group first had something (new) to send; the group wait counts from here.
    pub pending_since: Option<i64>,
    pub last_sent_at: Option<i64>,
}

impl AlertGroup {
    /// Ends the group's episode: nothing of it is firing any more.
    pub fn close_episode(&mut self) {
        self.firing = false;
        self.fingerprint = None;
        self.sent_failures.clear();
    }
}

fn group_from_row(r: &Row<'_>) -> rusqlite::Result<AlertGroup> {
    let sent: Option<String> = r.get(4)?;
    Ok(AlertGroup {
        group_key: r.get(0)?,
        app_id: r.get(1)?,
        firing: r.get(2)?,
        fingerprint: r.get(3)?,
        // A row this build cannot parse is treated as "nothing sent": at worst one extra
        // notification, never a lost one.
        sent_failures: sent
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        pending_since: r.get(5)?,
        last_sent_at: r.get(6)?,
    })
}

const GROUP_COLUMNS: &str =
    "group_key, app_id, firing, fingerprint, sent_failures, pending_since, last_sent_at";

pub fn get_group(c: &Connection, key: &str) -> Result<Option<AlertGroup>, StoreError> {
    Ok(c.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM alert_groups WHERE group_key = ?1"),
        [key],
        group_from_row,
    )
    .optional()?)
}

pub fn list_groups(c: &Connection) -> Result<Vec<AlertGroup>, StoreError> {
    let mut stmt = c.prepare(&format!(
        "SELECT {GROUP_COLUMNS} FROM alert_groups ORDER BY group_key"
    ))?;
    let rows = stmt.query_map([], group_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn put_group(c: &Connection, g: &AlertGroup) -> Result<(), StoreError> {
    let sent = serde_json::to_string(&g.sent_failures).unwrap_or_else(|_| "[]".into());
    c.execute(
        "INSERT INTO alert_groups (group_key, app_id, firing, fingerprint, sent_failures,
            pending_since, last_sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (group_key) DO UPDATE SET app_id = excluded.app_id,
            firing = excluded.firing, fingerprint = excluded.fingerprint,
            sent_failures = excluded.sent_failures, pending_since = excluded.pending_since,
            last_sent_at = excluded.last_sent_at",
        params![
            g.group_key,
            g.app_id,
            g.firing,
            g.fingerprint,
            sent,
            g.pending_since,
            g.last_sent_at
        ],
    )?;
    Ok(())
}

// ---------------------------------------------------------------- outbox

/// One outbox row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub channel: String,
    /// `firing`, `resolved`, `digest`, `health`.
    pub kind: String,
    pub group_key: Option<String>,
    /// The `AlertMessage` as JSON.
    pub payload: String,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: u32,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
}

const OUTBOX_COLUMNS: &str = "id, channel, kind, group_key, payload, created_at, next_attempt_at, \
    attempts, state, last_error, sent_at";

fn outbox_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        channel: r.get(1)?,
        kind: r.get(2)?,
        group_key: r.get(3)?,
        payload: r.get(4)?,
        created_at: r.get(5)?,
        next_attempt_at: r.get(6)?,
        attempts: r.get(7)?,
        state: r.get(8)?,
        last_error: r.get(9)?,
        sent_at: r.get(10)?,
    })
}

pub fn insert_outbox(
    c: &Connection,
    channel: &str,
    kind: &str,
    group_key: Option<&str>,
    payload: &str,
    now: i64,
) -> Result<i64, StoreError> {
    c.execute(
        "INSERT INTO outbox (channel, kind, group_key, payload, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![channel, kind, group_key, payload, now],
    )?;
    Ok(c.last_insert_rowid())
}

/// Pending rows of `channel` due at `now`, oldest first.
pub fn due_outbox(
    c: &Connection,
    channel: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = c.prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox
         WHERE state = 'pending' AND channel = ?1 AND next_attempt_at <= ?2
         ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![channel, now, limit as i64], outbox_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Rows in `state`, oldest first (`pending`, `sent`, `failed`).
pub fn outbox_in_state(c: &Connection, state: &str) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = c.prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([state], outbox_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn list_outbox(c: &Connection) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = c.prepare(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id"))?;
    let rows = stmt.query_map([], outbox_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Marks a pending row delivered. Returns false when it was not pending any more.
pub fn mark_sent(c: &Connection, id: i64, now: i64) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
         WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )?;
    Ok(n > 0)
}

/// Records a transient failure and when to try again.
pub fn mark_retry(
    c: &Connection,
    id: i64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE id = ?1 AND state = 'pending'",
        params![id, next_attempt_at, error],
    )?;
    Ok(())
}

/// Gives up on a row: retrying cannot help until configuration changes.
pub fn mark_failed(c: &Connection, id: i64, now: i64, error: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?3,
            next_attempt_at = ?2
         WHERE id = ?1 AND state = 'pending'",
        params![id, now, error],
    )?;
    Ok(())
}

/// Drops delivered rows older than `before`, keeping failed ones for `status`/`doctor`.
pub fn prune_sent(c: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(c.execute(
        "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?1",
        [before],
    )?)
}

/// Gives up on pending rows of channels that are no longer configured (the config changed
/// since they were queued); without this they would wait forever. Returns how many.
pub fn fail_unconfigured(
    c: &Connection,
    configured: &[&str],
    now: i64,
) -> Result<usize, StoreError> {
    let mut n = 0;
    let mut stmt = c.prepare("SELECT DISTINCT channel FROM outbox WHERE state = 'pending'")?;
    let pending: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for ch in pending
        .iter()
        .filter(|ch| !configured.contains(&ch.as_str()))
    {
        n += c.execute(
            "UPDATE outbox SET state = 'failed', next_attempt_at = ?2,
                last_error = 'channel no longer configured'
             WHERE state = 'pending' AND channel = ?1",
            rusqlite::params![ch, now],
        )?;
    }
    Ok(n)
}

// ---------------------------------------------------------------- moved out

// Silences moved to `super::silences` and app names to `super::apps`; these names are kept so
// callers on other branches still compile until the integrator removes them.
pub use super::apps::{label as app_label, name as app_name, resolve as resolve_app};
pub use super::silences::{
    active as active_silences, add as add_silence, for_app as silence_for,
    remove as remove_silence, Silence,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_removed_channels_are_failed_not_left_pending() {
        let s = crate::store::Store::open_in_memory().unwrap();
        s.blocking(|c| {
            for ch in ["slack", "email", "console"] {
                c.execute(
                    "INSERT INTO outbox (channel, kind, payload, created_at, next_attempt_at) VALUES (?1, 'firing', '{}', 1, 1)",
                    [ch],
                )?;
            }
            assert_eq!(fail_unconfigured(c, &["slack", "email"], 5)?, 1);
            let states: Vec<(String, String)> = c
                .prepare("SELECT channel, state FROM outbox ORDER BY channel")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            assert_eq!(
                states,
                [("console".into(), "failed".into()), ("email".into(), "pending".into()), ("slack".into(), "pending".into())]
            );
            Ok(())
        })
        .unwrap();
    }
    use crate::store::Store;

    #[test]
    fn groups_round_trip_and_outbox_states() {
        let s = Store::open_in_memory().unwrap();
        s.blocking(|c| {
            let g = AlertGroup {
                group_key: "app:1".into(),
                app_id: Some("1".into()),
                firing: true,
                fingerprint: Some("f".into()),
                sent_failures: vec![3, 4],
                pending_since: None,
                last_sent_at: Some(10),
            };
            put_group(c, &g)?;
            assert_eq!(get_group(c, "app:1")?, Some(g));
            let id = insert_outbox(c, "slack", "firing", Some("app:1"), "{}", 5)?;
            assert_eq!(due_outbox(c, "slack", 4, 10)?.len(), 0);
            assert_eq!(due_outbox(c, "slack", 5, 10)?.len(), 1);
            mark_retry(c, id, 100, "429")?;
            assert!(due_outbox(c, "slack", 99, 10)?.is_empty());
            mark_failed(c, id, 100, "no_service")?;
            assert!(!mark_sent(c, id, 101)?);
            assert_eq!(outbox_in_state(c, "failed")?[0].attempts, 2);
            Ok(())
        })
        .unwrap();
    }
}
