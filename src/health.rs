//! Liveness of the daemon's view of Okta: when polling last succeeded, how many polls in a row
//! failed, and how far behind the newest event is. Read by `/healthz`, `/metrics` and the
//! daemon-health alerts.

use crate::clock::Clock;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct HealthState {
    pub last_poll_ok_ms: Option<i64>,
    pub consecutive_poll_failures: u32,
    pub last_poll_error: Option<String>,
    /// `published` of the newest event applied (ms).
    pub newest_event_ms: Option<i64>,
    /// Whether the last failure was an authentication problem (token rejected, scope missing).
    pub auth_failing: bool,
    pub last_scan_ok_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Mutex<HealthState>>,
    clock: Clock,
}

impl Health {
    pub fn new(clock: Clock) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HealthState::default())),
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

    pub fn poll_failed(&self, error: String, auth: bool) {
        self.update(|h| {
            h.consecutive_poll_failures += 1;
            h.last_poll_error = Some(error);
            h.auth_failing = auth;
        });
    }
}
