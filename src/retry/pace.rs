//! How fast retries can go: the worker's concurrency and waits sized from `retry.per_minute`
//! and the Okta apps budget, and the check that `per_minute` fits the budget at all.
//!
//! Every retry spends apps-bucket calls (Okta's `/api/v1/apps*` bucket, 100 a minute on
//! standard orgs, shared by assignment scans, app-user reads and the retry `POST`): one read
//! of the app user and the `POST` ([`CALLS_PER_RETRY`]); the outcome comes from the System Log
//! the poller reads anyway, and a third call (a read-back) is made only when the log stays
//! silent past the confirmation bound. So the daemon's share of that bucket carries at most
//! `floor(100 * okta.rate_limit_share) / 2` retries a minute.

use crate::config::Config;
use crate::okta::ratelimit::budget_for;
use std::time::Duration;

/// Okta's published per-minute limit of the `/api/v1/apps*` bucket on a standard org (the
/// client learns the real one from `X-Rate-Limit-Limit`; this is for checks made before any
/// call).
pub const APPS_BUCKET_PER_MINUTE: u32 = 100;

/// Apps-bucket calls a retry costs when the System Log confirms its outcome: read + `POST`.
pub const CALLS_PER_RETRY: u32 = 2;

/// How long one retry's Okta calls typically take, including a short wait for the budget;
/// with the rate it sizes how many retries run at once (Little's law).
pub const TYPICAL_RETRY: Duration = Duration::from_secs(3);

/// Most retries in flight at once whatever the rate: each holds a claim, an Okta in-flight
/// slot while it sends and a little memory.
pub const MAX_CONCURRENCY: usize = 64;

/// Retries a minute the daemon's share of an apps bucket of `apps_limit` calls a minute can
/// carry.
pub fn carried_per_minute(apps_limit: u32, share: f64) -> u32 {
    (budget_for(apps_limit, share) / CALLS_PER_RETRY).max(1)
}

/// The rate retries actually start at: `per_minute`, or less when the budget cannot carry it.
pub fn effective_per_minute(per_minute: u32, apps_limit: u32, share: f64) -> u32 {
    per_minute.max(1).min(carried_per_minute(apps_limit, share))
}

/// Retries in flight needed to start `per_minute` a minute when each takes about
/// [`TYPICAL_RETRY`]: `ceil(rate * duration)`, at least 2 (one slow retry must not stall the
/// rest), at most [`MAX_CONCURRENCY`].
pub fn concurrency(per_minute: u32) -> usize {
    let in_flight = (f64::from(per_minute) / 60.0 * TYPICAL_RETRY.as_secs_f64()).ceil();
    (in_flight as usize).clamp(2, MAX_CONCURRENCY)
}

/// A warning when `retry.per_minute` exceeds what the daemon's apps budget can carry, for
/// `check-config` and `doctor`; `None` when it fits.
pub fn budget_warning(config: &Config) -> Option<String> {
    let share = config.okta.rate_limit_share;
    let per_minute = config.retry.per_minute;
    let carried = carried_per_minute(APPS_BUCKET_PER_MINUTE, share);
    (config.retry.enabled && per_minute > carried).then(|| {
        format!(
            "retry.per_minute = {per_minute} exceeds what the apps budget can carry: Okta's \
             /api/v1/apps* bucket allows {APPS_BUCKET_PER_MINUTE} calls a minute on a standard \
             org, okta.rate_limit_share = {share} leaves {} of them to this daemon, and each retry \
             costs {CALLS_PER_RETRY}, so at most {carried} retries a minute (fewer while a scan \
             runs). Lower retry.per_minute to {carried} or less, or raise okta.rate_limit_share \
             if the org has room",
            budget_for(APPS_BUCKET_PER_MINUTE, share)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_carries_half_its_calls_in_retries() {
        assert_eq!(carried_per_minute(100, 0.5), 25);
        assert_eq!(carried_per_minute(100, 1.0), 50);
        assert_eq!(carried_per_minute(20, 0.5), 5);
        // Never zero: a tiny share still retries, slowly.
        assert_eq!(carried_per_minute(1, 0.01), 1);
        assert_eq!(effective_per_minute(600, 100, 0.5), 25);
        assert_eq!(effective_per_minute(10, 100, 0.5), 10);
        assert_eq!(effective_per_minute(0, 100, 0.5), 1);
    }

    #[test]
    fn concurrency_follows_the_rate() {
        assert_eq!(concurrency(1), 2);
        assert_eq!(concurrency(20), 2);
        assert_eq!(concurrency(60), 3);
        assert_eq!(concurrency(600), 30);
        assert_eq!(concurrency(100_000), MAX_CONCURRENCY);
    }
}
