//! Per-app circuit breaker rows of the retry worker (`circuits`). The breaker's rules live in
//! `crate::retry::circuit`; this module only keeps its state.

use super::{StoreError, Tx};
use rusqlite::{params, OptionalExtension};

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

pub fn get(tx: &Tx<'_>, app_id: &str) -> Result<Option<Circuit>, StoreError> {
    Ok(tx.conn().query_row(
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

pub fn save(tx: &Tx<'_>, ci: &Circuit, now: i64) -> Result<(), StoreError> {
    let streak = serde_json::to_string(&ci.streak_users).unwrap_or_else(|_| "[]".into());
    tx.conn().execute(
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
pub fn list_open(tx: &Tx<'_>) -> Result<Vec<Circuit>, StoreError> {
    let apps: Vec<String> = {
        let mut stmt = tx
            .conn()
            .prepare("SELECT app_id FROM circuits WHERE state = 'open' ORDER BY app_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let mut out = Vec::new();
    for a in apps {
        if let Some(ci) = get(tx, &a)? {
            out.push(ci);
        }
    }
    Ok(out)
}

/// Unresolved app-wide integration failures of apps whose circuit is not open:
/// `(app_id, failure_id, reason)`.
pub fn integration_failures_without_open_circuit(
    tx: &Tx<'_>,
) -> Result<Vec<(String, i64, Option<String>)>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT f.app_id, f.id, f.reason FROM failures f
         WHERE f.user_id = '' AND f.operation = 'integration' AND f.state != 'resolved'
           AND NOT EXISTS (SELECT 1 FROM circuits ci WHERE ci.app_id = f.app_id AND ci.state = 'open')
         ORDER BY f.app_id",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Apps whose circuit is open and due for a probe, earliest first.
pub fn due_probes(tx: &Tx<'_>, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT app_id FROM circuits WHERE state = 'open' AND COALESCE(next_probe_at, 0) <= ?1
         ORDER BY next_probe_at, app_id",
    )?;
    let rows = stmt.query_map([now], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
