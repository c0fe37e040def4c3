//! Silences and the app lookups the silence command and the alert evaluator share.
//!
//! Alert groups moved to [`super::alert_groups`], the outbox to [`super::outbox`]; the silence
//! section is moving to `store/silences.rs`.

use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

// ---------------------------------------------------------------- silences

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Silence {
    pub id: i64,
    /// The app id when it could be resolved, else what the operator typed.
    pub app: String,
    pub until: i64,
    pub reason: Option<String>,
    pub created_at: i64,
    pub created_by: Option<String>,
}

fn silence_from_row(r: &Row<'_>) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: r.get(0)?,
        app: r.get(1)?,
        until: r.get(2)?,
        reason: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
    })
}

pub fn add_silence(
    c: &Connection,
    app: &str,
    until: i64,
    reason: Option<&str>,
    now: i64,
    created_by: Option<&str>,
) -> Result<i64, StoreError> {
    c.execute(
        "INSERT INTO silences (app, until, reason, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![app, until, reason, now, created_by],
    )?;
    Ok(c.last_insert_rowid())
}

/// Silences still in force at `now`.
pub fn active_silences(c: &Connection, now: i64) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT id, app, until, reason, created_at, created_by FROM silences
         WHERE until > ?1 ORDER BY until, id",
    )?;
    let rows = stmt.query_map([now], silence_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn remove_silence(c: &Connection, id: i64) -> Result<bool, StoreError> {
    Ok(c.execute("DELETE FROM silences WHERE id = ?1", [id])? > 0)
}

/// The silence muting `app_id` (matched by id or by label) at `now`, if any.
pub fn silence_for(
    c: &Connection,
    app_id: &str,
    app_label: Option<&str>,
    now: i64,
) -> Result<Option<Silence>, StoreError> {
    Ok(c.query_row(
        "SELECT id, app, until, reason, created_at, created_by FROM silences
         WHERE until > ?1 AND (app = ?2 OR (?3 IS NOT NULL AND app = ?3 COLLATE NOCASE))
         ORDER BY until DESC LIMIT 1",
        params![now, app_id, app_label],
        silence_from_row,
    )
    .optional()?)
}

/// App ids an operator's `--app` value may mean: an id we know, or a label (case-insensitive)
/// from the `apps` table or failure rows.
pub fn resolve_app(c: &Connection, app: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let mut stmt = c.prepare(
        "SELECT app_id, label FROM apps WHERE app_id = ?1 OR label = ?1 COLLATE NOCASE
         UNION
         SELECT DISTINCT app_id, app_label FROM failures
         WHERE (app_id = ?1 OR app_label = ?1 COLLATE NOCASE)
           AND app_id NOT IN (SELECT app_id FROM apps)
         ORDER BY 1",
    )?;
    let rows = stmt.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut out: Vec<(String, Option<String>)> = rows.collect::<Result<Vec<_>, _>>()?;
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// The label we know for an app, if any.
pub fn app_label(c: &Connection, app_id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.query_row("SELECT label FROM apps WHERE app_id = ?1", [app_id], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()?
        .flatten(),
    )
}

/// The app's internal name (e.g. `salesforce`), for admin console links.
pub fn app_name(c: &Connection, app_id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        c.query_row("SELECT name FROM apps WHERE app_id = ?1", [app_id], |r| {
            r.get::<_, Option<String>>(0)
        })
        .optional()?
        .flatten(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::Store;

    #[test]
    fn silences_match_id_or_label_and_expire() {
        let s = Store::open_in_memory().unwrap();
        s.blocking(|c| {
            add_silence(c, "Sales", 100, Some("maint"), 0, None)?;
            assert!(silence_for(c, "0oa1", Some("sales"), 50)?.is_some());
            assert!(silence_for(c, "0oa1", Some("sales"), 100)?.is_none());
            assert!(silence_for(c, "0oa1", None, 50)?.is_none());
            let id = add_silence(c, "0oa1", 200, None, 0, None)?;
            assert!(silence_for(c, "0oa1", None, 150)?.is_some());
            assert!(remove_silence(c, id)?);
            assert!(silence_for(c, "0oa1", None, 150)?.is_none());
            Ok(())
        })
        .unwrap();
    }
}
