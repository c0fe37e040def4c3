//! `okta-provwatch status`: open failures from the state store, as a table grouped by app
//! (urgent deprovisioning failures first) or as JSON. Reads the store only, never Okta, so it is
//! safe and instant to run at any time, also while the daemon runs.

use crate::alert::outbox;
use crate::cli::StatusArgs;
use crate::domain::Failure;
use crate::store::{failures, quarantine};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

pub fn run(config_path: &Path, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    // Read-only and never creating: a mistyped `[state] path` must be an error, not an empty
    // store that prints "No open provisioning failures." with exit 0.
    let store = super::open_existing_store_only(config_path, false)?;
    let rows = store.read_blocking(|tx| {
        if args.all {
            failures::list_all(tx)
        } else {
            failures::list_unresolved(tx)
        }
    })?;
    let (undelivered, pending, quarantined) = store.read_blocking(|tx| {
        Ok((
            outbox::failed_deliveries(tx)?,
            outbox::pending_count(tx)?,
            quarantine::count(tx)?,
        ))
    })?;
    if args.json {
        let mut j = to_json(&rows);
        j["pending_alerts"] = json!(pending);
        j["quarantined"] = json!(quarantined);
        j["failed_deliveries"] = json!(undelivered
            .iter()
            .map(|d| json!({
                "id": d.id, "channel": d.channel, "kind": d.kind, "title": d.title,
                "failed_at": ts(d.failed_at), "attempts": d.attempts, "error": d.error,
            }))
            .collect::<Vec<_>>());
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!("{}", table(&rows, Utc::now()));
        if quarantined > 0 {
            println!("{quarantined} System Log event(s) could not be parsed and are quarantined (kept in the state's quarantine table; detection went on past them).");
        }
        if pending > 0 {
            println!("{pending} alert message(s) waiting to be delivered.");
        }
        if !undelivered.is_empty() {
            println!(
                "{} alert message(s) could NOT be delivered (permanent channel errors; run `okta-provwatch doctor`):",
                undelivered.len()
            );
            for d in undelivered.iter().rev().take(10) {
                println!(
                    "  {} {:<6} {} — {}",
                    ts(d.failed_at),
                    d.channel,
                    d.title.as_deref().unwrap_or(&d.kind),
                    d.error
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `{"failures": [...]}` with times as RFC 3339 strings.
pub fn to_json(rows: &[Failure]) -> serde_json::Value {
    let list: Vec<_> = rows
        .iter()
        .map(|f| {
            json!({
                "id": f.id,
                "app_id": f.app_id,
                "app_label": f.app_label,
                "user_id": f.user_id,
                "user_login": f.user_login,
                "operation": f.operation,
                "state": f.state,
                "urgent": f.urgent,
                "source": f.source,
                "reason": f.reason,
                "first_seen": ts(f.first_seen),
                "last_seen": ts(f.last_seen),
                "attempts": f.attempts,
                "retry_exhausted": f.retry_exhausted,
                "next_attempt_at": f.next_attempt_at.map(ts),
                "resolved_at": f.resolved_at.map(ts),
            })
        })
        .collect();
    json!({ "failures": list })
}

fn age(now: DateTime<Utc>, ms: i64) -> String {
    let secs = (now.timestamp_millis() - ms).max(0) / 1000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The human table: one block per app, urgent blocks first (the store orders rows that way).
pub fn table(rows: &[Failure], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No open provisioning failures.\n");
        return out;
    }
    let mut apps: Vec<&str> = Vec::new();
    for f in rows {
        if !apps.contains(&f.app_id.as_str()) {
            apps.push(&f.app_id);
        }
    }
    let urgent = rows
        .iter()
        .filter(|f| f.urgent && f.resolved_at.is_none())
        .count();
    let _ = writeln!(
        out,
        "{} failure(s) in {} app(s), {} urgent\n",
        rows.len(),
        apps.len(),
        urgent
    );
    for app in apps {
        let group: Vec<&Failure> = rows.iter().filter(|f| f.app_id == app).collect();
        let _ = writeln!(out, "{} ({})", group[0].app_name(), app);
        let _ = writeln!(
            out,
            "  {:<6} {:<3} {:<28} {:<11} {:<9} {:>4} {:>5}  REASON",
            "ID", "", "USER", "OPERATION", "STATE", "TRY", "AGE"
        );
        for f in group {
            let user = if f.user_id.is_empty() {
                "(whole app)".to_owned()
            } else {
                clip(f.user_name(), 28)
            };
            let flag = if f.urgent { "!!" } else { "" };
            let state = if f.retry_exhausted && f.resolved_at.is_none() {
                "exhausted"
            } else {
                f.state.as_str()
            };
            let _ = writeln!(
                out,
                "  {:<6} {:<3} {:<28} {:<11} {:<9} {:>4} {:>5}  {}",
                f.id,
                flag,
                user,
                f.operation.as_str(),
                state,
                f.attempts,
                age(now, f.first_seen),
                clip(f.reason.as_deref().unwrap_or("-"), 100)
            );
        }
        out.push('\n');
    }
    out.push_str("!! = urgent: a failed deprovisioning (the person may still have access) or an app-wide failure\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Observation, Operation, Source};
    use crate::store::failures::apply;

    #[test]
    fn table_and_json() {
        let s = crate::store::Store::open_in_memory().unwrap();
        let now = Utc::now();
        let rows = s
            .write_blocking(|c| {
                for (user, op) in [("a@x", Operation::Create), ("b@x", Operation::Deactivate)] {
                    apply(
                        c,
                        &Observation {
                            app_id: "0oa1".into(),
                            app_label: Some("Slack".into()),
                            user_id: format!("id-{user}"),
                            user_login: Some(user.into()),
                            operation: op,
                            failed: true,
                            reason: Some("remote said no".into()),
                            event_uuid: None,
                            published_ms: None,
                            source: Source::Log,
                        },
                        now.timestamp_millis() - 3_600_000,
                        "t",
                    )?;
                }
                failures::list_unresolved(c)
            })
            .unwrap();
        let t = table(&rows, now);
        // Urgent deprovisioning first.
        let b = t.find("b@x").unwrap();
        let a = t.find("a@x").unwrap();
        assert!(b < a, "{t}");
        assert!(
            t.contains("Slack (0oa1)") && t.contains("60m") && t.contains("!!"),
            "{t}"
        );
        let j = to_json(&rows);
        assert_eq!(j["failures"].as_array().unwrap().len(), 2);
        assert_eq!(j["failures"][0]["operation"], "deactivate");
        assert_eq!(j["failures"][0]["urgent"], true);
        assert!(j["failures"][0]["first_seen"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
    }
}
