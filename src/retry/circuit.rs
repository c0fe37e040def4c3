//! Per-app circuit breaker of the retry worker.
//!
//! When an app's retries keep failing for an app-wide reason, retrying each of its users only
//! spends the org's shared rate budget and floods the history. So the breaker opens when
//! [`THRESHOLD`] different users of the app failed their retries in a row (failures whose
//! reason says the request itself was invalid are about one user's data and do not count), or
//! when an app-wide `integration` failure is open for the app. While open, no user of the app
//! is retried except one probe at a time, at backoff intervals; one app-level failure
//! (`user_id = ''`, operation `integration`, reason "retries keep failing: …") tells people,
//! urgently, through the alerter. The first retry of the app that succeeds closes the circuit,
//! resolves that app-level failure and makes the app's queue due again.
//!
//! Everything here runs inside the caller's transaction.

use super::policy;
use crate::clock::ms;
use crate::config::RetryConfig;
use crate::domain::{Failure, HistoryKind, Observation, Operation, Source, State};
use crate::store::circuits::{self, Circuit};
use crate::store::{claims, failures, history, StoreError, Tx};

/// Different users whose retries failed in a row before the circuit opens.
pub const THRESHOLD: usize = 3;

/// Prefix of the reason of the app-level failure the breaker records.
pub const REASON_PREFIX: &str = "retries keep failing: ";

fn probe_at(cfg: &RetryConfig, now: i64, probes: u32) -> i64 {
    now.saturating_add(ms(policy::backoff_jittered(
        cfg.initial_backoff,
        cfg.max_backoff,
        probes.saturating_add(1),
    )))
}

/// What a finished retry did to its app's circuit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Opened { cause: String },
    Closed,
}

/// The cause named in the app-level failure.
pub fn cause_of(reason: Option<&str>, users: usize) -> String {
    let last = reason.unwrap_or("no reason recorded");
    match policy::app_cause(reason) {
        Some(c) => format!("{} ({last})", c.describe()),
        None => {
            format!("{users} retries in a row failed for different users (last reason: {last})")
        }
    }
}

/// A retry of `f` failed. `probe`: it was the probe of an open circuit.
pub fn on_failure(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    f: &Failure,
    probe: bool,
    now: i64,
    actor: &str,
) -> Result<Option<Change>, StoreError> {
    let mut ci = circuits::get(tx, &f.app_id)?.unwrap_or_else(|| Circuit::closed(&f.app_id));
    if ci.open {
        if probe {
            ci.probes = ci.probes.saturating_add(1);
            ci.next_probe_at = Some(probe_at(cfg, now, ci.probes));
            circuits::save(tx, &ci, now)?;
        }
        return Ok(None);
    }
    if policy::is_invalid_request(f.reason.as_deref()) {
        return Ok(None);
    }
    ci.consecutive_failures = ci.consecutive_failures.saturating_add(1);
    if !ci.streak_users.contains(&f.user_id) {
        ci.streak_users.push(f.user_id.clone());
    }
    // A reason naming the app's credentials or connection is app-wide by itself (the
    // failure-type table, `super::classes`): one such failure opens the circuit, rather than
    // spending retries of more users to learn the same thing.
    let app_wide = policy::app_cause(f.reason.as_deref()).is_some();
    if ci.streak_users.len() < THRESHOLD && !app_wide {
        circuits::save(tx, &ci, now)?;
        return Ok(None);
    }
    open_for(tx, cfg, ci, f, now, actor).map(Some)
}

/// Opens `f`'s app's circuit at once because `f`'s reason names an app-wide cause (its
/// credentials or connection), before any retry of its users is spent. `None` when the
/// circuit is open already or the reason names no app-wide cause.
pub fn open_for_app_wide_reason(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    f: &Failure,
    now: i64,
    actor: &str,
) -> Result<Option<Change>, StoreError> {
    if policy::app_cause(f.reason.as_deref()).is_none() {
        return Ok(None);
    }
    let ci = circuits::get(tx, &f.app_id)?.unwrap_or_else(|| Circuit::closed(&f.app_id));
    if ci.open {
        return Ok(None);
    }
    open_for(tx, cfg, ci, f, now, actor).map(Some)
}

/// Opens `ci` because of `f`: records the one app-level failure people are told about.
fn open_for(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    ci: Circuit,
    f: &Failure,
    now: i64,
    actor: &str,
) -> Result<Change, StoreError> {
    let cause = cause_of(f.reason.as_deref(), ci.streak_users.len());
    let obs = Observation {
        app_id: f.app_id.clone(),
        app_label: f.app_label.clone(),
        user_id: String::new(),
        user_login: None,
        operation: Operation::Integration,
        failed: true,
        reason: Some(format!("{REASON_PREFIX}{cause}")),
        event_uuid: None,
        published_ms: None,
        source: Source::Scan,
    };
    let id = match failures::apply(tx, &obs, now, actor)? {
        failures::Applied::Opened(id)
        | failures::Applied::Refreshed(id)
        | failures::Applied::Reopened(id) => Some(id),
        _ => None,
    };
    if let Some(id) = id {
        history::add(tx, id, now, HistoryKind::CircuitOpened, actor, Some(&cause))?;
    }
    open(tx, cfg, ci, id, &cause, now)?;
    Ok(Change::Opened { cause })
}

fn open(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    mut ci: Circuit,
    failure_id: Option<i64>,
    cause: &str,
    now: i64,
) -> Result<(), StoreError> {
    ci.open = true;
    ci.cause = Some(cause.to_string());
    ci.opened_at = Some(now);
    ci.failure_id = failure_id;
    ci.probes = 0;
    ci.next_probe_at = Some(probe_at(cfg, now, 0));
    circuits::save(tx, &ci, now)
}

/// A retry of a user of `app_id` succeeded: the streak ends, and an open circuit closes.
pub fn on_success(
    tx: &Tx<'_>,
    app_id: &str,
    now: i64,
    actor: &str,
) -> Result<Option<Change>, StoreError> {
    let Some(ci) = circuits::get(tx, app_id)? else {
        return Ok(None);
    };
    if ci.open {
        close(
            tx,
            ci,
            now,
            actor,
            "circuit closed: a retry for the app succeeded",
            true,
        )?;
        return Ok(Some(Change::Closed));
    }
    if ci.consecutive_failures > 0 || !ci.streak_users.is_empty() {
        circuits::save(tx, &Circuit::closed(app_id), now)?;
    }
    Ok(None)
}

/// Closes a circuit. `resolve_any`: resolve its app-level failure even when Okta reported it
/// (a push just went through); otherwise only the one the breaker recorded itself.
fn close(
    tx: &Tx<'_>,
    ci: Circuit,
    now: i64,
    actor: &str,
    detail: &str,
    resolve_any: bool,
) -> Result<(), StoreError> {
    if let Some(id) = ci.failure_id {
        if let Some(f) = failures::get(tx, id)? {
            let ours = f
                .reason
                .as_deref()
                .is_some_and(|r| r.starts_with(REASON_PREFIX));
            if resolve_any || ours {
                failures::resolve(tx, id, now, None, actor, detail)?;
            }
        }
    }
    // Resume the queue: failures that waited behind the open circuit are due now.
    claims::resume_app(tx, &ci.app_id, now)?;
    circuits::save(tx, &Circuit::closed(&ci.app_id), now)
}

/// Opens the circuit of every app with an open `integration` failure (Okta reported the
/// integration itself failing). Returns the apps opened.
pub fn open_for_integration_failures(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    now: i64,
    actor: &str,
) -> Result<Vec<String>, StoreError> {
    let mut opened = Vec::new();
    for (app, id, reason) in circuits::integration_failures_without_open_circuit(tx)? {
        let ci = circuits::get(tx, &app)?.unwrap_or_else(|| Circuit::closed(&app));
        let cause = format!(
            "integration failure reported: {}",
            reason.as_deref().unwrap_or("no reason recorded")
        );
        history::add(tx, id, now, HistoryKind::CircuitOpened, actor, Some(&cause))?;
        open(tx, cfg, ci, Some(id), &cause, now)?;
        opened.push(app);
    }
    Ok(opened)
}

/// Closes open circuits whose app-level failure someone else resolved (the poller saw a user
/// of the app pushed successfully, which proves the integration works again). Returns the
/// apps closed.
pub fn close_where_resolved_elsewhere(
    tx: &Tx<'_>,
    now: i64,
    actor: &str,
) -> Result<Vec<String>, StoreError> {
    let mut closed = Vec::new();
    for ci in circuits::list_open(tx)? {
        let Some(id) = ci.failure_id else { continue };
        let resolved = failures::get(tx, id)?.is_none_or(|f| f.state == State::Resolved);
        if resolved {
            let app = ci.app_id.clone();
            close(
                tx,
                ci,
                now,
                actor,
                "circuit closed: the app-level failure was resolved",
                false,
            )?;
            closed.push(app);
        }
    }
    Ok(closed)
}

/// A probe of `app_id` is starting: no other probe until `until` (the claim's lease).
pub fn reserve_probe(tx: &Tx<'_>, app_id: &str, until: i64, now: i64) -> Result<(), StoreError> {
    if let Some(mut ci) = circuits::get(tx, app_id)? {
        ci.next_probe_at = Some(until);
        circuits::save(tx, &ci, now)?;
    }
    Ok(())
}

/// A probe could not run (Okta call deferred, or every candidate busy): try again later
/// without counting it as a failed probe.
pub fn postpone_probe(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    app_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    if let Some(mut ci) = circuits::get(tx, app_id)? {
        if ci.open {
            ci.next_probe_at = Some(probe_at(cfg, now, 0));
            circuits::save(tx, &ci, now)?;
        }
    }
    Ok(())
}

/// An open circuit whose app has no unresolved user failure left to probe. If the breaker
/// opened it from retries, the evidence is gone (the users were fixed some other way): close
/// it. If Okta reported an integration failure, leave that to the detector and keep probing
/// on the backoff schedule.
pub fn nothing_to_probe(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    app_id: &str,
    now: i64,
    actor: &str,
) -> Result<Option<Change>, StoreError> {
    let Some(mut ci) = circuits::get(tx, app_id)? else {
        return Ok(None);
    };
    let reported_by_okta = match ci.failure_id {
        Some(id) => failures::get(tx, id)?.is_some_and(|f| {
            f.state != State::Resolved
                && !f
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(REASON_PREFIX))
        }),
        None => false,
    };
    if reported_by_okta {
        ci.probes = ci.probes.saturating_add(1);
        ci.next_probe_at = Some(probe_at(cfg, now, ci.probes));
        circuits::save(tx, &ci, now)?;
        return Ok(None);
    }
    close(
        tx,
        ci,
        now,
        actor,
        "circuit closed: no failed users of the app are left to retry",
        false,
    )?;
    Ok(Some(Change::Closed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::failures::{apply, Applied};
    use crate::store::Store;
    use std::time::Duration;

    fn cfg() -> RetryConfig {
        RetryConfig {
            enabled: true,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
            per_minute: 20,
        }
    }

    fn failure(c: &Tx<'_>, user: &str, reason: &str) -> Failure {
        let o = Observation {
            app_id: "0oa1".into(),
            app_label: Some("Sales".into()),
            user_id: user.into(),
            user_login: None,
            operation: Operation::Create,
            failed: true,
            reason: Some(reason.into()),
            event_uuid: None,
            published_ms: None,
            source: Source::Scan,
        };
        let Applied::Opened(id) = apply(c, &o, 0, "t").unwrap() else {
            panic!()
        };
        failures::get(c, id).unwrap().unwrap()
    }

    #[test]
    fn a_reason_naming_the_apps_connection_opens_at_once() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let a = failure(c, "u1", "Unable to connect to the remote server.");
            let Some(Change::Opened { cause }) = open_for_app_wide_reason(c, &cfg(), &a, 5, "t")?
            else {
                panic!("did not open")
            };
            assert!(cause.contains("cannot be reached"), "{cause}");
            assert!(circuits::get(c, "0oa1")?.unwrap().open);
            // Open already: nothing more.
            assert_eq!(open_for_app_wide_reason(c, &cfg(), &a, 6, "t")?, None);
            // A data error names no app-wide cause.
            let b = failure(c, "u2", "department is required");
            assert_eq!(open_for_app_wide_reason(c, &cfg(), &b, 7, "t")?, None);
            Ok(())
        })
        .unwrap();
        s.write_blocking(|c| {
            let mut ci = circuits::get(c, "0oa1")?.unwrap();
            ci.open = false;
            circuits::save(c, &ci, 8)?;
            let d = failure(c, "u3", "Authentication failed (401 Unauthorized)");
            assert!(matches!(
                on_failure(c, &cfg(), &d, false, 9, "t")?,
                Some(Change::Opened { .. })
            ));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn opens_after_three_different_users_and_closes_on_success() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            // Transient by the failure-type table: a streak of users is the evidence.
            let down = "Errors reported by remote server: 504 Gateway Timeout";
            let (a, b, d) = (
                failure(c, "u1", down),
                failure(c, "u2", down),
                failure(c, "u3", down),
            );
            assert_eq!(on_failure(c, &cfg(), &a, false, 10, "t")?, None);
            // The same user again does not make a streak of different users.
            assert_eq!(on_failure(c, &cfg(), &a, false, 11, "t")?, None);
            assert_eq!(on_failure(c, &cfg(), &b, false, 12, "t")?, None);
            let Some(Change::Opened { cause }) = on_failure(c, &cfg(), &d, false, 13, "t")? else {
                panic!("did not open")
            };
            assert!(cause.contains("3 retries in a row failed"), "{cause}");
            let app = failures::find(c, "0oa1", "", Operation::Integration)?.unwrap();
            assert!(app.urgent);
            assert_eq!(
                app.reason.as_deref(),
                Some(format!("{REASON_PREFIX}{cause}").as_str())
            );
            let ci = circuits::get(c, "0oa1")?.unwrap();
            assert!(ci.open);
            let first_probe = ci.next_probe_at.unwrap();
            assert!(
                (13 + 48_000..=13 + 72_000).contains(&first_probe),
                "{first_probe}"
            );
            // A failed probe pushes the next one further out.
            on_failure(c, &cfg(), &a, true, 100_000, "t")?;
            let ci = circuits::get(c, "0oa1")?.unwrap();
            assert_eq!(ci.probes, 1);
            assert!(ci.next_probe_at.unwrap() >= 100_000 + 96_000);
            assert_eq!(on_success(c, "0oa1", 200_000, "t")?, Some(Change::Closed));
            assert!(!circuits::get(c, "0oa1")?.unwrap().open);
            assert_eq!(failures::get(c, app.id)?.unwrap().state, State::Resolved);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_success_breaks_the_streak_and_invalid_requests_do_not_count() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let bad = "Bad Request. Errors reported by remote server: department is required";
            let (a, b, d, e) = (
                failure(c, "u1", "boom"),
                failure(c, "u2", "boom"),
                failure(c, "u3", bad),
                failure(c, "u4", "boom"),
            );
            on_failure(c, &cfg(), &a, false, 1, "t")?;
            on_failure(c, &cfg(), &b, false, 2, "t")?;
            assert_eq!(on_failure(c, &cfg(), &d, false, 3, "t")?, None);
            on_success(c, "0oa1", 4, "t")?;
            assert_eq!(on_failure(c, &cfg(), &e, false, 5, "t")?, None);
            assert!(!circuits::get(c, "0oa1")?.unwrap().open);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn an_open_integration_failure_opens_the_circuit() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|c| {
            let o = Observation {
                reason: Some("Authentication failed".into()),
                ..Observation::failure("0oa9", "", Operation::Integration)
            };
            apply(c, &o, 0, "t")?;
            assert_eq!(
                open_for_integration_failures(c, &cfg(), 5, "t")?,
                vec!["0oa9"]
            );
            assert!(open_for_integration_failures(c, &cfg(), 6, "t")?.is_empty());
            // Reported by Okta: not closed just because no user is waiting.
            assert_eq!(nothing_to_probe(c, &cfg(), "0oa9", 7, "t")?, None);
            assert!(circuits::get(c, "0oa9")?.unwrap().open);
            assert!(close_where_resolved_elsewhere(c, 8, "t")?.is_empty());
            // The poller saw a user pushed fine and resolved it: the circuit closes.
            let id = failures::find(c, "0oa9", "", Operation::Integration)?
                .unwrap()
                .id;
            failures::resolve(c, id, 9, None, "poller", "success reported")?;
            assert_eq!(close_where_resolved_elsewhere(c, 10, "t")?, vec!["0oa9"]);
            assert!(!circuits::get(c, "0oa9")?.unwrap().open);
            Ok(())
        })
        .unwrap();
    }
}
