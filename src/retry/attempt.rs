//! One retry of one claimed failure: push the user again through Okta, learn the outcome,
//! and record it (attempt count, next attempt, history, circuit, metrics) in one transaction.
//! Shared by the worker and the `retry` command, so both record identically.
//!
//! Two ways to learn the outcome. The `retry` command (a person waiting for an answer) reads
//! the app user back after a settle wait ([`push_again`]). The worker does not hold anything
//! through a wait ([`push_for_worker`]): it reads the app user, posts it back, and records the
//! failure as awaiting the push's outcome. The System Log the poller reads anyway answers:
//! a success event resolves the failure, a failure event published after the `POST` counts
//! the attempt as failed ([`crate::store::claims::answered_by_log`]); only when the log says
//! nothing by the confirmation bound does the worker spend one read-back ([`verify`]). So a
//! retry costs two apps-bucket calls, three only when the log stays silent.
//!
//! Freshness: the profile posted back is the one read in the same retry, immediately before
//! the `POST` (one request earlier, never a stored or cached copy), so a retry never posts a
//! profile older than the app user's state at the time of the retry over a newer one.

use super::circuit::{self, Change};
use super::classes::{self, Class};
use super::policy;
use crate::clock::ms;
use crate::context::Context;
use crate::domain::{Failure, HistoryKind, Operation};
use crate::okta::ratelimit::Class as Budget;
use crate::okta::{OktaClient, OktaError};
use crate::store::claims::{self, finish, Claim, Finish, Finished, Pushed};
use crate::store::{failures, history, StoreError, Tx};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long to wait after re-posting the app user before reading its `syncState`: Okta pushes
/// in the background, so the answer to the POST itself says nothing about the outcome.
pub const SETTLE: Duration = Duration::from_secs(5);

/// How many times to read the app user after the settle while it is still `SYNCING`.
pub const SETTLE_CHECKS: u32 = 3;

/// What happened when pushing the user again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The app user is `SYNCHRONIZED`.
    Succeeded(String),
    /// The app user no longer exists (404) for an operation other than create: the user was
    /// unassigned, so there is nothing left to provision and the failure is moot.
    Gone(String),
    /// The push failed (`ERROR`), Okta rejected the request, or the outcome stayed unclear.
    Failed(String),
    /// Nothing was learnt about the app: an Okta-side problem (rate limit, 5xx, our own
    /// credentials). Not counted as an attempt. `auth`: our credentials were refused.
    Deferred { detail: String, auth: bool },
}

impl Outcome {
    pub fn metric_result(&self) -> &'static str {
        match self {
            Outcome::Succeeded(_) | Outcome::Gone(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Deferred { .. } => "skipped",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Succeeded(d) | Outcome::Gone(d) | Outcome::Failed(d) => d,
            Outcome::Deferred { detail, .. } => detail,
        }
    }
}

fn from_error(f: &Failure, e: OktaError, what: &str) -> Outcome {
    match e {
        // Only a caller with a stop token sees this; it sent nothing.
        OktaError::NotSent { .. } => Outcome::Deferred {
            detail: format!("{what}: not sent, the daemon is stopping"),
            auth: false,
        },
        OktaError::NotFound { .. } if f.operation != Operation::Create => Outcome::Gone(format!(
            "the app user no longer exists (404 while {what}): the user was unassigned, nothing is left to provision"
        )),
        // A create may fail before Okta has an app user at all; that says nothing is fixed.
        OktaError::NotFound { .. } => Outcome::Failed(format!("app user not found (404) while {what}")),
        OktaError::Permanent { .. } => Outcome::Failed(format!("{what}: {e}")),
        OktaError::Unauthorized { .. } | OktaError::Forbidden { .. } | OktaError::Config(_) => {
            Outcome::Deferred {
                detail: format!("{what}: {e}"),
                auth: true,
            }
        }
        OktaError::RateLimited { .. }
        | OktaError::Retryable { .. }
        | OktaError::Malformed { .. }
        // Shutdown came before the call went out: nothing was learnt about the app.
        | OktaError::Cancelled => {
            Outcome::Deferred {
                detail: format!("{what}: {e}"),
                auth: false,
            }
        }
    }
}

/// Re-pushes `f`'s user: reads the app user, posts its current `credentials` and `profile`
/// back (Okta's documented way to make it push again), waits `settle`, and reads the
/// `syncState`. An app user already `SYNCHRONIZED` is not pushed again: a later push went
/// through and the failure is over.
pub async fn push_again(okta: &OktaClient, f: &Failure, settle: Duration) -> Outcome {
    // Asked for by a person (`okta-provwatch retry`): below the daemon's own retries.
    let class = Budget::Manual;
    let au = match okta.get_app_user_with(class, &f.app_id, &f.user_id).await {
        Ok(au) => au,
        Err(e) => return from_error(f, e, "reading the app user"),
    };
    if au.is_synchronized() {
        return Outcome::Succeeded("the app user is already SYNCHRONIZED; nothing to push".into());
    }
    let mut body = Map::new();
    if let Some(c) = au.credentials.filter(|v| !v.is_null()) {
        body.insert("credentials".into(), c);
    }
    if let Some(p) = au.profile.filter(|v| !v.is_null()) {
        body.insert("profile".into(), p);
    }
    if let Err(e) = okta
        .update_app_user_with(class, &f.app_id, &f.user_id, &Value::Object(body))
        .await
    {
        return from_error(f, e, "posting the app user back");
    }
    let mut last = String::from("unknown");
    for _ in 0..SETTLE_CHECKS {
        tokio::time::sleep(settle).await;
        match okta.get_app_user_with(class, &f.app_id, &f.user_id).await {
            Ok(au) if au.is_synchronized() => {
                return Outcome::Succeeded("retry succeeded: the app user is SYNCHRONIZED".into())
            }
            Ok(au) if au.is_error() => {
                return Outcome::Failed(format!(
                    "the push failed again: the app user is in ERROR (last reason: {})",
                    f.reason.as_deref().unwrap_or("none recorded")
                ))
            }
            Ok(au) => last = au.sync_state.unwrap_or_else(|| "missing".into()),
            Err(e) => return from_error(f, e, "verifying the app user"),
        }
    }
    Outcome::Failed(format!(
        "inconclusive: the app user's syncState is still {last} after the retry"
    ))
}

/// What the worker's part of a retry came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The outcome is known now (the app user was already fixed, Okta refused the call, the
    /// `POST`'s answer shows it synchronized, or a read-back decided).
    Done(Outcome),
    /// The `POST` went out; the outcome comes from the System Log or, after
    /// `confirm_by`, a read-back.
    Awaiting(Pushed),
    /// The stop token was cancelled before anything was written: nothing to record.
    NotSent,
}

/// The body that makes Okta push the app user again: its own current credentials and profile,
/// as just read.
fn repost_body(au: crate::okta::types::AppUser) -> Value {
    let mut body = Map::new();
    if let Some(c) = au.credentials.filter(|v| !v.is_null()) {
        body.insert("credentials".into(), c);
    }
    if let Some(p) = au.profile.filter(|v| !v.is_null()) {
        body.insert("profile".into(), p);
    }
    Value::Object(body)
}

/// The worker's push: read the app user, post it back unless `stop` is cancelled, and return
/// without waiting for Okta's background push (see the module doc). Two apps-bucket calls.
/// `now_ms` reads the clock when the `POST` is about to go out.
pub async fn push_for_worker(
    okta: &OktaClient,
    f: &Failure,
    stop: &CancellationToken,
    confirm_within: Duration,
    now_ms: impl Fn() -> i64,
) -> Step {
    // Urgent failures (deprovisioning) go before other retries when calls are scarce.
    let class = if f.urgent {
        Budget::UrgentRetry
    } else {
        Budget::Retry
    };
    // A read is harmless to abandon: the stop token simply drops it.
    let read = tokio::select! {
        biased;
        _ = stop.cancelled() => return Step::NotSent,
        r = okta.get_app_user_with(class, &f.app_id, &f.user_id) => r,
    };
    let au = match read {
        Ok(au) => au,
        Err(e) => return Step::Done(from_error(f, e, "reading the app user")),
    };
    if au.is_synchronized() {
        return Step::Done(Outcome::Succeeded(
            "the app user is already SYNCHRONIZED; nothing to push".into(),
        ));
    }
    let at = now_ms();
    match okta
        .update_app_user_with_unless(class, &f.app_id, &f.user_id, &repost_body(au), Some(stop))
        .await
    {
        Err(OktaError::NotSent { .. }) => Step::NotSent,
        Err(e) => Step::Done(from_error(f, e, "posting the app user back")),
        // The answer describes the app user right after the update; a push that already went
        // through needs no confirmation. ERROR there may still be the previous push's state,
        // so it proves nothing.
        Ok(after) if after.is_synchronized() => Step::Done(Outcome::Succeeded(
            "retry succeeded: the app user is SYNCHRONIZED".into(),
        )),
        Ok(_) => Step::Awaiting(Pushed {
            at,
            confirm_by: at.saturating_add(ms(confirm_within)),
        }),
    }
}

/// The read-back after the System Log said nothing about a push by its confirmation bound:
/// one apps-bucket call.
pub async fn verify(okta: &OktaClient, f: &Failure, stop: &CancellationToken) -> Step {
    let read = tokio::select! {
        biased;
        _ = stop.cancelled() => return Step::NotSent,
        // The outcome of a push already sent: the read-back class, beside log polling.
        r = okta.get_app_user_with(Budget::ReadBack, &f.app_id, &f.user_id) => r,
    };
    Step::Done(match read {
        Ok(au) if au.is_synchronized() => {
            Outcome::Succeeded("retry succeeded: the app user is SYNCHRONIZED".into())
        }
        Ok(au) if au.is_error() => Outcome::Failed(format!(
            "the push failed again: the app user is in ERROR (last reason: {})",
            f.reason.as_deref().unwrap_or("none recorded")
        )),
        Ok(au) => Outcome::Failed(format!(
            "inconclusive: the app user's syncState is still {} after the retry and the System \
             Log reported no outcome",
            au.sync_state.as_deref().unwrap_or("missing")
        )),
        Err(e) => from_error(f, e, "verifying the app user"),
    })
}

/// Who asked for a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The worker, on the failure's backoff schedule.
    Automatic,
    /// The worker, probing an open circuit.
    Probe,
    /// A person, with `okta-provwatch retry`.
    Manual,
}

/// What a retry did, for the caller's log line or output.
#[derive(Clone, Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub finished: Finished,
    pub circuit: Option<Change>,
    /// Attempts after this one.
    pub attempts: u32,
}

/// A retry is abandoned this long before its claim's lease ends, leaving time to record it.
const LEASE_MARGIN_MS: i64 = 5_000;

/// How long a retry of `claim` may still run at `now`. It gives up before the claim's lease
/// ends: after it another claimer may take the failure over and push the same user while this
/// push is still going (the Okta budget can hold a call back for a minute at a time, so a retry
/// under rate-limit pressure can run long).
pub(crate) fn time_left(claim: &Claim, now: i64) -> Duration {
    let left = claim
        .until
        .saturating_sub(now)
        .saturating_sub(LEASE_MARGIN_MS)
        .max(0);
    Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

/// Runs one retry of a held claim and records its result.
pub async fn run(
    ctx: &Context,
    claim: &Claim,
    trigger: Trigger,
    actor: &str,
    settle: Duration,
) -> Result<Report, StoreError> {
    let limit = time_left(claim, ctx.clock.now_ms());
    let outcome = match tokio::time::timeout(limit, push_again(&ctx.okta, &claim.failure, settle))
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Deferred {
            detail: "the retry did not finish within its claim's lease and was abandoned".into(),
            auth: false,
        },
    };
    let report = record(ctx, claim, trigger, actor, outcome).await?;
    ctx.metrics.inc(
        "provwatch_retries_total",
        &[("result", report.outcome.metric_result())],
    );
    Ok(report)
}

/// Records the outcome of a retry in one `BEGIN IMMEDIATE` transaction.
pub async fn record(
    ctx: &Context,
    claim: &Claim,
    trigger: Trigger,
    actor: &str,
    outcome: Outcome,
) -> Result<Report, StoreError> {
    let cfg = ctx.config.retry.clone();
    let clock = ctx.clock;
    let claim = claim.clone();
    let actor = actor.to_string();
    ctx.store
        .write(move |tx| record_in(tx, &cfg, &claim, trigger, &actor, outcome, clock.now_ms()))
        .await
}

/// [`record`] inside the caller's transaction (the worker records outcomes the System Log
/// answered while it claims).
pub fn record_in(
    tx: &Tx<'_>,
    cfg: &crate::config::RetryConfig,
    claim: &Claim,
    trigger: Trigger,
    actor: &str,
    outcome: Outcome,
    now: i64,
) -> Result<Report, StoreError> {
    let actor = actor.to_string();
    let cfg = cfg.clone();
    {
        {
            // The reason may have been refreshed by the detector while we retried.
            let f = failures::get(tx, claim.failure.id)?.unwrap_or_else(|| claim.failure.clone());
            let id = f.id;
            let attempts = claim.failure.attempts.saturating_add(1);
            let class = classes::classify(f.reason.as_deref(), None);
            // This attempt answers any push awaiting an outcome and uses up a profile change.
            claims::clear_pushed(tx, id)?;
            claims::clear_profile_changed(tx, id)?;
            let how = match &outcome {
                Outcome::Succeeded(d) | Outcome::Gone(d) => Finish::Resolved { detail: d.clone() },
                Outcome::Failed(d) if trigger == Trigger::Probe => Finish::Requeue {
                    kind: HistoryKind::ProbeFailed,
                    detail: format!("probe of the open circuit failed: {d}"),
                    count_attempt: false,
                    next_attempt_at: None,
                    exhausted: None,
                },
                Outcome::Failed(d) => {
                    let max = policy::max_attempts(&cfg, f.reason.as_deref());
                    // A data error is never retried blindly: after a failed attempt it waits for
                    // the user's profile to change, and a person is told what to fix.
                    let data = class == Class::Data;
                    let exhausted = ((attempts >= max || data) && !claim.failure.retry_exhausted)
                        .then(|| {
                            let why = match class.what_to_fix() {
                                Some(fix) if data => fix,
                                _ => "giving up",
                            };
                            format!(
                                "retries exhausted after {attempts} attempt(s), {why}; last reason: {}",
                                f.reason.as_deref().unwrap_or("none recorded")
                            )
                        });
                    let next = now.saturating_add(ms(policy::backoff_jittered(
                        cfg.initial_backoff,
                        cfg.max_backoff,
                        attempts,
                    )));
                    Finish::Requeue {
                        kind: HistoryKind::RetryFailed,
                        detail: d.clone(),
                        count_attempt: true,
                        next_attempt_at: Some(next),
                        exhausted,
                    }
                }
                Outcome::Deferred { detail, .. } => {
                    // Okta itself is in trouble (429s, 5xx): back off further with each
                    // deferral in a row, so a long outage does not cost the org's shared rate
                    // limit a call per failure every `initial_backoff`.
                    let deferred_lately =
                        history::count_recent(tx, id, HistoryKind::RetryDeferred, 12)?;
                    let next = now.saturating_add(ms(policy::backoff_jittered(
                        cfg.initial_backoff,
                        cfg.max_backoff,
                        deferred_lately + 1,
                    )));
                    Finish::Requeue {
                        kind: HistoryKind::RetryDeferred,
                        detail: format!("not counted as an attempt: {detail}"),
                        count_attempt: false,
                        next_attempt_at: (trigger != Trigger::Manual).then_some(next),
                        exhausted: None,
                    }
                }
            };
            let finished = finish(tx, id, &claim.owner, now, &actor, &how)?;
            let held = finished != Finished::NotHeld;
            let change = match &outcome {
                // A push that went through proves the app's integration works, even when the
                // failure was resolved meanwhile by someone else (the scanner, say) and the
                // claim is no longer ours: otherwise the circuit stays open.
                Outcome::Succeeded(_) => circuit::on_success(tx, &f.app_id, now, &actor)?,
                Outcome::Failed(_) if held => {
                    circuit::on_failure(tx, &cfg, &f, trigger == Trigger::Probe, now, &actor)?
                }
                _ => None,
            };
            // A probe that neither closed the circuit nor counted as a failed probe (deferred,
            // user gone, claim lost) frees the reservation it made up to its lease's end.
            let probe_counted = held && matches!(outcome, Outcome::Failed(_));
            if trigger == Trigger::Probe && change.is_none() && !probe_counted {
                circuit::postpone_probe(tx, &cfg, &f.app_id, now)?;
            }
            let attempts = match (&outcome, trigger) {
                (Outcome::Deferred { .. }, _) | (Outcome::Failed(_), Trigger::Probe) => {
                    claim.failure.attempts
                }
                _ => attempts,
            };
            Ok(Report {
                outcome,
                finished,
                circuit: change,
                attempts,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_results() {
        assert_eq!(Outcome::Gone("x".into()).metric_result(), "succeeded");
        assert_eq!(Outcome::Failed("x".into()).metric_result(), "failed");
        assert_eq!(
            Outcome::Deferred {
                detail: "x".into(),
                auth: false
            }
            .metric_result(),
            "skipped"
        );
    }
}
