//! The `outbox` table: notifications decided but not yet delivered, one row per (notification,
//! channel), with their delivery state (`pending`, `sent`, `failed`), attempts and last error.
//!
//! The delivery rules (who writes rows, backoff, at-least-once) live in `crate::alert::outbox`
//! and `crate::alert::sender`; this module only stores and reads rows, inside the caller's
//! [`Tx`], so a decision and its notifications commit together.

use super::{StoreError, Tx};
use rusqlite::{params, Row};
use serde::Serialize;

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

pub fn insert(
    tx: &Tx<'_>,
    channel: &str,
    kind: &str,
    group_key: Option<&str>,
    payload: &str,
    now: i64,
) -> Result<i64, StoreError> {
    tx.conn().execute(
        "INSERT INTO outbox (channel, kind, group_key, payload, created_at, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![channel, kind, group_key, payload, now],
    )?;
    Ok(tx.conn().last_insert_rowid())
}

/// Pending rows of `channel` due at `now`, oldest first.
pub fn due(
    tx: &Tx<'_>,
    channel: &str,
    now: i64,
    limit: usize,
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox
         WHERE state = 'pending' AND channel = ?1 AND next_attempt_at <= ?2
         ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![channel, now, limit as i64], outbox_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Rows in `state`, oldest first (`pending`, `sent`, `failed`).
pub fn in_state(tx: &Tx<'_>, state: &str) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([state], outbox_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = tx
        .conn()
        .prepare(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id"))?;
    let rows = stmt.query_map([], outbox_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Marks a pending row delivered. Returns false when it was not pending any more.
pub fn mark_sent(tx: &Tx<'_>, id: i64, now: i64) -> Result<bool, StoreError> {
    let n = tx.conn().execute(
        "UPDATE outbox SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
         WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )?;
    Ok(n > 0)
}

/// Records a transient failure and when to try again.
pub fn mark_retry(
    tx: &Tx<'_>,
    id: i64,
    next_attempt_at: i64,
    error: &str,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE id = ?1 AND state = 'pending'",
        params![id, next_attempt_at, error],
    )?;
    Ok(())
}

/// Gives up on a row: retrying cannot help until configuration changes.
pub fn mark_failed(tx: &Tx<'_>, id: i64, now: i64, error: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?3,
            next_attempt_at = ?2
         WHERE id = ?1 AND state = 'pending'",
        params![id, now, error],
    )?;
    Ok(())
}

/// Drops delivered rows older than `before`, keeping failed ones for `status`/`doctor`.
pub fn prune_sent(tx: &Tx<'_>, before: i64) -> Result<usize, StoreError> {
    Ok(tx.conn().execute(
        "DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?1",
        [before],
    )?)
}

/// Gives up on pending rows of channels that are no longer configured (the config changed
/// since they were queued); without this they would wait forever. Returns how many.
pub fn fail_unconfigured(tx: &Tx<'_>, configured: &[&str], now: i64) -> Result<usize, StoreError> {
    let mut n = 0;
    let mut stmt = tx
        .conn()
        .prepare("SELECT DISTINCT channel FROM outbox WHERE state = 'pending'")?;
    let pending: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for ch in pending
        .iter()
        .filter(|ch| !configured.contains(&ch.as_str()))
    {
        n += tx.conn().execute(
            "UPDATE outbox SET state = 'failed', next_attempt_at = ?2,
                last_error = 'channel no longer configured'
             WHERE state = 'pending' AND channel = ?1",
            rusqlite::params![ch, now],
        )?;
    }
    Ok(n)
}

/// Rows still waiting for delivery (for `status`).
pub fn pending_count(tx: &Tx<'_>) -> Result<usize, StoreError> {
    let n: i64 = tx.conn().query_row(
        "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn rows_of_removed_channels_are_failed_not_left_pending() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            for ch in ["slack", "email", "console"] {
                insert(tx, ch, "firing", None, "{}", 1)?;
            }
            assert_eq!(fail_unconfigured(tx, &["slack", "email"], 5)?, 1);
            let states: Vec<(String, String)> = list(tx)?
                .into_iter()
                .map(|r| (r.channel, r.state))
                .collect();
            assert_eq!(
                states,
                [
                    ("slack".into(), "pending".into()),
                    ("email".into(), "pending".into()),
                    ("console".into(), "failed".into())
                ]
            );
            assert_eq!(pending_count(tx)?, 2);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn outbox_states() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let id = insert(tx, "slack", "firing", Some("app:1"), "{}", 5)?;
            assert_eq!(due(tx, "slack", 4, 10)?.len(), 0);
            assert_eq!(due(tx, "slack", 5, 10)?.len(), 1);
            mark_retry(tx, id, 100, "429")?;
            assert!(due(tx, "slack", 99, 10)?.is_empty());
            mark_failed(tx, id, 100, "no_service")?;
            assert!(!mark_sent(tx, id, 101)?);
            assert_eq!(in_state(tx, "failed")?[0].attempts, 2);
            assert_eq!(prune_sent(tx, i64::MAX)?, 0);
            Ok(())
        })
        .unwrap();
    }
}
