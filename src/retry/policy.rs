//! Retry policy: which failures are retried automatically, how many times, how far apart, and
//! what a failure's reason says about its cause. Pure functions, no I/O, so the arithmetic is
//! unit-tested here and the worker, the circuit breaker and the `retry` command agree on it.

use super::classes::{self, AppWideCause, Class};
use crate::config::RetryConfig;
use crate::domain::{Failure, Operation};
use rand::RngExt;
use std::time::Duration;

/// Operations the retry route (re-posting the app user) can fix.
///
/// Not here: `deactivate` (once the user is unassigned there is no app user to re-post, and
/// re-posting a profile would not deprovision anyway), `integration` (app-wide: the circuit
/// breaker's business, not a per-user retry), `group_push` (the user id names no app user) and
/// `import` (data flowing into Okta, which a push does not redo).
pub const AUTO_RETRY_OPS: [Operation; 5] = [
    Operation::Create,
    Operation::Update,
    Operation::Reactivate,
    Operation::Password,
    Operation::Other,
];

/// Jitter applied to every backoff: ±20 %, so a storm of failures opened together does not
/// retry in lockstep.
pub const JITTER: f64 = 0.2;

/// Why a failure is not retried, for `retry --dry-run` and refusals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotRetryable {
    /// A failed deprovisioning: refused, with what to do instead.
    Deactivate,
    /// App-wide, no user to re-push.
    AppWide,
    /// An operation the retry route does not redo.
    Operation(Operation),
}

impl NotRetryable {
    pub fn explain(&self) -> String {
        match self {
            NotRetryable::Deactivate => "a failed deactivation cannot be retried through Okta: the user is already \
                unassigned, so there is no app user to push again, and re-posting a profile would not \
                deprovision. Remove the user's access in the app itself, then close the failure with \
                `okta-provwatch resolve --failure ID --note \"removed by hand in the app\"`; or, for an app \
                with a [[verify]] SCIM endpoint, `okta-provwatch remediate --failure ID` (dry run first, \
                then --yes) deactivates the account through the app's SCIM API"
                .to_string(),
            NotRetryable::AppWide => "an app-wide integration failure has no user to push again: fix the \
                integration (credentials, connectivity) in the app's Provisioning settings; retries of \
                its users resume when one succeeds"
                .to_string(),
            NotRetryable::Operation(op) => format!(
                "{} failures are not fixed by pushing the user again; check them in the Okta Admin Console",
                op.as_str()
            ),
        }
    }
}

/// Whether `f` is something a retry (automatic or manual) may push again.
pub fn retryable(f: &Failure) -> Result<(), NotRetryable> {
    match f.operation {
        Operation::Deactivate => Err(NotRetryable::Deactivate),
        Operation::Integration => Err(NotRetryable::AppWide),
        _ if f.user_id.is_empty() => Err(NotRetryable::AppWide),
        op if AUTO_RETRY_OPS.contains(&op) => Ok(()),
        op => Err(NotRetryable::Operation(op)),
    }
}

/// True when the reason says the app rejected the user's data (the [`Class::Data`] row of
/// [`super::classes`]), which pushing the same data again will not fix: such failures are
/// retried only after the user's profile changes, and are otherwise left for a person.
pub fn is_invalid_request(reason: Option<&str>) -> bool {
    reason.is_some() && classes::classify(reason, None) == Class::Data
}

/// How many attempts a failure gets before `retry_exhausted`.
pub fn max_attempts(cfg: &RetryConfig, reason: Option<&str>) -> u32 {
    let max = cfg.max_attempts.max(1);
    if is_invalid_request(reason) {
        max.min(1)
    } else {
        max
    }
}

/// `initial * 2^(attempts-1)`, capped at `max`, then scaled by `1 + jitter` (`jitter` in
/// [-1, 1] times [`JITTER`]) and capped again, so the cap is never exceeded. `attempts` is the
/// number of attempts made so far (1 after the first).
pub fn backoff(initial: Duration, max: Duration, attempts: u32, jitter: f64) -> Duration {
    let max = max.max(initial);
    let exp = attempts.saturating_sub(1);
    let base = if exp >= 32 {
        max
    } else {
        initial.saturating_mul(1u32 << exp).min(max)
    };
    let factor = 1.0 + jitter.clamp(-1.0, 1.0) * JITTER;
    base.mul_f64(factor).min(max)
}

/// [`backoff`] with random jitter.
pub fn backoff_jittered(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let j = rand::rng().random_range(-1.0..=1.0);
    backoff(initial, max, attempts, j)
}

/// An app-wide cause read from a failure's reason, if it names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppCause {
    /// The app's server cannot be reached.
    DownstreamDown,
    /// The app rejected the integration's credentials.
    CredentialsRejected,
}

impl AppCause {
    pub fn describe(&self) -> &'static str {
        match self {
            AppCause::DownstreamDown => "the app's server cannot be reached",
            AppCause::CredentialsRejected => "the app rejected the integration's credentials",
        }
    }
}

/// The app-wide cause a reason names ([`Class::AppWide`] in [`super::classes`]), if any.
pub fn app_cause(reason: Option<&str>) -> Option<AppCause> {
    reason?;
    match classes::classify(reason, None) {
        Class::AppWide(AppWideCause::Credentials) => Some(AppCause::CredentialsRejected),
        Class::AppWide(AppWideCause::Connection) => Some(AppCause::DownstreamDown),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_from_initial_and_caps() {
        let (i, m) = (S(60), S(3600));
        assert_eq!(backoff(i, m, 1, 0.0), S(60));
        assert_eq!(backoff(i, m, 2, 0.0), S(120));
        assert_eq!(backoff(i, m, 3, 0.0), S(240));
        assert_eq!(backoff(i, m, 6, 0.0), S(1920));
        assert_eq!(backoff(i, m, 7, 0.0), S(3600));
        assert_eq!(backoff(i, m, 40, 0.0), S(3600));
        assert_eq!(backoff(i, m, u32::MAX, 0.0), S(3600));
        // attempts = 0 is treated like the first.
        assert_eq!(backoff(i, m, 0, 0.0), S(60));
    }

    #[test]
    fn jitter_is_twenty_percent_and_never_exceeds_the_cap() {
        let (i, m) = (S(100), S(1000));
        assert_eq!(backoff(i, m, 1, 1.0), S(120));
        assert_eq!(backoff(i, m, 1, -1.0), S(80));
        assert_eq!(backoff(i, m, 2, 0.5), S(220));
        // Out-of-range jitter is clamped.
        assert_eq!(backoff(i, m, 1, 5.0), S(120));
        // At the cap jitter can only shorten.
        assert_eq!(backoff(i, m, 10, 1.0), S(1000));
        assert_eq!(backoff(i, m, 10, -1.0), S(800));
        for n in 1..12 {
            let b = backoff_jittered(i, m, n);
            let nominal = backoff(i, m, n, 0.0);
            assert!(
                b >= nominal.mul_f64(0.8) && b <= nominal.mul_f64(1.2).min(m),
                "{n}: {b:?}"
            );
        }
    }

    #[test]
    fn max_below_initial_means_initial() {
        assert_eq!(backoff(S(10), S(5), 3, 0.0), S(10));
    }

    #[test]
    fn classifies_invalid_requests() {
        for r in [
            "Bad Request. Errors reported by remote server: department is required",
            "Errors reported by remote server: Invalid value for attribute title",
            "User with userName alice@example.com already exists",
            "email is required",
        ] {
            assert!(is_invalid_request(Some(r)), "{r}");
        }
        for r in [
            "Unable to connect to the remote server.",
            "Authentication failed: the remote server rejected the configured credentials (401 Unauthorized).",
            "Internal Server Error",
        ] {
            assert!(!is_invalid_request(Some(r)), "{r}");
        }
        assert!(!is_invalid_request(None));
    }

    #[test]
    fn invalid_requests_get_one_attempt() {
        let cfg = RetryConfig {
            enabled: true,
            max_attempts: 5,
            initial_backoff: S(60),
            max_backoff: S(3600),
            per_minute: 20,
        };
        assert_eq!(max_attempts(&cfg, Some("Bad Request. x is required")), 1);
        assert_eq!(max_attempts(&cfg, Some("Unable to connect")), 5);
        assert_eq!(max_attempts(&cfg, None), 5);
    }

    #[test]
    fn reads_app_wide_causes() {
        assert_eq!(
            app_cause(Some("Unable to connect to the remote server.")),
            Some(AppCause::DownstreamDown)
        );
        assert_eq!(
            app_cause(Some(
                "Authentication failed: the remote server rejected the configured credentials (401 Unauthorized)."
            )),
            Some(AppCause::CredentialsRejected)
        );
        assert_eq!(app_cause(Some("department is required")), None);
        assert_eq!(app_cause(None), None);
    }

    fn failure(op: Operation, user: &str) -> Failure {
        Failure {
            id: 1,
            app_id: "0oa1".into(),
            app_label: None,
            user_id: user.into(),
            user_login: None,
            operation: op,
            state: crate::domain::State::Open,
            urgent: false,
            source: "log",
            reason: None,
            event_uuid: None,
            event_published: None,
            first_seen: 0,
            last_seen: 0,
            attempts: 0,
            next_attempt_at: None,
            retry_exhausted: false,
            resolved_at: None,
        }
    }

    #[test]
    fn deactivate_and_app_wide_failures_are_not_retryable() {
        assert_eq!(retryable(&failure(Operation::Create, "00u1")), Ok(()));
        assert_eq!(retryable(&failure(Operation::Update, "00u1")), Ok(()));
        assert_eq!(
            retryable(&failure(Operation::Deactivate, "00u1")),
            Err(NotRetryable::Deactivate)
        );
        assert_eq!(
            retryable(&failure(Operation::Integration, "")),
            Err(NotRetryable::AppWide)
        );
        assert_eq!(
            retryable(&failure(Operation::Update, "")),
            Err(NotRetryable::AppWide)
        );
        assert_eq!(
            retryable(&failure(Operation::Import, "00u1")),
            Err(NotRetryable::Operation(Operation::Import))
        );
    }
}
