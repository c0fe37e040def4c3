//! Retries of failed provisioning, automatic (the daemon's [`worker`]) and manual (the
//! `retry` command, through [`manual`]).
//!
//! A retry re-posts the app user's current profile, which makes Okta push the user to the app
//! again ([`attempt`]), then reads the app user back to see whether it worked. Which failures
//! are retried and how far apart is [`policy`]; an app whose retries keep failing for an
//! app-wide reason gets its [`circuit`] opened. Every retry claims its failure in the store
//! first ([`crate::store::claims`]), so the daemon and a person running `retry` at the same
//! time never push the same user twice at once. Two rate limits apply: retries start at most
//! `retry.per_minute` a minute (a [`crate::pacer::Pacer`]), and every Okta call still goes
//! through the client's share of the org's rate-limit buckets.

pub mod attempt;
pub mod circuit;
pub mod manual;
pub mod policy;
pub mod worker;

use crate::config::RetryConfig;
use crate::store::claims::{self, Claim, DueQuery};
use crate::store::{circuits, StoreError, Tx};

/// History actor of the automatic retries.
pub const WORKER_ACTOR: &str = "retry-worker";

/// A claimer id unique to this process and call: `<pid>-<random>`. Leases name it, so
/// `status` can show who is retrying what.
pub fn claimer_id(prefix: &str) -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}-{}", std::process::id(), &u[..8])
}

/// Wakes an idle retry worker of this process at once (a detector just opened failures), so a
/// failure pushed by event hook is retried after its backoff rather than at the worker's next
/// idle poll. A wake with no worker waiting is kept for the next wait; one extra look costs a
/// query.
pub fn wake_worker() {
    worker_wake().notify_one();
}

fn worker_wake() -> &'static tokio::sync::Notify {
    static WAKE: std::sync::OnceLock<tokio::sync::Notify> = std::sync::OnceLock::new();
    WAKE.get_or_init(tokio::sync::Notify::new)
}

/// Resolves on [`wake_worker`].
pub(crate) async fn woken() {
    worker_wake().notified().await
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Takes the next automatic retry in the caller's write transaction: first releases claims
/// whose lease expired, opens circuits of apps with a reported integration failure, then a due probe of an open circuit if any,
/// else the failure whose next attempt is most overdue. `None` when nothing is due.
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
                let detail = format!("probe of the open circuit of the app (worker {owner})");
                if let Ok(mut cl) =
                    claims::claim(tx, f.id, owner, now, until, WORKER_ACTOR, &detail)?
                {
                    cl.probe = true;
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
    if taken.is_none() {
        if let Some(f) = claims::next_due(tx, &q)? {
            let detail = format!(
                "automatic attempt {}/{} (worker {owner})",
                f.attempts + 1,
                policy::max_attempts(cfg, f.reason.as_deref())
            );
            taken = claims::claim(tx, f.id, owner, now, until, WORKER_ACTOR, &detail)?.ok();
        }
    }
    Ok(taken)
}
