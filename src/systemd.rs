//! The daemon's side of the systemd service protocol (`Type=notify`): `READY=1` once the
//! daemon has proved it can do its job, `WATCHDOG=1` pings, `RELOADING=1` around a SIGHUP
//! reload and `STOPPING=1` on shutdown, each with a one-line `STATUS=` that `systemctl status`
//! shows.
//!
//! Every function is a no-op outside systemd (`NOTIFY_SOCKET` unset), so the same binary runs
//! unchanged in a terminal, in tests and in the demo. Errors writing to the socket are logged,
//! never fatal: losing a notification must not take monitoring down with it.

use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState<'_>]) {
    // sd-notify leaves NOTIFY_SOCKET set: the daemon notifies for its whole life, not just once.
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Start-up finished: config loaded, store open, Okta answered.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A free-form status line for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A SIGHUP reload has begun; [`ready`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        // MONOTONIC_USEC lets `Type=notify-reload` (systemd >= 253) match this message to the
        // signal it sent; older systemd ignores the extra field.
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading"),
        ]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
    }
}

/// Shutdown has begun; systemd then waits up to `TimeoutStopSec=` instead of assuming a hang.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// One watchdog keep-alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog, if `WatchdogSec=` is set for this process: half the
/// interval, as sd_watchdog_enabled(3) recommends, so that one late tick is not fatal.
pub fn watchdog_interval() -> Option<Duration> {
    // sd-notify leaves WATCHDOG_USEC set: anything that checks it again (a reload) still sees it.
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(half)
}

fn half(d: Duration) -> Duration {
    (d / 2).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_watchdog_interval() {
        assert_eq!(half(Duration::from_secs(60)), Duration::from_secs(30));
        // A tiny WatchdogSec= must not turn into a busy loop.
        assert_eq!(half(Duration::from_micros(10)), Duration::from_millis(100));
    }

    #[test]
    fn notifications_are_harmless_outside_systemd() {
        // NOTIFY_SOCKET is not set under `cargo test`; none of these may panic or block.
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            ready("test");
            status("test");
            reloading();
            watchdog();
            stopping();
        }
    }
}
