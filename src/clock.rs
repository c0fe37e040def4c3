//! Wall-clock time for everything the daemon stores or compares with Okta's timestamps.
//!
//! Production uses the system clock. Tests that drive backoff, persistence windows and rate-limit
//! windows with `tokio::time::pause` use [`Clock::tokio`], whose wall time moves with tokio's
//! (possibly paused) clock, so that the daemon, the Okta simulator and the test agree on "now".

use chrono::{DateTime, Utc};

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
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = Clock::tokio();
        let t0 = c.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        let d = c.now() - t0;
        assert_eq!(d.num_seconds(), 3600);
    }
}
