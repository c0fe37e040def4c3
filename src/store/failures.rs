//! Failure records and their state machine: one row per (app, user, operation), opened or
//! refreshed by observations from the log poller and the assignment scanner, resolved by a
//! later success, and an append-only history of everything that happened to each.
//!
//! States: `open` (known, not being worked), `retrying` (the retry worker holds a claim),
//! `alerted` (a person has been told), `resolved`. Functions take a `&Connection` so callers
//! compose them inside one transaction (e.g. the poller's page + cursor commit).

use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Deactivate,
    Reactivate,
    Password,
    GroupPush,
    Import,
    /// App-wide: the integration itself failed (credentials, rate limit, general failure).
    Integration,
    Other,
}

impl Operation {
    pub const ALL: [Operation; 9] = [
        Operation::Create,
        Operation::Update,
        Operation::Deactivate,
        Operation::Reactivate,
        Operation::Password,
        Operation::GroupPush,
        Operation::Import,
        Operation::Integration,
        Operation::Other,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Deactivate => "deactivate",
            Operation::Reactivate => "reactivate",
            Operation::Password => "password",
            Operation::GroupPush => "group_push",
            Operation::Import => "import",
            Operation::Integration => "integration",
            Operation::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// A failed deprovisioning leaves a person who lost access in Okta with access in the app.
    pub fn is_deprovisioning(&self) -> bool {
        matches!(self, Operation::Deactivate)
    }

    /// Failures that go to a person at once.
    pub fn is_urgent(&self) -> bool {
        matches!(self, Operation::Deactivate | Operation::Integration)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Retrying,
    Alerted,
    Resolved,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Open => "open",
            State::Retrying => "retrying",
            State::Alerted => "alerted",
            State::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        [
            State::Open,
            State::Retrying,
            State::Alerted,
            State::Resolved,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Log,
    Scan,
}

/// One thing seen about an (app, user, operation): a failure or a success.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub app_id: String,
    pub app_label: Option<String>,
    /// Empty for app-wide failures.
    pub user_id: String,
    pub user_login: Option<String>,
    pub operation: Operation,
    pub failed: bool,
    pub reason: Option<String>,
    pub event_uuid: Option<String>,
    /// When Okta says it happened (ms); `None` for scan observations.
    pub published_ms: Option<i64>,
    pub source: Source,
}

impl Observation {
    /// A failure of `operation` for `user_id` (empty: the whole app) in `app_id`, seen in the
    /// System Log, with nothing else known; set the rest with struct update syntax.
    pub fn failure(app_id: &str, user_id: &str, operation: Operation) -> Observation {
        Observation {
            app_id: app_id.to_owned(),
            app_label: None,
            user_id: user_id.to_owned(),
            user_login: None,
            operation,
            failed: true,
            reason: None,
            event_uuid: None,
            published_ms: None,
            source: Source::Log,
        }
    }
}

/// A failure row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Failure {
    pub id: i64,
    pub app_id: String,
    pub app_label: Option<String>,
    pub user_id: String,
    pub user_login: Option<String>,
    pub operation: Operation,
    pub state: State,
    pub urgent: bool,
    /// "log", "scan" or "both".
    pub source: &'static str,
    pub reason: Option<String>,
    pub event_uuid: Option<String>,
    pub event_published: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub retry_exhausted: bool,
    pub resolved_at: Option<i64>,
}

impl Failure {
    pub fn app_name(&self) -> &str {
        self.app_label.as_deref().unwrap_or(&self.app_id)
    }
    pub fn user_name(&self) -> &str {
        self.user_login.as_deref().unwrap_or(&self.user_id)
    }
}

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

pub const COLUMNS: &str = "id, app_id, app_label, user_id, user_login, operation, state, urgent, \
    from_log, from_scan, reason, event_uuid, event_published, first_seen, last_seen, attempts, \
    next_attempt_at, retry_exhausted, resolved_at";

pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Failure> {
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

pub fn add_history(
    c: &Connection,
    failure_id: i64,
    at: i64,
    kind: &str,
    actor: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO failure_history (failure_id, at, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![failure_id, at, kind, actor, detail],
    )?;
    Ok(())
}

pub fn find(
    c: &Connection,
    app_id: &str,
    user_id: &str,
    op: Operation,
) -> Result<Option<Failure>, StoreError> {
    Ok(c.query_row(
        &format!(
            "SELECT {COLUMNS} FROM failures WHERE app_id = ?1 AND user_id = ?2 AND operation = ?3"
        ),
        params![app_id, user_id, op.as_str()],
        from_row,
    )
    .optional()?)
}

pub fn get(c: &Connection, id: i64) -> Result<Option<Failure>, StoreError> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM failures WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()?)
}

/// Applies one observation. `now` is when we saw it (ms).
pub fn apply(
    c: &Connection,
    obs: &Observation,
    now: i64,
    actor: &str,
) -> Result<Applied, StoreError> {
    let existing = find(c, &obs.app_id, &obs.user_id, obs.operation)?;
    let (log, scan) = match obs.source {
        Source::Log => (1, 0),
        Source::Scan => (0, 1),
    };
    // Every event of a page carries its app's label; only a new or renamed app costs a write.
    if let Some(label) = &obs.app_label {
        c.execute(
            "INSERT INTO apps (app_id, label, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (app_id) DO UPDATE SET label = excluded.label, updated_at = excluded.updated_at
             WHERE label IS NOT excluded.label",
            params![obs.app_id, label, now],
        )?;
    }
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
                    obs.reason,
                    obs.event_uuid,
                    obs.published_ms,
                    now
                ],
            )?;
            let id = c.last_insert_rowid();
            add_history(c, id, now, "detected", actor, obs.reason.as_deref())?;
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
                    obs.reason,
                    obs.event_uuid,
                    obs.published_ms,
                    now,
                    obs.app_label,
                    obs.user_login
                ],
            )?;
            add_history(c, f.id, now, "reopened", actor, obs.reason.as_deref())?;
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
                    obs.reason,
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
            resolve(c, f.id, now, obs.published_ms, actor, "success reported")?;
            Ok(Applied::Resolved(f.id))
        }
    }
}

/// Marks a failure resolved (by a success event, a scan that sees it synchronized, or a retry).
pub fn resolve(
    c: &Connection,
    id: i64,
    now: i64,
    published_ms: Option<i64>,
    actor: &str,
    detail: &str,
) -> Result<bool, StoreError> {
    let n = c.execute(
        "UPDATE failures SET state = 'resolved', resolved_at = ?2, claimed_by = NULL,
            claimed_until = NULL, claim_prev_state = NULL,
            event_published = CASE WHEN ?3 IS NULL THEN event_published
                                   ELSE MAX(COALESCE(event_published, ?3), ?3) END
         WHERE id = ?1 AND state != 'resolved'",
        params![id, now, published_ms],
    )?;
    if n > 0 {
        add_history(c, id, now, "resolved", actor, Some(detail))?;
    }
    Ok(n > 0)
}

/// Failures not yet resolved, most urgent first, then by app and user.
pub fn list_unresolved(c: &Connection) -> Result<Vec<Failure>, StoreError> {
    list_where(c, "state != 'resolved'", [])
}

/// Every failure, resolved ones included.
pub fn list_all(c: &Connection) -> Result<Vec<Failure>, StoreError> {
    list_where(c, "1 = 1", [])
}

pub fn list_unresolved_for_app(c: &Connection, app_id: &str) -> Result<Vec<Failure>, StoreError> {
    list_where(c, "state != 'resolved' AND app_id = ?1", [app_id])
}

pub fn list_where<P: rusqlite::Params>(
    c: &Connection,
    filter: &str,
    p: P,
) -> Result<Vec<Failure>, StoreError> {
    let mut stmt = c.prepare(&format!(
        "SELECT {COLUMNS} FROM failures WHERE {filter}
         ORDER BY urgent DESC, COALESCE(app_label, app_id), COALESCE(user_login, user_id), operation"
    ))?;
    let rows = stmt.query_map(p, from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HistoryEntry {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub detail: Option<String>,
}

pub fn history(c: &Connection, failure_id: i64) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT at, kind, actor, detail FROM failure_history WHERE failure_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([failure_id], |r| {
        Ok(HistoryEntry {
            at: r.get(0)?,
            kind: r.get(1)?,
            actor: r.get(2)?,
            detail: r.get(3)?,
        })
    })?;
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
        s.blocking(|c| {
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
            let kinds: Vec<_> = history(c, id)?.into_iter().map(|h| h.kind).collect();
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
        s.blocking(|c| {
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
        s.blocking(|c| {
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
        s.blocking(|c| {
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
