//! Small key/value facts (`meta`): when the last scan completed, when the last digest went
//! out, daemon-health notes. Keys are constants of their owners.

use super::{StoreError, Tx};
use rusqlite::OptionalExtension;

pub fn get(tx: &Tx<'_>, key: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub fn set(tx: &Tx<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// A trivial query: the store answers.
pub fn ping(tx: &Tx<'_>) -> Result<(), StoreError> {
    tx.conn()
        .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}
