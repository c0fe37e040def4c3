//! The alert evaluator: decides, from the failure rows, which app groups to notify and when,
//! modelled on Prometheus Alertmanager's grouping, group wait, repeat interval and resolved
//! notifications.
//!
//! - A failure *alerts* once it is still unresolved `persist_after` after `first_seen`, or as
//!   soon as its retries are exhausted, or at once when it is urgent (a failed deprovisioning,
//!   an app-wide `integration` failure). Failures that resolve earlier never alert.
//! - One group per app (`app:<app_id>`). Its first firing message goes out `group_wait` after
//!   the group first had something to send (urgent groups: [`URGENT_GROUP_WAIT`]); a changed
//!   failure set is batched the same way and, once the group has been notified, goes out no
//!   sooner than `group_interval` after the last message unless it adds an urgent failure; an
//!   unchanged one repeats every `repeat_interval`.
//! - While an app-wide failure fires, every unresolved failure of that app is folded into the
//!   app's message (the integration explains them) instead of alerting on its own later.
//! - A failure sent as firing stays in the group until it resolves; when all have, a resolved
//!   notice follows (if `send_resolved`). Groups never sent as firing never send "resolved".
//! - A silenced app notifies nothing; an episode that clears during the silence closes quietly,
//!   and whatever still fires when the silence ends notifies as usual.
//!
//! Every decision is one `BEGIN IMMEDIATE` transaction: the group row, the failures' `alerted`
//! state and history, and the outbox rows commit together (see [`super::outbox`]).
//!
//! The group (settings, outcome, save-if-changed) is [`super::group`]; the words of each
//! message [`super::compose`].

use super::compose::{firing_message, resolved_message};
use super::group::{fingerprint, save_if_changed, Outcome, Settings};
use super::health_alerts;
use super::outbox;
use crate::context::Context;
use crate::health::HealthState;
use crate::store::alert_groups::{self, AlertGroup};
use crate::store::failures::{Failure, Operation, State};
use crate::store::{StoreError, Tx};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the evaluator looks at the store when nothing wakes it (group waits, repeats,
/// health and persistence windows come due by the clock alone).
pub const EVAL_INTERVAL: Duration = Duration::from_secs(2);
/// Urgent groups still wait this long when evaluated on a tick, so failures reported in the
/// same burst (one poll page) share one message. The daemon's loop ([`run`]) waits zero: the
/// detectors wake it only after a whole page committed, so the burst is in the store already.
pub const URGENT_GROUP_WAIT: Duration = Duration::from_secs(2);
/// Actor written to failure history.
pub const ACTOR: &str = "alerter";

/// Whether `f` alerts on its own at `now`.
pub fn is_alerting(f: &Failure, now: i64, persist_after_ms: i64) -> bool {
    f.state != State::Resolved
        && (f.urgent || f.retry_exhausted || now.saturating_sub(f.first_seen) >= persist_after_ms)
}

/// Runs one evaluation at `now` in one transaction. `health` adds the daemon-health group
/// (`None` leaves it alone).
pub fn evaluate(
    tx: &Tx<'_>,
    s: &Settings,
    health: Option<&HealthState>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let mut out = Outcome::default();
    let mut by_app: BTreeMap<String, Vec<Failure>> = BTreeMap::new();
    for f in alert_groups::unresolved_failures(tx)? {
        by_app.entry(f.app_id.clone()).or_default().push(f);
    }
    let mut groups: BTreeMap<String, AlertGroup> = BTreeMap::new();
    for g in alert_groups::list(tx)? {
        if let Some(app) = g.app_id.clone().filter(|_| g.group_key.starts_with("app:")) {
            // Groups with nothing unresolved still need a look: a resolved notice may be due.
            if g.firing || g.pending_since.is_some() {
                by_app.entry(app).or_default();
            }
        }
        groups.insert(g.group_key.clone(), g);
    }
    for (app_id, fs) in &by_app {
        let key = super::compose::app_group_key(app_id);
        let group = groups.remove(&key).unwrap_or_else(|| AlertGroup {
            group_key: key,
            app_id: Some(app_id.clone()),
            ..AlertGroup::default()
        });
        evaluate_app(tx, s, app_id, fs, group, now, &mut out)?;
    }
    if let Some(h) = health {
        health_alerts::evaluate(tx, s, h, now, &mut out)?;
        health_alerts::evaluate_detection(tx, s, h, now, &mut out)?;
    }
    Ok(out)
}

fn evaluate_app(
    tx: &Tx<'_>,
    s: &Settings,
    app_id: &str,
    fs: &[Failure],
    mut g: AlertGroup,
    now: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    let before = g.clone();
    let sent: BTreeSet<i64> = g.sent_failures.iter().copied().collect();
    let alerting = |f: &Failure| is_alerting(f, now, s.persist_after_ms) || sent.contains(&f.id);
    let integration_firing = fs
        .iter()
        .any(|f| f.operation == Operation::Integration && alerting(f));
    let set: Vec<&Failure> = fs
        .iter()
        .filter(|f| integration_firing || alerting(f))
        .collect();
    let label = match fs.iter().find_map(|f| f.app_label.clone()) {
        Some(l) => Some(l),
        None => alert_groups::app_label(tx, app_id)?,
    };

    if alert_groups::is_silenced(tx, app_id, label.as_deref(), now)? {
        if !set.is_empty() || g.firing {
            out.silenced.push(g.group_key.clone());
        }
        if set.is_empty() && g.firing {
            // Cleared while muted: nobody hears "resolved" for a silenced app.
            g.close_episode();
        }
        g.pending_since = None;
        return save_if_changed(tx, &g, &before);
    }

    if set.is_empty() {
        if g.firing {
            if s.send_resolved {
                let cleared: Vec<Failure> = g
                    .sent_failures
                    .iter()
                    .filter_map(|id| alert_groups::failure(tx, *id).transpose())
                    .collect::<Result<_, _>>()?;
                let msg = resolved_message(s, app_id, label.as_deref(), tx, &cleared, now)?;
                out.rows += outbox::enqueue(tx, &s.channels, "resolved", &msg, now)?.len();
                out.resolved.push(g.group_key.clone());
                g.last_sent_at = Some(now);
            }
            g.close_episode();
        }
        g.pending_since = None;
        return save_if_changed(tx, &g, &before);
    }

    let fp = fingerprint(&set);
    let urgent = set.iter().any(|f| f.urgent);
    let wait = if urgent {
        s.urgent_group_wait_ms.min(s.group_wait_ms)
    } else {
        s.group_wait_ms
    };
    let changed = !g.firing || g.fingerprint.as_deref() != Some(fp.as_str());
    let due = if changed {
        let since = *g.pending_since.get_or_insert(now);
        let mut at = since.saturating_add(wait);
        let adds_urgent = set.iter().any(|f| f.urgent && !sent.contains(&f.id));
        if g.firing && !adds_urgent {
            if let Some(last) = g.last_sent_at {
                at = at.max(last.saturating_add(s.group_interval_ms));
            }
        }
        now >= at
    } else {
        g.pending_since = None;
        g.last_sent_at
            .is_none_or(|t| now >= t.saturating_add(s.repeat_interval_ms))
    };
    if due {
        let msg = firing_message(
            s,
            app_id,
            label.as_deref(),
            tx,
            &set,
            integration_firing,
            now,
        )?;
        out.rows += outbox::enqueue(tx, &s.channels, "firing", &msg, now)?.len();
        out.firing.push(g.group_key.clone());
        let detail = format!("{} via {}", g.group_key, s.channels.join(", "));
        for f in set.iter().filter(|f| !sent.contains(&f.id)) {
            alert_groups::mark_failure_alerted(tx, f.id, now, ACTOR, &detail)?;
        }
        g.firing = true;
        g.fingerprint = Some(fp);
        // Every failure reported during the episode, not only this message's: the resolved
        // notice counts them all ("All 3 ... cleared", not "All 1" after two cleared early).
        g.sent_failures.extend(set.iter().map(|f| f.id));
        g.sent_failures.sort_unstable();
        g.sent_failures.dedup();
        g.pending_since = None;
        g.last_sent_at = Some(now);
    }
    save_if_changed(tx, &g, &before)
}

/// The evaluator loop: every [`EVAL_INTERVAL`] until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let settings = Settings {
        urgent_group_wait_ms: 0,
        ..Settings::from_config(&ctx.config)
    };
    if settings.channels == [outbox::CONSOLE] {
        tracing::warn!("no [slack] or [email] configured: alerts will only be written to this log");
    }
    let mut tick = tokio::time::interval(EVAL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            // A detector committed new failures: an urgent one goes out now, not next tick.
            _ = ctx.signals.alert_wakeup() => {}
        }
        let now = ctx.clock.now_ms();
        let health = ctx.health.snapshot();
        let s = settings.clone();
        match ctx
            .store
            .write(move |tx| evaluate(tx, &s, Some(&health), now))
            .await
        {
            Ok(o) if !o.is_empty() => {
                tracing::info!(
                    firing = %o.firing.join(", "),
                    resolved = %o.resolved.join(", "),
                    outbox_rows = o.rows,
                    "alert notifications queued"
                );
                ctx.signals.outbox_queued();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "alert evaluation failed; retrying"),
        }
    }
}
