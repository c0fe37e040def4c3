//! Taking a claim (a lease) on one failure, setting a due failure aside without a retry, and
//! checking who holds what.

use super::super::failures::{self};
use super::super::{history, StoreError, Tx};
use super::finish::{finish, Finish, Finished};
use super::pushed::Pushed;
use crate::domain::{Failure, HistoryKind, State};
use rusqlite::{params, OptionalExtension};

/// A held claim on one failure.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The failure as it was when claimed (its `state` is the state before the claim).
    pub failure: Failure,
    pub owner: String,
    pub until: i64,
    /// This retry probes an open circuit.
    pub probe: bool,
    /// The failure awaits the outcome of this earlier push: the retry is its read-back.
    pub pushed: Option<Pushed>,
}

/// Why a failure could not be claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotClaimed {
    NotFound,
    Resolved,
    /// Someone else holds an unexpired claim.
    Busy {
        by: String,
        until: i64,
    },
}

/// Claims failure `id` for `owner` until `until` if it is unresolved and unclaimed (or its
/// lease expired), writing a `retry_started` history row. Run inside a `BEGIN IMMEDIATE`
/// transaction.
pub fn claim(
    tx: &Tx<'_>,
    id: i64,
    owner: &str,
    now: i64,
    until: i64,
    actor: &str,
    detail: &str,
) -> Result<Result<Claim, NotClaimed>, StoreError> {
    claim_with(tx, id, owner, now, until, actor, Some(detail))
}

/// [`claim`], writing the `retry_started` row only with a `detail` (a read-back continues an
/// attempt already started and recorded).
pub fn claim_with(
    tx: &Tx<'_>,
    id: i64,
    owner: &str,
    now: i64,
    until: i64,
    actor: &str,
    detail: Option<&str>,
) -> Result<Result<Claim, NotClaimed>, StoreError> {
    let Some(before) = failures::get(tx, id)? else {
        return Ok(Err(NotClaimed::NotFound));
    };
    let n = tx.conn().execute(
        "UPDATE failures SET
            claim_prev_state = CASE WHEN state = 'retrying' THEN COALESCE(claim_prev_state, 'open')
                                    ELSE state END,
            state = 'retrying', claimed_by = ?2, claimed_until = ?3
         WHERE id = ?1 AND state != 'resolved' AND (claimed_until IS NULL OR claimed_until <= ?4)",
        params![id, owner, until, now],
    )?;
    if n == 0 {
        if before.state == State::Resolved {
            return Ok(Err(NotClaimed::Resolved));
        }
        let (by, until): (Option<String>, Option<i64>) = tx.conn().query_row(
            "SELECT claimed_by, claimed_until FROM failures WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        return Ok(Err(NotClaimed::Busy {
            by: by.unwrap_or_default(),
            until: until.unwrap_or_default(),
        }));
    }
    if let Some(detail) = detail {
        history::add(tx, id, now, HistoryKind::RetryStarted, actor, Some(detail))?;
    }
    let mut failure = before;
    if failure.state == State::Retrying {
        // A lease that expired under a crashed claimer: report the state it was claimed from.
        let prev: Option<String> = tx.conn().query_row(
            "SELECT claim_prev_state FROM failures WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        failure.state = prev
            .as_deref()
            .and_then(State::parse)
            .unwrap_or(State::Open);
    }
    Ok(Ok(Claim {
        failure,
        owner: owner.to_string(),
        until,
        probe: false,
        pushed: None,
    }))
}

/// Ends a due failure's turn without a retry (the retry worker set it aside by its failure
/// class: watched, or left for a person): takes it like [`claim`] but writes no
/// `retry_started` row, then [`finish`]es it with `how`. `NotHeld` when someone else holds it.
pub fn set_aside(
    tx: &Tx<'_>,
    id: i64,
    owner: &str,
    now: i64,
    actor: &str,
    how: &Finish,
) -> Result<Finished, StoreError> {
    let n = tx.conn().execute(
        "UPDATE failures SET
            claim_prev_state = CASE WHEN state = 'retrying' THEN COALESCE(claim_prev_state, 'open')
                                    ELSE state END,
            state = 'retrying', claimed_by = ?2, claimed_until = ?3
         WHERE id = ?1 AND state != 'resolved' AND (claimed_until IS NULL OR claimed_until <= ?3)",
        params![id, owner, now],
    )?;
    if n == 0 {
        return Ok(Finished::NotHeld);
    }
    finish(tx, id, owner, now, actor, how)
}

/// Failures claimed right now (by anyone), for `status` and tests.
pub fn claimed_count(tx: &Tx<'_>) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COUNT(*) FROM failures WHERE state = 'retrying'",
        [],
        |r| r.get(0),
    )?)
}

/// Whether `owner` still holds the claim on `id`.
pub fn holds(tx: &Tx<'_>, id: i64, owner: &str) -> Result<bool, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT 1 FROM failures WHERE id = ?1 AND state = 'retrying' AND claimed_by = ?2",
            params![id, owner],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}
