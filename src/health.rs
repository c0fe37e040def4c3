//! Liveness of the daemon's view of Okta, and the one rule that judges it.
//!
//! [`Health`] records when polling last succeeded, how many polls in a row failed, and how far
//! behind the newest event is; the System Log poller writes it, `/healthz`, `/metrics` and the
//! daemon-health alert read it. [`verdict`] is the only place that decides "healthy": both
//! `/healthz` and the daemon-health alert call it, so they can never disagree.
//!
//! The rule judges the *age of the last successful System Log poll* against the expected
//! interval, not the count of failed polls: during a 429 storm or against a slow Okta the
//! client waits (Retry-After, pacing, long responses) instead of failing, so no poll fails and
//! a failure count stays at zero while nothing is being detected. Age catches both.

use crate::clock::Clock;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A successful poll is expected every poll interval; the verdict turns unhealthy once the
/// last one is this many intervals old (one interval plus two of slack for a slow poll, a
/// retry, a paced request), or, when none succeeded since start, that long after start.
pub const STALE_POLL_INTERVALS: u32 = 3;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthState {
    /// When this daemon started watching (ms); `None` for a record built by hand (tests, a
    /// state nobody started), which [`verdict`] treats as "not known yet".
    pub started_ms: Option<i64>,
    pub last_poll_ok_ms: Option<i64>,
    pub consecutive_poll_failures: u32,
    pub last_poll_error: Option<String>,
    /// `published` of the newest event applied (ms).
    pub newest_event_ms: Option<i64>,
    /// Whether the last failure was an authentication problem (token rejected, scope missing).
    pub auth_failing: bool,
    pub last_scan_ok_ms: Option<i64>,
    /// Why the System Log cursor cannot move on although polls succeed (a `next` link cycle, a
    /// page that cannot be split), for the daemon-health alert; `None` when it moves.
    pub log_trouble: Option<String>,
    /// Since when [`HealthState::log_trouble`] holds (ms).
    pub log_trouble_since_ms: Option<i64>,
    /// Event hook trouble (`crate::hooks::health`): deliveries Okta logged as failed, or
    /// eligible events the poller read that never came by hook. `None` without `[hooks]`.
    pub hook_trouble: Option<HookTrouble>,
    /// When the receiver last stored a delivery (ms).
    pub last_hook_delivery_ms: Option<i64>,
}

/// Why event hook deliveries are judged broken, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookTrouble {
    pub since_ms: i64,
    /// The newest evidence (ms); a delivery received after it clears the trouble.
    pub last_evidence_ms: i64,
    pub reason: String,
}

/// Why polling is judged unhealthy; also the daemon-health alert's fingerprint, so a change of
/// cause re-notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Okta rejects the credentials (401/403 on the last poll).
    Auth,
    /// Polls fail: Okta unreachable, 5xx, timeouts.
    Failing,
    /// No poll failed, but none succeeded either: polls wait (rate limit, slow Okta) or hang.
    Stalled,
    /// Polling works, but Okta's event hook deliveries do not arrive (detection is back to
    /// poll speed).
    HookDelivery,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Auth => "auth",
            Cause::Failing => "unreachable",
            Cause::Stalled => "stalled",
            Cause::HookDelivery => "hook_delivery",
        }
    }
}

/// What [`verdict`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A poll succeeded within the expected interval.
    Healthy,
    /// Too early to judge: started less than the staleness window ago and nothing succeeded
    /// yet, or the start time is unknown (in-memory health is empty after a restart).
    Unknown,
    Unhealthy {
        cause: Cause,
        /// Since when nothing succeeded (the last good poll, or the start), ms.
        since_ms: i64,
        /// In words an operator can act on.
        reason: String,
    },
}

impl Verdict {
    pub fn is_unhealthy(&self) -> bool {
        matches!(self, Verdict::Unhealthy { .. })
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn round_secs(ms: i64) -> Duration {
    Duration::from_secs(u64::try_from(ms.max(0) / 1000).unwrap_or(0))
}

/// The health rule. `started_ms` is when the daemon started watching (`None`: unknown).
pub fn verdict(
    h: &HealthState,
    poll_interval: Duration,
    started_ms: Option<i64>,
    now_ms: i64,
) -> Verdict {
    let stale_after = duration_ms(poll_interval).saturating_mul(i64::from(STALE_POLL_INTERVALS));
    let (since, what) = match (h.last_poll_ok_ms, started_ms) {
        (Some(ok), _) => (ok, "last successful System Log poll was"),
        // A fresh daemon has not polled yet; judging it before one full window would make
        // every restart flap.
        (None, Some(start)) => (start, "no successful System Log poll since start,"),
        (None, None) => return Verdict::Unknown,
    };
    let age = now_ms.saturating_sub(since);
    if age < stale_after {
        if let Some(t) = &h.hook_trouble {
            // Polling trouble takes precedence (it names the bigger problem); with polling
            // fine, broken hook deliveries are the daemon's health problem to report.
            return Verdict::Unhealthy {
                cause: Cause::HookDelivery,
                since_ms: t.since_ms,
                reason: format!(
                    "{}; failures are still found by polling, at poll speed",
                    t.reason
                ),
            };
        }
        return if h.last_poll_ok_ms.is_some() {
            Verdict::Healthy
        } else {
            Verdict::Unknown
        };
    }
    let cause = if h.consecutive_poll_failures == 0 {
        Cause::Stalled
    } else if h.auth_failing {
        Cause::Auth
    } else {
        Cause::Failing
    };
    let mut reason = format!(
        "{what} {} ago (more than {STALE_POLL_INTERVALS} poll intervals of {})",
        humantime::format_duration(round_secs(age)),
        humantime::format_duration(poll_interval),
    );
    match cause {
        Cause::Stalled => reason.push_str(
            "; no poll failed, they are waiting: Okta is slow or rate limiting (see provwatch_org_rate_limit_events_total)",
        ),
        Cause::Auth => reason.push_str(&format!(
            "; {} consecutive polls failed (Okta rejected the credentials)",
            h.consecutive_poll_failures
        )),
        Cause::Failing => reason.push_str(&format!(
            "; {} consecutive polls failed",
            h.consecutive_poll_failures
        )),
        Cause::HookDelivery => {}
    }
    if let Some(e) = h
        .last_poll_error
        .as_deref()
        .filter(|_| cause != Cause::Stalled)
    {
        reason.push_str("; last error: ");
        reason.push_str(e);
    }
    Verdict::Unhealthy {
        cause,
        since_ms: since,
        reason,
    }
}

#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Mutex<HealthState>>,
    clock: Clock,
}

impl Health {
    /// Starts the record; its creation time is the start [`verdict`] counts from.
    pub fn new(clock: Clock) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HealthState {
                started_ms: Some(clock.now_ms()),
                ..HealthState::default()
            })),
            clock,
        }
    }

    pub fn snapshot(&self) -> HealthState {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, f: impl FnOnce(&mut HealthState)) {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn poll_ok(&self, newest_event_ms: Option<i64>) {
        let now = self.clock.now_ms();
        self.update(|h| {
            h.last_poll_ok_ms = Some(now);
            h.consecutive_poll_failures = 0;
            h.last_poll_error = None;
            h.auth_failing = false;
            if let Some(n) = newest_event_ms {
                h.newest_event_ms = Some(h.newest_event_ms.map_or(n, |o| o.max(n)));
            }
        });
    }

    /// The cursor is stuck for `why` (see [`HealthState::log_trouble`]).
    pub fn log_trouble(&self, why: String) {
        let now = self.clock.now_ms();
        self.update(|h| {
            h.log_trouble_since_ms.get_or_insert(now);
            h.log_trouble = Some(why);
        });
    }

    /// The cursor moved on again.
    pub fn log_ok(&self) {
        self.update(|h| {
            h.log_trouble = None;
            h.log_trouble_since_ms = None;
        });
    }

    pub fn poll_failed(&self, error: String, auth: bool) {
        self.update(|h| {
            h.consecutive_poll_failures += 1;
            h.last_poll_error = Some(error);
            h.auth_failing = auth;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_secs(10);

    #[test]
    fn starting_daemon_gets_one_window_then_is_judged() {
        let h = HealthState::default();
        assert_eq!(verdict(&h, POLL, Some(0), 29_999), Verdict::Unknown);
        let v = verdict(&h, POLL, Some(0), 30_000);
        assert!(v.is_unhealthy(), "{v:?}");
        // Unknown start (empty record after a restart): never unhealthy on its own.
        assert_eq!(verdict(&h, POLL, None, 1_000_000), Verdict::Unknown);
    }

    #[test]
    fn age_of_last_success_decides_whatever_the_failure_count() {
        let mut h = HealthState {
            last_poll_ok_ms: Some(100_000),
            ..HealthState::default()
        };
        assert_eq!(verdict(&h, POLL, Some(0), 129_999), Verdict::Healthy);
        // Polls that wait (429 storm, slow Okta) never fail, yet nothing is detected.
        match verdict(&h, POLL, Some(0), 130_000) {
            Verdict::Unhealthy {
                cause,
                since_ms,
                reason,
            } => {
                assert_eq!(cause, Cause::Stalled);
                assert_eq!(since_ms, 100_000);
                assert!(reason.contains("30s ago"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
        // Failed polls do not make it unhealthy before the window is over...
        h.consecutive_poll_failures = 5;
        h.auth_failing = true;
        h.last_poll_error = Some("Okta returned 401".into());
        assert_eq!(verdict(&h, POLL, Some(0), 110_000), Verdict::Healthy);
        // ...and name the cause once it is.
        match verdict(&h, POLL, Some(0), 140_000) {
            Verdict::Unhealthy { cause, reason, .. } => {
                assert_eq!(cause, Cause::Auth);
                assert!(
                    reason.contains("401") && reason.contains("5 consecutive"),
                    "{reason}"
                );
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn huge_intervals_do_not_overflow() {
        let h = HealthState {
            last_poll_ok_ms: Some(0),
            ..HealthState::default()
        };
        assert_eq!(
            verdict(&h, Duration::from_secs(u64::MAX), Some(0), 1_000_000_000),
            Verdict::Healthy
        );
    }
}
