//! The periodic digest (`alert.digest_schedule`): what is open now, and what was detected,
//! retried and resolved since the previous digest, sent to the same channels through the
//! outbox.
//!
//! The time of the last digest is kept in `meta` ([`META_KEY`]) and updated in the same
//! transaction that queues the digest, so a restart neither resends one nor skips one: a
//! scheduled time that passed while the daemon was down is caught up with a single digest at
//! start. On the very first start there is no previous digest; the clock starts then, and the
//! first digest goes out at the next scheduled time. Digests with nothing to report (nothing
//! open, nothing happened) are skipped, but still advance the clock.

use super::compose::{line, to_time, MAX_LINES};
use super::message::{AlertLine, AlertMessage, MessageKind, Severity};
use super::outbox;
use crate::context::Context;
use crate::domain::HistoryKind;
use crate::store::alert_groups::{self, failures_with_history, get_meta, set_meta};
use crate::store::{StoreError, Tx};
use cron::Schedule;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const META_KEY: &str = "alert.last_digest_ms";
pub const GROUP_KEY: &str = "digest";
/// The loop never sleeps longer than this, so wall-clock jumps are noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What [`step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No previous digest: the clock starts now.
    Started,
    /// A digest was queued.
    Sent,
    /// Due, but nothing to report.
    Empty,
    NotDue,
}

/// The first scheduled time strictly after `after_ms`.
pub fn next_after(schedule: &Schedule, after_ms: i64) -> Option<i64> {
    schedule
        .after(&to_time(after_ms))
        .next()
        .map(|t| t.timestamp_millis())
}

/// Checks the schedule at `now` and queues a digest when one is due. Returns what it did and
/// when the next digest is due.
pub fn step(
    tx: &Tx<'_>,
    schedule: &Schedule,
    channels: &[&str],
    now: i64,
) -> Result<(Step, Option<i64>), StoreError> {
    let last = get_meta(tx, META_KEY)?.and_then(|v| v.parse::<i64>().ok());
    let Some(last) = last else {
        set_meta(tx, META_KEY, &now.to_string())?;
        return Ok((Step::Started, next_after(schedule, now)));
    };
    match next_after(schedule, last) {
        Some(due) if due <= now => {}
        next => return Ok((Step::NotDue, next)),
    }
    let msg = build(tx, last, now)?;
    let step = match msg {
        Some(msg) => {
            outbox::enqueue(tx, channels, "digest", &msg, now)?;
            Step::Sent
        }
        None => Step::Empty,
    };
    set_meta(tx, META_KEY, &now.to_string())?;
    Ok((step, next_after(schedule, now)))
}

/// The digest for the window (`since`, `now`], or `None` when there is nothing to say.
pub fn build(tx: &Tx<'_>, since: i64, now: i64) -> Result<Option<AlertMessage>, StoreError> {
    let open = alert_groups::unresolved_failures(tx)?;
    let detected = failures_with_history(
        tx,
        &[HistoryKind::Detected, HistoryKind::Reopened],
        since,
        now,
    )?;
    let retried = failures_with_history(tx, &[HistoryKind::RetryStarted], since, now)?;
    let resolved = failures_with_history(tx, &[HistoryKind::Resolved], since, now)?;
    if open.is_empty() && detected.is_empty() && retried.is_empty() && resolved.is_empty() {
        return Ok(None);
    }
    let by_retry = resolved.intersection(&retried).count();
    let apps: BTreeSet<&str> = open.iter().map(|f| f.app_id.as_str()).collect();
    let urgent = open.iter().filter(|f| f.urgent).count();
    let summary = format!(
        "{} open across {} ({} urgent). Since {}: {} detected, {} retried, {} resolved ({} of them by a retry).",
        open.len(),
        if apps.len() == 1 { "1 app".to_string() } else { format!("{} apps", apps.len()) },
        urgent,
        crate::clock::minute(to_time(since)),
        detected.len(),
        retried.len(),
        resolved.len(),
        by_retry,
    );
    let lines: Vec<AlertLine> = open
        .iter()
        .take(MAX_LINES)
        .map(|f| {
            let mut l = line(f);
            // One digest spans every app, so each line names its app.
            l.app = Some(f.app_name().to_string());
            l
        })
        .collect();
    Ok(Some(AlertMessage {
        kind: MessageKind::Digest,
        severity: Severity::Info,
        title: format!(
            "Digest: {} open provisioning failure{}",
            open.len(),
            if open.len() == 1 { "" } else { "s" }
        ),
        app_id: None,
        app_label: None,
        admin_url: None,
        summary,
        lines,
        total_lines: open.len(),
        group_key: GROUP_KEY.into(),
        created_at: to_time(now),
    }))
}

/// The digest loop: checks the schedule against `ctx.clock` until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let schedule = ctx.config.alert.digest_schedule.clone();
    let channels = outbox::channels(&ctx.config);
    loop {
        let now = ctx.clock.now_ms();
        let (sched, chans) = (schedule.clone(), channels.clone());
        let wait = match ctx
            .store
            .write(move |tx| step(tx, &sched, &chans, now))
            .await
        {
            Ok((what, next)) => {
                match what {
                    Step::Sent => tracing::info!("digest queued"),
                    Step::Empty => tracing::debug!("digest due but nothing to report"),
                    Step::Started | Step::NotDue => {}
                }
                next.map_or(MAX_SLEEP, |n| crate::clock::between(now, n))
            }
            Err(e) => {
                tracing::error!(error = %e, "digest failed; retrying");
                MAX_SLEEP
            }
        };
        let wait = wait.clamp(Duration::from_millis(200), MAX_SLEEP);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
