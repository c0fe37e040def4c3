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

use super::health_alerts;
use super::message::{AlertLine, AlertMessage, MessageKind, Severity};
use super::outbox;
use crate::config::Config;
use crate::context::Context;
use crate::health::HealthState;
use crate::store::alerts::{self, AlertGroup};
use crate::store::failures::{self, Failure, Operation, State};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the evaluator looks at the store.
pub const EVAL_INTERVAL: Duration = Duration::from_secs(2);
/// Urgent groups still wait this long, so failures reported in the same burst (one poll page)
/// share one message.
pub const URGENT_GROUP_WAIT: Duration = Duration::from_secs(2);
/// Lines stored per message; renderers collapse further for their own limits.
pub const MAX_LINES: usize = 500;
/// Actor written to failure history.
pub const ACTOR: &str = "alerter";

/// The alerting knobs the evaluator runs on, detached from [`Config`] so tests can drive it.
#[derive(Clone, Debug)]
pub struct Settings {
    pub persist_after_ms: i64,
    pub repeat_interval_ms: i64,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub send_resolved: bool,
    /// Outbox channels to write rows for (see [`outbox::channels`]).
    pub channels: Vec<&'static str>,
    /// Okta admin console base (`https://acme-admin.okta.com`), for links; `None` off Okta.
    pub admin_base: Option<String>,
    /// The System Log poll interval, which scales the daemon-health threshold.
    pub poll_interval_ms: i64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            persist_after_ms: ms(cfg.alert.persist_after),
            repeat_interval_ms: ms(cfg.alert.repeat_interval),
            group_wait_ms: ms(cfg.alert.group_wait),
            group_interval_ms: ms(cfg.alert.group_interval),
            send_resolved: cfg.alert.send_resolved,
            channels: outbox::channels(cfg),
            admin_base: admin_base(&cfg.okta.org_url),
            poll_interval_ms: ms(cfg.detect.poll_interval),
        }
    }
}

/// `https://acme-admin.okta.com` for `https://acme.okta.com/`; `None` for hosts that are not
/// Okta's (custom domains, the simulator), where we cannot guess the admin console.
pub fn admin_base(org: &url::Url) -> Option<String> {
    let host = org.host_str()?;
    let (first, rest) = host.split_once('.')?;
    let okta = [
        "okta.com",
        "oktapreview.com",
        "okta-emea.com",
        "okta-gov.com",
        "okta.mil",
    ];
    if !okta.contains(&rest) || first.ends_with("-admin") {
        return None;
    }
    Some(format!("https://{first}-admin.{rest}"))
}

/// What one evaluation decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Groups that sent a firing (or health) notification.
    pub firing: Vec<String>,
    /// Groups that sent a resolved notification.
    pub resolved: Vec<String>,
    /// Groups with something to say that a silence muted.
    pub silenced: Vec<String>,
    /// Outbox rows written.
    pub rows: usize,
}

impl Outcome {
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty() && self.resolved.is_empty() && self.rows == 0
    }
}

/// Whether `f` alerts on its own at `now`.
pub fn is_alerting(f: &Failure, now: i64, persist_after_ms: i64) -> bool {
    f.state != State::Resolved
        && (f.urgent || f.retry_exhausted || now.saturating_sub(f.first_seen) >= persist_after_ms)
}

/// Identity of a group's failure set. Only what should re-notify counts: the failure ids and
/// whether retries gave up. The open/retrying/alerted states flip with every retry claim and
/// with our own `alerted` mark, and would re-send the same message each time.
pub fn fingerprint(set: &[&Failure]) -> String {
    let mut keys: Vec<(i64, bool)> = set.iter().map(|f| (f.id, f.retry_exhausted)).collect();
    keys.sort_unstable();
    // FNV-1a: stable across builds and processes (the value is stored).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, exhausted) in keys {
        for b in id.to_le_bytes().into_iter().chain([u8::from(exhausted)]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

pub(crate) fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// Runs one evaluation at `now` in one transaction. `health` adds the daemon-health group
/// (`None` leaves it alone).
pub fn evaluate(
    c: &mut Connection,
    s: &Settings,
    health: Option<&HealthState>,
    now: i64,
) -> Result<Outcome, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Outcome::default();
    let mut by_app: BTreeMap<String, Vec<Failure>> = BTreeMap::new();
    for f in failures::list_unresolved(&crate::store::Tx::over(&tx))? {
        by_app.entry(f.app_id.clone()).or_default().push(f);
    }
    let mut groups: BTreeMap<String, AlertGroup> = BTreeMap::new();
    for g in alerts::list_groups(&tx)? {
        if let Some(app) = g.app_id.clone().filter(|_| g.group_key.starts_with("app:")) {
            // Groups with nothing unresolved still need a look: a resolved notice may be due.
            if g.firing || g.pending_since.is_some() {
                by_app.entry(app).or_default();
            }
        }
        groups.insert(g.group_key.clone(), g);
    }
    for (app_id, fs) in &by_app {
        let key = format!("app:{app_id}");
        let group = groups.remove(&key).unwrap_or_else(|| AlertGroup {
            group_key: key,
            app_id: Some(app_id.clone()),
            ..AlertGroup::default()
        });
        evaluate_app(&tx, s, app_id, fs, group, now, &mut out)?;
    }
    if let Some(h) = health {
        health_alerts::evaluate(&tx, s, h, now, &mut out)?;
    }
    tx.commit()?;
    Ok(out)
}

fn evaluate_app(
    tx: &Transaction<'_>,
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
        None => alerts::app_label(&crate::store::Tx::over(tx), app_id)?,
    };

    if alerts::silence_for(&crate::store::Tx::over(tx), app_id, label.as_deref(), now)?.is_some() {
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
                    .filter_map(|id| failures::get(&crate::store::Tx::over(tx), *id).transpose())
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
        ms(URGENT_GROUP_WAIT).min(s.group_wait_ms)
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
            mark_alerted(tx, f, now, &detail)?;
        }
        g.firing = true;
        g.fingerprint = Some(fp);
        g.sent_failures = set.iter().map(|f| f.id).collect();
        g.sent_failures.sort_unstable();
        g.pending_since = None;
        g.last_sent_at = Some(now);
    }
    save_if_changed(tx, &g, &before)
}

/// Writes the group back only when the evaluation changed it.
pub(crate) fn save_if_changed(
    tx: &Connection,
    g: &AlertGroup,
    before: &AlertGroup,
) -> Result<(), StoreError> {
    if g != before {
        alerts::put_group(tx, g)?;
    }
    Ok(())
}

/// Records that a person was told about `f`. A failure the retry worker holds keeps its
/// `retrying` state, and the state it returns to when the claim ends becomes `alerted`, so the
/// retry does not make the alerter's mark disappear.
fn mark_alerted(c: &Connection, f: &Failure, now: i64, detail: &str) -> Result<(), StoreError> {
    c.execute(
        "UPDATE failures SET
            state = CASE WHEN state = 'open' THEN 'alerted' ELSE state END,
            claim_prev_state = CASE WHEN state = 'retrying' THEN 'alerted' ELSE claim_prev_state END
         WHERE id = ?1",
        [f.id],
    )?;
    failures::add_history(
        &crate::store::Tx::over(c),
        f.id,
        now,
        crate::domain::HistoryKind::Alerted,
        ACTOR,
        Some(detail),
    )
}

pub(crate) fn line(f: &Failure) -> AlertLine {
    let mut operation = f.operation.as_str().to_string();
    if f.retry_exhausted {
        operation.push_str(" (retries exhausted)");
    }
    AlertLine {
        user_login: if f.user_id.is_empty() {
            "(app-wide)".to_string()
        } else {
            f.user_name().to_string()
        },
        user_id: f.user_id.clone(),
        operation,
        reason: f.reason.clone(),
        first_seen: to_time(f.first_seen),
        attempts: f.attempts,
    }
}

fn admin_url(s: &Settings, c: &Connection, app_id: &str) -> Result<Option<String>, StoreError> {
    let Some(base) = &s.admin_base else {
        return Ok(None);
    };
    Ok(Some(
        match alerts::app_name(&crate::store::Tx::over(c), app_id)? {
            Some(name) => format!("{base}/admin/app/{name}/instance/{app_id}/"),
            None => format!("{base}/admin/apps/active"),
        },
    ))
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn firing_message(
    s: &Settings,
    app_id: &str,
    label: Option<&str>,
    c: &Connection,
    set: &[&Failure],
    integration: bool,
    now: i64,
) -> Result<AlertMessage, StoreError> {
    let app = label.unwrap_or(app_id);
    let mut sorted: Vec<&Failure> = set.to_vec();
    // App-wide first, then deprovisioning, then by user: the most important line on top.
    sorted.sort_by(|a, b| {
        (
            !a.user_id.is_empty(),
            !a.operation.is_deprovisioning(),
            a.user_name(),
        )
            .cmp(&(
                !b.user_id.is_empty(),
                !b.operation.is_deprovisioning(),
                b.user_name(),
            ))
    });
    let users: BTreeSet<&str> = set
        .iter()
        .filter(|f| !f.user_id.is_empty())
        .map(|f| f.user_id.as_str())
        .collect();
    let deprov = set
        .iter()
        .filter(|f| f.operation.is_deprovisioning())
        .count();
    let exhausted = set.iter().filter(|f| f.retry_exhausted).count();
    let title = if integration {
        format!(
            "{app}: provisioning integration failing ({} affected)",
            plural(users.len(), "user", "users")
        )
    } else {
        format!(
            "{app}: {} failing provisioning",
            plural(users.len(), "user", "users")
        )
    };
    let mut summary = Vec::new();
    if integration {
        summary.push(format!(
            "Okta cannot provision to {app} at all (app-wide failure); user failures of this app are listed here rather than alerted separately."
        ));
    }
    if deprov > 0 {
        summary.push(format!(
            "{} failed: people removed in Okta may still have access to {app}.",
            plural(deprov, "deprovisioning", "deprovisionings")
        ));
    }
    if exhausted > 0 {
        summary.push(format!(
            "Automatic retries gave up on {}.",
            plural(exhausted, "failure", "failures")
        ));
    }
    summary.push(format!(
        "{} unresolved; failures alert after {} unless urgent.",
        plural(set.len(), "failure", "failures"),
        humantime::format_duration(Duration::from_millis(s.persist_after_ms.max(0) as u64))
    ));
    Ok(AlertMessage {
        kind: MessageKind::Firing,
        severity: if set.iter().any(|f| f.urgent) {
            Severity::Urgent
        } else {
            Severity::Warning
        },
        title,
        app_id: Some(app_id.to_string()),
        app_label: label.map(str::to_string),
        admin_url: admin_url(s, c, app_id)?,
        summary: summary.join(" "),
        lines: sorted.iter().take(MAX_LINES).map(|f| line(f)).collect(),
        total_lines: sorted.len(),
        group_key: format!("app:{app_id}"),
        created_at: to_time(now),
    })
}

fn resolved_message(
    s: &Settings,
    app_id: &str,
    label: Option<&str>,
    c: &Connection,
    cleared: &[Failure],
    now: i64,
) -> Result<AlertMessage, StoreError> {
    let app = label.unwrap_or(app_id);
    Ok(AlertMessage {
        kind: MessageKind::Resolved,
        severity: Severity::Info,
        title: format!("{app}: provisioning failures resolved"),
        app_id: Some(app_id.to_string()),
        app_label: label.map(str::to_string),
        admin_url: admin_url(s, c, app_id)?,
        summary: format!(
            "All {} previously reported for {app} cleared.",
            plural(cleared.len(), "failure", "failures")
        ),
        lines: cleared.iter().take(MAX_LINES).map(line).collect(),
        total_lines: cleared.len(),
        group_key: format!("app:{app_id}"),
        created_at: to_time(now),
    })
}

/// The evaluator loop: every [`EVAL_INTERVAL`] until `shutdown`.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let settings = Settings::from_config(&ctx.config);
    if settings.channels == [outbox::CONSOLE] {
        tracing::warn!("no [slack] or [email] configured: alerts will only be written to this log");
    }
    let mut tick = tokio::time::interval(EVAL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = ctx.clock.now_ms();
        let health = ctx.health.snapshot();
        let s = settings.clone();
        match ctx
            .store
            .call(move |c| evaluate(c, &s, Some(&health), now))
            .await
        {
            Ok(o) if !o.is_empty() => tracing::info!(
                firing = ?o.firing,
                resolved = ?o.resolved,
                outbox_rows = o.rows,
                "alert notifications queued"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "alert evaluation failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_console_host() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            admin_base(&u("https://acme.okta.com/")).as_deref(),
            Some("https://acme-admin.okta.com")
        );
        assert_eq!(admin_base(&u("http://127.0.0.1:8080/")), None);
        assert_eq!(admin_base(&u("https://login.acme.com/")), None);
    }
}
