//! Exhausted failures re-armed by a profile change: noting the change, finding candidates,
//! and making one more retry due.

use super::super::failures::{self, COLUMNS};
use super::super::{history, StoreError, Tx};
use crate::domain::{Failure, HistoryKind};
use rusqlite::{params, OptionalExtension};

/// A `user.account.update_profile` of `user_id` published at `published` was seen (the
/// poller): every unresolved failure of the user whose last event is older notes it. Whether
/// that earns a retry is the retry worker's decision by failure class. Returns how many
/// failures noted it.
pub fn note_profile_change(
    tx: &Tx<'_>,
    user_id: &str,
    published: i64,
) -> Result<usize, StoreError> {
    if user_id.is_empty() {
        return Ok(0);
    }
    Ok(tx.conn().execute(
        "UPDATE failures SET profile_changed_at = ?2
         WHERE user_id = ?1 AND state != 'resolved' AND COALESCE(event_published, 0) < ?2
           AND COALESCE(profile_changed_at, 0) < ?2",
        params![user_id, published],
    )?)
}

/// Unresolved failures marked exhausted whose user's profile changed since: candidates for
/// one more retry (the worker decides by class); at most `limit`.
pub fn exhausted_with_profile_change(
    tx: &Tx<'_>,
    limit: usize,
) -> Result<Vec<Failure>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM failures
         WHERE profile_changed_at IS NOT NULL AND retry_exhausted = 1 AND state != 'resolved'
         ORDER BY profile_changed_at, id LIMIT ?1"
    ))?;
    let rows = stmt.query_map(
        [i64::try_from(limit.max(1)).unwrap_or(i64::MAX)],
        failures::from_row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Makes failure `id` due now for one more retry (its user's profile changed), clearing
/// `retry_exhausted`, with a history row saying why.
pub fn rearm(tx: &Tx<'_>, id: i64, now: i64, actor: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE failures SET retry_exhausted = 0, next_attempt_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    history::add(
        tx,
        id,
        now,
        HistoryKind::RetryHeld,
        actor,
        Some("the user's Okta profile changed: one more retry is due"),
    )
}

/// When the user's profile last changed after failure `id`'s last attempt (`None`: not since).
pub fn profile_changed_at(tx: &Tx<'_>, id: i64) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT profile_changed_at FROM failures WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// The retry after a profile change is being made: the next one needs another change.
pub fn clear_profile_changed(tx: &Tx<'_>, id: i64) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE failures SET profile_changed_at = NULL WHERE id = ?1",
        [id],
    )?;
    Ok(())
}
