//! Maintenance silences (`silences`): an app's alerts muted until a time. Written by the
//! `silence` command, read by the alert evaluator. Matched by app id or, case-insensitively,
//! by label, because an operator may silence an app before the daemon has seen it.

use super::{StoreError, Tx};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

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

const COLUMNS: &str = "id, app, until, reason, created_at, created_by";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Silence> {
    Ok(Silence {
        id: r.get(0)?,
        app: r.get(1)?,
        until: r.get(2)?,
        reason: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
    })
}

pub fn add(
    tx: &Tx<'_>,
    app: &str,
    until: i64,
    reason: Option<&str>,
    now: i64,
    created_by: Option<&str>,
) -> Result<i64, StoreError> {
    let c = tx.conn();
    c.execute(
        "INSERT INTO silences (app, until, reason, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![app, until, reason, now, created_by],
    )?;
    Ok(c.last_insert_rowid())
}

/// Silences still in force at `now`.
pub fn active(tx: &Tx<'_>, now: i64) -> Result<Vec<Silence>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM silences WHERE until > ?1 ORDER BY until, id"
    ))?;
    let rows = stmt.query_map([now], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Removes silence `id`; false when there was none.
pub fn remove(tx: &Tx<'_>, id: i64) -> Result<bool, StoreError> {
    Ok(tx
        .conn()
        .execute("DELETE FROM silences WHERE id = ?1", [id])?
        > 0)
}

/// The silence muting `app_id` (matched by id or by label) at `now`, if any.
pub fn for_app(
    tx: &Tx<'_>,
    app_id: &str,
    app_label: Option<&str>,
    now: i64,
) -> Result<Option<Silence>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM silences
                 WHERE until > ?1 AND (app = ?2 OR (?3 IS NOT NULL AND app = ?3 COLLATE NOCASE))
                 ORDER BY until DESC LIMIT 1"
            ),
            params![now, app_id, app_label],
            from_row,
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn silences_match_id_or_label_and_expire() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            add(c, "Sales", 100, Some("maint"), 0, None)?;
            assert!(for_app(c, "0oa1", Some("sales"), 50)?.is_some());
            assert!(for_app(c, "0oa1", Some("sales"), 100)?.is_none());
            assert!(for_app(c, "0oa1", None, 50)?.is_none());
            let id = add(c, "0oa1", 200, None, 0, None)?;
            assert!(for_app(c, "0oa1", None, 150)?.is_some());
            assert_eq!(active(c, 150)?.len(), 1);
            assert!(remove(c, id)?);
            assert!(!remove(c, id)?);
            assert!(for_app(c, "0oa1", None, 150)?.is_none());
            Ok(())
        })
        .unwrap();
    }
}
