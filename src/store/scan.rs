//! Progress of the assignment scanner (`scan_progress`), so an interrupted scan resumes where
//! it stopped: per app, the next page URL and when the pass started.

use super::{StoreError, Tx};
use rusqlite::{params, OptionalExtension};

pub fn get(tx: &Tx<'_>, app_id: &str) -> Result<Option<(Option<String>, i64)>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT next_url, started_at FROM scan_progress WHERE app_id = ?1",
            [app_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub fn set(
    tx: &Tx<'_>,
    app_id: &str,
    next_url: Option<&str>,
    started_at: i64,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO scan_progress (app_id, next_url, started_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id) DO UPDATE SET next_url = excluded.next_url",
        params![app_id, next_url, started_at],
    )?;
    Ok(())
}

pub fn clear(tx: &Tx<'_>, app_id: &str) -> Result<(), StoreError> {
    tx.conn()
        .execute("DELETE FROM scan_progress WHERE app_id = ?1", [app_id])?;
    Ok(())
}

pub fn in_progress(tx: &Tx<'_>) -> Result<Vec<String>, StoreError> {
    let mut s = tx
        .conn()
        .prepare("SELECT app_id FROM scan_progress ORDER BY app_id")?;
    let rows = s.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
