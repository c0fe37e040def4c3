//! Retry bookkeeping in the store: claiming failures for a retry, finishing or releasing those
//! claims, and the per-app circuit breaker rows.
//!
//! A claim is a lease: `claimed_by` names the claimer (one id per worker or `retry` command
//! run) and `claimed_until` when the lease ends, so a claimer that crashed mid-retry blocks a
//! failure only until its lease expires. Claims are taken with a conditional `UPDATE` inside a
//! `BEGIN IMMEDIATE` transaction (the caller's), which SQLite serializes across processes:
//! two claimers can never both hold the same failure. Finishing checks the claim is still
//! ours, so a retry that outlived its lease never overwrites the next claimer's result.
//!
//! Functions take a `&Connection` so that callers compose them in one transaction.

use super::failures::{self, add_history, Failure, Operation, COLUMNS};
use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

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
pub fn next_due(c: &Connection, q: &DueQuery<'_>) -> Result<Option<Failure>, StoreError> {
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
    Ok(c.query_row(
        &sql,
        params![q.now, q.initial_backoff_ms],
        failures::from_row,
    )
    .optional()?)
}

/// When the next automatic retry or probe may become due (ms), for the worker's idle sleep.
pub fn next_wakeup(c: &Connection, q: &DueQuery<'_>) -> Result<Option<i64>, StoreError> {
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
    Ok(c.query_row(&sql, [q.initial_backoff_ms], |r| r.get(0))?)
}

/// Apps whose circuit is open and due for a probe, earliest first.
pub fn due_probes(c: &Connection, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT app_id FROM circuits WHERE state = 'open' AND COALESCE(next_probe_at, 0) <= ?1
         ORDER BY next_probe_at, app_id",
    )?;
    let rows = stmt.query_map([now], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The failure a probe of `app_id`'s circuit retries: any unclaimed, unresolved user failure
/// of a retryable operation, preferring ones not exhausted and due soonest. Its own backoff is
/// ignored: the circuit's probe schedule governs while the circuit is open.
pub fn probe_candidate(
    c: &Connection,
    app_id: &str,
    q: &DueQuery<'_>,
) -> Result<Option<Failure>, StoreError> {
    let sql = format!(
        "SELECT {cols} FROM failures f
         WHERE f.app_id = ?3 AND f.state != 'resolved' AND f.user_id != ''
           AND f.operation IN ({ops})
           AND (f.claimed_until IS NULL OR f.claimed_until <= ?1)
         ORDER BY f.retry_exhausted, COALESCE(f.next_attempt_at, f.first_seen + ?2), f.id
         LIMIT 1",
        cols = columns_of("f"),
        ops = op_list(q.ops)
    );
    Ok(c.query_row(
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
    c: &Connection,
    id: i64,
    owner: &str,
    now: i64,
    until: i64,
    actor: &str,
    detail: &str,
) -> Result<Result<Claim, NotClaimed>, StoreError> {
    let Some(before) = failures::get(c, id)? else {
        return Ok(Err(NotClaimed::NotFound));
    };
    let n = c.execute(
        "UPDATE failures SET
            claim_prev_state = CASE WHEN state = 'retrying' THEN COALESCE(claim_prev_state, 'open')
                                    ELSE state END,
            state = 'retrying', claimed_by = ?2, claimed_until = ?3
         WHERE id = ?1 AND state != 'resolved' AND (claimed_until IS NULL OR claimed_until <= ?4)",
        params![id, owner, until, now],
    )?;
    if n == 0 {
        if before.state == failures::State::Resolved {
            return Ok(Err(NotClaimed::Resolved));
        }
        let (by, until): (Option<String>, Option<i64>) = c.query_row(
            "SELECT claimed_by, claimed_until FROM failures WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        return Ok(Err(NotClaimed::Busy {
            by: by.unwrap_or_default(),
            until: until.unwrap_or_default(),
        }));
    }
    add_history(c, id, now, "retry_started", actor, Some(detail))?;
    let mut failure = before;
    if failure.state == failures::State::Retrying {
        // A lease that expired under a crashed claimer: report the state it was claimed from.
        let prev: Option<String> = c.query_row(
            "SELECT claim_prev_state FROM failures WHERE id = ?1",
            [id],
            |r| r.get(0),
        )?;
        failure.state = prev
            .as_deref()
            .and_then(failures::State::parse)
            .unwrap_or(failures::State::Open);
    }
    Ok(Ok(Claim {
        failure,
        owner: owner.to_string(),
        until,
        probe: false,
    }))
}

/// Whether `owner` still holds the claim on `id`.
pub fn holds(c: &Connection, id: i64, owner: &str) -> Result<bool, StoreError> {
    Ok(c.query_row(
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
        /// History kind, e.g. `retry_failed` or `retry_deferred`.
        kind: &'static str,
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
    c: &Connection,
    id: i64,
    owner: &str,
    now: i64,
    actor: &str,
    how: &Finish,
) -> Result<Finished, StoreError> {
    if !holds(c, id, owner)? {
        let (kind, detail) = match how {
            Finish::Resolved { detail } => ("retry_succeeded", detail.as_str()),
            Finish::Requeue { kind, detail, .. } => (*kind, detail.as_str()),
        };
        let resolved = failures::get(c, id)?.is_some_and(|f| f.state == failures::State::Resolved);
        let detail = if resolved {
            format!("{detail} (the failure had already been resolved meanwhile)")
        } else {
            format!("{detail} (claim no longer held; not applied)")
        };
        add_history(c, id, now, kind, actor, Some(&detail))?;
        return Ok(Finished::NotHeld);
    }
    match how {
        Finish::Resolved { detail } => {
            c.execute(
                "UPDATE failures SET attempts = attempts + 1, claim_prev_state = NULL WHERE id = ?1",
                [id],
            )?;
            // The retry just read the app user fixed (or gone): that observation is as new as
            // `now`, so a failure event published before it (the System Log is read with lag)
            // is stale and must not reopen the failure.
            let seen: Option<i64> = c.query_row(
                "SELECT event_published FROM failures WHERE id = ?1",
                [id],
                |r| r.get(0),
            )?;
            let observed = seen.map_or(now, |p| p.max(now));
            failures::resolve(c, id, now, Some(observed), actor, detail)?;
            Ok(Finished::Resolved)
        }
        Finish::Requeue {
            kind,
            detail,
            count_attempt,
            next_attempt_at,
            exhausted,
        } => {
            c.execute(
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
            add_history(c, id, now, kind, actor, Some(detail))?;
            if let Some(why) = exhausted {
                add_history(c, id, now, "retries_exhausted", actor, Some(why))?;
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
pub fn expire_leases(c: &Connection, now: i64, actor: &str) -> Result<Vec<i64>, StoreError> {
    let expired: Vec<(i64, Option<String>)> = {
        let mut stmt = c.prepare(
            "SELECT id, claimed_by FROM failures
             WHERE state = 'retrying' AND COALESCE(claimed_until, 0) <= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for (id, by) in &expired {
        c.execute(
            "UPDATE failures SET state = COALESCE(claim_prev_state, 'open'),
                claim_prev_state = NULL, claimed_by = NULL, claimed_until = NULL
             WHERE id = ?1",
            [id],
        )?;
        let detail = format!(
            "the claim of {} expired before its retry finished; not counted as an attempt",
            by.as_deref().unwrap_or("an unknown claimer")
        );
        add_history(c, *id, now, "retry_lease_expired", actor, Some(&detail))?;
    }
    Ok(expired.into_iter().map(|(id, _)| id).collect())
}

/// Releases every claim `owner` still holds (shutdown with retries in flight), without
/// counting an attempt. Returns how many were released.
pub fn release_all(
    c: &Connection,
    owner: &str,
    now: i64,
    actor: &str,
) -> Result<usize, StoreError> {
    let ids: Vec<i64> = {
        let mut stmt = c.prepare(
            "SELECT id FROM failures WHERE state = 'retrying' AND claimed_by = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([owner], |r| r.get(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    for id in &ids {
        finish(
            c,
            *id,
            owner,
            now,
            actor,
            &Finish::Requeue {
                kind: "retry_interrupted",
                detail: "retry interrupted by shutdown; not counted as an attempt".into(),
                count_attempt: false,
                next_attempt_at: None,
                exhausted: None,
            },
        )?;
    }
    Ok(ids.len())
}

/// A row of `circuits`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Circuit {
    pub app_id: String,
    pub open: bool,
    pub cause: Option<String>,
    pub opened_at: Option<i64>,
    pub consecutive_failures: u32,
    pub next_probe_at: Option<i64>,
    /// The app-level failure recorded when it opened.
    pub failure_id: Option<i64>,
    /// Distinct users in the current streak of failed retries.
    pub streak_users: Vec<String>,
    pub probes: u32,
}

impl Circuit {
    pub fn closed(app_id: &str) -> Circuit {
        Circuit {
            app_id: app_id.to_string(),
            open: false,
            cause: None,
            opened_at: None,
            consecutive_failures: 0,
            next_probe_at: None,
            failure_id: None,
            streak_users: Vec::new(),
            probes: 0,
        }
    }
}

pub fn get_circuit(c: &Connection, app_id: &str) -> Result<Option<Circuit>, StoreError> {
    Ok(c.query_row(
        "SELECT app_id, state, cause, opened_at, consecutive_failures, next_probe_at, failure_id,
                streak_users, probes
           FROM circuits WHERE app_id = ?1",
        [app_id],
        |r| {
            let state: String = r.get(1)?;
            let streak: String = r.get(7)?;
            Ok(Circuit {
                app_id: r.get(0)?,
                open: state == "open",
                cause: r.get(2)?,
                opened_at: r.get(3)?,
                consecutive_failures: r.get(4)?,
                next_probe_at: r.get(5)?,
                failure_id: r.get(6)?,
                streak_users: serde_json::from_str(&streak).unwrap_or_default(),
                probes: r.get(8)?,
            })
        },
    )
    .optional()?)
}

pub fn save_circuit(c: &Connection, ci: &Circuit, now: i64) -> Result<(), StoreError> {
    let streak = serde_json::to_string(&ci.streak_users).unwrap_or_else(|_| "[]".into());
    c.execute(
        "INSERT INTO circuits (app_id, state, cause, opened_at, consecutive_failures, next_probe_at,
                               failure_id, streak_users, probes, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (app_id) DO UPDATE SET state = excluded.state, cause = excluded.cause,
            opened_at = excluded.opened_at, consecutive_failures = excluded.consecutive_failures,
            next_probe_at = excluded.next_probe_at, failure_id = excluded.failure_id,
            streak_users = excluded.streak_users, probes = excluded.probes,
            updated_at = excluded.updated_at",
        params![
            ci.app_id,
            if ci.open { "open" } else { "closed" },
            ci.cause,
            ci.opened_at,
            ci.consecutive_failures,
            ci.next_probe_at,
            ci.failure_id,
            streak,
            ci.probes,
            now
        ],
    )?;
    Ok(())
}

/// Every open circuit.
pub fn open_circuits(c: &Connection) -> Result<Vec<Circuit>, StoreError> {
    let apps: Vec<String> = {
        let mut stmt =
            c.prepare("SELECT app_id FROM circuits WHERE state = 'open' ORDER BY app_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut out = Vec::new();
    for a in apps {
        if let Some(ci) = get_circuit(c, &a)? {
            out.push(ci);
        }
    }
    Ok(out)
}

/// Unresolved app-wide integration failures of apps whose circuit is not open:
/// `(app_id, failure_id, reason)`.
pub fn integration_failures_without_open_circuit(
    c: &Connection,
) -> Result<Vec<(String, i64, Option<String>)>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT f.app_id, f.id, f.reason FROM failures f
         WHERE f.user_id = '' AND f.operation = 'integration' AND f.state != 'resolved'
           AND NOT EXISTS (SELECT 1 FROM circuits ci WHERE ci.app_id = f.app_id AND ci.state = 'open')
         ORDER BY f.app_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Unresolved failures of one app whose user is `user` (id or login, case-insensitive login).
pub fn find_for_user(
    c: &Connection,
    user: &str,
    app: Option<&str>,
) -> Result<Vec<Failure>, StoreError> {
    match app {
        Some(a) => failures::list_where(
            c,
            "state != 'resolved' AND (user_id = ?1 OR lower(user_login) = lower(?1))
             AND (app_id = ?2 OR lower(app_label) = lower(?2))",
            params![user, a],
        ),
        None => failures::list_where(
            c,
            "state != 'resolved' AND (user_id = ?1 OR lower(user_login) = lower(?1))",
            params![user],
        ),
    }
}

/// Unresolved failures of an app given by id or label (case-insensitive).
pub fn find_for_app(c: &Connection, app: &str) -> Result<Vec<Failure>, StoreError> {
    failures::list_where(
        c,
        "state != 'resolved' AND (app_id = ?1 OR lower(app_label) = lower(?1)
            OR app_id IN (SELECT app_id FROM apps WHERE lower(label) = lower(?1)))",
        params![app],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::failures::{apply, Applied, Observation, Source, State};
    use crate::store::Store;

    fn open(c: &Connection, user: &str, op: Operation, now: i64) -> i64 {
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
        s.blocking(|c| {
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
        s.blocking(|c| {
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
                kind: "retry_failed",
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
        s.blocking(|c| {
            let id = open(c, "00u1", Operation::Update, 0);
            c.execute("UPDATE failures SET state = 'alerted' WHERE id = ?1", [id])?;
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
        s.blocking(|c| {
            let id = open(c, "00u1", Operation::Update, 0);
            let q = DueQuery {
                now: 10_000,
                initial_backoff_ms: 1,
                ops: &OPS,
            };
            let mut ci = Circuit::closed("0oa1");
            ci.open = true;
            ci.next_probe_at = Some(20_000);
            save_circuit(c, &ci, 0)?;
            assert!(next_due(c, &q)?.is_none());
            assert!(due_probes(c, 10_000)?.is_empty());
            assert_eq!(due_probes(c, 20_000)?, vec!["0oa1".to_string()]);
            assert_eq!(probe_candidate(c, "0oa1", &q)?.unwrap().id, id);
            assert_eq!(next_wakeup(c, &q)?, Some(20_000));
            assert_eq!(get_circuit(c, "0oa1")?.unwrap(), ci);
            Ok(())
        })
        .unwrap();
    }
}
