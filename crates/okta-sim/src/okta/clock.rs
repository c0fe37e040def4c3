//! The simulator's clock: wall-clock time captured once at start, advanced by tokio's clock.
//!
//! Tests pause and advance tokio's clock to move rate-limit windows and event timestamps without
//! waiting, so nothing in the simulator may read `SystemTime::now()` after start.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SimClock {
    epoch: DateTime<Utc>,
    start: Instant,
}

impl SimClock {
    pub(crate) fn new() -> Self {
        // Whole milliseconds keep `published` values and the clock itself in step.
        let now = Utc::now();
        let epoch = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        SimClock {
            epoch,
            start: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        self.epoch + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }

    pub(crate) fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// RFC 3339 with milliseconds and `Z`, the way Okta writes timestamps.
pub(crate) fn okta_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// RFC 7231 IMF-fixdate for the `Date` header.
pub(crate) fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
