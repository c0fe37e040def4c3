//! The retry worker: the daemon component that retries due failures automatically.
//!
//! One loop per daemon: wait for the retry pacer (`retry.per_minute`), claim the next due
//! failure (or circuit probe, or read-back of a push the System Log said nothing about) in the
//! store, and hand it to a task that makes its Okta calls and records the result. No task
//! waits for Okta's background push to settle: a pushed failure is recorded as awaiting its
//! outcome and the task ends (see [`super::attempt`]), so the number of retries in flight is
//! sized from the rate alone ([`super::pace::concurrency`]).
//!
//! Nothing sleeps on a fixed idle poll: with nothing due the loop waits for the earliest
//! scheduled attempt, or for a wake-up from the detectors ([`crate::signal::Signals`]) when a
//! failure opens or a user's profile changes, so a due retry starts at once.
//!
//! Stopping: the shutdown token is also every task's stop token. A retry that has not sent
//! its `POST` (waiting for the pacer, the Okta budget or an in-flight slot, or reading the
//! app user) ends at once without writing anything; no new Okta write starts after the
//! token is cancelled; only requests already on the wire are awaited (bounded by
//! [`Tuning::drain_grace`]) and their results recorded. Claims still held are then released.

use super::attempt::{self, Outcome, Report, Step, Trigger};
use super::circuit::{self, Change};
use super::{claim_next, pace, policy, WORKER_ACTOR};
use crate::clock::ms;
use crate::context::Context;
use crate::okta::ratelimit::Bucket;
use crate::pacer::Pacer;
use crate::store::claims::{self, Claim, DueQuery};
use crate::store::StoreError;
use std::time::Duration;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// Knobs with sensible defaults; tests shorten them.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// How long a claim is held before another claimer may take the failure over. Longer than
    /// any one retry can take (two Okta calls with their budget waits and timeouts).
    pub lease: Duration,
    /// Longest wait with nothing due: a safety net only, since the detectors wake the worker.
    pub idle_poll: Duration,
    /// Retries in flight at once; `None`: sized from `retry.per_minute` and the apps budget.
    pub concurrency: Option<usize>,
    /// Pause after Okta refused our own credentials: retrying others would fail the same way.
    pub auth_pause: Duration,
    /// How long requests already sent may finish after shutdown before their claims are
    /// released (retries that sent nothing end at once).
    pub drain_grace: Duration,
    /// How long the System Log has to report a push's outcome before one read-back decides;
    /// `None`: [`confirm_within`] of the poll interval.
    pub confirm_within: Option<Duration>,
    /// This worker's claimer id.
    pub owner: String,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10 * 60),
            idle_poll: Duration::from_secs(60),
            concurrency: None,
            auth_pause: Duration::from_secs(5 * 60),
            drain_grace: Duration::from_secs(10),
            confirm_within: None,
            owner: super::claimer_id(DAEMON_PREFIX),
        }
    }
}

/// The confirmation bound for a poll interval: two polls (Okta pushes in the background and
/// the log lags a few seconds behind) plus 30 s, so a push is read back only when the log
/// has really said nothing.
pub fn confirm_within(poll_interval: Duration) -> Duration {
    poll_interval.saturating_mul(2) + Duration::from_secs(30)
}

/// Runs the worker with the default tuning until `shutdown` is cancelled.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    run_with(ctx, shutdown, Tuning::default()).await
}

type Done = (i64, Result<Report, StoreError>);

/// The claimer-id prefix of daemon workers ([`Tuning::owner`]).
const DAEMON_PREFIX: &str = "daemon-";

/// With the state's exclusive lock held, releases the claims a dead predecessor daemon left
/// (see [`claims::release_predecessors`]) so its failures are retried now, not after the lease.
async fn release_predecessors(ctx: &Context, owner: &str) {
    if !ctx.holds_exclusive_lock() || !owner.starts_with(DAEMON_PREFIX) {
        return;
    }
    let (owner, clock) = (owner.to_owned(), ctx.clock);
    match ctx
        .store
        .write(move |tx| {
            claims::release_predecessors(tx, DAEMON_PREFIX, &owner, clock.now_ms(), WORKER_ACTOR)
        })
        .await
    {
        Ok(ids) if !ids.is_empty() => tracing::warn!(
            failures = ?ids,
            "released the retry claims of a previous daemon that stopped mid-retry"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not release a previous daemon's retry claims; they expire with their lease")
        }
    }
}

/// Retries in flight for the current rate: `retry.per_minute`, or what the daemon's share of
/// the apps bucket carries when that is less (its limit as Okta last reported it).
fn concurrency(ctx: &Context, tuning: &Tuning) -> usize {
    if let Some(n) = tuning.concurrency {
        return n.max(1);
    }
    let limit = ctx
        .okta
        .budget()
        .snapshot()
        .into_iter()
        .find(|b| b.bucket == Bucket::Apps)
        .and_then(|b| b.limit)
        .unwrap_or(pace::APPS_BUCKET_PER_MINUTE);
    pace::concurrency(pace::effective_per_minute(
        ctx.config.retry.per_minute,
        limit,
        ctx.config.okta.rate_limit_share,
    ))
}

/// Runs the worker until `shutdown` is cancelled. Never panics: store and Okta errors are
/// logged and the loop carries on.
pub async fn run_with(ctx: Context, shutdown: CancellationToken, tuning: Tuning) {
    let cfg = ctx.config.retry.clone();
    release_predecessors(&ctx, &tuning.owner).await;
    if !cfg.enabled {
        tracing::info!("automatic retries are disabled ([retry] enabled = false)");
        // Manual retries still claim failures: release the claims of any that died mid-way,
        // which the claiming loop below would otherwise do.
        loop {
            let clock = ctx.clock;
            let swept = ctx
                .store
                .write(move |tx| claims::expire_leases(tx, clock.now_ms(), WORKER_ACTOR))
                .await;
            match swept {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(failures = ?ids, "released retry claims whose lease expired")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not release expired retry claims"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tuning.idle_poll.max(Duration::from_secs(1))) => {}
            }
        }
    }
    let confirm = tuning
        .confirm_within
        .unwrap_or_else(|| confirm_within(ctx.config.detect.poll_interval));
    tracing::info!(
        owner = %tuning.owner,
        per_minute = cfg.per_minute,
        max_attempts = cfg.max_attempts,
        in_flight = concurrency(&ctx, &tuning),
        confirm_within_s = confirm.as_secs(),
        "retry worker started"
    );
    let pacer = Pacer::per_minute(cfg.per_minute);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    'run: loop {
        let mut pause = None;
        while let Some(done) = tasks.try_join_next() {
            pause = pause.or(handle(done, &tuning));
        }
        if let Some(p) = pause {
            tracing::warn!(
                pause_s = p.as_secs(),
                "Okta refused the daemon's credentials; pausing retries"
            );
            tokio::select! {
                _ = shutdown.cancelled() => break 'run,
                _ = tokio::time::sleep(p) => {}
            }
        }
        if tasks.len() >= concurrency(&ctx, &tuning) {
            tokio::select! {
                _ = shutdown.cancelled() => break 'run,
                Some(done) = tasks.join_next() => {
                    if let Some(p) = handle(done, &tuning) {
                        tracing::warn!(pause_s = p.as_secs(), "Okta refused the daemon's credentials; pausing retries");
                        tokio::select! {
                            _ = shutdown.cancelled() => break 'run,
                            _ = tokio::time::sleep(p) => {}
                        }
                    }
                }
            }
            continue;
        }
        // Every retry start passes the pacer, so a storm of failures drains at the configured
        // rate whatever the Okta budget would allow.
        tokio::select! {
            _ = shutdown.cancelled() => break 'run,
            _ = pacer.take() => {}
        }
        let (c2, owner, lease, clock) =
            (cfg.clone(), tuning.owner.clone(), tuning.lease, ctx.clock);
        let claimed = ctx
            .store
            .write(move |tx| claim_next(tx, &c2, &owner, clock.now_ms(), lease))
            .await;
        match claimed {
            Ok(Some(claim)) => {
                tracing::debug!(
                    failure_id = claim.failure.id,
                    app_id = %claim.failure.app_id,
                    probe = claim.probe,
                    read_back = claim.pushed.is_some(),
                    "retry claimed"
                );
                let (ctx2, stop) = (ctx.clone(), shutdown.clone());
                tasks.spawn(async move {
                    let r = run_claim(&ctx2, &claim, &stop, confirm).await;
                    match &r {
                        // Stopped before sending: the drain releases the claim; one line for
                        // all of them, not one per retry.
                        Ok(rep)
                            if rep.finished == claims::Finished::NotHeld && stop.is_cancelled() => {
                        }
                        Ok(rep) => log_result(&claim, rep),
                        Err(_) => {}
                    }
                    (claim.failure.id, r)
                });
            }
            Ok(None) => {
                let wait = idle_wait(&ctx, &cfg, &tuning).await;
                tokio::select! {
                    _ = shutdown.cancelled() => break 'run,
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.signals.retry_wakeup() => {}
                    Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                        if let Some(p) = handle(done, &tuning) {
                            tracing::warn!(pause_s = p.as_secs(), "Okta refused the daemon's credentials; pausing retries");
                            tokio::select! {
                                _ = shutdown.cancelled() => break 'run,
                                _ = tokio::time::sleep(p) => {}
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retry worker could not claim from the state store; trying again shortly");
                tokio::select! {
                    _ = shutdown.cancelled() => break 'run,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
    drain(&ctx, tasks, &tuning).await;
}

/// One claimed retry: its Okta calls (a push, or the read-back of an earlier push), then the
/// record. A retry stopped before it wrote anything records nothing: its claim is released
/// with the others when the worker stops.
async fn run_claim(
    ctx: &Context,
    claim: &Claim,
    stop: &CancellationToken,
    confirm: Duration,
) -> Result<Report, StoreError> {
    let trigger = if claim.probe {
        Trigger::Probe
    } else {
        Trigger::Automatic
    };
    let limit = attempt::time_left(claim, ctx.clock.now_ms());
    let f = &claim.failure;
    let clock = ctx.clock;
    let calls = async {
        match claim.pushed {
            Some(_) => attempt::verify(&ctx.okta, f, stop).await,
            None => attempt::push_for_worker(&ctx.okta, f, stop, confirm, || clock.now_ms()).await,
        }
    };
    let step = match tokio::time::timeout(limit, calls).await {
        Ok(step) => step,
        Err(_) => Step::Done(Outcome::Deferred {
            detail: "the retry did not finish within its claim's lease and was abandoned".into(),
            auth: false,
        }),
    };
    match step {
        Step::Done(outcome) => {
            let report = attempt::record(ctx, claim, trigger, WORKER_ACTOR, outcome).await?;
            ctx.metrics.inc(
                "provwatch_retries_total",
                &[("result", report.outcome.metric_result())],
            );
            Ok(report)
        }
        Step::Awaiting(pushed) => {
            let (c, clock) = (claim.clone(), ctx.clock);
            let finished = ctx
                .store
                .write(move |tx| {
                    let now = clock.now_ms();
                    let done = claims::await_outcome(
                        tx,
                        c.failure.id,
                        &c.owner,
                        pushed,
                        now,
                        WORKER_ACTOR,
                    )?;
                    if c.probe {
                        // No other probe of the app while this one's outcome is pending.
                        circuit::reserve_probe(tx, &c.failure.app_id, pushed.confirm_by, now)?;
                    }
                    Ok(done)
                })
                .await?;
            ctx.metrics
                .inc("provwatch_retries_total", &[("result", "pushed")]);
            Ok(Report {
                outcome: Outcome::Deferred {
                    detail: "pushed again; awaiting the outcome in the System Log".into(),
                    auth: false,
                },
                finished,
                circuit: None,
                attempts: claim.failure.attempts,
            })
        }
        Step::NotSent => Ok(Report {
            outcome: Outcome::Deferred {
                detail: "stopped before anything was sent".into(),
                auth: false,
            },
            finished: claims::Finished::NotHeld,
            circuit: None,
            attempts: claim.failure.attempts,
        }),
    }
}

async fn idle_wait(ctx: &Context, cfg: &crate::config::RetryConfig, tuning: &Tuning) -> Duration {
    let initial = ms(cfg.initial_backoff);
    let clock = ctx.clock;
    let next = ctx
        .store
        .read(move |tx| {
            claims::next_wakeup(
                tx,
                &DueQuery {
                    now: clock.now_ms(),
                    initial_backoff_ms: initial,
                    ops: &policy::AUTO_RETRY_OPS,
                },
            )
        })
        .await;
    let now = ctx.clock.now_ms();
    match next {
        // Due now or overdue but not claimable (its user is being pushed for another
        // failure): look again shortly rather than spin.
        Ok(Some(at)) => crate::clock::between(now, at).clamp(
            Duration::from_millis(50),
            tuning.idle_poll.max(Duration::from_millis(50)),
        ),
        Ok(None) => tuning.idle_poll,
        Err(e) => {
            tracing::warn!(error = %e, "retry worker could not read the schedule from the state store");
            tuning.idle_poll
        }
    }
}

fn log_result(claim: &Claim, rep: &Report) {
    let f = &claim.failure;
    let (result, detail) = (rep.outcome.metric_result(), rep.outcome.detail());
    match &rep.outcome {
        Outcome::Failed(_) | Outcome::Deferred { .. } => tracing::info!(
            failure_id = f.id, app = %f.app_name(), user = %f.user_name(),
            operation = f.operation.as_str(), attempts = rep.attempts, probe = claim.probe,
            result, detail, finished = ?rep.finished, "retry finished"
        ),
        _ => tracing::info!(
            failure_id = f.id, app = %f.app_name(), user = %f.user_name(),
            operation = f.operation.as_str(), attempts = rep.attempts, probe = claim.probe,
            result, detail, "retry finished"
        ),
    }
    match &rep.circuit {
        Some(Change::Opened { cause }) => tracing::warn!(
            app = %f.app_name(), app_id = %f.app_id, %cause,
            "circuit opened: retries of this app stop until a probe succeeds"
        ),
        Some(Change::Closed) => tracing::info!(
            app = %f.app_name(), app_id = %f.app_id,
            "circuit closed: retries of this app resume"
        ),
        None => {}
    }
}

/// Handles a finished task; returns a pause when Okta refused our credentials.
fn handle(done: Result<Done, JoinError>, tuning: &Tuning) -> Option<Duration> {
    match done {
        Ok((_, Ok(rep))) => match rep.outcome {
            Outcome::Deferred { auth: true, .. } => Some(tuning.auth_pause),
            _ => None,
        },
        Ok((id, Err(e))) => {
            tracing::warn!(
                failure_id = id, error = %e,
                "retry ran but its result could not be recorded; the claim expires with its lease"
            );
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "a retry task failed; its claim expires with its lease");
            None
        }
    }
}

/// After shutdown: the tasks see the cancelled token, so those that sent nothing end at once;
/// those with a request on the wire get [`Tuning::drain_grace`] to finish and record it.
async fn drain(ctx: &Context, mut tasks: JoinSet<Done>, tuning: &Tuning) {
    if !tasks.is_empty() {
        tracing::info!(
            in_flight = tasks.len(),
            "retry worker stopping; retries that sent nothing stop now, sent requests are awaited"
        );
        let finish_all = async {
            while let Some(done) = tasks.join_next().await {
                handle(done, tuning);
            }
        };
        if tokio::time::timeout(tuning.drain_grace, finish_all)
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = tasks.len(),
                "retries still waiting for Okta's answer after the drain grace were abandoned"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
    let (owner, clock) = (tuning.owner.clone(), ctx.clock);
    match ctx
        .store
        .write(move |tx| claims::release_all(tx, &owner, clock.now_ms(), WORKER_ACTOR))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "released the claims of interrupted retries"),
        Err(e) => {
            tracing::warn!(error = %e, "could not release retry claims; they expire with their lease")
        }
    }
    tracing::info!("retry worker stopped");
}
