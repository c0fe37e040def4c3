//! Retry claims on failures: claiming a failure for a retry, finishing or releasing the claim,
//! and selecting what is due. (The per-app circuit breaker rows are [`super::circuits`].)
//!
//! A claim is a lease: `claimed_by` names the claimer (one id per worker or `retry` command
//! run) and `claimed_until` when the lease ends, so a claimer that crashed mid-retry blocks a
//! failure only until its lease expires. Claims are taken with a conditional `UPDATE` inside a
//! `BEGIN IMMEDIATE` transaction (the caller's), which SQLite serializes across processes:
//! two claimers can never both hold the same failure. Finishing checks the claim is still
//! ours, so a retry that outlived its lease never overwrites the next claimer's result.
//!
//! Functions take the caller's [`Tx`] so that a claim, its history row and a circuit change
//! land together. Which failures are due is decided here in SQL (the retry backoff itself is
//! `crate::retry::policy`).

use super::failures::{self, COLUMNS};
use super::{history, StoreError, Tx};
use crate::domain::{Failure, HistoryKind, Operation, State};
use rusqlite::{params, OptionalExtension};

/// SQL list of operation names, e.g. `'create','update'`. Names come from [`Operation::as_str`],
/// never from input, so inlining them is safe.
fn op_list(ops: &[Operation]) -> String {
    if ops.is_empty() {
        return "''".to_string();
    }
    ops.iter()
        .map(|o| format!("'{}'", o.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prefixes [`COLUMNS`] with a table alias.
fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

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
        tx.conn().execute(
            "UPDATE failures SET state = COALESCE(claim_prev_state, 'open'),
                claim_prev_state = NULL, claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1",
            [id],
        )?;
        let detail = format!(
            "the claim of {} expired before its retry finished; not counted as an attempt",
            by.as_deref().unwrap_or("an unknown claimer")
        );
        history::add(
            tx,
            *id,
            now,
            HistoryKind::RetryLeaseExpired,
            actor,
            Some(&detail),
        )?;
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
        tx.conn().execute(
            "UPDATE failures SET state = COALESCE(claim_prev_state, 'open'),
                claim_prev_state = NULL, claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1",
            [id],
        )?;
        let detail = format!(
            "released at start: the daemon that claimed it ({by}) is no longer running; not counted as an attempt"
        );
        history::add(
            tx,
            *id,
            now,
            HistoryKind::RetryInterrupted,
            actor,
            Some(&detail),
        )?;
    }
    Ok(held.into_iter().map(|(id, _)| id).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Observation, Source};
    use crate::store::circuits::{self, Circuit};
    use crate::store::failures::{apply, Applied};
    use crate::store::Store;

    fn open(c: &Tx<'_>, user: &str, op: Operation, now: i64) -> i64 {
        let o = Observation {
            app_id: "0oa1".into(),
            app_label: Some("Sales".into()),
            user_id: user.into(),
            user_login: Some(format!("{user}@x")),
            operation: op,
            failed: true,
            reason: Some("down".into()),
            event_uuid: None,
            published_ms: None,
            source: Source::Scan,
        };
        match apply(c, &o, now, "t").unwrap() {
            Applied::Opened(id) => id,
            other => panic!("{other:?}"),
        }
    }

    const OPS: [Operation; 2] = [Operation::Create, Operation::Update];

    #[test]
    fn one_retry_per_app_user_at_a_time() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let create = open(c, "00u1", Operation::Create, 1_000);
            let update = open(c, "00u1", Operation::Update, 1_000);
            let other = open(c, "00u2", Operation::Update, 1_000);
            let q = DueQuery {
                now: 2_000,
                initial_backoff_ms: 0,
                ops: &OPS,
            };
            assert_eq!(next_due(c, &q)?.unwrap().id, create);
            claim(c, create, "a", 2_000, 9_000, "t", "attempt")?.unwrap();
            // The same user's update waits; another user's does not.
            assert_eq!(next_due(c, &q)?.unwrap().id, other);
            claim(c, other, "a", 2_000, 9_000, "t", "attempt")?.unwrap();
            assert!(next_due(c, &q)?.is_none());
            failures::resolve(c, create, 3_000, None, "t", "fixed")?;
            let q = DueQuery { now: 3_000, ..q };
            assert_eq!(next_due(c, &q)?.unwrap().id, update);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn due_claim_finish_cycle() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = open(c, "00u1", Operation::Create, 1_000);
            open(c, "00u2", Operation::Deactivate, 1_000);
            let q = |now| DueQuery {
                now,
                initial_backoff_ms: 500,
                ops: &OPS,
            };
            // Not due before first_seen + initial backoff; deactivations never.
            assert!(next_due(c, &q(1_499))?.is_none());
            assert_eq!(next_wakeup(c, &q(0))?, Some(1_500));
            let f = next_due(c, &q(1_500))?.unwrap();
            assert_eq!(f.id, id);
            let cl = claim(c, id, "a", 1_500, 9_000, "t", "attempt 1")?.unwrap();
            assert_eq!(cl.failure.state, State::Open);
            assert!(next_due(c, &q(1_600))?.is_none());
            assert_eq!(
                claim(c, id, "b", 1_600, 9_000, "t", "x")?,
                Err(NotClaimed::Busy {
                    by: "a".into(),
                    until: 9_000
                })
            );
            // b may not finish a's claim.
            let how = Finish::Requeue {
                kind: HistoryKind::RetryFailed,
                detail: "ERROR".into(),
                count_attempt: true,
                next_attempt_at: Some(5_000),
                exhausted: None,
            };
            assert_eq!(finish(c, id, "b", 1_700, "t", &how)?, Finished::NotHeld);
            assert_eq!(finish(c, id, "a", 1_700, "t", &how)?, Finished::Requeued);
            let f = failures::get(c, id)?.unwrap();
            assert_eq!(
                (f.state, f.attempts, f.next_attempt_at),
                (State::Open, 1, Some(5_000))
            );
            assert!(next_due(c, &q(4_999))?.is_none());
            assert!(next_due(c, &q(5_000))?.is_some());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn expired_lease_can_be_taken_over_and_prior_state_is_restored() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = open(c, "00u1", Operation::Update, 0);
            c.conn()
                .execute("UPDATE failures SET state = 'alerted' WHERE id = ?1", [id])?;
            claim(c, id, "a", 10, 100, "t", "x")?.unwrap();
            assert!(matches!(
                claim(c, id, "b", 99, 200, "t", "x")?,
                Err(NotClaimed::Busy { .. })
            ));
            let cl = claim(c, id, "b", 100, 200, "t", "x")?.unwrap();
            assert_eq!(cl.failure.state, State::Alerted);
            assert_eq!(
                finish(
                    c,
                    id,
                    "a",
                    150,
                    "t",
                    &Finish::Resolved {
                        detail: "late".into()
                    }
                )?,
                Finished::NotHeld
            );
            assert_eq!(release_all(c, "b", 150, "t")?, 1);
            let f = failures::get(c, id)?.unwrap();
            assert_eq!((f.state, f.attempts), (State::Alerted, 0));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn open_circuit_hides_its_app_but_offers_a_probe() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = open(c, "00u1", Operation::Update, 0);
            let q = DueQuery {
                now: 10_000,
                initial_backoff_ms: 1,
                ops: &OPS,
            };
            let mut ci = Circuit::closed("0oa1");
            ci.open = true;
            ci.next_probe_at = Some(20_000);
            circuits::save(c, &ci, 0)?;
            assert!(next_due(c, &q)?.is_none());
            assert!(circuits::due_probes(c, 10_000)?.is_empty());
            assert_eq!(circuits::due_probes(c, 20_000)?, vec!["0oa1".to_string()]);
            assert_eq!(probe_candidate(c, "0oa1", &q)?.unwrap().id, id);
            assert_eq!(next_wakeup(c, &q)?, Some(20_000));
            assert_eq!(circuits::get(c, "0oa1")?.unwrap(), ci);
            Ok(())
        })
        .unwrap();
    }
}
