//! Wall-clock time for everything the daemon stores or compares with Okta's timestamps.
//!
//! Production uses the system clock. Tests that drive backoff, persistence windows and rate-limit
//! windows with `tokio::time::pause` use [`Clock::tokio`], whose wall time moves with tokio's
//! (possibly paused) clock, so that the daemon, the Okta simulator and the test agree on "now".
//!
//! The store keeps instants as Unix milliseconds (`i64`); the conversions between those,
//! `Duration`s and the one way times are shown to people live here, not in each module.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// A duration in whole milliseconds, saturating (a configured `"500000000000y"` must not
/// wrap into the past).
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds as a time; out-of-range values (never written by the daemon) become the
/// epoch rather than a panic.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// How long from `earlier_ms` to `later_ms`, zero if the clock went backwards.
pub fn between(earlier_ms: i64, later_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(later_ms.saturating_sub(earlier_ms)).unwrap_or(0))
}

/// A time as people read it in alerts and the CLI: `2026-03-01 14:05 UTC`.
pub fn minute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Like [`minute`], to the second (for lease ends and other short waits).
pub fn second(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    base: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self { base: None }
    }

    /// Wall time anchored now and advanced by tokio's clock, which a test may pause and advance.
    pub fn tokio() -> Self {
        Self {
            base: Some((Utc::now(), tokio::time::Instant::now())),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.base {
            None => Utc::now(),
            Some((wall, mono)) => {
                let elapsed = tokio::time::Instant::now().saturating_duration_since(mono);
                wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
            }
        }
    }

    /// Whether this clock follows tokio's (test) clock rather than the system's.
    pub fn is_virtual(&self) -> bool {
        self.base.is_some()
    }

    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_saturate_instead_of_wrapping() {
        assert_eq!(ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ms(Duration::MAX), i64::MAX);
        assert_eq!(from_ms(i64::MAX), DateTime::<Utc>::default());
        assert_eq!(between(5_000, 2_000), Duration::ZERO);
        assert_eq!(between(2_000, 5_500), Duration::from_millis(3_500));
        let t = from_ms(1_772_373_900_000);
        assert_eq!(minute(t), "2026-03-01 14:05 UTC");
        assert_eq!(second(t), "2026-03-01 14:05:00 UTC");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = Clock::tokio();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let d = c.now() - t0;
        assert_eq!(d.num_seconds(), 3600);
    }
}
