//! Logging set-up (journald-friendly text on stderr, or JSON) and the metric families the
//! daemon exports.

use crate::config::LogFormat;
use crate::metrics::{Kind, Metrics};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` overrides `level` when set.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, never in files or the journal.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // journald stamps every line itself; a second timestamp is noise there.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.without_time().try_init(),
        (LogFormat::Text, false) => builder.try_init(),
    };
}

pub fn describe_metrics(m: &Metrics) {
    use Kind::*;
    for (name, kind, help) in [
        (
            "okta_requests_total",
            Counter,
            "Okta API requests by rate-limit bucket and HTTP status.",
        ),
        (
            "okta_rate_limit_remaining",
            Gauge,
            "X-Rate-Limit-Remaining last seen per bucket.",
        ),
        (
            "okta_rate_limit_limit",
            Gauge,
            "X-Rate-Limit-Limit last seen per bucket.",
        ),
        (
            "provwatch_open_failures",
            Gauge,
            "Unresolved provisioning failures by app and operation.",
        ),
        (
            "provwatch_log_events_total",
            Counter,
            "System Log events read, by outcome of classification.",
        ),
        (
            "provwatch_poll_lag_seconds",
            Gauge,
            "Now minus the published time of the newest event applied.",
        ),
        (
            "provwatch_last_poll_success_timestamp_seconds",
            Gauge,
            "When the System Log was last polled successfully.",
        ),
        ("provwatch_retries_total", Counter, "Retries by result."),
        (
            "provwatch_alerts_total",
            Counter,
            "Alert deliveries by channel and result.",
        ),
    ] {
        m.describe(name, kind, help);
    }
}
