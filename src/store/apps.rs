//! The apps seen (`apps`): label and internal name per app id, so `status` and alerts can name
//! an app and link to its admin console page without calling Okta. Both detectors write here
//! through [`upsert`]: the log poller with the label of the event's AppInstance target, the
//! assignment scanner with the label and `name` from the apps list.

use super::{StoreError, Tx};
use rusqlite::{params, OptionalExtension};

/// Records what is known of an app. `None` keeps what is stored (an event names the label but
/// never the internal name). Only a new app or a changed label or name costs a write: every
/// event of a page carries its app's label.
pub fn upsert(
    tx: &Tx<'_>,
    app_id: &str,
    label: Option<&str>,
    name: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO apps (app_id, label, name, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (app_id) DO UPDATE SET
            label = COALESCE(excluded.label, label), name = COALESCE(excluded.name, name),
            updated_at = excluded.updated_at
         WHERE label IS NOT COALESCE(excluded.label, label)
            OR name IS NOT COALESCE(excluded.name, name)",
        params![app_id, label, name, now],
    )?;
    Ok(())
}

/// The label we know for an app, if any.
pub fn label(tx: &Tx<'_>, app_id: &str) -> Result<Option<String>, StoreError> {
    column(tx, "label", app_id)
}

/// The app's internal name (e.g. `salesforce`), for admin console links.
pub fn name(tx: &Tx<'_>, app_id: &str) -> Result<Option<String>, StoreError> {
    column(tx, "name", app_id)
}

fn column(tx: &Tx<'_>, col: &'static str, app_id: &str) -> Result<Option<String>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {col} FROM apps WHERE app_id = ?1"),
            [app_id],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

/// App ids an operator's `--app` value may mean: an id we know, or a label (case-insensitive)
/// from the `apps` table or failure rows.
pub fn resolve(tx: &Tx<'_>, app: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT app_id, label FROM apps WHERE app_id = ?1 OR label = ?1 COLLATE NOCASE
         UNION
         SELECT DISTINCT app_id, app_label FROM failures
         WHERE (app_id = ?1 OR app_label = ?1 COLLATE NOCASE)
           AND app_id NOT IN (SELECT app_id FROM apps)
         ORDER BY 1",
    )?;
    let rows = stmt.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut out: Vec<(String, Option<String>)> = rows.collect::<Result<Vec<_>, _>>()?;
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn upsert_keeps_what_an_observation_does_not_know() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            upsert(tx, "0oa1", Some("Sales"), None, 1)?;
            assert_eq!(name(tx, "0oa1")?, None);
            upsert(tx, "0oa1", Some("Sales"), Some("salesforce"), 2)?;
            // A later event names the label only: the name stays.
            upsert(tx, "0oa1", Some("Sales CRM"), None, 3)?;
            assert_eq!(name(tx, "0oa1")?.as_deref(), Some("salesforce"));
            assert_eq!(label(tx, "0oa1")?.as_deref(), Some("Sales CRM"));
            assert_eq!(
                resolve(tx, "sales crm")?,
                [("0oa1".into(), Some("Sales CRM".into()))]
            );
            Ok(())
        })
        .unwrap();
    }
}
