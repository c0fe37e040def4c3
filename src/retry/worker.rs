//! The retry worker: the daemon component that retries due failures automatically.
//!
//! One loop per daemon: wait for the retry pacer (`retry.per_minute`), claim the next due
//! failure (or circuit probe) in the store, and hand it to a task that pushes it again and
//! records the result; at most [`Tuning::concurrency`] retries are in flight, because each
//! spends a few seconds waiting for Okta's background push to settle. With nothing due it
//! sleeps until the next attempt is due (or [`Tuning::idle_poll`], for failures the detector
//! opens meanwhile). On shutdown it stops claiming, gives in-flight retries a short grace, and
//! releases whatever claims remain so nothing waits for a lease to expire.

use super::attempt::{self, Outcome, Report, Trigger};
use super::circuit::Change;
use super::{claim_next, policy, WORKER_ACTOR};
use crate::context::Context;
use crate::pacer::Pacer;
use crate::store::claims::{self, Claim, DueQuery};
use crate::store::StoreError;
use std::time::Duration;
use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// Knobs with sensible defaults; tests shorten them.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Wait between re-posting an app user and reading its outcome.
    pub settle: Duration,
    /// How long a claim is held before another claimer may take the failure over. Longer than
    /// any one retry can take (a few Okta calls with their timeouts plus the settle).
    pub lease: Duration,
    /// Longest idle sleep, so failures opened by the detector are picked up promptly.
    pub idle_poll: Duration,
    /// Retries in flight at once.
    pub concurrency: usize,
    /// Pause after Okta refused our own credentials: retrying others would fail the same way.
    pub auth_pause: Duration,
    /// How long in-flight retries may finish after shutdown before their claims are released.
    pub drain_grace: Duration,
    /// This worker's claimer id.
    pub owner: String,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            settle: attempt::SETTLE,
            lease: Duration::from_secs(10 * 60),
            idle_poll: Duration::from_secs(15),
            concurrency: 8,
            auth_pause: Duration::from_secs(5 * 60),
            drain_grace: Duration::from_secs(12),
            owner: super::claimer_id(DAEMON_PREFIX),
        }
    }
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

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
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
    tracing::info!(
        owner = %tuning.owner,
        per_minute = cfg.per_minute,
        max_attempts = cfg.max_attempts,
        "retry worker started"
    );
    let pacer = Pacer::per_minute(cfg.per_minute);
    let mut tasks: JoinSet<Done> = JoinSet::new();
    loop {
        let mut pause = None;
        while let Some(done) = tasks.try_join_next() {
            pause = pause.or(handle(done, &tuning));
        }
        if let Some(p) = pause {
            tracing::warn!(pause = ?p, "Okta refused the daemon's credentials; pausing retries");
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(p) => {}
            }
        }
        if tasks.len() >= tuning.concurrency.max(1) {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(done) = tasks.join_next() => {
                    if let Some(p) = handle(done, &tuning) {
                        tracing::warn!(pause = ?p, "Okta refused the daemon's credentials; pausing retries");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
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
            _ = shutdown.cancelled() => break,
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
                    "retry claimed"
                );
                let (ctx2, settle) = (ctx.clone(), tuning.settle);
                tasks.spawn(async move {
                    let trigger = if claim.probe {
                        Trigger::Probe
                    } else {
                        Trigger::Automatic
                    };
                    let r = attempt::run(&ctx2, &claim, trigger, WORKER_ACTOR, settle).await;
                    log_result(&claim, &r);
                    (claim.failure.id, r)
                });
            }
            Ok(None) => {
                let wait = idle_wait(&ctx, &cfg, &tuning).await;
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                    Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                        if let Some(p) = handle(done, &tuning) {
                            tracing::warn!(pause = ?p, "Okta refused the daemon's credentials; pausing retries");
                            tokio::select! {
                                _ = shutdown.cancelled() => break,
                                _ = tokio::time::sleep(p) => {}
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retry worker could not claim from the state store; trying again shortly");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
    drain(&ctx, tasks, &tuning).await;
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
        Ok(Some(at)) => {
            let until = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
            Duration::from_millis(until).clamp(
                Duration::from_millis(50),
                tuning.idle_poll.max(Duration::from_millis(50)),
            )
        }
        Ok(None) => tuning.idle_poll,
        Err(e) => {
            tracing::warn!(error = %e, "retry worker could not read the schedule from the state store");
            tuning.idle_poll
        }
    }
}

fn log_result(claim: &Claim, r: &Result<Report, StoreError>) {
    let f = &claim.failure;
    match r {
        Ok(rep) => {
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
        Err(e) => tracing::warn!(
            failure_id = f.id, error = %e,
            "retry ran but its result could not be recorded; the claim expires with its lease"
        ),
    }
}

/// Handles a finished task; returns a pause when Okta refused our credentials.
fn handle(done: Result<Done, JoinError>, tuning: &Tuning) -> Option<Duration> {
    match done {
        Ok((_, Ok(rep))) => match rep.outcome {
            Outcome::Deferred { auth: true, .. } => Some(tuning.auth_pause),
            _ => None,
        },
        Ok((_, Err(_))) => None,
        Err(e) => {
            tracing::error!(error = %e, "a retry task failed; its claim expires with its lease");
            None
        }
    }
}

async fn drain(ctx: &Context, mut tasks: JoinSet<Done>, tuning: &Tuning) {
    if !tasks.is_empty() {
        tracing::info!(
            in_flight = tasks.len(),
            "retry worker stopping; letting in-flight retries finish"
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
