//! Retries whose push is awaiting its outcome: ending the claim without counting the attempt,
//! remembering the push, and finding the ones the System Log already answered.

use super::super::failures::{self, COLUMNS};
use super::super::{StoreError, Tx};
use super::finish::{finish, Finish, Finished};
use crate::domain::{Failure, HistoryKind};
use rusqlite::{params, OptionalExtension};

/// A pushed retry awaiting its outcome (see [`await_outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// When the POST went out (our clock).
    pub at: i64,
    /// Until when the System Log may answer before a read-back decides.
    pub confirm_by: i64,
}

/// Ends `owner`'s claim on a failure whose user was just pushed again, without counting the
/// attempt yet: the failure now awaits the push's outcome. The poller resolves it on a
/// success event; [`answered_by_log`] finds the ones a newer failure event answered; at
/// `confirm_by` the failure is due again and one read-back decides. Nothing holds a claim or
/// a task meanwhile.
pub fn await_outcome(
    tx: &Tx<'_>,
    id: i64,
    owner: &str,
    pushed: Pushed,
    now: i64,
    actor: &str,
) -> Result<Finished, StoreError> {
    let detail = format!(
        "pushed again; awaiting the outcome in the System Log (a read-back after {} s)",
        pushed.confirm_by.saturating_sub(now).max(0) / 1000
    );
    let how = Finish::Requeue {
        kind: HistoryKind::RetryPushed,
        detail,
        count_attempt: false,
        next_attempt_at: Some(pushed.confirm_by),
        exhausted: None,
    };
    let done = finish(tx, id, owner, now, actor, &how)?;
    if done != Finished::NotHeld {
        tx.conn().execute(
            "UPDATE failures SET pushed_at = ?2, confirm_by = ?3, pushed_event_uuid = event_uuid
             WHERE id = ?1",
            params![id, pushed.at, pushed.confirm_by],
        )?;
    }
    Ok(done)
}

/// The push `id` awaits the outcome of, if any.
pub fn pushed(tx: &Tx<'_>, id: i64) -> Result<Option<Pushed>, StoreError> {
    let row: Option<(Option<i64>, Option<i64>)> = tx
        .conn()
        .query_row(
            "SELECT pushed_at, confirm_by FROM failures WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        Some((Some(at), Some(confirm_by))) => Some(Pushed { at, confirm_by }),
        _ => None,
    })
}

/// Forgets the push `id` awaited (its outcome was recorded).
pub fn clear_pushed(tx: &Tx<'_>, id: i64) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE failures SET pushed_at = NULL, confirm_by = NULL, pushed_event_uuid = NULL
         WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// How far Okta's `published` times may lag our clock: a failure event (a new one, by uuid)
/// published up to this long before our `POST` still answers it, since nothing but a push
/// produces one, while a tolerance of zero would miss answers from an org whose clock runs a
/// little behind ours and spend a read-back on each.
pub const LOG_CLOCK_SKEW_MS: i64 = 5_000;

/// Failures awaiting a push's outcome that the System Log answered with a failure event
/// published at or after the push (the poller refreshed `event_published`), unclaimed, oldest
/// first; at most `limit`. Pushes of failures resolved meanwhile (a success event, a scan)
/// are forgotten here as well.
pub fn answered_by_log(tx: &Tx<'_>, now: i64, limit: usize) -> Result<Vec<Failure>, StoreError> {
    tx.conn().execute(
        "UPDATE failures SET pushed_at = NULL, confirm_by = NULL, pushed_event_uuid = NULL
         WHERE pushed_at IS NOT NULL AND state = 'resolved'",
        [],
    )?;
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM failures
         WHERE pushed_at IS NOT NULL AND state != 'resolved'
           AND event_uuid IS NOT pushed_event_uuid AND event_published >= pushed_at - ?3
           AND (claimed_until IS NULL OR claimed_until <= ?1)
         ORDER BY pushed_at, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![
            now,
            i64::try_from(limit.max(1)).unwrap_or(i64::MAX),
            LOG_CLOCK_SKEW_MS
        ],
        failures::from_row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
