//! The append-only history of each failure (`failure_history`): what happened, when, by whom.
//! Kinds are [`HistoryKind`]s; the wire name is converted here and nowhere else. Details are
//! bounded to [`super::MAX_TEXT_BYTES`] when written.

use super::{bounded_opt, StoreError, Tx};
use crate::domain::{HistoryEntry, HistoryKind};
use rusqlite::params;

pub fn add(
    tx: &Tx<'_>,
    failure_id: i64,
    at: i64,
    kind: HistoryKind,
    actor: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO failure_history (failure_id, at, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![failure_id, at, kind.as_str(), actor, bounded_opt(detail)],
    )?;
    Ok(())
}

/// A failure's history, oldest first.
pub fn list(tx: &Tx<'_>, failure_id: i64) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT at, kind, actor, detail FROM failure_history WHERE failure_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([failure_id], |r| {
        let kind: String = r.get(1)?;
        Ok(HistoryEntry {
            at: r.get(0)?,
            kind: HistoryKind::parse(&kind).unwrap_or(HistoryKind::Unknown),
            actor: r.get(2)?,
            detail: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many of a failure's last `window` history rows are of `kind` (e.g. deferrals in a row,
/// for the retry backoff).
pub fn count_recent(
    tx: &Tx<'_>,
    failure_id: i64,
    kind: HistoryKind,
    window: u32,
) -> Result<u32, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COUNT(*) FROM (SELECT kind FROM failure_history
           WHERE failure_id = ?1 ORDER BY id DESC LIMIT ?3)
         WHERE kind = ?2",
        params![failure_id, kind.as_str(), window],
        |r| r.get(0),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Observation, Operation};
    use crate::store::{failures, Store};

    #[test]
    fn kinds_round_trip_and_recent_counts() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let o = Observation::failure("0oa1", "00u1", Operation::Create);
            let failures::Applied::Opened(id) = failures::apply(tx, &o, 1, "t")? else {
                panic!()
            };
            for k in [
                HistoryKind::RetryDeferred,
                HistoryKind::RetryFailed,
                HistoryKind::RetryDeferred,
            ] {
                add(tx, id, 2, k, "t", None)?;
            }
            let kinds: Vec<_> = list(tx, id)?.into_iter().map(|h| h.kind).collect();
            assert_eq!(
                kinds,
                [
                    HistoryKind::Detected,
                    HistoryKind::RetryDeferred,
                    HistoryKind::RetryFailed,
                    HistoryKind::RetryDeferred
                ]
            );
            assert_eq!(count_recent(tx, id, HistoryKind::RetryDeferred, 12)?, 2);
            assert_eq!(count_recent(tx, id, HistoryKind::RetryDeferred, 1)?, 1);
            // A kind written by a newer build reads back as Unknown, not an error.
            tx.conn().execute(
                "INSERT INTO failure_history (failure_id, at, kind, actor) VALUES (?1, 3, 'from_the_future', 't')",
                [id],
            )?;
            assert_eq!(list(tx, id)?.last().unwrap().kind, HistoryKind::Unknown);
            Ok(())
        })
        .unwrap();
    }
}
