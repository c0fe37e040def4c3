//! Which failures are due for an automatic retry or a circuit probe, when the next one
//! becomes due, and which unresolved failures belong to an app or a user (for the CLI and an
//! app whose circuit closed).

use super::super::failures::{self};
use super::super::{StoreError, Tx};
use super::{columns_of, op_list};
use crate::domain::{Failure, Operation};
use rusqlite::{params, OptionalExtension};

/// What a failure selection for automatic retries needs to know.
#[derive(Clone, Copy, Debug)]
pub struct DueQuery<'a> {
    pub now: i64,
    /// A failure never tried is due at `first_seen + initial_backoff_ms`.
    pub initial_backoff_ms: i64,
    pub ops: &'a [Operation],
}

/// Unresolved, unclaimed (or lease expired), not exhausted user failures of a retryable
/// operation, whose next attempt is due, of apps whose circuit is not open; earliest first.
pub fn next_due(tx: &Tx<'_>, q: &DueQuery<'_>) -> Result<Option<Failure>, StoreError> {
    let sql = format!(
        "SELECT {cols} FROM failures f
         WHERE f.state != 'resolved' AND f.user_id != '' AND f.retry_exhausted = 0
           AND f.operation IN ({ops})
           AND (f.claimed_until IS NULL OR f.claimed_until <= ?1)
           AND COALESCE(f.next_attempt_at, f.first_seen + ?2) <= ?1
           AND NOT EXISTS (SELECT 1 FROM circuits ci WHERE ci.app_id = f.app_id AND ci.state = 'open')
           -- One push of a user at a time: another failure of the same app user (say its
           -- create and its update) may be in the middle of a retry.
           AND NOT EXISTS (SELECT 1 FROM failures g
                            WHERE g.app_id = f.app_id AND g.user_id = f.user_id AND g.id != f.id
                              AND g.claimed_until > ?1)
         ORDER BY COALESCE(f.next_attempt_at, f.first_seen + ?2), f.id
         LIMIT 1",
        cols = columns_of("f"),
        ops = op_list(q.ops)
    );
    Ok(tx
        .conn()
        .query_row(
            &sql,
            params![q.now, q.initial_backoff_ms],
            failures::from_row,
        )
        .optional()?)
}

/// When the next automatic retry or probe may become due (ms), for the worker's idle sleep.
pub fn next_wakeup(tx: &Tx<'_>, q: &DueQuery<'_>) -> Result<Option<i64>, StoreError> {
    let sql = format!(
        "SELECT MIN(t) FROM (
            SELECT MAX(COALESCE(f.next_attempt_at, f.first_seen + ?1), COALESCE(f.claimed_until, 0)) AS t
              FROM failures f
             WHERE f.state != 'resolved' AND f.user_id != '' AND f.retry_exhausted = 0
               AND f.operation IN ({ops})
               AND NOT EXISTS (SELECT 1 FROM circuits ci WHERE ci.app_id = f.app_id AND ci.state = 'open')
            UNION ALL
            SELECT next_probe_at FROM circuits WHERE state = 'open' AND next_probe_at IS NOT NULL)",
        ops = op_list(q.ops)
    );
    Ok(tx
        .conn()
        .query_row(&sql, [q.initial_backoff_ms], |r| r.get(0))?)
}

/// The failure a probe of `app_id`'s circuit retries: any unclaimed, unresolved user failure
/// of a retryable operation, preferring a pushed one awaiting its outcome (the read-back that
/// finishes the last probe), then ones not exhausted and due soonest. Its own backoff is
/// ignored: the circuit's probe schedule governs while the circuit is open.
pub fn probe_candidate(
    tx: &Tx<'_>,
    app_id: &str,
    q: &DueQuery<'_>,
) -> Result<Option<Failure>, StoreError> {
    let sql = format!(
        "SELECT {cols} FROM failures f
         WHERE f.app_id = ?3 AND f.state != 'resolved' AND f.user_id != ''
           AND f.operation IN ({ops})
           AND (f.claimed_until IS NULL OR f.claimed_until <= ?1)
         -- A probe whose push awaits its outcome is read back before another user is probed.
         ORDER BY f.pushed_at IS NULL, f.retry_exhausted,
                  COALESCE(f.next_attempt_at, f.first_seen + ?2), f.id
         LIMIT 1",
        cols = columns_of("f"),
        ops = op_list(q.ops)
    );
    Ok(tx
        .conn()
        .query_row(
            &sql,
            params![q.now, q.initial_backoff_ms, app_id],
            failures::from_row,
        )
        .optional()?)
}

/// Unresolved failures of one app whose user is `user` (id or login, case-insensitive login).
pub fn find_for_user(
    tx: &Tx<'_>,
    user: &str,
    app: Option<&str>,
) -> Result<Vec<Failure>, StoreError> {
    match app {
        Some(a) => failures::list_where(
            tx,
            "state != 'resolved' AND (user_id = ?1 OR lower(user_login) = lower(?1))
             AND (app_id = ?2 OR lower(app_label) = lower(?2))",
            params![user, a],
        ),
        None => failures::list_where(
            tx,
            "state != 'resolved' AND (user_id = ?1 OR lower(user_login) = lower(?1))",
            params![user],
        ),
    }
}

/// Unresolved failures of an app given by id or label (case-insensitive).
pub fn find_for_app(tx: &Tx<'_>, app: &str) -> Result<Vec<Failure>, StoreError> {
    failures::list_where(
        tx,
        "state != 'resolved' AND (app_id = ?1 OR lower(app_label) = lower(?1)
            OR app_id IN (SELECT app_id FROM apps WHERE lower(label) = lower(?1)))",
        params![app],
    )
}

/// Unresolved user failures of `app_id` of one of `ops`, claimed or not: the users an open
/// circuit's probe could still try.
pub fn waiting_users(tx: &Tx<'_>, app_id: &str, ops: &[Operation]) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row(
        &format!(
            "SELECT COUNT(*) FROM failures WHERE app_id = ?1 AND user_id != ''
               AND state != 'resolved' AND operation IN ({})",
            op_list(ops)
        ),
        [app_id],
        |r| r.get(0),
    )?)
}

/// An app's circuit closed: the failures that waited behind it are due now.
pub fn resume_app(tx: &Tx<'_>, app_id: &str, now: i64) -> Result<usize, StoreError> {
    Ok(tx.conn().execute(
        "UPDATE failures SET next_attempt_at = ?2
         WHERE app_id = ?1 AND user_id != '' AND state != 'resolved' AND retry_exhausted = 0
           AND COALESCE(next_attempt_at, 0) > ?2",
        params![app_id, now],
    )?)
}
