//! Progress of the assignment scanner, so an interrupted scan resumes where it stopped.

use super::StoreError;
use rusqlite::{params, Connection, OptionalExtension};

pub fn get(c: &Connection, app_id: &str) -> Result<Option<(Option<String>, i64)>, StoreError> {
    Ok(c.query_row(
        "SELECT next_url, started_at FROM scan_progress WHERE app_id = ?1",
        [app_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

pub fn set(
    c: &Connection,
    app_id: &str,
    next_url: Option<&str>,
    started_at: i64,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO scan_progress (app_id, next_url, started_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (app_id) DO UPDATE SET next_url = excluded.next_url",
        params![app_id, next_url, started_at],
    )?;
    Ok(())
}

pub fn clear(c: &Connection, app_id: &str) -> Result<(), StoreError> {
    c.execute("DELETE FROM scan_progress WHERE app_id = ?1", [app_id])?;
    Ok(())
}

pub fn in_progress(c: &Connection) -> Result<Vec<String>, StoreError> {
    let mut s = c.prepare("SELECT app_id FROM scan_progress ORDER BY app_id")?;
    let rows = s.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
