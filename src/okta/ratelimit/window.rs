//! The window arithmetic of one bucket: what was sent in the current and the last 60 s, how
//! far into its window a bucket is, and the budget, ceiling and floor per window.

use super::*;

/// One request waiting for a bucket.
#[derive(Clone, Copy, Debug)]
pub(super) struct Waiter {
    pub(super) id: u64,
    pub(super) class: Class,
}

#[derive(Debug)]
pub(super) struct BucketState {
    pub(super) limit: Option<u32>,
    /// Our estimate of what is left in the current window for the whole org.
    pub(super) remaining: Option<u32>,
    pub(super) window_ends: Option<Instant>,
    /// `window_ends` is our guess (no response has told us the real reset yet).
    pub(super) window_assumed: bool,
    /// Requests this daemon sent in the current window.
    pub(super) used: u32,
    /// The same, per priority tier (for the floor and the ceiling).
    pub(super) used_by_tier: [u32; TIERS],
    /// When each request of the last [`ASSUMED_WINDOW`] was sent. The hard guarantee: never
    /// more than the budget in any 60 s, whatever the headers say (a window that "resets"
    /// every second, a limit that changes with every answer).
    pub(super) recent: VecDeque<Instant>,
    pub(super) blocked_until: Option<Instant>,
    pub(super) pacer: Option<Arc<Pacer>>,
    /// A request is out to a bucket whose limit we do not know yet: wait for its answer.
    pub(super) probing: bool,
    /// Requests waiting in [`RateBudget::acquire`], in arrival order.
    pub(super) waiters: Vec<Waiter>,
}

/// Okta's windows are about a minute long: the longest a window we have not been told about
/// can last.
pub(super) const ASSUMED_WINDOW: Duration = Duration::from_secs(60);

/// How long a request that another one is ahead of waits before looking again if it is not
/// woken (the one ahead normally wakes it when it takes its call or gives up).
pub(super) const BEHIND_RECHECK: Duration = Duration::from_secs(1);

impl BucketState {
    /// Counts one request in the current window. Without a known window (no response with
    /// rate-limit headers yet, or the last one ended) one is assumed to start now, so that
    /// `used` is reset some time even if Okta never sends `X-Rate-Limit-*`.
    pub(super) fn count_one(&mut self, now: Instant, class: Class) {
        if self.window_ends.is_none() {
            self.window_ends = Some(now + ASSUMED_WINDOW);
            self.window_assumed = true;
        }
        self.used += 1;
        self.used_by_tier[class.tier()] += 1;
        self.recent.push_back(now);
    }

    /// Requests sent in the 60 s up to `now`, after forgetting older ones.
    pub(super) fn sent_in_last_window(&mut self, now: Instant) -> usize {
        while self
            .recent
            .front()
            .is_some_and(|t| *t + ASSUMED_WINDOW <= now)
        {
            self.recent.pop_front();
        }
        self.recent.len()
    }

    pub(super) fn new() -> Self {
        Self {
            limit: None,
            remaining: None,
            window_ends: None,
            window_assumed: false,
            used: 0,
            used_by_tier: [0; TIERS],
            recent: VecDeque::new(),
            blocked_until: None,
            pacer: None,
            probing: false,
            waiters: Vec::new(),
        }
    }

    pub(super) fn forget(&mut self, id: u64) {
        self.waiters.retain(|w| w.id != id);
    }

    /// How far into the current window we are, as a fraction (0 without a known window).
    pub(super) fn window_elapsed(&self, now: Instant) -> f64 {
        match self.window_ends {
            Some(end) if end > now => {
                let left = (end - now).min(ASSUMED_WINDOW);
                1.0 - left.as_secs_f64() / ASSUMED_WINDOW.as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// Our budget of a bucket per window: `share` of its limit, at least one request.
pub fn budget_for(limit: u32, share: f64) -> u32 {
    ((limit as f64 * share).floor() as u32).max(1)
}

/// The background classes' ceiling per window: `background_share` of our budget, at least one.
pub fn ceiling_for(budget: u32, background_share: f64) -> u32 {
    ((budget as f64 * background_share).floor() as u32).max(1)
}

/// The floor per window of each class below the top: [`FLOOR_SHARE`] of our budget, at least
/// one.
pub fn floor_for(budget: u32) -> u32 {
    ((budget as f64 * FLOOR_SHARE).ceil() as u32).max(1)
}

pub(super) fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis(rand::rng().random_range(0..=max_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_share_of_limit() {
        assert_eq!(budget_for(60, 0.5), 30);
        assert_eq!(budget_for(100, 0.25), 25);
        assert_eq!(budget_for(1, 0.1), 1);
    }
}
