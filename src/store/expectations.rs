//! The expected-deprovisioning ledger (issue 13) and what it needs to know: the expectations
//! themselves (`deprovision_expectations`), who has an app user where (`known_app_users`), each
//! app's outbound provisioning settings as last known (`app_provisioning`), and the orphans of
//! the last SCIM reconciliation of each app (`scim_orphans`, `scim_reconciliations`).
//!
//! States and verification states are typed here ([`ExpState`], [`Verify`]) and spelt as
//! strings only in SQL. Details are bounded to [`super::MAX_TEXT_BYTES`] when written.
//!
//! About 110 of its lines are unit tests, kept beside the code they pin.

use super::{bounded_opt, StoreError, Tx};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

/// Where an expectation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpState {
    /// Waiting for Okta to report the deprovisioning (deadline running).
    Open,
    /// Okta reported it; the app's own check is pending or failed.
    Confirmed,
    /// Nothing within the SLA: an URGENT failure is open for it.
    Expired,
    /// Done.
    Closed,
}

impl ExpState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExpState::Open => "open",
            ExpState::Confirmed => "confirmed",
            ExpState::Expired => "expired",
            ExpState::Closed => "closed",
        }
    }
    fn parse(s: &str) -> ExpState {
        match s {
            "confirmed" => ExpState::Confirmed,
            "expired" => ExpState::Expired,
            "closed" => ExpState::Closed,
            _ => ExpState::Open,
        }
    }
}

/// What the app's own SCIM API says about the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// The app has no `[[verify]]`: Okta's word is all there is.
    None,
    /// Check as soon as possible (Okta just reported the deprovisioning).
    Pending,
    /// Check on the verification interval (Okta has not reported yet).
    Scheduled,
    /// The app confirms: inactive or gone.
    Verified,
    /// The app still has the account active.
    StillActive,
    /// The check could not run (the detail says why).
    Error,
}

impl Verify {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verify::None => "none",
            Verify::Pending => "pending",
            Verify::Scheduled => "scheduled",
            Verify::Verified => "verified",
            Verify::StillActive => "still_active",
            Verify::Error => "error",
        }
    }
    fn parse(s: &str) -> Verify {
        match s {
            "pending" => Verify::Pending,
            "scheduled" => Verify::Scheduled,
            "verified" => Verify::Verified,
            "still_active" => Verify::StillActive,
            "error" => Verify::Error,
            _ => Verify::None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expectation {
    pub id: i64,
    pub app_id: String,
    pub app_label: Option<String>,
    pub user_id: String,
    pub user_login: Option<String>,
    /// The user name Okta pushed to the app (what the app's SCIM `userName` should be).
    pub app_user_name: Option<String>,
    /// The app's id for the account (Okta's app user `externalId`), when known.
    pub scim_id: Option<String>,
    /// The event type that opened it.
    pub cause: String,
    /// Who did it (the event's actor), when known.
    pub cause_actor: Option<String>,
    pub opened_at: i64,
    pub deadline: i64,
    pub state: ExpState,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
    pub verify: Verify,
    pub verify_detail: Option<String>,
    pub verify_at: Option<i64>,
    pub failure_id: Option<i64>,
}

impl Expectation {
    pub fn app_name(&self) -> &str {
        self.app_label.as_deref().unwrap_or(&self.app_id)
    }
    pub fn user_name(&self) -> &str {
        self.user_login.as_deref().unwrap_or(&self.user_id)
    }
}

/// A new expectation.
#[derive(Clone, Debug, Default)]
pub struct NewExpectation<'a> {
    pub app_id: &'a str,
    pub app_label: Option<&'a str>,
    pub user_id: &'a str,
    pub user_login: Option<&'a str>,
    pub app_user_name: Option<&'a str>,
    pub scim_id: Option<&'a str>,
    pub cause: &'a str,
    pub cause_actor: Option<&'a str>,
    pub cause_uuid: Option<&'a str>,
    pub opened_at: i64,
    pub deadline: i64,
    pub verify: Option<Verify>,
}

const COLUMNS: &str = "id, app_id, app_label, user_id, user_login, app_user_name, scim_id, cause, \
    cause_actor, opened_at, deadline, state, closed_at, closed_by, verify, verify_detail, \
    verify_at, failure_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Expectation> {
    let state: String = r.get(11)?;
    let verify: String = r.get(14)?;
    Ok(Expectation {
        id: r.get(0)?,
        app_id: r.get(1)?,
        app_label: r.get(2)?,
        user_id: r.get(3)?,
        user_login: r.get(4)?,
        app_user_name: r.get(5)?,
        scim_id: r.get(6)?,
        cause: r.get(7)?,
        cause_actor: r.get(8)?,
        opened_at: r.get(9)?,
        deadline: r.get(10)?,
        state: ExpState::parse(&state),
        closed_at: r.get(12)?,
        closed_by: r.get(13)?,
        verify: Verify::parse(&verify),
        verify_detail: r.get(15)?,
        verify_at: r.get(16)?,
        failure_id: r.get(17)?,
    })
}

fn list<P: rusqlite::Params>(
    tx: &Tx<'_>,
    filter: &str,
    p: P,
) -> Result<Vec<Expectation>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT {COLUMNS} FROM deprovision_expectations WHERE {filter} ORDER BY deadline, id"
    ))?;
    let rows = stmt.query_map(p, from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Opens an expectation; `None` when one is already live for (app, user) (the earlier one
/// keeps its deadline: a second trigger does not give Okta more time).
pub fn open(tx: &Tx<'_>, e: &NewExpectation<'_>) -> Result<Option<i64>, StoreError> {
    let n = tx.conn().execute(
        "INSERT OR IGNORE INTO deprovision_expectations (app_id, app_label, user_id, user_login,
            app_user_name, scim_id, cause, cause_actor, cause_uuid, opened_at, deadline, state, verify)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'open', ?12)",
        params![
            e.app_id,
            e.app_label,
            e.user_id,
            e.user_login,
            e.app_user_name,
            e.scim_id,
            e.cause,
            e.cause_actor,
            e.cause_uuid,
            e.opened_at,
            e.deadline,
            e.verify.unwrap_or(Verify::None).as_str(),
        ],
    )?;
    Ok((n > 0).then(|| tx.conn().last_insert_rowid()))
}

pub fn get(tx: &Tx<'_>, id: i64) -> Result<Option<Expectation>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!("SELECT {COLUMNS} FROM deprovision_expectations WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// The unfinished expectation of (app, user), if any.
pub fn live_for(
    tx: &Tx<'_>,
    app_id: &str,
    user_id: &str,
) -> Result<Option<Expectation>, StoreError> {
    Ok(list(
        tx,
        "app_id = ?1 AND user_id = ?2 AND state != 'closed'",
        params![app_id, user_id],
    )?
    .into_iter()
    .next())
}

/// The latest expectation tied to a failure (the one whose expiry opened it, or the one
/// whose app check found the account still active).
pub fn for_failure(tx: &Tx<'_>, failure_id: i64) -> Result<Option<Expectation>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM deprovision_expectations WHERE failure_id = ?1
                 ORDER BY id DESC LIMIT 1"
            ),
            [failure_id],
            from_row,
        )
        .optional()?)
}

/// Open expectations whose deadline has passed at `now`.
pub fn due(tx: &Tx<'_>, now: i64) -> Result<Vec<Expectation>, StoreError> {
    list(tx, "state = 'open' AND deadline <= ?1", [now])
}

/// Unfinished expectations (for `status` and the capability refresh).
pub fn list_live(tx: &Tx<'_>) -> Result<Vec<Expectation>, StoreError> {
    list(tx, "state != 'closed'", [])
}

/// Expectations whose app check is due: pending ones at once, scheduled, still-active and
/// failed ones when the last check is older than `interval_ms`.
pub fn to_verify(tx: &Tx<'_>, now: i64, interval_ms: i64) -> Result<Vec<Expectation>, StoreError> {
    list(
        tx,
        "state != 'closed' AND (verify = 'pending'
            OR (verify IN ('scheduled', 'still_active', 'error') AND COALESCE(verify_at, 0) <= ?1))",
        [now - interval_ms],
    )
}

pub fn set_state(
    tx: &Tx<'_>,
    id: i64,
    state: ExpState,
    now: i64,
    closed_by: Option<&str>,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE deprovision_expectations SET state = ?2,
            closed_at = CASE WHEN ?2 = 'closed' THEN ?3 ELSE closed_at END,
            closed_by = COALESCE(?4, closed_by)
         WHERE id = ?1",
        params![id, state.as_str(), now, closed_by],
    )?;
    Ok(())
}

pub fn set_failure(tx: &Tx<'_>, id: i64, failure_id: i64) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE deprovision_expectations SET failure_id = ?2 WHERE id = ?1",
        params![id, failure_id],
    )?;
    Ok(())
}

pub fn set_verify(
    tx: &Tx<'_>,
    id: i64,
    v: Verify,
    detail: Option<&str>,
    at: Option<i64>,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE deprovision_expectations SET verify = ?2, verify_detail = ?3,
            verify_at = COALESCE(?4, verify_at) WHERE id = ?1",
        params![id, v.as_str(), bounded_opt(detail), at],
    )?;
    Ok(())
}

/// Records the app's account id once it is known (from the SCIM lookup).
pub fn set_scim_id(tx: &Tx<'_>, id: i64, scim_id: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "UPDATE deprovision_expectations SET scim_id = ?2 WHERE id = ?1",
        params![id, scim_id],
    )?;
    Ok(())
}

// ---- who has an app user where -----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KnownAppUser {
    pub app_id: String,
    pub user_id: String,
    pub user_login: Option<String>,
    pub app_user_name: Option<String>,
    pub scim_id: Option<String>,
}

/// Records (or refreshes) that `u.user_id` has an app user in `u.app_id`; fields not given
/// keep their earlier value.
pub fn note_app_user(tx: &Tx<'_>, u: &KnownAppUser, at: i64) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO known_app_users (app_id, user_id, user_login, app_user_name, scim_id, seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (app_id, user_id) DO UPDATE SET
            user_login = COALESCE(excluded.user_login, user_login),
            app_user_name = COALESCE(excluded.app_user_name, app_user_name),
            scim_id = COALESCE(excluded.scim_id, scim_id),
            seen_at = MAX(seen_at, excluded.seen_at)",
        params![
            u.app_id,
            u.user_id,
            u.user_login,
            u.app_user_name,
            u.scim_id,
            at
        ],
    )?;
    Ok(())
}

pub fn forget_app_user(tx: &Tx<'_>, app_id: &str, user_id: &str) -> Result<(), StoreError> {
    tx.conn().execute(
        "DELETE FROM known_app_users WHERE app_id = ?1 AND user_id = ?2",
        params![app_id, user_id],
    )?;
    Ok(())
}

fn known_where<P: rusqlite::Params>(
    tx: &Tx<'_>,
    filter: &str,
    p: P,
) -> Result<Vec<KnownAppUser>, StoreError> {
    let mut stmt = tx.conn().prepare(&format!(
        "SELECT app_id, user_id, user_login, app_user_name, scim_id FROM known_app_users
         WHERE {filter} ORDER BY app_id, user_id"
    ))?;
    let rows = stmt.query_map(p, |r| {
        Ok(KnownAppUser {
            app_id: r.get(0)?,
            user_id: r.get(1)?,
            user_login: r.get(2)?,
            app_user_name: r.get(3)?,
            scim_id: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The apps where the user was last known to have an app user.
pub fn apps_of_user(tx: &Tx<'_>, user_id: &str) -> Result<Vec<KnownAppUser>, StoreError> {
    known_where(tx, "user_id = ?1", [user_id])
}

pub fn known_app_user(
    tx: &Tx<'_>,
    app_id: &str,
    user_id: &str,
) -> Result<Option<KnownAppUser>, StoreError> {
    Ok(
        known_where(tx, "app_id = ?1 AND user_id = ?2", params![app_id, user_id])?
            .into_iter()
            .next(),
    )
}

// ---- provisioning settings per app -------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
pub struct AppProvisioning {
    pub app_id: String,
    /// Outbound provisioning on at all; `None` unknown.
    pub provisioning: Option<bool>,
    /// "Deactivate Users" on; `None` unknown.
    pub deactivate: Option<bool>,
    pub checked_at: Option<i64>,
    pub changed_by: Option<String>,
    pub changed_at: Option<i64>,
    pub stale: bool,
}

impl AppProvisioning {
    /// Whether Okta deprovisions users of this app: `None` while unknown.
    pub fn deprovisions(&self) -> Option<bool> {
        match (self.provisioning, self.deactivate) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        }
    }
}

pub fn provisioning(tx: &Tx<'_>, app_id: &str) -> Result<Option<AppProvisioning>, StoreError> {
    Ok(tx
        .conn()
        .query_row(
            "SELECT app_id, provisioning, deactivate, checked_at, changed_by, changed_at, stale
             FROM app_provisioning WHERE app_id = ?1",
            [app_id],
            |r| {
                Ok(AppProvisioning {
                    app_id: r.get(0)?,
                    provisioning: r.get(1)?,
                    deactivate: r.get(2)?,
                    checked_at: r.get(3)?,
                    changed_by: r.get(4)?,
                    changed_at: r.get(5)?,
                    stale: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// Stores the settings read from Okta's feature (`checked`), or seen in an
/// `application.lifecycle.update` (`changed`: actor and time of the change).
pub fn set_provisioning(
    tx: &Tx<'_>,
    app_id: &str,
    provisioning: Option<bool>,
    deactivate: Option<bool>,
    now: i64,
    changed: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO app_provisioning (app_id, provisioning, deactivate, checked_at, changed_by, changed_at, stale)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
         ON CONFLICT (app_id) DO UPDATE SET provisioning = excluded.provisioning,
            deactivate = excluded.deactivate, checked_at = excluded.checked_at,
            changed_by = COALESCE(excluded.changed_by, changed_by),
            changed_at = COALESCE(excluded.changed_at, changed_at), stale = 0",
        params![
            app_id,
            provisioning,
            deactivate,
            now,
            changed.map(|c| c.0),
            changed.map(|c| c.1)
        ],
    )?;
    Ok(())
}

/// Asks for the app's settings to be read again (an `application.lifecycle.update` without
/// usable details), remembering who changed them and when.
pub fn mark_stale(
    tx: &Tx<'_>,
    app_id: &str,
    changed: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    tx.conn().execute(
        "INSERT INTO app_provisioning (app_id, changed_by, changed_at, stale) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (app_id) DO UPDATE SET stale = 1,
            changed_by = COALESCE(excluded.changed_by, changed_by),
            changed_at = COALESCE(excluded.changed_at, changed_at)",
        params![app_id, changed.map(|c| c.0), changed.map(|c| c.1)],
    )?;
    Ok(())
}

/// Apps whose settings must be read again.
pub fn stale_apps(tx: &Tx<'_>) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx
        .conn()
        .prepare("SELECT app_id FROM app_provisioning WHERE stale = 1 ORDER BY app_id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

// ---- reconciliation ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub scim_id: String,
    pub user_name: Option<String>,
    pub found_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub app_id: String,
    pub finished_at: i64,
    pub scim_users: i64,
    pub orphans: i64,
    pub requests: i64,
    pub error: Option<String>,
}

/// Replaces the app's orphans with this run's (a failed run keeps the previous list and
/// records only its error).
pub fn record_reconciliation(
    tx: &Tx<'_>,
    r: &Reconciliation,
    orphans: Option<&[(String, Option<String>)]>,
) -> Result<(), StoreError> {
    let c = tx.conn();
    if let Some(list) = orphans {
        c.execute("DELETE FROM scim_orphans WHERE app_id = ?1", [&r.app_id])?;
        let mut ins = c.prepare(
            "INSERT OR REPLACE INTO scim_orphans (app_id, scim_id, user_name, found_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (id, name) in list {
            ins.execute(params![r.app_id, id, name, r.finished_at])?;
        }
    }
    c.execute(
        "INSERT INTO scim_reconciliations (app_id, finished_at, scim_users, orphans, requests, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (app_id) DO UPDATE SET finished_at = excluded.finished_at,
            scim_users = CASE WHEN excluded.error IS NULL THEN excluded.scim_users ELSE scim_users END,
            orphans = CASE WHEN excluded.error IS NULL THEN excluded.orphans ELSE orphans END,
            requests = excluded.requests, error = excluded.error",
        params![
            r.app_id,
            r.finished_at,
            r.scim_users,
            r.orphans,
            r.requests,
            bounded_opt(r.error.as_deref())
        ],
    )?;
    Ok(())
}

pub fn orphans(tx: &Tx<'_>, app_id: &str) -> Result<Vec<Orphan>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT scim_id, user_name, found_at FROM scim_orphans WHERE app_id = ?1 ORDER BY user_name, scim_id",
    )?;
    let rows = stmt.query_map([app_id], |r| {
        Ok(Orphan {
            scim_id: r.get(0)?,
            user_name: r.get(1)?,
            found_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn reconciliations(tx: &Tx<'_>) -> Result<Vec<Reconciliation>, StoreError> {
    let mut stmt = tx.conn().prepare(
        "SELECT app_id, finished_at, scim_users, orphans, requests, error FROM scim_reconciliations ORDER BY app_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Reconciliation {
            app_id: r.get(0)?,
            finished_at: r.get(1)?,
            scim_users: r.get(2)?,
            orphans: r.get(3)?,
            requests: r.get(4)?,
            error: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn new<'a>(app: &'a str, user: &'a str, deadline: i64) -> NewExpectation<'a> {
        NewExpectation {
            app_id: app,
            user_id: user,
            cause: "user.lifecycle.deactivate",
            opened_at: deadline - 100,
            deadline,
            ..Default::default()
        }
    }

    #[test]
    fn one_live_expectation_per_app_user_and_due_selection() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let a = open(tx, &new("0oa1", "00u1", 1_000))?.unwrap();
            // A second trigger does not extend the deadline.
            assert_eq!(open(tx, &new("0oa1", "00u1", 9_000))?, None);
            open(tx, &new("0oa1", "00u2", 5_000))?.unwrap();
            let due_now: Vec<_> = due(tx, 1_000)?.into_iter().map(|e| e.id).collect();
            assert_eq!(due_now, [a]);
            set_state(tx, a, ExpState::Closed, 1_100, Some("okta"))?;
            assert!(live_for(tx, "0oa1", "00u1")?.is_none());
            // Once closed, a new deactivation opens a new one.
            assert!(open(tx, &new("0oa1", "00u1", 9_000))?.is_some());
            assert_eq!(get(tx, a)?.unwrap().closed_by.as_deref(), Some("okta"));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn verification_due_and_provisioning_cache() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let a = open(
                tx,
                &NewExpectation {
                    verify: Some(Verify::Pending),
                    ..new("0oa1", "00u1", 1_000)
                },
            )?
            .unwrap();
            let b = open(
                tx,
                &NewExpectation {
                    verify: Some(Verify::Scheduled),
                    ..new("0oa1", "00u2", 1_000)
                },
            )?
            .unwrap();
            set_verify(tx, b, Verify::Scheduled, None, Some(10_000))?;
            let ids: Vec<_> = to_verify(tx, 10_500, 1_000)?
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(ids, [a]);
            let ids: Vec<_> = to_verify(tx, 11_000, 1_000)?
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(ids, [a, b]);

            assert!(provisioning(tx, "0oa1")?.is_none());
            mark_stale(tx, "0oa1", Some(("admin@x", 5)))?;
            assert_eq!(stale_apps(tx)?, ["0oa1"]);
            set_provisioning(tx, "0oa1", Some(true), Some(false), 7, None)?;
            let p = provisioning(tx, "0oa1")?.unwrap();
            assert_eq!(p.deprovisions(), Some(false));
            assert_eq!(p.changed_by.as_deref(), Some("admin@x"));
            assert!(stale_apps(tx)?.is_empty());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn reconciliation_replaces_orphans_and_a_failed_run_keeps_them() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let r = Reconciliation {
                app_id: "0oa1".into(),
                finished_at: 1,
                scim_users: 10,
                orphans: 1,
                requests: 2,
                error: None,
            };
            record_reconciliation(tx, &r, Some(&[("s1".into(), Some("a@x".into()))]))?;
            let failed = Reconciliation {
                error: Some("401".into()),
                finished_at: 2,
                scim_users: 0,
                orphans: 0,
                ..r
            };
            record_reconciliation(tx, &failed, None)?;
            assert_eq!(orphans(tx, "0oa1")?.len(), 1);
            let rec = &reconciliations(tx)?[0];
            assert_eq!(
                (rec.scim_users, rec.orphans, rec.error.as_deref()),
                (10, 1, Some("401"))
            );
            Ok(())
        })
        .unwrap();
    }
}
