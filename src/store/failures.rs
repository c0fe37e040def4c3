//! Failure rows and their state machine: one row per (app, user, operation), opened or
//! refreshed by observations from the log poller and the assignment scanner, resolved by a
//! later success, reopened by a later failure. Every change writes its [`history`](super::history) row in the
//! same transaction.
//!
//! States: `open` (known, not being worked), `retrying` (the retry worker holds a claim, see
//! [`super::claims`]), `alerted` (a person has been told), `resolved`. Reasons are bounded to
//! [`super::MAX_TEXT_BYTES`] when written. The app's label and name are the detectors' to
//! record ([`super::apps::upsert`]); a failure row keeps its own copy of the label.

use super::{bounded_opt, history, StoreError, Tx};
use crate::domain::HistoryKind;
use rusqlite::{params, OptionalExtension, Row};

// Transitional re-exports: the domain types moved to `crate::domain`; callers on other
// branches still import them from here until the integrator removes these.
pub use crate::domain::{Failure, HistoryEntry, Observation, Operation, Source, State};

/// What applying an observation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Opened(i64),
    Refreshed(i64),
    Reopened(i64),
    Resolved(i64),
    /// Nothing to do: a success for nothing open, or an event older than the row's state.
    Ignored,
}

pub(in crate::store) const COLUMNS: &str =
    "id, app_id, app_label, user_id, user_login, operation, state, urgent, \
    from_log, from_scan, reason, event_uuid, event_published, first_seen, last_seen, attempts, \
    next_attempt_at, retry_exhausted, resolved_at";

pub(in crate::store) fn from_row(r: &Row<'_>) -> rusqlite::Result<Failure> {
    let op: String = r.get(5)?;
    let st: String = r.get(6)?;
    let from_log: bool = r.get(8)?;
    let from_scan: bool = r.get(9)?;
    Ok(Failure {
        id: r.get(0)?,
        app_id: r.get(1)?,
        app_label: r.get(2)?,
        user_id: r.get(3)?,
        user_login: r.get(4)?,
        operation: Operation::parse(&op).unwrap_or(Operation::Other),
        state: State::parse(&st).unwrap_or(State::Open),
        urgent: r.get(7)?,
        source: match (from_log, from_scan) {
            (true, true) => "both",
            (false, true) => "scan",
            _ => "log",
        },
        reason: r.get(10)?,
        event_uuid: r.get(11)?,
        event_published: r.get(12)?,
        first_seen: r.get(13)?,
        last_seen: r.get(14)?,
        attempts: r.get(15)?,
        next_attempt_at: r.get(16)?,
        retry_exhausted: r.get(17)?,
        resolved_at: r.get(18)?,
    })
}

pub fn find(
    tx: &Tx<'_>,
    app_id: &str,
    user_id: &str,
    op: Operation,
) -> Result<Option<Failure>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!(
            "SELECT {COLUMNS} FROM failures WHERE app_id = ?1 AND user_id = ?2 AND operation = ?3"
        ),
            params![app_id, user_id, op.as_str()],
            from_row,
        )
        .optional()?)
}

pub fn get(tx: &Tx<'_>, id: i64) -> Result<Option<Failure>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM failures WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// Applies one observation. `now` is when we saw it (ms).
pub fn apply(tx: &Tx<'_>, obs: &Observation, now: i64, actor: &str) -> Result<Applied, StoreError> {
    let c = tx.conn();
    let existing = find(tx, &obs.app_id, &obs.user_id, obs.operation)?;
    let reason = bounded_opt(obs.reason.as_deref());
    let reason = reason.as_deref();
    let (log, scan) = match obs.source {
        Source::Log => (1, 0),
        Source::Scan => (0, 1),
    };
    // An event older than the one that last changed this row says nothing new: the System Log
    // is ordered by persistence, not by `published`, so late events do arrive.
    let stale = |f: &Failure| match (obs.published_ms, f.event_published) {
        (Some(p), Some(q)) => p < q,
        _ => false,
    };
    match (existing, obs.failed) {
        (None, false) => Ok(Applied::Ignored),
        (None, true) => {
            c.execute(
                "INSERT INTO failures (app_id, app_label, user_id, user_login, operation, state, urgent,
                    from_log, from_scan, reason, event_uuid, event_published, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
                params![
                    obs.app_id,
                    obs.app_label,
                    obs.user_id,
                    obs.user_login,
                    obs.operation.as_str(),
                    obs.operation.is_urgent(),
                    log,
                    scan,
                    reason,
                    obs.event_uuid,
                    obs.published_ms,
                    now
                ],
            )?;
            let id = c.last_insert_rowid();
            history::add(tx, id, now, HistoryKind::Detected, actor, reason)?;
            Ok(Applied::Opened(id))
        }
        (Some(f), true) if f.state == State::Resolved => {
            if stale(&f)
                || f.resolved_at
                    .is_some_and(|r| obs.published_ms.is_none() && r > now)
            {
                return Ok(Applied::Ignored);
            }
            c.execute(
                "UPDATE failures SET state = 'open', from_log = ?2, from_scan = ?3,
                    reason = COALESCE(?4, reason), event_uuid = COALESCE(?5, event_uuid),
                    event_published = COALESCE(?6, event_published), first_seen = ?7, last_seen = ?7,
                    attempts = 0, next_attempt_at = NULL, retry_exhausted = 0, claimed_by = NULL,
                    claimed_until = NULL, claim_prev_state = NULL, resolved_at = NULL,
                    app_label = COALESCE(?8, app_label), user_login = COALESCE(?9, user_login)
                 WHERE id = ?1",
                params![
                    f.id,
                    log,
                    scan,
                    reason,
                    obs.event_uuid,
                    obs.published_ms,
                    now,
                    obs.app_label,
                    obs.user_login
                ],
            )?;
            history::add(tx, f.id, now, HistoryKind::Reopened, actor, reason)?;
            Ok(Applied::Reopened(f.id))
        }
        (Some(f), true) => {
            let newer = !stale(&f);
            c.execute(
                "UPDATE failures SET last_seen = MAX(last_seen, ?2),
                    from_log = MAX(from_log, ?3), from_scan = MAX(from_scan, ?4),
                    reason = CASE WHEN ?5 AND ?6 IS NOT NULL THEN ?6 ELSE reason END,
                    event_uuid = CASE WHEN ?5 AND ?7 IS NOT NULL THEN ?7 ELSE event_uuid END,
                    event_published = CASE WHEN ?5 AND ?8 IS NOT NULL THEN ?8 ELSE event_published END,
                    app_label = COALESCE(?9, app_label), user_login = COALESCE(?10, user_login)
                 WHERE id = ?1",
                params![
                    f.id,
                    now,
                    log,
                    scan,
                    newer,
                    reason,
                    obs.event_uuid,
                    obs.published_ms,
                    obs.app_label,
                    obs.user_login
                ],
            )?;
            Ok(Applied::Refreshed(f.id))
        }
        (Some(f), false) => {
            if stale(&f) {
                return Ok(Applied::Ignored);
            }
            if f.state == State::Resolved {
                // Already resolved (by a scan or a retry), but remember that Okta saw a success
                // this late, so that a late failure event published before it cannot reopen.
                if let Some(p) = obs.published_ms {
                    c.execute(
                        "UPDATE failures SET event_published = MAX(COALESCE(event_published, ?2), ?2)
                         WHERE id = ?1",
                        params![f.id, p],
                    )?;
                }
                return Ok(Applied::Ignored);
            }
            resolve(tx, f.id, now, obs.published_ms, actor, "success reported")?;
            Ok(Applied::Resolved(f.id))
        }
    }
}

/// Marks a failure resolved (by a success event, a scan that sees it synchronized, or a retry).
pub fn resolve(
    tx: &Tx<'_>,
    id: i64,
    now: i64,
    published_ms: Option<i64>,
    actor: &str,
    detail: &str,
) -> Result<bool, StoreError> {
    resolve_as(
        tx,
        id,
        now,
        published_ms,
        HistoryKind::Resolved,
        actor,
        detail,
    )
}

/// [`resolve`] recording `kind` in the history (`resolved_by_hand`, `verified`), so a person
/// reading it can tell a fix Okta reported from one a person or the app's own API vouched for.
pub fn resolve_as(
    tx: &Tx<'_>,
    id: i64,
    now: i64,
    published_ms: Option<i64>,
    kind: HistoryKind,
    actor: &str,
    detail: &str,
) -> Result<bool, StoreError> {
    let n = tx.conn().execute(
        "UPDATE failures SET state = 'resolved', resolved_at = ?2, claimed_by = NULL,
            claimed_until = NULL, claim_prev_state = NULL,
            event_published = CASE WHEN ?3 IS NULL THEN event_published
                                   ELSE MAX(COALESCE(event_published, ?3), ?3) END
         WHERE id = ?1 AND state != 'resolved'",
        params![id, now, published_ms],
    )?;
    if n > 0 {
        history::add(tx, id, now, kind, actor, Some(detail))?;
    }
    Ok(n > 0)
}

/// Failures not yet resolved, most urgent first, then by app and user.
pub fn list_unresolved(tx: &Tx<'_>) -> Result<Vec<Failure>, StoreError> {
    list_where(tx, "state != 'resolved'", [])
}

/// Every failure, resolved ones included.
pub fn list_all(tx: &Tx<'_>) -> Result<Vec<Failure>, StoreError> {
    list_where(tx, "1 = 1", [])
}

pub fn list_unresolved_for_app(tx: &Tx<'_>, app_id: &str) -> Result<Vec<Failure>, StoreError> {
    list_where(tx, "state != 'resolved' AND app_id = ?1", [app_id])
}

pub(in crate::store) fn list_where<P: rusqlite::Params>(
    tx: &Tx<'_>,
    filter: &str,
    p: P,
) -> Result<Vec<Failure>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM failures WHERE {filter}
         ORDER BY urgent DESC, COALESCE(app_label, app_id), COALESCE(user_login, user_id), operation"
    ))?;
    let rows = stmt.query_map(p, from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Transitional: [`history::add`] with the kind's wire name, for callers on other branches.
pub fn add_history(
    tx: &Tx<'_>,
    failure_id: i64,
    at: i64,
    kind: HistoryKind,
    actor: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    history::add(tx, failure_id, at, kind, actor, detail)
}

/// Transitional: [`history::list`], for callers on other branches.
pub fn history(tx: &Tx<'_>, failure_id: i64) -> Result<Vec<HistoryEntry>, StoreError> {
    history::list(tx, failure_id)
}

/// The assignment scanner saw failure `id` still in error in a page fetched at `at`.
pub fn seen_by_scan(tx: &Tx<'_>, id: i64, at: i64) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE failures SET from_scan = 1, last_seen = MAX(last_seen, ?2) WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

/// Whether some failure of (app, user) was resolved at or after `since`: a page fetched
/// before that is older news than the fix.
pub fn resolved_since(
    tx: &Tx<'_>,
    app_id: &str,
    user_id: &str,
    since: i64,
) -> Result<bool, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT EXISTS (SELECT 1 FROM failures WHERE app_id = ?1 AND user_id = ?2 AND resolved_at >= ?3)",
        params![app_id, user_id, since],
        |r| r.get(0),
    )?)
}

/// Unresolved failures of an app grouped for the `/metrics` gauge: (app label or id,
/// operation, count). Grouping on the displayed name keeps label sets unique even if two apps
/// share a label.
pub fn open_counts(tx: &Tx<'_>) -> Result<Vec<(String, String, i64)>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT COALESCE(app_label, app_id) AS app, operation, COUNT(*)
         FROM failures WHERE state IN ('open', 'retrying', 'alerted')
         GROUP BY app, operation ORDER BY app, operation",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn obs(failed: bool, published: i64) -> Observation {
        Observation {
            app_id: "0oa1".into(),
            app_label: Some("Sales".into()),
            user_id: "00u1".into(),
            user_login: Some("a@x".into()),
            operation: Operation::Create,
            failed,
            reason: Some("down".into()),
            event_uuid: Some(format!("e{published}")),
            published_ms: Some(published),
            source: Source::Log,
        }
    }

    #[test]
    fn open_refresh_resolve_reopen() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let id = match apply(c, &obs(true, 100), 1000, "t")? {
                Applied::Opened(id) => id,
                other => panic!("{other:?}"),
            };
            assert_eq!(
                apply(c, &obs(true, 200), 1100, "t")?,
                Applied::Refreshed(id)
            );
            // A success older than the latest failure is stale.
            assert_eq!(apply(c, &obs(false, 150), 1200, "t")?, Applied::Ignored);
            assert_eq!(
                apply(c, &obs(false, 300), 1300, "t")?,
                Applied::Resolved(id)
            );
            // A late failure event published before the success does not reopen.
            assert_eq!(apply(c, &obs(true, 250), 1400, "t")?, Applied::Ignored);
            assert_eq!(apply(c, &obs(true, 400), 1500, "t")?, Applied::Reopened(id));
            let f = get(c, id)?.unwrap();
            assert_eq!(f.state, State::Open);
            assert_eq!(f.first_seen, 1500);
            let kinds: Vec<_> = history::list(c, id)?.into_iter().map(|h| h.kind).collect();
            assert_eq!(kinds, ["detected", "resolved", "reopened"]);
            assert_eq!(list_unresolved(c)?.len(), 1);
            Ok(())
        })
        .unwrap();
    }

    /// A row resolved without an event (scan, retry), then a success event, then a failure
    /// event published between the two that Okta persisted late: the success is newer.
    #[test]
    fn late_failure_older_than_a_success_on_a_resolved_row_does_not_reopen() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let Applied::Opened(id) = apply(c, &obs(true, 100), 1000, "t")? else {
                panic!()
            };
            assert!(resolve(c, id, 1100, None, "scanner", "synchronized")?);
            assert_eq!(apply(c, &obs(false, 300), 1200, "t")?, Applied::Ignored);
            assert_eq!(apply(c, &obs(true, 200), 1300, "t")?, Applied::Ignored);
            assert_eq!(get(c, id)?.unwrap().state, State::Resolved);
            // A failure after the success still reopens.
            assert_eq!(apply(c, &obs(true, 400), 1400, "t")?, Applied::Reopened(id));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn success_for_unknown_is_ignored_and_sources_merge() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            assert_eq!(apply(c, &obs(false, 1), 10, "t")?, Applied::Ignored);
            let mut o = obs(true, 5);
            o.source = Source::Scan;
            o.published_ms = None;
            let Applied::Opened(id) = apply(c, &o, 10, "t")? else {
                panic!()
            };
            apply(c, &obs(true, 6), 11, "t")?;
            assert_eq!(get(c, id)?.unwrap().source, "both");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn deprovisioning_is_urgent() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let mut o = obs(true, 1);
            o.operation = Operation::Deactivate;
            let Applied::Opened(id) = apply(c, &o, 10, "t")? else {
                panic!()
            };
            assert!(get(c, id)?.unwrap().urgent);
            Ok(())
        })
        .unwrap();
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::store::{Store, MAX_TEXT_BYTES};

    /// A remote server echoing a whole page into the reason must not make an unbounded row
    /// (and from it an unbounded alert): the stored reason and its history detail are cut.
    #[test]
    fn stored_reasons_are_bounded() {
        let s = Store::open_in_memory().unwrap();
        let huge = "é".repeat(5 * 1024 * 1024);
        let o = Observation {
            reason: Some(huge.clone()),
            ..Observation::failure("0oa1", "00u1", Operation::Create)
        };
        let (f, h) = s
            .write_blocking(|tx| {
                let Applied::Opened(id) = apply(tx, &o, 1, "t")? else {
                    panic!()
                };
                // A refresh with the same huge reason is bounded too.
                let o2 = Observation {
                    published_ms: Some(5),
                    ..o.clone()
                };
                apply(tx, &o2, 2, "t")?;
                Ok((get(tx, id)?.unwrap(), history::list(tx, id)?))
            })
            .unwrap();
        let r = f.reason.unwrap();
        assert!(r.len() <= MAX_TEXT_BYTES, "{}", r.len());
        assert!(r.contains("[truncated: ") && r.starts_with("éé"));
        assert!(h[0].detail.as_deref().unwrap().len() <= MAX_TEXT_BYTES);
    }
}
