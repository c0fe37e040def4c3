//! Reads for telling what the daemon did, in order: history rows with their failure's app,
//! user and operation (the demo's live narration), the failures still open, and the timings
//! behind the time-to-heal and detection-latency histograms.

use super::failures::{self, Failure, Operation};
use super::{StoreError, Tx};

/// One history row, with the labels a person recognises instead of Okta ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Happened {
    pub history_id: i64,
    /// The history kind as stored (`detected`, `retry_started`, ...).
    pub kind: String,
    pub detail: Option<String>,
    /// The app's label, or its id if no label is known yet.
    pub app: String,
    /// The user's login (or id); `None` for an app-wide failure.
    pub user: Option<String>,
    pub operation: Operation,
    pub urgent: bool,
}

/// Every history row after `after_id`, oldest first.
pub fn history_since(tx: &Tx, after_id: i64) -> Result<Vec<Happened>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT h.id, h.kind, h.detail, COALESCE(f.app_label, f.app_id),
                COALESCE(f.user_login, f.user_id), f.operation, f.urgent
         FROM failure_history h JOIN failures f ON f.id = h.failure_id
         WHERE h.id > ?1 ORDER BY h.id",
    )?;
    let rows = stmt.query_map([after_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, bool>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (history_id, kind, detail, app, user, op, urgent) = row?;
        out.push(Happened {
            history_id,
            kind,
            detail,
            app,
            user: user.filter(|u| !u.is_empty()),
            operation: Operation::parse(&op).unwrap_or(Operation::Other),
            urgent,
        });
    }
    Ok(out)
}

/// The failures not yet resolved.
pub fn open_failures(tx: &Tx) -> Result<Vec<Failure>, StoreError> {
    failures::list_unresolved(tx)
}

/// How long one thing took, read back from the history.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub history_id: i64,
    pub what: Timed,
    pub operation: Operation,
    pub seconds: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timed {
    /// Detected (or reopened) to resolved.
    Healed,
    /// Okta's event time to the daemon recording the failure.
    Detected,
}

/// The newest history id, where a fresh reader of [`timings_since`] starts (so a restart does
/// not observe old resolutions twice).
pub fn last_history_id(tx: &Tx) -> Result<i64, StoreError> {
    Ok(tx.conn().query_row(
        "SELECT COALESCE(MAX(id), 0) FROM failure_history",
        [],
        |r| r.get(0),
    )?)
}

/// Resolutions and log detections recorded after `after_id`, oldest first, at most `limit`.
pub fn timings_since(tx: &Tx, after_id: i64, limit: u32) -> Result<Vec<Timing>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT h.id, h.kind, f.operation,
                CASE WHEN h.kind = 'resolved'
                     THEN h.at - COALESCE((SELECT MAX(d.at) FROM failure_history d
                                           WHERE d.failure_id = h.failure_id
                                             AND d.kind IN ('detected', 'reopened')
                                             AND d.id < h.id), f.first_seen)
                     ELSE h.at - f.event_published END
         FROM failure_history h JOIN failures f ON f.id = h.failure_id
         WHERE h.id > ?1
           AND (h.kind = 'resolved' OR (h.kind = 'detected' AND f.event_published IS NOT NULL))
         ORDER BY h.id LIMIT ?2",
    )?;
    let rows = stmt.query_map(rusqlite::params![after_id, limit], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (history_id, kind, op, ms) = row?;
        out.push(Timing {
            history_id,
            what: if kind == "resolved" {
                Timed::Healed
            } else {
                Timed::Detected
            },
            operation: Operation::parse(&op).unwrap_or(Operation::Other),
            // A clock step backwards must not produce a negative duration.
            seconds: ms.max(0) as f64 / 1000.0,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::failures::{Applied, Observation};
    use crate::store::Store;

    #[test]
    fn timings_measure_detection_from_okta_and_healing_from_detection() {
        let s = Store::open_in_memory().unwrap();
        let obs = Observation {
            published_ms: Some(1_000),
            ..Observation::failure("0oa1", "00u1", Operation::Deactivate)
        };
        // Okta logged it at 1 s, the daemon recorded it at 4 s, it healed at 64 s.
        let id = s
            .write_blocking(
                |tx| match failures::apply(tx, &obs, 4_000, "poller")? {
                    Applied::Opened(id) => Ok(id),
                    other => panic!("{other:?}"),
                },
            )
            .unwrap();
        s.write_blocking(|tx| failures::resolve(tx, id, 64_000, None, "scanner", "fixed"))
            .unwrap();
        let t = s.read_blocking(|tx| timings_since(tx, 0, 10)).unwrap();
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].what, t[0].seconds), (Timed::Detected, 3.0));
        assert_eq!((t[1].what, t[1].seconds), (Timed::Healed, 60.0));
        assert_eq!(t[1].operation, Operation::Deactivate);
        // A reader starting at the end sees nothing already recorded.
        let end = s.read_blocking(last_history_id).unwrap();
        assert!(s
            .read_blocking(move |tx| timings_since(tx, end, 10))
            .unwrap()
            .is_empty());
        let told = s.read_blocking(|tx| history_since(tx, 0)).unwrap();
        assert_eq!(told.len(), 2);
        assert_eq!(told[0].kind, "detected");
        assert_eq!(told[0].user.as_deref(), Some("00u1"));
    }

    #[test]
    fn an_empty_store_has_nothing_to_tell() {
        let s = Store::open_in_memory().unwrap();
        assert!(s
            .read_blocking(|tx| history_since(tx, 0))
            .unwrap()
            .is_empty());
        assert!(s.read_blocking(open_failures).unwrap().is_empty());
        assert_eq!(s.read_blocking(last_history_id).unwrap(), 0);
        assert!(s
            .read_blocking(|tx| timings_since(tx, 0, 10))
            .unwrap()
            .is_empty());
    }
}
