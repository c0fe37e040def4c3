//! The outbox sender: delivers due outbox rows through their channel and records the outcome
//! (sent; transient error → wait and retry; permanent error → `failed`, logged at error level).
//!
//! Rows of one channel go out oldest first. A transient error holds back the whole channel
//! until the failed row's next attempt: when Slack answers 429 or the SMTP relay is down, the
//! rows behind it would fail the same way, and hammering a rate-limited receiver only extends
//! the limit. See [`super::outbox`] for the delivery guarantee.

use super::channels::{self, Channel, DeliveryError};
use super::message::AlertMessage;
use super::outbox;
use crate::config::Config;
use crate::context::Context;
use crate::metrics::Metrics;
use crate::store::{outbox as rows, Store, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the sender looks for due rows.
pub const SEND_INTERVAL: Duration = Duration::from_secs(1);
/// Per-message timeout handed to the notifiers.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// Delivered rows are kept this long (for inspection), then pruned.
pub const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rows fetched per channel per pass.
const BATCH: usize = 20;

/// Counts of one delivery pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    pub retry: usize,
    pub failed: usize,
}

/// Delivers outbox rows for a set of channels.
pub struct Sender {
    channels: Vec<(&'static str, Box<dyn Channel>)>,
    /// Per channel: no attempts before this time (ms), after a transient error.
    held_until: Mutex<HashMap<&'static str, i64>>,
}

impl Sender {
    pub fn new(channels: Vec<(&'static str, Box<dyn Channel>)>) -> Sender {
        Sender {
            channels,
            held_until: Mutex::new(HashMap::new()),
        }
    }

    /// Notifiers for the channels [`outbox::channels`] writes rows for.
    pub fn from_config(config: &Config) -> Sender {
        let channels = outbox::channels(config)
            .into_iter()
            .filter_map(|name| Some((name, channels::build(config, name, SEND_TIMEOUT)?)))
            .collect();
        Sender::new(channels)
    }

    pub fn channel_names(&self) -> Vec<&'static str> {
        self.channels.iter().map(|(n, _)| *n).collect()
    }

    /// Delivers every row due at `now`, channel by channel.
    pub async fn deliver_due(
        &self,
        store: &Store,
        metrics: &Metrics,
        now: i64,
    ) -> Result<Delivered, StoreError> {
        self.deliver_due_until(store, metrics, now, &CancellationToken::new())
            .await
    }

    /// [`Self::deliver_due`], stopping before the next row once `stop` is cancelled: a backlog
    /// behind a slow channel can take minutes, and a pass that outlives shutdown (a reload
    /// starts the next generation's sender after the grace) would deliver the same rows as
    /// its successor.
    pub async fn deliver_due_until(
        &self,
        store: &Store,
        metrics: &Metrics,
        now: i64,
        stop: &CancellationToken,
    ) -> Result<Delivered, StoreError> {
        let mut total = Delivered::default();
        for (name, channel) in &self.channels {
            let name: &'static str = name;
            if self.held(name).is_some_and(|t| t > now) {
                continue;
            }
            'rows: loop {
                let rows = store
                    .read(move |tx| rows::due(tx, name, now, BATCH))
                    .await?;
                if rows.is_empty() {
                    break;
                }
                let full = rows.len() == BATCH;
                for row in rows {
                    if stop.is_cancelled() {
                        return Ok(total);
                    }
                    let result = match serde_json::from_str::<AlertMessage>(&row.payload) {
                        Ok(msg) => channel.send(&msg).await,
                        Err(e) => Err(DeliveryError::permanent(format!(
                            "outbox payload is not a message this build understands: {e}"
                        ))),
                    };
                    let id = row.id;
                    match result {
                        Ok(()) => {
                            store.write(move |tx| rows::mark_sent(tx, id, now)).await?;
                            metrics.inc(
                                "provwatch_alerts_total",
                                &[("channel", name), ("result", "sent")],
                            );
                            tracing::info!(channel = name, outbox_id = id, kind = %row.kind, group = row.group_key.as_deref().unwrap_or("-"), "alert delivered");
                            total.sent += 1;
                        }
                        Err(DeliveryError::Transient {
                            message,
                            retry_after,
                        }) => {
                            let delay = outbox::backoff(row.attempts + 1, retry_after);
                            let next = now.saturating_add(delay.as_millis() as i64);
                            let err = message.clone();
                            store
                                .write(move |tx| rows::mark_retry(tx, id, next, &err))
                                .await?;
                            self.hold(name, next);
                            metrics.inc(
                                "provwatch_alerts_total",
                                &[("channel", name), ("result", "retry")],
                            );
                            tracing::warn!(channel = name, outbox_id = id, attempts = row.attempts + 1, retry_in = %humantime::format_duration(std::time::Duration::from_secs(delay.as_secs().max(1))), error = %message, "alert delivery failed; will retry");
                            total.retry += 1;
                            break 'rows;
                        }
                        Err(DeliveryError::Permanent { message }) => {
                            let err = message.clone();
                            store
                                .write(move |tx| rows::mark_failed(tx, id, now, &err))
                                .await?;
                            metrics.inc(
                                "provwatch_alerts_total",
                                &[("channel", name), ("result", "failed")],
                            );
                            tracing::error!(channel = name, outbox_id = id, kind = %row.kind, group = row.group_key.as_deref().unwrap_or("-"), error = %message, "ALERT NOT DELIVERED: the channel refused it permanently; fix the channel configuration (see `okta-provwatch doctor`)");
                            total.failed += 1;
                        }
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(total)
    }

    fn held(&self, name: &str) -> Option<i64> {
        self.held_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    fn hold(&self, name: &'static str, until: i64) {
        self.held_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, until);
    }
}

/// The sender loop: every [`SEND_INTERVAL`] until `shutdown`. A send in progress is allowed
/// to finish (bounded by [`SEND_TIMEOUT`]) so its outcome is recorded; no further row starts.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let sender = Sender::from_config(&ctx.config);
    let configured: Vec<&'static str> = sender.channels.iter().map(|(n, _)| *n).collect();
    let now = ctx.clock.now_ms();
    match ctx
        .store
        .write(move |tx| rows::fail_unconfigured(tx, &configured, now))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            rows = n,
            "alerts queued for channels that are no longer configured were given up"
        ),
        Err(e) => tracing::warn!(error = %e, "checking queued alerts of removed channels failed"),
    }
    let mut tick = tokio::time::interval(SEND_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = i64::MIN;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = ctx.clock.now_ms();
        if let Err(e) = sender
            .deliver_due_until(&ctx.store, &ctx.metrics, now, &shutdown)
            .await
        {
            tracing::error!(error = %e, "alert delivery pass failed; retrying");
        }
        if now.saturating_sub(last_prune) >= 3_600_000 {
            last_prune = now;
            let before = now - KEEP_SENT.as_millis() as i64;
            if let Err(e) = ctx
                .store
                .write(move |tx| rows::prune_sent(tx, before))
                .await
            {
                tracing::warn!(error = %e, "pruning delivered alerts failed");
            }
        }
    }
}
