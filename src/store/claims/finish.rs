//! Ending claims: a finished retry (counted, rescheduled or resolved), leases that expired,
//! and every claim a claimer (or its predecessors) still holds at shutdown or restart.

use super::super::failures::{self};
use super::super::{history, StoreError, Tx};
use super::claim::holds;
use crate::domain::{HistoryKind, State};
use rusqlite::params;

/// How a claimed retry ended, for [`finish`].
#[derive(Clone, Debug)]
pub enum Finish {
    /// The failure is fixed: resolve it with this history detail.
    Resolved { detail: String },
    /// Back to its previous state with a new schedule.
    Requeue {
        /// History kind, e.g. [`HistoryKind::RetryFailed`] or [`HistoryKind::RetryDeferred`].
        kind: HistoryKind,
        detail: String,
        /// Whether this counts as an attempt.
        count_attempt: bool,
        next_attempt_at: Option<i64>,
        /// Set `retry_exhausted` (and write a `retries_exhausted` row with this detail).
        exhausted: Option<String>,
    },
}

/// What [`finish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Resolved,
    Requeued,
    Exhausted,
    /// The claim was no longer ours (resolved meanwhile, or lease lost): only history written.
    NotHeld,
}

/// Ends `owner`'s claim on `id`: counts the attempt, schedules the next one or resolves, and
/// writes history, in the caller's transaction.
pub fn finish(
    tx: &Tx<'_>,
    id: i64,
    owner: &str,
    now: i64,
    actor: &str,
    how: &Finish,
) -> Result<Finished, StoreError> {
    if !holds(tx, id, owner)? {
        let (kind, detail) = match how {
            Finish::Resolved { detail } => (HistoryKind::RetrySucceeded, detail.as_str()),
            Finish::Requeue { kind, detail, .. } => (*kind, detail.as_str()),
        };
        let resolved = failures::get(tx, id)?.is_some_and(|f| f.state == State::Resolved);
        let detail = if resolved {
            format!("{detail} (the failure had already been resolved meanwhile)")
        } else {
            format!("{detail} (claim no longer held; not applied)")
        };
        history::add(tx, id, now, kind, actor, Some(&detail))?;
        return Ok(Finished::NotHeld);
    }
    match how {
        Finish::Resolved { detail } => {
            tx.conn().execute(
                "UPDATE failures SET attempts = attempts + 1, claim_prev_state = NULL WHERE id = ?1",
                [id],
            )?;
            // The retry just read the app user fixed (or gone): that observation is as new as
            // `now`, so a failure event published before it (the System Log is read with lag)
            // is stale and must not reopen the failure.
            let seen: Option<i64> = tx.conn().query_row(
                "SELECT event_published FROM failures WHERE id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let observed = seen.map_or(now, |p| p.max(now));
            failures::resolve(tx, id, now, Some(observed), actor, detail)?;
            Ok(Finished::Resolved)
        }
        Finish::Requeue {
            kind,
            detail,
            count_attempt,
            next_attempt_at,
            exhausted,
        } => {
            tx.conn().execute(
                "UPDATE failures SET
                    attempts = attempts + ?2,
                    next_attempt_at = COALESCE(?3, next_attempt_at),
                    retry_exhausted = MAX(retry_exhausted, ?4),
                    state = COALESCE(claim_prev_state, 'open'),
                    claim_prev_state = NULL, claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?1",
                params![
                    id,
                    u32::from(*count_attempt),
                    next_attempt_at,
                    exhausted.is_some()
                ],
            )?;
            history::add(tx, id, now, *kind, actor, Some(detail))?;
            if let Some(why) = exhausted {
                history::add(tx, id, now, HistoryKind::RetriesExhausted, actor, Some(why))?;
                return Ok(Finished::Exhausted);
            }
            Ok(Finished::Requeued)
        }
    }
}

/// Ends every claim whose lease expired (its claimer was killed, crashed or hung mid-retry):
/// the failure goes back to the state it was claimed from, without counting an attempt, and
/// a `retry_lease_expired` history row names the lost claimer. Without this a failure the
/// automatic selection skips (exhausted, claimed by a `retry` command, retries disabled)
/// would stay `retrying` forever. Returns the failures released.
pub fn expire_leases(tx: &Tx<'_>, now: i64, actor: &str) -> Result<Vec<i64>, StoreError> {
    let expired: Vec<(i64, Option<String>)> = {
        let mut stmt = tx.conn().prepare(
            "SELECT id, claimed_by FROM failures
             WHERE state = 'retrying' AND COALESCE(claimed_until, 0) <= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for (id, by) in &expired {
        let detail = format!(
            "the claim of {} expired before its retry finished; not counted as an attempt",
            by.as_deref().unwrap_or("an unknown claimer")
        );
        release_one(tx, *id, now, HistoryKind::RetryLeaseExpired, actor, &detail)?;
    }
    Ok(expired.into_iter().map(|(id, _)| id).collect())
}

/// Releases every claim `owner` still holds (shutdown with retries in flight), without
/// counting an attempt. Returns how many were released.
pub fn release_all(tx: &Tx<'_>, owner: &str, now: i64, actor: &str) -> Result<usize, StoreError> {
    let ids: Vec<i64> = {
        let mut stmt = tx.conn().prepare(
            "SELECT id FROM failures WHERE state = 'retrying' AND claimed_by = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([owner], |r| r.get(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for id in &ids {
        finish(
            tx,
            *id,
            owner,
            now,
            actor,
            &Finish::Requeue {
                kind: HistoryKind::RetryInterrupted,
                detail: "retry interrupted by shutdown; not counted as an attempt".into(),
                count_attempt: false,
                next_attempt_at: None,
                exhausted: None,
            },
        )?;
    }
    Ok(ids.len())
}

/// Releases at once every claim held by a claimer whose id starts with `prefix` other than
/// `keep` (issue 10, defect 12). Only for a daemon holding the state's exclusive lock: then no
/// other daemon can be running on this store, so any daemon claim but its own was left by a
/// predecessor that died mid-retry (`kill -9`, a crash, a power cut), and waiting out its
/// 10-minute lease would only delay the retry. Claims of `retry` commands (another prefix) are
/// left to their leases: such a command may still be running beside the daemon. Each release
/// writes a `retry_interrupted` history row naming the dead claimer and is not counted as an
/// attempt. Returns the failures released.
pub fn release_predecessors(
    tx: &Tx<'_>,
    prefix: &str,
    keep: &str,
    now: i64,
    actor: &str,
) -> Result<Vec<i64>, StoreError> {
    let held: Vec<(i64, String)> = {
        let mut stmt = tx.conn().prepare(
            "SELECT id, claimed_by FROM failures
             WHERE state = 'retrying' AND claimed_by IS NOT NULL AND claimed_by != ?1
               AND substr(claimed_by, 1, length(?2)) = ?2
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![keep, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for (id, by) in &held {
        let detail = format!(
            "released at start: the daemon that claimed it ({by}) is no longer running; not counted as an attempt"
        );
        release_one(tx, *id, now, HistoryKind::RetryInterrupted, actor, &detail)?;
    }
    Ok(held.into_iter().map(|(id, _)| id).collect())
}

/// Gives one claimed failure back to the state it had before the claim, without counting an
/// attempt, and says why in its history.
fn release_one(
    tx: &Tx<'_>,
    id: i64,
    now: i64,
    kind: HistoryKind,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE failures SET state = COALESCE(claim_prev_state, 'open'),
            claim_prev_state = NULL, claimed_by = NULL, claimed_until = NULL
         WHERE id = ?1",
        [id],
    )?;
    history::add(tx, id, now, kind, actor, Some(detail))
}
