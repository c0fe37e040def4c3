//! Whether Okta's event hook deliveries reach us, judged from what the poller reads (polling is
//! the ground truth) and what the receiver stores. Two kinds of evidence raise the daemon's
//! health alert (`crate::health`, cause `hook_delivery`):
//!
//! - an `event_hook.delivery` event for *our* hook in the System Log: Okta gave up delivering;
//! - an eligible failure event the poller reads for the first time, published after the
//!   daemon started and more than [`MISS_GRACE`] before, that never came by hook: deliveries
//!   are being lost (hook deactivated or deleted, receiver unreachable, a proxy refusing).
//!
//! A delivery stored after the newest evidence clears it. Only failure events count as
//! missed, so a hook registered with Okta's `outcome.result eq "FAILURE"` filter is judged
//! fairly.

use crate::context::Context;
use crate::detect::classify::hook_delivery_failure;
use crate::health::HookTrouble;
use crate::okta::types::LogEvent;
use crate::store::{inbox, meta, StoreError, Tx};

/// An event hook normally delivers within seconds; an eligible event the poller reads this
/// long after it was published without it having come by hook counts as missed.
pub const MISS_GRACE_MS: i64 = 30_000;

/// `meta` key: the id of the event hook `hooks register` created, so that another hook's
/// delivery failures in the same org do not count against ours.
pub const HOOK_ID_KEY: &str = "hooks.event_hook_id";

/// The receiver stored a delivery at `now`.
pub fn delivered(ctx: &Context, now: i64) {
    ctx.health.update(|h| {
        h.last_hook_delivery_ms = Some(now);
        if h.hook_trouble
            .as_ref()
            .is_some_and(|t| t.last_evidence_ms < now)
        {
            tracing::info!("event hook deliveries arrive again");
            h.hook_trouble = None;
        }
    });
}

fn trouble(ctx: &Context, now: i64, reason: String) {
    ctx.health.update(|h| {
        let since = h.hook_trouble.as_ref().map_or(now, |t| t.since_ms);
        if h.hook_trouble.is_none() {
            tracing::warn!(%reason, "event hook deliveries are failing; detection falls back to polling");
        }
        h.hook_trouble = Some(HookTrouble {
            since_ms: since,
            last_evidence_ms: now,
            reason,
        });
    });
}

/// Whether a delivery failure names our hook: the id `hooks register` stored, or, before any
/// registration by this daemon, a URI ending in our `[hooks] path`.
fn ours(
    ctx: &Context,
    tx: &Tx<'_>,
    hook_id: Option<&str>,
    uri: Option<&str>,
) -> Result<bool, StoreError> {
    if let Some(id) = meta::get(tx, HOOK_ID_KEY)? {
        return Ok(hook_id == Some(id.as_str()));
    }
    let Some(cfg) = &ctx.config.hooks else {
        return Ok(false);
    };
    Ok(uri
        .and_then(|u| url::Url::parse(u).ok())
        .is_some_and(|u| u.path() == cfg.path))
}

/// Called by the poller, in its transaction, for every event it applies for the first time.
pub fn polled(
    tx: &Tx<'_>,
    ctx: &Context,
    ev: &LogEvent,
    published: i64,
    now: i64,
) -> Result<(), StoreError> {
    if ctx.config.hooks.is_none() {
        return Ok(());
    }
    // Events from before this daemon started (the first poll's look-back) prove nothing about
    // today's deliveries.
    let started = ctx.health.snapshot().started_ms.unwrap_or(i64::MAX);
    if published < started {
        return Ok(());
    }
    if let Some(f) = hook_delivery_failure(ev) {
        if ours(ctx, tx, f.hook_id.as_deref(), f.uri.as_deref())? {
            trouble(
                ctx,
                now,
                format!("Okta logged a failed event hook delivery: {}", f.reason),
            );
        }
        return Ok(());
    }
    if super::is_eligible(&ev.event_type)
        && ev.result() == Some("FAILURE")
        && now - published > MISS_GRACE_MS
        && !inbox::contains(tx, &ev.uuid)?
    {
        trouble(
            ctx,
            now,
            format!(
                "the System Log has a {} event (uuid {}) that never came by event hook",
                ev.event_type, ev.uuid
            ),
        );
    }
    Ok(())
}
