//! Failure-type classes: the one table that maps what Okta reported about a failed push (its
//! error text, the event's `legacyEventType`, the HTTP status the app answered) to how the
//! retry worker treats it. Everything that decides "retry, watch, wait for a fix, or pause
//! the app" reads [`classify`]; nothing else matches on reason texts for that purpose.
//!
//! | Class | Retry behaviour |
//! |---|---|
//! | [`Class::AppThrottled`] | the app answered 429: Okta retries the push itself (it honours `Retry-After`); watch, do not re-push |
//! | [`Class::Data`] | the app rejected the data: no blind retries; one retry after the user's profile changes (`user.account.update_profile`); a person is told what to fix |
//! | [`Class::AppWide`] | the app's credentials or connection: one app-wide failure, the app's retries paused until a probe succeeds |
//! | [`Class::Transient`] | 5xx, timeouts, "temporarily unavailable", or nothing recognised: backoff |

/// How the retry worker treats a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    AppThrottled,
    Data,
    AppWide(AppWideCause),
    Transient,
}

/// Which part of an app's integration is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppWideCause {
    /// The app rejected the integration's credentials.
    Credentials,
    /// The app's server cannot be reached.
    Connection,
}

/// One row of the table: a class and the lower-case fragments that select it. The first
/// matching row wins, so more specific rows come first (a "429 Too Many Requests" is
/// throttling, not a 4xx data error; "temporarily unavailable" is transient, not the
/// "unavailable" of a dead server).
pub struct Row {
    pub class: Class,
    pub needles: &'static [&'static str],
}

/// The table. Fragments are matched against the lower-cased reason text and the event's
/// `legacyEventType`.
pub const TABLE: &[Row] = &[
    Row {
        class: Class::AppThrottled,
        needles: &[
            "429",
            "too many requests",
            "rate limit",
            "rate-limit",
            "ratelimit",
            "throttl",
        ],
    },
    Row {
        class: Class::Transient,
        needles: &[
            "temporarily unavailable",
            "try again later",
            "internal server error",
            "500",
        ],
    },
    Row {
        class: Class::AppWide(AppWideCause::Credentials),
        needles: &[
            "authentication failed",
            "401",
            "unauthorized",
            "credentials",
            "forbidden",
            "403",
            "invalid token",
            "api token",
            "authentication_failure",
        ],
    },
    Row {
        class: Class::AppWide(AppWideCause::Connection),
        needles: &[
            "unable to connect",
            "could not connect",
            "connection refused",
            "remote server is down",
            "name or service not known",
            "no route to host",
            "certificate",
            "ssl",
            "tls handshake",
        ],
    },
    Row {
        class: Class::Data,
        needles: &[
            "is required",
            "invalid",
            "already exists",
            "not found",
            "bad request",
            "uniqueness",
            "conflict",
            "409",
            "400",
        ],
    },
    Row {
        class: Class::Transient,
        needles: &[
            "timed out",
            "timeout",
            "service unavailable",
            "bad gateway",
            "gateway",
            "502",
            "503",
            "504",
            "5xx",
        ],
    },
];

/// The class of a failure from its reason text and the event's `legacyEventType` (either may
/// be missing). Nothing recognised is [`Class::Transient`]: backing off is the safe default.
pub fn classify(reason: Option<&str>, legacy_event_type: Option<&str>) -> Class {
    let text = format!(
        "{} {}",
        reason.unwrap_or_default(),
        legacy_event_type.unwrap_or_default()
    )
    .to_ascii_lowercase();
    TABLE
        .iter()
        .find(|row| row.needles.iter().any(|n| text.contains(n)))
        .map_or(Class::Transient, |row| row.class)
}

impl Class {
    /// Short label for logs, history and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::AppThrottled => "app_throttled",
            Class::Data => "data",
            Class::AppWide(AppWideCause::Credentials) => "app_credentials",
            Class::AppWide(AppWideCause::Connection) => "app_connection",
            Class::Transient => "transient",
        }
    }

    /// Whether a push of the same data may work without anyone changing anything.
    pub fn retried_blindly(&self) -> bool {
        matches!(self, Class::Transient)
    }

    /// What a person should do, for history rows and alerts; `None` when retries handle it.
    pub fn what_to_fix(&self) -> Option<&'static str> {
        match self {
            Class::Data => Some(
                "the app rejected the user's data: correct the attribute the reason names in the \
                 user's Okta profile (or the app's attribute mappings); the change is retried once \
                 automatically",
            ),
            Class::AppWide(AppWideCause::Credentials) => Some(
                "update the integration's credentials in the app's Provisioning settings; the \
                 app's retries resume when a probe succeeds",
            ),
            Class::AppWide(AppWideCause::Connection) => Some(
                "check that the app's server is reachable from Okta; the app's retries resume \
                 when a probe succeeds",
            ),
            Class::AppThrottled | Class::Transient => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_okta_and_apps_send_map_to_their_class() {
        let cases: &[(&str, Class)] = &[
            (
                "Errors reported by remote server: HTTP 429 Too Many Requests",
                Class::AppThrottled,
            ),
            ("Rate limit exceeded, retry after 30 seconds", Class::AppThrottled),
            (
                "Bad Request. Errors reported by remote server: department is required",
                Class::Data,
            ),
            ("Invalid value for attribute title", Class::Data),
            ("User with userName ada@example.com already exists", Class::Data),
            ("Manager not found", Class::Data),
            (
                "Authentication failed: the remote server rejected the configured credentials (401 Unauthorized).",
                Class::AppWide(AppWideCause::Credentials),
            ),
            (
                "Unable to connect to the remote server.",
                Class::AppWide(AppWideCause::Connection),
            ),
            ("Connection refused", Class::AppWide(AppWideCause::Connection)),
            ("Service temporarily unavailable", Class::Transient),
            ("503 Service Unavailable", Class::Transient),
            ("The operation timed out", Class::Transient),
            ("Internal Server Error", Class::Transient),
            ("something nobody has seen before", Class::Transient),
        ];
        for (text, want) in cases {
            assert_eq!(classify(Some(text), None), *want, "{text}");
        }
        assert_eq!(classify(None, None), Class::Transient);
    }

    #[test]
    fn the_legacy_event_type_counts_too() {
        assert_eq!(
            classify(
                None,
                Some("app.user_management.push_new_user_failed.authentication_failure")
            ),
            Class::AppWide(AppWideCause::Credentials)
        );
        // The reason wins where it is more specific than the legacy type's row order says.
        assert_eq!(
            classify(
                Some("HTTP 429"),
                Some("app.user_management.push_profile_failure")
            ),
            Class::AppThrottled
        );
    }

    #[test]
    fn throttling_is_not_mistaken_for_a_data_error_nor_unavailable_for_down() {
        // "429" would also match nothing else, but "Bad Request ... rate limit" must be throttling.
        assert_eq!(
            classify(Some("Bad Request: rate limit reached"), None),
            Class::AppThrottled
        );
        assert_eq!(
            classify(Some("temporarily unavailable: unable to connect"), None),
            Class::Transient
        );
    }

    #[test]
    fn only_transient_failures_are_retried_blindly_and_the_rest_say_what_to_fix() {
        assert!(Class::Transient.retried_blindly());
        for c in [
            Class::AppThrottled,
            Class::Data,
            Class::AppWide(AppWideCause::Credentials),
            Class::AppWide(AppWideCause::Connection),
        ] {
            assert!(!c.retried_blindly(), "{c:?}");
        }
        assert!(Class::Data.what_to_fix().is_some());
        assert!(Class::AppWide(AppWideCause::Connection)
            .what_to_fix()
            .is_some());
        assert!(Class::AppThrottled.what_to_fix().is_none());
    }
}
