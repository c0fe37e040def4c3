//! The `alert_groups` table (what each alert group last told people: `app:<app_id>` groups and
//! `daemon:health`), and the reads and writes of other tables the alert evaluator and the
//! digest make in their transaction: marking a failure alerted, failures with a history kind
//! in a window, the app's label and name, the silence in force.
//!
//! The policy lives in `crate::alert`; nothing here decides when to notify.
//!
//! The bridge functions at the bottom call table modules that still take a rusqlite
//! connection; once those take [`Tx`] (store rework, issue 9 item 2) they become direct calls.

use super::{StoreError, Tx};
use crate::store::failures::{self, Failure};
use rusqlite::{params, OptionalExtension, Row};

/// One alert group (`app:<app_id>` or `daemon:health`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertGroup {
    pub group_key: String,
    pub app_id: Option<String>,
    /// The last notification sent for the group was a firing one (an episode is open).
    pub firing: bool,
    /// Fingerprint of the failure set in the last firing notification.
    pub fingerprint: Option<String>,
    /// Failure ids sent as firing during the current episode.
    pub sent_failures: Vec<i64>,
    /// When the group first had something (new) to send; the group wait counts from here.
    pub pending_since: Option<i64>,
    pub last_sent_at: Option<i64>,
}

impl AlertGroup {
    /// Ends the group's episode: nothing of it is firing any more.
    pub fn close_episode(&mut self) {
        self.firing = false;
        self.fingerprint = None;
        self.sent_failures.clear();
    }
}

fn group_from_row(r: &Row<'_>) -> rusqlite::Result<AlertGroup> {
    let sent: Option<String> = r.get(4)?;
    Ok(AlertGroup {
        group_key: r.get(0)?,
        app_id: r.get(1)?,
        firing: r.get(2)?,
        fingerprint: r.get(3)?,
        // A row this build cannot parse is treated as "nothing sent": at worst one extra
        // notification, never a lost one.
        sent_failures: sent
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        pending_since: r.get(5)?,
        last_sent_at: r.get(6)?,
    })
}

const GROUP_COLUMNS: &str =
    "group_key, app_id, firing, fingerprint, sent_failures, pending_since, last_sent_at";

pub fn get(tx: &Tx<'_>, key: &str) -> Result<Option<AlertGroup>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {GROUP_COLUMNS} FROM alert_groups WHERE group_key = ?1"),
            [key],
            group_from_row,
        )
        .optional()?)
}

pub fn list(tx: &Tx<'_>) -> Result<Vec<AlertGroup>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {GROUP_COLUMNS} FROM alert_groups ORDER BY group_key"
    ))?;
    let rows = stmt.query_map([], group_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn put(tx: &Tx<'_>, g: &AlertGroup) -> Result<(), StoreError> {
    let sent = serde_json::to_string(&g.sent_failures).unwrap_or_else(|_| "[]".into());
    tx.conn().execute(
        "INSERT INTO alert_groups (group_key, app_id, firing, fingerprint, sent_failures,
            pending_since, last_sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (group_key) DO UPDATE SET app_id = excluded.app_id,
            firing = excluded.firing, fingerprint = excluded.fingerprint,
            sent_failures = excluded.sent_failures, pending_since = excluded.pending_since,
            last_sent_at = excluded.last_sent_at",
        params![
            g.group_key,
            g.app_id,
            g.firing,
            g.fingerprint,
            sent,
            g.pending_since,
            g.last_sent_at
        ],
    )?;
    Ok(())
}

/// Records in the failure row that a person was told about it (history included). A failure
/// the retry worker holds keeps its `retrying` state, and the state it returns to when the
/// claim ends becomes `alerted`, so the retry does not make the alerter's mark disappear.
pub fn mark_failure_alerted(
    tx: &Tx<'_>,
    failure_id: i64,
    now: i64,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE failures SET
            state = CASE WHEN state = 'open' THEN 'alerted' ELSE state END,
            claim_prev_state = CASE WHEN state = 'retrying' THEN 'alerted' ELSE claim_prev_state END
         WHERE id = ?1",
        [failure_id],
    )?;
    super::history::add(tx, failure_id, now, crate::domain::HistoryKind::Alerted, actor, Some(detail))
}

/// Ids of failures with a history entry of one of `kinds` in (`since`, `now`] (for the digest).
pub fn failures_with_history(
    tx: &Tx<'_>,
    kinds: &[&str],
    since: i64,
    now: i64,
) -> Result<std::collections::BTreeSet<i64>, StoreError> {
    let mut out = std::collections::BTreeSet::new();
    let mut stmt = tx.conn().prepare(
        "SELECT DISTINCT failure_id FROM failure_history WHERE kind = ?1 AND at > ?2 AND at <= ?3",
    )?;
    for kind in kinds {
        let rows = stmt.query_map(params![kind, since, now], |r| r.get::<_, i64>(0))?;
        for id in rows {
            out.insert(id?);
        }
    }
    Ok(out)
}

// ------------------------------------------------ reads the evaluator shares with other tables

/// Every unresolved failure.
pub fn unresolved_failures(tx: &Tx<'_>) -> Result<Vec<Failure>, StoreError> {
    failures::list_unresolved(tx)
}

/// One failure by id.
pub fn failure(tx: &Tx<'_>, id: i64) -> Result<Option<Failure>, StoreError> {
    failures::get(tx, id)
}

/// The label we know for an app, if any.
pub fn app_label(tx: &Tx<'_>, app_id: &str) -> Result<Option<String>, StoreError> {
    super::apps::label(tx, app_id)
}

/// The app's internal name (e.g. `salesforce`), for admin console links.
pub fn app_name(tx: &Tx<'_>, app_id: &str) -> Result<Option<String>, StoreError> {
    super::apps::name(tx, app_id)
}

/// Whether a silence mutes `app_id` (by id or label) at `now`.
pub fn is_silenced(
    tx: &Tx<'_>,
    app_id: &str,
    app_label: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(super::silences::for_app(tx, app_id, app_label, now)?.is_some())
}

/// A `meta` value (the digest's last run).
pub fn get_meta(tx: &Tx<'_>, key: &str) -> Result<Option<String>, StoreError> {
    super::meta::get(tx, key)
}

/// Sets a `meta` value in the caller's transaction.
pub fn set_meta(tx: &Tx<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    super::meta::set(tx, key, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn groups_round_trip() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let g = AlertGroup {
                group_key: "app:1".into(),
                app_id: Some("1".into()),
                firing: true,
                fingerprint: Some("f".into()),
                sent_failures: vec![3, 4],
                pending_since: None,
                last_sent_at: Some(10),
            };
            put(tx, &g)?;
            assert_eq!(get(tx, "app:1")?, Some(g.clone()));
            assert_eq!(list(tx)?, vec![g]);
            assert_eq!(get(tx, "app:2")?, None);
            Ok(())
        })
        .unwrap();
    }
}
