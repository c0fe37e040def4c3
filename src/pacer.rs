//! A `governor` rate limiter driven by tokio's clock.
//!
//! governor's own async waiting uses its quanta clock and futures-timer, which ignore
//! `tokio::time::pause`; waiting through tokio instead keeps every pace in the daemon
//! (Okta buckets, `retry.per_minute`) testable with paused time and identical in production.

use governor::clock::Clock as GovClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// governor clock reading tokio's (pausable) monotonic clock.
#[derive(Clone, Debug)]
pub struct TokioClock {
    base: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self {
            base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl GovClock for TokioClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(tokio::time::Instant::now().saturating_duration_since(self.base))
    }
}

type Inner = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// Paces events to `per_period` per `period`, allowing bursts of at most `burst`.
pub struct Pacer {
    limiter: Inner,
    clock: TokioClock,
    per_period: u32,
    period: Duration,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("per_period", &self.per_period)
            .field("period", &self.period)
            .finish()
    }
}

impl Pacer {
    /// `per_period` cells per `period`, replenished evenly; `burst` cells may be taken at once.
    pub fn new(per_period: u32, period: Duration, burst: u32) -> Self {
        let per_period = per_period.max(1);
        let cell = period / per_period;
        let quota = Quota::with_period(cell.max(Duration::from_nanos(1)))
            .expect("non-zero period")
            .allow_burst(NonZeroU32::new(burst.clamp(1, per_period)).expect("burst >= 1"));
        let clock = TokioClock::new();
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            per_period,
            period,
        }
    }

    /// `n` per minute with no burst beyond a single event: the strictest even spacing.
    pub fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60), 1)
    }

    pub fn per_period(&self) -> u32 {
        self.per_period
    }

    /// How long until a cell is free, taking it when it is free now.
    pub fn try_take(&self) -> Result<(), Duration> {
        match self.limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(wait.max(Duration::from_millis(1)))
            }
        }
    }

    /// Waits (on tokio's clock) until a cell is free and takes it.
    pub async fn take(&self) {
        while let Err(wait) = self.try_take() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_evenly_in_paused_time() {
        let p = Pacer::per_minute(20);
        let start = tokio::time::Instant::now();
        for _ in 0..21 {
            p.take().await;
        }
        // 21 takes at 3 s spacing: the first is free, the 21st at 60 s.
        let el = start.elapsed();
        assert!(el >= Duration::from_secs(60), "{el:?}");
        assert!(el < Duration::from_secs(61), "{el:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_then_spacing() {
        let p = Pacer::new(30, Duration::from_secs(60), 5);
        for _ in 0..5 {
            assert!(p.try_take().is_ok());
        }
        let wait = p.try_take().unwrap_err();
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_millis(1500),
            "{wait:?}"
        );
    }
}
