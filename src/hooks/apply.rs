//! The hook applier: runs inbox rows through the poller's classifier and the same seen-uuid
//! table, in event-time order, one transaction per batch (the rows' effects and their
//! `applied` marks commit together, so a crash re-applies nothing and loses nothing).
//!
//! Why an event "changes nothing twice" whichever path brings it first:
//! - the uuid goes into `seen_events` ([`cursor::mark_seen`]) in the same transaction that
//!   applies it; the poller skips it later, and a second hook delivery is skipped here;
//! - rows are applied oldest `published` first, and the failure state machine ignores events
//!   older than the one that last changed a row, so reordering within and across deliveries
//!   cannot reopen what a later success resolved;
//! - a *success* that finds nothing to resolve is left unmarked ("deferred"): Okta may push it
//!   before the failure it answers reaches us by poll, and the poller, reading the log in order,
//!   then applies both. Applying it here would have changed nothing anyway.

use crate::context::Context;
use crate::detect::classify::{classify, published_ms, Classified};
use crate::detect::poller::{self, PollOutcome};
use crate::domain::{Observation, Operation, State};
use crate::okta::types::LogEvent;
use crate::store::inbox::{self, Pending};
use crate::store::{cursor, failures, StoreError, Tx};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Rows applied per transaction.
pub const BATCH: usize = 500;

/// Even without a wake-up the inbox is looked at this often (rows left by a crash, a failed
/// batch).
pub const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The actor named in failure history for hook-applied changes.
pub const ACTOR: &str = "hook";

/// What one pass did, by result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    pub applied: usize,
    pub duplicate: usize,
    pub deferred: usize,
    pub ignored: usize,
    pub malformed: usize,
    pub opened: usize,
    pub resolved: usize,
}

impl ApplyOutcome {
    pub fn rows(&self) -> usize {
        self.applied + self.duplicate + self.deferred + self.ignored + self.malformed
    }
}

/// Whether a success observation would change anything now: an unresolved failure of the same
/// (app, user, operation), or an unresolved app-wide integration failure a user's success
/// proves fixed.
fn success_matters(tx: &Tx<'_>, obs: &Observation) -> Result<bool, StoreError> {
    let open = |f: Option<crate::domain::Failure>| f.is_some_and(|f| f.state != State::Resolved);
    if open(failures::find(
        tx,
        &obs.app_id,
        &obs.user_id,
        obs.operation,
    )?) {
        return Ok(true);
    }
    Ok(obs.operation != Operation::Integration
        && open(failures::find(tx, &obs.app_id, "", Operation::Integration)?))
}

fn apply_row(
    tx: &Tx<'_>,
    ctx: &Context,
    row: &Pending,
    now: i64,
    out: &mut ApplyOutcome,
) -> Result<&'static str, StoreError> {
    let Ok(ev) = serde_json::from_str::<LogEvent>(&row.body) else {
        out.malformed += 1;
        return Ok("malformed");
    };
    let Some(published) = published_ms(&ev) else {
        out.malformed += 1;
        return Ok("malformed");
    };
    let classified = classify(&ev);
    if let Classified::Observation(obs) = &classified {
        if !obs.failed && !success_matters(tx, obs)? {
            out.deferred += 1;
            return Ok("deferred");
        }
    }
    if !cursor::mark_seen(tx, &ev.uuid, published)? {
        out.duplicate += 1;
        return Ok("duplicate");
    }
    match classified {
        Classified::Observation(obs) => {
            if !poller::watched(ctx, &obs.app_id, obs.app_label.as_deref()) {
                out.ignored += 1;
                return Ok("ignored");
            }
            let mut p = PollOutcome::default();
            poller::apply_observation(tx, &obs, now, &mut p)?;
            out.opened += p.opened;
            out.resolved += p.resolved;
            out.applied += 1;
            Ok("applied")
        }
        Classified::Malformed { why } => {
            tracing::warn!(uuid = %ev.uuid, event_type = %ev.event_type, %why, "skipping a malformed event received by hook");
            out.malformed += 1;
            Ok("malformed")
        }
        _ => {
            out.ignored += 1;
            Ok("ignored")
        }
    }
}

/// Applies every pending inbox row; returns what it did.
pub async fn apply_pending(ctx: &Context) -> Result<ApplyOutcome, StoreError> {
    let mut total = ApplyOutcome::default();
    loop {
        let ctx2 = ctx.clone();
        let now = ctx.now_ms();
        let out = ctx
            .store
            .write(move |tx| {
                let mut out = ApplyOutcome::default();
                for row in inbox::pending(tx, BATCH)? {
                    let result = apply_row(tx, &ctx2, &row, now, &mut out)?;
                    inbox::mark_applied(tx, row.id, now, result)?;
                }
                Ok(out)
            })
            .await?;
        let m = &ctx.metrics;
        for (result, n) in [
            ("applied", out.applied),
            ("duplicate", out.duplicate),
            ("deferred", out.deferred),
            ("ignored", out.ignored),
            ("malformed", out.malformed),
        ] {
            if n > 0 {
                m.add(
                    "provwatch_hook_events_total",
                    &[("result", result)],
                    n as f64,
                );
            }
        }
        let rows = out.rows();
        total.applied += out.applied;
        total.duplicate += out.duplicate;
        total.deferred += out.deferred;
        total.ignored += out.ignored;
        total.malformed += out.malformed;
        total.opened += out.opened;
        total.resolved += out.resolved;
        if rows < BATCH {
            break;
        }
    }
    if total.opened > 0 || total.resolved > 0 {
        // The retry worker and the alert evaluator look at once (an urgent failure pushed by
        // hook reaches Slack without waiting for a timer).
        ctx.signals.failures_changed();
    }
    if total.opened > 0 || total.resolved > 0 {
        tracing::info!(
            opened = total.opened,
            resolved = total.resolved,
            "events received by hook applied"
        );
    }
    let pending = ctx.store.read(inbox::pending_count).await.unwrap_or(0);
    ctx.metrics
        .set("provwatch_hook_inbox_pending", &[], pending as f64);
    Ok(total)
}

/// The applier component: applies on every wake-up from the receiver, and every
/// [`IDLE_CHECK`]; prunes old rows hourly.
pub async fn run(ctx: Context, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        if let Err(e) = apply_pending(&ctx).await {
            tracing::warn!(error = %e, "applying events received by hook failed; they stay in the inbox");
        }
        if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
            last_prune = Some(tokio::time::Instant::now());
            let now = ctx.now_ms();
            if let Err(e) = ctx.store.write(move |tx| inbox::prune(tx, now)).await {
                tracing::warn!(error = %e, "pruning the hook inbox failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(IDLE_CHECK) => {}
        }
    }
}
