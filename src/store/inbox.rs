//! The event hook inbox (`hook_inbox`, `hook_deliveries`): events Okta pushed to the receiver,
//! written before the receiver answers so that nothing acknowledged is ever lost, then applied
//! asynchronously by `crate::hooks::apply`. One row per event uuid: a duplicate delivery adds no
//! row. Applied rows stay for [`RETENTION_MS`] so that `hooks status` can show them and the
//! hook health rule can tell a delivered event from a missed one.

use super::{StoreError, Tx};
use rusqlite::{params, OptionalExtension};

/// How long applied inbox rows and delivery records are kept.
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// One event as the receiver stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub uuid: String,
    pub event_type: String,
    pub published_ms: Option<i64>,
    /// The event's JSON, as Okta sent it.
    pub body: String,
}

/// An inbox row waiting for the applier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: i64,
    pub uuid: String,
    pub body: String,
    pub received_at: i64,
}

/// One accepted delivery, for `hooks status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    pub received_at: i64,
    pub event_id: Option<String>,
    pub events: i64,
    pub new_events: i64,
}

/// Stores a delivery and its events in the caller's transaction; returns how many events were
/// new (not already in the inbox).
pub fn receive(
    tx: &Tx<'_>,
    event_id: Option<&str>,
    events: &[NewEvent],
    now: i64,
) -> Result<usize, StoreError> {
    let c = tx.conn();
    let mut stmt = c.prepare_cached(
        "INSERT INTO hook_inbox (uuid, event_type, published_ms, body, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (uuid) DO NOTHING",
    )?;
    let mut new = 0;
    for e in events {
        new += stmt.execute(params![e.uuid, e.event_type, e.published_ms, e.body, now])?;
    }
    c.execute(
        "INSERT INTO hook_deliveries (received_at, event_id, events, new_events)
         VALUES (?1, ?2, ?3, ?4)",
        params![now, event_id, events.len() as i64, new as i64],
    )?;
    Ok(new)
}

/// Rows not applied yet, oldest `published` first (Okta delivers out of order; applying in
/// event order lets a failure and its later success settle the way they happened).
pub fn pending(tx: &Tx<'_>, limit: usize) -> Result<Vec<Pending>, StoreError> {
    let mut stmt = tx.conn().prepare_cached(
        "SELECT id, uuid, body, received_at FROM hook_inbox WHERE applied_at IS NULL
         ORDER BY published_ms IS NULL, published_ms, id LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(Pending {
            id: r.get(0)?,
            uuid: r.get(1)?,
            body: r.get(2)?,
            received_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn pending_count(tx: &Tx<'_>) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COUNT(*) FROM hook_inbox WHERE applied_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

/// Records what applying a row did.
pub fn mark_applied(tx: &Tx<'_>, id: i64, now: i64, result: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE hook_inbox SET applied_at = ?2, result = ?3 WHERE id = ?1",
        params![id, now, result],
    )?;
    Ok(())
}

/// Whether the receiver got the event with this uuid.
pub fn contains(tx: &Tx<'_>, uuid: &str) -> Result<bool, StoreError> {
    Ok(tx
        .conn()
        .query_row("SELECT 1 FROM hook_inbox WHERE uuid = ?1", [uuid], |_| {
            Ok(())
        })
        .optional()?
        .is_some())
}

/// The most recent deliveries, newest first.
pub fn recent_deliveries(tx: &Tx<'_>, limit: usize) -> Result<Vec<Delivery>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT received_at, event_id, events, new_events FROM hook_deliveries
         ORDER BY received_at DESC, id DESC LIMIT ?1",
    )?;
    let rows = stmt.query_map([limit as i64], |r| {
        Ok(Delivery {
            received_at: r.get(0)?,
            event_id: r.get(1)?,
            events: r.get(2)?,
            new_events: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Counts of applied rows by result (`applied`, `duplicate`, `deferred`, ...).
pub fn results(tx: &Tx<'_>) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT COALESCE(result, 'pending'), COUNT(*) FROM hook_inbox GROUP BY 1 ORDER BY 1",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Forgets applied rows and delivery records past retention; pending rows are never dropped.
pub fn prune(tx: &Tx<'_>, now: i64) -> Result<usize, StoreError> {
    let before = now - RETENTION_MS;
    let a = tx.conn().execute(
        "DELETE FROM hook_inbox WHERE applied_at IS NOT NULL AND applied_at < ?1",
        [before],
    )?;
    let b = tx.conn().execute(
        "DELETE FROM hook_deliveries WHERE received_at < ?1",
        [before],
    )?;
    Ok(a + b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn ev(uuid: &str, published: i64) -> NewEvent {
        NewEvent {
            uuid: uuid.into(),
            event_type: "application.provision.user.push".into(),
            published_ms: Some(published),
            body: format!("{{\"uuid\":\"{uuid}\"}}"),
        }
    }

    #[test]
    fn duplicates_add_nothing_and_pending_is_in_event_order() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            assert_eq!(
                receive(tx, Some("d1"), &[ev("b", 20), ev("a", 10)], 100)?,
                2
            );
            assert_eq!(receive(tx, Some("d2"), &[ev("a", 10)], 200)?, 0);
            let p = pending(tx, 10)?;
            assert_eq!(
                p.iter().map(|r| r.uuid.as_str()).collect::<Vec<_>>(),
                ["a", "b"]
            );
            mark_applied(tx, p[0].id, 300, "applied")?;
            assert_eq!(pending_count(tx)?, 1);
            assert!(contains(tx, "a")? && !contains(tx, "c")?);
            let d = recent_deliveries(tx, 5)?;
            assert_eq!(d.len(), 2);
            assert_eq!((d[0].events, d[0].new_events), (1, 0));
            // Pending rows survive any prune; applied ones go after retention.
            assert_eq!(prune(tx, 300 + RETENTION_MS + 1)?, 3);
            assert_eq!(pending_count(tx)?, 1);
            Ok(())
        })
        .unwrap();
    }
}
