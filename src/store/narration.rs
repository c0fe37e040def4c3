//! Reads for telling what the daemon did, in order: history rows with their failure's app,
//! user and operation (the demo's live narration), and the failures still open at the end.

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
    failures::list_unresolved(tx.conn())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn an_empty_store_has_nothing_to_tell() {
        let s = Store::open_in_memory().unwrap();
        assert!(s
            .read_blocking(|tx| history_since(tx, 0))
            .unwrap()
            .is_empty());
        assert!(s.read_blocking(open_failures).unwrap().is_empty());
    }
}
