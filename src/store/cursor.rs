//! The System Log cursor (`log_cursor`: the whole `next` URL Okta gave, never rebuilt) and the
//! set of event uuids already applied (`seen_events`), so at-least-once delivery applies once.

use super::{StoreError, Tx};
use rusqlite::{params, OptionalExtension};

/// System Log retention: an event older than this cannot be delivered again, so its uuid can go.
pub const RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub next_url: String,
    pub updated_at: i64,
    pub newest_published: Option<i64>,
}

pub fn get(tx: &Tx<'_>) -> Result<Option<Cursor>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT next_url, updated_at, newest_published FROM log_cursor WHERE id = 1",
            [],
            |r| {
                Ok(Cursor {
                    next_url: r.get(0)?,
                    updated_at: r.get(1)?,
                    newest_published: r.get(2)?,
                })
            },
        )
        .optional()?)
}

pub fn set(tx: &Tx<'_>, next_url: &str, now: i64, newest: Option<i64>) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO log_cursor (id, next_url, updated_at, newest_published) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET next_url = excluded.next_url, updated_at = excluded.updated_at,
             newest_published = MAX(COALESCE(newest_published, 0), COALESCE(excluded.newest_published, 0))",
        params![next_url, now, newest],
    )?;
    Ok(())
}

/// `published` of the newest event ever applied (ms), remembered across restarts for the
/// poll-lag gauge; `None` before the first event.
pub fn newest_published(tx: &Tx<'_>) -> Result<Option<i64>, StoreError> {
    Ok(get(tx)?.and_then(|c| c.newest_published).filter(|n| *n > 0))
}

/// Records an event uuid; false when it was already applied.
pub fn mark_seen(tx: &Tx<'_>, uuid: &str, published_ms: i64) -> Result<bool, StoreError> {
    let n = tx.conn().execute(
        "INSERT OR IGNORE INTO seen_events (uuid, published_ms) VALUES (?1, ?2)",
        params![uuid, published_ms],
    )?;
    Ok(n == 1)
}

/// Forgets uuids of events past retention (with a day of slack for clock differences).
pub fn prune_seen(tx: &Tx<'_>, now: i64) -> Result<usize, StoreError> {
    Ok(tx.conn().execute(
        "DELETE FROM seen_events WHERE published_ms < ?1",
        [now - RETENTION_MS - 24 * 3600 * 1000],
    )?)
}

pub fn seen_count(tx: &Tx<'_>) -> Result<i64, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT COUNT(*) FROM seen_events", [], |r| r.get(0))?)
}
