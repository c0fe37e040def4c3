//! The deprovisioning view of `status` (issue 13): unfinished expectations with their deadline
//! and what the app's own check said (verified / still active / could not check / unverified),
//! and the orphans of each app's last reconciliation. Reads the store only.

use crate::store::expectations::{self as exp, ExpState, Expectation, Reconciliation, Verify};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// What `status` shows about deprovisioning.
#[derive(Debug, Default)]
pub struct View {
    pub expectations: Vec<Expectation>,
    pub reconciliations: Vec<(Reconciliation, Vec<exp::Orphan>)>,
}

pub fn read(store: &Store) -> Result<View, StoreError> {
    store.read_blocking(|tx| {
        let expectations = exp::list_live(tx)?;
        let mut reconciliations = Vec::new();
        for r in exp::reconciliations(tx)? {
            let o = exp::orphans(tx, &r.app_id)?;
            reconciliations.push((r, o));
        }
        Ok(View {
            expectations,
            reconciliations,
        })
    })
}

fn ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn verified(v: Verify) -> &'static str {
    match v {
        Verify::None => "unverified (no [[verify]])",
        Verify::Pending | Verify::Scheduled => "not checked yet",
        Verify::Verified => "verified by the app",
        Verify::StillActive => "STILL ACTIVE in the app",
        Verify::Error => "could not check",
    }
}

impl View {
    pub fn json(&self) -> Value {
        json!({
            "expectations": self.expectations.iter().map(|e| json!({
                "id": e.id, "app_id": e.app_id, "app_label": e.app_label, "user_id": e.user_id,
                "user_login": e.user_login, "cause": e.cause, "actor": e.cause_actor,
                "opened_at": ts(e.opened_at), "deadline": ts(e.deadline), "state": e.state,
                "verify": e.verify, "verify_detail": e.verify_detail, "failure_id": e.failure_id,
            })).collect::<Vec<_>>(),
            "orphans": self.reconciliations.iter().map(|(r, o)| json!({
                "app_id": r.app_id, "reconciled_at": ts(r.finished_at), "scim_users": r.scim_users,
                "requests": r.requests, "error": r.error,
                "orphans": o.iter().map(|x| json!({"scim_id": x.scim_id, "user_name": x.user_name})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    pub fn text(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        if self.expectations.is_empty() && self.reconciliations.is_empty() {
            return out;
        }
        let now = now.timestamp_millis();
        if !self.expectations.is_empty() {
            let _ = writeln!(
                out,
                "\nDeprovisionings Okta owes ({}):",
                self.expectations.len()
            );
            for e in &self.expectations {
                let when = match e.state {
                    ExpState::Open if e.deadline > now => {
                        format!("due in {}m", (e.deadline - now + 59_999) / 60_000)
                    }
                    ExpState::Open => "due now".to_string(),
                    ExpState::Expired => "OVERDUE".to_string(),
                    ExpState::Confirmed => "Okta reported it".to_string(),
                    ExpState::Closed => "closed".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  {} / {}  {:<16} {}{}  (after {} by {})",
                    e.app_name(),
                    e.user_name(),
                    when,
                    verified(e.verify),
                    e.failure_id
                        .map(|f| format!(", failure #{f}"))
                        .unwrap_or_default(),
                    e.cause,
                    e.cause_actor.as_deref().unwrap_or("?"),
                );
            }
        }
        for (r, o) in &self.reconciliations {
            match &r.error {
                Some(err) => {
                    let _ = writeln!(
                        out,
                        "\nReconciliation of {} failed at {}: {err}",
                        r.app_id,
                        ts(r.finished_at)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "\n{} orphan(s) in {} (active in the app, not assigned or deactivated in Okta; {} SCIM users, {}):",
                        o.len(),
                        r.app_id,
                        r.scim_users,
                        ts(r.finished_at)
                    );
                    for x in o.iter().take(20) {
                        let _ = writeln!(
                            out,
                            "  {} (SCIM id {})",
                            x.user_name.as_deref().unwrap_or("?"),
                            x.scim_id
                        );
                    }
                    if o.len() > 20 {
                        let _ = writeln!(
                            out,
                            "  ... and {} more (status --json lists them all)",
                            o.len() - 20
                        );
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::expectations::NewExpectation;

    #[test]
    fn shows_deadline_verification_and_orphans() {
        let s = Store::open_in_memory().unwrap();
        let now = Utc::now();
        let ms = now.timestamp_millis();
        s.write_blocking(|tx| {
            exp::open(
                tx,
                &NewExpectation {
                    app_id: "0oa1",
                    app_label: Some("CRM"),
                    user_id: "00u1",
                    user_login: Some("ada@x"),
                    cause: "user.lifecycle.deactivate",
                    cause_actor: Some("hr@x"),
                    opened_at: ms,
                    deadline: ms + 10 * 60_000,
                    verify: Some(Verify::Scheduled),
                    ..Default::default()
                },
            )?;
            exp::record_reconciliation(
                tx,
                &Reconciliation {
                    app_id: "0oa1".into(),
                    finished_at: ms,
                    scim_users: 3,
                    orphans: 1,
                    requests: 1,
                    error: None,
                },
                Some(&[("s9".into(), Some("ghost@x".into()))]),
            )
        })
        .unwrap();
        let v = read(&s).unwrap();
        let t = v.text(now);
        assert!(t.contains("CRM / ada@x") && t.contains("due in 10m"), "{t}");
        assert!(t.contains("not checked yet") && t.contains("hr@x"), "{t}");
        assert!(
            t.contains("1 orphan(s) in 0oa1") && t.contains("ghost@x"),
            "{t}"
        );
        let j = v.json();
        assert_eq!(j["expectations"][0]["verify"], "scheduled");
        assert_eq!(j["orphans"][0]["orphans"][0]["user_name"], "ghost@x");
    }
}
