//! Retries of failed provisioning, automatic (the daemon's [`worker`]) and manual (the
//! `retry` command, through [`manual`]).
//!
//! A retry re-posts the app user's current profile, which makes Okta push the user to the app
//! again ([`attempt`]), then reads the app user back to see whether it worked. Which failures
//! are retried and how far apart is [`policy`]; an app whose retries keep failing for an
//! app-wide reason gets its [`circuit`] opened. Every retry claims its failure in the store
//! first ([`crate::store::claims`]), so the daemon and a person running `retry` at the same
//! time never push the same user twice at once. Two rate limits apply: retries start at most
//! `retry.per_minute` a minute (a [`crate::pacer::Pacer`], sized by [`pace`]), and every Okta
//! call still goes through the client's share of the org's rate-limit buckets. What kind of
//! failure it is ([`classes`]) decides whether it is retried at all: see [`claim_next`].

/// Failures whose push the System Log answered, recorded per claiming pass (bounded, so one
/// transaction stays short however many answers a poll brought).
const LOG_ANSWERS_PER_PASS: usize = 200;

/// Due failures looked at and set aside (watched, parked, circuit opened) per claiming pass
/// before the pass gives up for now; the next pass continues.
const SET_ASIDE_PER_PASS: usize = 200;

pub mod attempt;
pub mod circuit;
pub mod classes;
pub mod manual;
pub mod pace;
pub mod policy;
pub mod worker;

use crate::clock::ms;
use crate::config::RetryConfig;
use crate::domain::HistoryKind;
use crate::store::claims::{self, Claim, DueQuery, Finish, Finished};
use crate::store::{circuits, StoreError, Tx};
use classes::Class;

/// History actor of the automatic retries.
pub const WORKER_ACTOR: &str = "retry-worker";

/// A claimer id unique to this process and call: `<pid>-<random>`. Leases name it, so
/// `status` can show who is retrying what.
pub fn claimer_id(prefix: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}-{}", std::process::id(), &u[..8])
}

/// Takes the next automatic retry in the caller's write transaction. First the bookkeeping
/// that needs no Okta call: releases claims whose lease expired, opens circuits of apps with a
/// reported integration failure, records the pushes the System Log answered, and re-arms data
/// errors whose user's profile changed. Then a due probe of an open circuit if any, else the
/// failure whose next attempt is most overdue, after setting aside (by [`classes`]) the due
/// failures a push would not help. A failure awaiting its push's outcome past the bound comes
/// back as a claim with [`Claim::pushed`] set: its read-back. `None` when nothing is due.
pub fn claim_next(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    owner: &str,
    now: i64,
    lease: std::time::Duration,
) -> Result<Option<Claim>, StoreError> {
    for id in claims::expire_leases(tx, now, WORKER_ACTOR)? {
        tracing::warn!(
            failure_id = id,
            "a retry claim expired before its retry finished (claimer stopped?); released"
        );
    }
    for app in circuit::open_for_integration_failures(tx, cfg, now, WORKER_ACTOR)? {
        tracing::warn!(app_id = %app, "integration failure reported: retries of the app's users stop until a probe succeeds");
    }
    for app in circuit::close_where_resolved_elsewhere(tx, now, WORKER_ACTOR)? {
        tracing::info!(app_id = %app, "circuit closed: its app-level failure was resolved; retries resume");
    }
    record_log_answers(tx, cfg, owner, now, lease)?;
    rearm_after_profile_changes(tx, now)?;
    let until = now.saturating_add(ms(lease));
    let q = DueQuery {
        now,
        initial_backoff_ms: ms(cfg.initial_backoff),
        ops: &policy::AUTO_RETRY_OPS,
    };
    let mut taken = None;
    for app in circuits::due_probes(tx, now)? {
        match claims::probe_candidate(tx, &app, &q)? {
            Some(f) => {
                // The read-back of a probe's push continues that probe: no new start.
                let pushed = claims::pushed(tx, f.id)?;
                let detail = format!("probe of the open circuit of the app (worker {owner})");
                let detail = pushed.is_none().then_some(detail.as_str());
                if let Ok(mut cl) =
                    claims::claim_with(tx, f.id, owner, now, until, WORKER_ACTOR, detail)?
                {
                    cl.probe = true;
                    cl.pushed = pushed;
                    circuit::reserve_probe(tx, &app, until, now)?;
                    taken = Some(cl);
                    break;
                }
            }
            None if claims::waiting_users(tx, &app, &policy::AUTO_RETRY_OPS)? > 0 => {
                // Every candidate is claimed right now (a manual retry, say).
                circuit::postpone_probe(tx, cfg, &app, now)?;
            }
            None => {
                if let Some(circuit::Change::Closed) =
                    circuit::nothing_to_probe(tx, cfg, &app, now, WORKER_ACTOR)?
                {
                    tracing::info!(app_id = %app, "circuit closed: no failed users left to retry");
                }
            }
        }
    }
    if taken.is_some() {
        return Ok(taken);
    }
    for _ in 0..SET_ASIDE_PER_PASS {
        let Some(f) = claims::next_due(tx, &q)? else {
            return Ok(None);
        };
        let pushed = claims::pushed(tx, f.id)?;
        // A failure awaiting its push's outcome is due for the read-back whatever its class.
        if pushed.is_none() && set_aside(tx, cfg, &f, owner, now)? {
            continue;
        }
        // A read-back continues the attempt its push started: no new `retry_started` row.
        let detail = format!(
            "automatic attempt {}/{} (worker {owner})",
            f.attempts + 1,
            policy::max_attempts(cfg, f.reason.as_deref())
        );
        let detail = pushed.is_none().then_some(detail.as_str());
        let claimed = claims::claim_with(tx, f.id, owner, now, until, WORKER_ACTOR, detail)?.ok();
        return Ok(claimed.map(|mut cl| {
            cl.pushed = pushed;
            cl
        }));
    }
    Ok(None)
}

/// Handles a due failure by its class without any Okta call, when its class says a push now
/// would not help; `true` when it was set aside.
///
/// - [`Class::AppWide`]: the app's credentials or connection are broken: its circuit opens
///   (one app-wide failure; the app's retries wait for a probe).
/// - [`Class::AppThrottled`], never attempted: the app answered Okta's push with 429, and Okta
///   retries such pushes itself (it honours `Retry-After`): watched for `max_backoff` without
///   a re-push; the poller resolves it when Okta's own retry succeeds. Still failing after
///   that, it is retried like a transient failure.
/// - [`Class::Data`] without a profile change since its last attempt: no blind retry; it is
///   marked exhausted (so a person is told what to fix) until the user's profile changes.
fn set_aside(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    f: &crate::domain::Failure,
    owner: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let class = classes::classify(f.reason.as_deref(), None);
    let how = match class {
        Class::AppWide(_) => {
            if let Some(circuit::Change::Opened { cause }) =
                circuit::open_for_app_wide_reason(tx, cfg, f, now, WORKER_ACTOR)?
            {
                tracing::warn!(app_id = %f.app_id, %cause, "circuit opened: the failure names an app-wide cause; retries of this app wait for a probe");
                return Ok(true);
            }
            return Ok(false);
        }
        Class::AppThrottled if f.attempts == 0 => {
            let watch_until = now.saturating_add(ms(cfg.max_backoff));
            Finish::Requeue {
                kind: HistoryKind::RetryHeld,
                detail: format!(
                    "the app answered Okta's push with 429 (rate limited): Okta retries such pushes \
                     itself, so no re-push; watching until {}",
                    crate::clock::second(crate::clock::from_ms(watch_until))
                ),
                count_attempt: true,
                next_attempt_at: Some(watch_until),
                exhausted: None,
            }
        }
        Class::Data if claims::profile_changed_at(tx, f.id)?.is_none() => Finish::Requeue {
            kind: HistoryKind::RetryHeld,
            detail: "the app rejected the user's data: no blind retry".into(),
            count_attempt: false,
            next_attempt_at: None,
            exhausted: Some(format!(
                "not retried automatically: {}; last reason: {}",
                class
                    .what_to_fix()
                    .unwrap_or("fix the data the reason names"),
                f.reason.as_deref().unwrap_or("none recorded")
            )),
        },
        _ => return Ok(false),
    };
    let done = claims::set_aside(tx, f.id, owner, now, WORKER_ACTOR, &how)?;
    Ok(done != Finished::NotHeld)
}

/// Failures left for a person because the app rejected the user's data get one more retry
/// when the user's profile changed since (the poller notes `user.account.update_profile`);
/// for other classes the note is dropped (a profile change does not fix a down app).
fn rearm_after_profile_changes(tx: &Tx<'_>, now: i64) -> Result<(), StoreError> {
    for f in claims::exhausted_with_profile_change(tx, SET_ASIDE_PER_PASS)? {
        if classes::classify(f.reason.as_deref(), None) == Class::Data {
            claims::rearm(tx, f.id, now, WORKER_ACTOR)?;
            tracing::info!(
                failure_id = f.id, app = %f.app_name(), user = %f.user_name(),
                "the user's profile changed: retrying the data error once"
            );
        } else {
            claims::clear_profile_changed(tx, f.id)?;
        }
    }
    Ok(())
}

/// Records the pushes the System Log answered with a failure event published after the
/// `POST` (the poller resolved the ones it answered with success): failed attempts, counted
/// and backed off like any other, without an Okta call.
fn record_log_answers(
    tx: &Tx<'_>,
    cfg: &RetryConfig,
    owner: &str,
    now: i64,
    lease: std::time::Duration,
) -> Result<(), StoreError> {
    let until = now.saturating_add(ms(lease));
    for f in claims::answered_by_log(tx, now, LOG_ANSWERS_PER_PASS)? {
        // While the app's circuit is open only probes push, so the answer is a probe's.
        let probe = circuits::get(tx, &f.app_id)?.is_some_and(|c| c.open);
        let Ok(mut claim) = claims::claim_with(tx, f.id, owner, now, until, WORKER_ACTOR, None)?
        else {
            continue;
        };
        claim.probe = probe;
        let outcome = attempt::Outcome::Failed(format!(
            "the push failed again (System Log): {}",
            f.reason.as_deref().unwrap_or("no reason recorded")
        ));
        let trigger = if probe {
            attempt::Trigger::Probe
        } else {
            attempt::Trigger::Automatic
        };
        let report = attempt::record_in(tx, cfg, &claim, trigger, WORKER_ACTOR, outcome, now)?;
        tracing::info!(
            failure_id = f.id, app = %f.app_name(), user = %f.user_name(),
            attempts = report.attempts, probe, finished = ?report.finished,
            "retry finished: the System Log reported the push failing again"
        );
    }
    Ok(())
}
