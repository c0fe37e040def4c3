//! `okta-provwatch status`: open failures from the state store, as a table grouped by app
//! (urgent deprovisioning failures first) or as JSON. Reads the store only, never Okta, so it is
//! safe and instant to run at any time, also while the daemon runs.
//!
//! One vocabulary for where a failure stands ([`status_word`]), the same in the table's STATE
//! column and in the JSON's `status` field. Ages count from when Okta logged the failure
//! (the event's `published` time), not from when the daemon noticed it; failures found by an
//! assignment scan have no event and count from detection.

use crate::alert::outbox;
use crate::cli::StatusArgs;
use crate::clock::{self, between, from_ms};
use crate::domain::{Failure, State};
use crate::retry::policy;
use crate::store::silences::{self, Silence};
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
    let now = Utc::now();
    let rows = store.read_blocking(|tx| {
        if args.all {
            failures::list_all(tx)
        } else {
            failures::list_unresolved(tx)
        }
    })?;
    let muted = store.read_blocking(|tx| silences::active(tx, now.timestamp_millis()))?;
    let (undelivered, pending, quarantined) = store.read_blocking(|tx| {
        Ok((
            outbox::failed_deliveries(tx)?,
            outbox::pending_count(tx)?,
            quarantine::count(tx)?,
        ))
    })?;
    let scans = store.read_blocking(scan_facts)?;
    let deprovisioning = super::status_deprovision::read(&store)?;
    if args.json {
        let mut j = to_json(&rows);
        j["deprovisioning"] = deprovisioning.json();
        j["silences"] = json!(muted
            .iter()
            .map(|s| json!({
                "id": s.id, "app": s.app, "until": ts(s.until), "reason": s.reason,
                "created_by": s.created_by,
            }))
            .collect::<Vec<_>>());
        j["pending_alerts"] = json!(pending);
        j["scan"] = json!({
            "last_completed": scans.last_completed.map(ts),
            "ticks_skipped": scans.ticks_skipped,
            "last_skipped": scans.last_skipped.map(ts),
        });
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
        print!("{}", table_with_silences(&rows, &muted, now));
        print!("{}", deprovisioning.text(now));
        if quarantined > 0 {
            println!("{quarantined} System Log event(s) could not be parsed and are quarantined (kept in the state's quarantine table; detection went on past them).");
        }
        if pending > 0 {
            println!("{pending} alert message(s) waiting to be delivered.");
        }
        if scans.ticks_skipped > 0 {
            println!(
                "{} scheduled assignment scan(s) skipped because a scan was still running (last {}); raise detect.scan_share or space out detect.scan_schedule.",
                scans.ticks_skipped,
                scans.last_skipped.map(ts).unwrap_or_default()
            );
        }
        if !undelivered.is_empty() {
            println!(
                "{} alert message(s) could NOT be delivered (permanent channel errors; run `okta-provwatch doctor`):",
                undelivered.len()
            );
            for d in undelivered.iter().rev().take(10) {
                println!(
                    "  {} {:<6} {} — {}",
                    clock::minute(from_ms(d.failed_at)),
                    d.channel,
                    d.title.as_deref().unwrap_or(&d.kind),
                    d.error
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the scanner left in `meta` about its runs.
struct ScanFacts {
    last_completed: Option<i64>,
    ticks_skipped: u64,
    last_skipped: Option<i64>,
}

fn scan_facts(tx: &crate::store::Tx<'_>) -> Result<ScanFacts, crate::store::StoreError> {
    use crate::detect::scanner::{LAST_SCAN_KEY, LAST_SKIPPED_KEY, TICKS_SKIPPED_KEY};
    use crate::store::meta;
    let num = |k: &str| -> Result<Option<i64>, crate::store::StoreError> {
        Ok(meta::get(tx, k)?.and_then(|v| v.parse::<i64>().ok()))
    };
    Ok(ScanFacts {
        last_completed: num(LAST_SCAN_KEY)?,
        ticks_skipped: num(TICKS_SKIPPED_KEY)?.unwrap_or(0).max(0) as u64,
        last_skipped: num(LAST_SKIPPED_KEY)?,
    })
}

/// A stored instant as RFC 3339, for machines (`--json`).
fn ts(ms: i64) -> String {
    from_ms(ms).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Where a failure stands, in the one vocabulary of the table and the JSON `status` field:
/// `open` (waiting for a retry or for its alert), `retrying` (a retry holds it now),
/// `alerted` (people were told; retries go on where they can), `exhausted` (automatic
/// retries gave up: a person must act), `resolved`.
pub fn status_word(f: &Failure) -> &'static str {
    match f.state {
        State::Resolved => "resolved",
        _ if f.retry_exhausted => "exhausted",
        s => s.as_str(),
    }
}

/// When Okta logged the failure, falling back to when the daemon detected it (scans see no
/// event time).
pub fn failed_at(f: &Failure) -> i64 {
    f.event_published.unwrap_or(f.first_seen)
}

/// `{"failures": [...]}` with times as RFC 3339 strings.
///
/// Compatibility: `state` and `retry_exhausted` keep their old meaning; `status` is the
/// one-word summary the table shows. `first_seen` stays the detection time as before;
/// `okta_published` (Okta's event time, `null` for failures found by a scan), `failed_at`
/// (the time ages count from) and `detected_at` say which time is which.
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
                "status": status_word(f),
                "state": f.state,
                "urgent": f.urgent,
                "source": f.source,
                "reason": f.reason,
                "failed_at": ts(failed_at(f)),
                "okta_published": f.event_published.map(ts),
                "detected_at": ts(f.first_seen),
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

/// A duration as the table shows it: `45s`, `12m`, `5h`, `3d`.
fn short(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn age(now: DateTime<Utc>, ms: i64) -> String {
    short(between(ms, now.timestamp_millis()))
}

/// The NEXT column: when the next automatic retry is due, or why there is none.
fn next_retry(f: &Failure, now: DateTime<Utc>) -> String {
    if f.state == State::Resolved || f.retry_exhausted || policy::retryable(f).is_err() {
        return "-".into();
    }
    match f.next_attempt_at {
        Some(t) if t > now.timestamp_millis() => {
            format!("in {}", short(between(now.timestamp_millis(), t)))
        }
        _ => "due".into(),
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

/// Whether `s` mutes the app `app_id` (labelled `label`): the evaluator's rule, by id or by
/// label in any case.
fn mutes(s: &Silence, app_id: &str, label: Option<&str>) -> bool {
    s.app == app_id || label.is_some_and(|l| s.app.eq_ignore_ascii_case(l))
}

fn silence_line(s: &Silence) -> String {
    let mut line = format!(
        "alerts muted until {} (silence #{}",
        clock::minute(from_ms(s.until)),
        s.id
    );
    if let Some(by) = &s.created_by {
        let _ = write!(line, " by {by}");
    }
    line.push(')');
    if let Some(r) = &s.reason {
        let _ = write!(line, ": {}", clip(r, 200));
    }
    line
}

/// The human table without silences (kept for callers that have none to show).
pub fn table(rows: &[Failure], now: DateTime<Utc>) -> String {
    table_with_silences(rows, &[], now)
}

/// The human table: one block per app, urgent blocks first (the store orders rows that way),
/// each with the silence muting it, then silences of apps with nothing open.
pub fn table_with_silences(rows: &[Failure], muted: &[Silence], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut apps: Vec<(&str, Option<&str>)> = Vec::new();
    for f in rows {
        if !apps.iter().any(|(id, _)| *id == f.app_id) {
            apps.push((&f.app_id, f.app_label.as_deref()));
        }
    }
    if rows.is_empty() {
        out.push_str("No open provisioning failures.\n");
    } else {
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
    }
    for &(app, label) in &apps {
        let group: Vec<&Failure> = rows.iter().filter(|f| f.app_id == app).collect();
        let _ = writeln!(out, "{} ({})", group[0].app_name(), app);
        for s in muted.iter().filter(|s| mutes(s, app, label)) {
            let _ = writeln!(out, "  {}", silence_line(s));
        }
        let _ = writeln!(
            out,
            "  {:<6} {:<3} {:<28} {:<11} {:<9} {:>4} {:>5} {:<7}  REASON",
            "ID", "", "USER", "OPERATION", "STATE", "TRY", "AGE", "NEXT"
        );
        for f in group {
            let user = if f.user_id.is_empty() {
                "(whole app)".to_owned()
            } else {
                clip(f.user_name(), 28)
            };
            let flag = if f.urgent { "!!" } else { "" };
            let _ = writeln!(
                out,
                "  {:<6} {:<3} {:<28} {:<11} {:<9} {:>4} {:>5} {:<7}  {}",
                f.id,
                flag,
                user,
                f.operation.as_str(),
                status_word(f),
                f.attempts,
                age(now, failed_at(f)),
                next_retry(f, now),
                clip(f.reason.as_deref().unwrap_or("-"), 100)
            );
        }
        out.push('\n');
    }
    let others: Vec<&Silence> = muted
        .iter()
        .filter(|s| !apps.iter().any(|(id, label)| mutes(s, id, *label)))
        .collect();
    if !others.is_empty() {
        out.push_str("Silenced apps with no open failures:\n");
        for s in others {
            let _ = writeln!(out, "  {}: {}", s.app, silence_line(s));
        }
        out.push('\n');
    }
    if !rows.is_empty() {
        out.push_str("!! = urgent: a failed deprovisioning (the person may still have access) or an app-wide failure\n");
        out.push_str("AGE counts from Okta's event time (from detection for failures found by a scan); NEXT is the next automatic retry\n");
        out.push_str("STATE: open, retrying (a retry runs now), alerted (people were told), exhausted (automatic retries gave up: fix the cause, then `okta-provwatch retry --failure ID`), resolved\n");
    }
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

    fn failure(id: i64, now: DateTime<Utc>) -> Failure {
        Failure {
            id,
            app_id: "0oa9".into(),
            app_label: Some("Workday".into()),
            user_id: "00u1".into(),
            user_login: Some("ann@x".into()),
            operation: crate::domain::Operation::Update,
            state: State::Open,
            urgent: false,
            source: "log",
            reason: Some("title is required".into()),
            event_uuid: None,
            // Okta logged it three hours ago; the daemon saw it a minute ago (a late poll).
            event_published: Some(now.timestamp_millis() - 3 * 3_600_000),
            first_seen: now.timestamp_millis() - 60_000,
            last_seen: now.timestamp_millis() - 60_000,
            attempts: 2,
            next_attempt_at: Some(now.timestamp_millis() + 5 * 60_000),
            retry_exhausted: false,
            resolved_at: None,
        }
    }

    #[test]
    fn age_counts_from_oktas_event_time_and_json_has_both_times() {
        let now = Utc::now();
        let f = failure(7, now);
        let t = table(std::slice::from_ref(&f), now);
        let row = t.lines().find(|l| l.contains("ann@x")).unwrap();
        assert!(row.contains(" 3h ") && row.contains("in 5m"), "{row}");
        let j = to_json(std::slice::from_ref(&f));
        let one = &j["failures"][0];
        assert_eq!(one["failed_at"], one["okta_published"]);
        assert_eq!(one["detected_at"], one["first_seen"]);
        assert_ne!(one["failed_at"], one["detected_at"]);
        // A scan finding has no event time: it counts from detection.
        let scan = Failure {
            event_published: None,
            ..f
        };
        assert_eq!(
            to_json(std::slice::from_ref(&scan))["failures"][0]["okta_published"],
            serde_json::Value::Null
        );
        assert!(table(&[scan], now)
            .lines()
            .any(|l| l.contains("ann@x") && l.contains(" 60s ")));
    }

    #[test]
    fn one_state_vocabulary_in_table_and_json() {
        let now = Utc::now();
        let f = Failure {
            state: State::Alerted,
            retry_exhausted: true,
            ..failure(8, now)
        };
        let t = table(std::slice::from_ref(&f), now);
        let row = t.lines().find(|l| l.contains("ann@x")).unwrap();
        let j = to_json(&[f]);
        assert_eq!(j["failures"][0]["status"], "exhausted");
        assert!(
            row.contains(" exhausted ") && !row.contains("in 5m"),
            "{row}"
        );
        // The old fields stay for scripts that read them.
        assert_eq!(j["failures"][0]["state"], "alerted");
        assert_eq!(j["failures"][0]["retry_exhausted"], true);
    }

    #[test]
    fn silences_show_under_their_app_and_apart_when_nothing_is_open() {
        let now = Utc::now();
        let muted = [
            Silence {
                id: 3,
                app: "workday".into(),
                until: now.timestamp_millis() + 3_600_000,
                reason: Some("upgrade".into()),
                created_at: 0,
                created_by: Some("cli:ops".into()),
            },
            Silence {
                id: 4,
                app: "0oaOther".into(),
                until: now.timestamp_millis() + 3_600_000,
                reason: None,
                created_at: 0,
                created_by: None,
            },
        ];
        let t = table_with_silences(&[failure(9, now)], &muted, now);
        let header = t.find("Workday (0oa9)").unwrap();
        let mute = t.find("alerts muted until").unwrap();
        assert!(header < mute, "{t}");
        assert!(t.contains("(silence #3 by cli:ops): upgrade"), "{t}");
        assert!(
            t.contains("Silenced apps with no open failures:\n  0oaOther: alerts muted until"),
            "{t}"
        );
        let empty = table_with_silences(&[], &muted[1..], now);
        assert!(
            empty.starts_with("No open provisioning failures.\n") && empty.contains("0oaOther"),
            "{empty}"
        );
    }
}
