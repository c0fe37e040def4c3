//! The aggregation group, after Alertmanager's `dispatch/group.go`: the knobs a group runs on
//! ([`Settings`]), what one evaluation decided ([`Outcome`]), the identity of a group's
//! failure set ([`fingerprint`]) and writing a group back only when it changed
//! ([`save_if_changed`]). The rows themselves live in `store::alert_groups`; the decisions in
//! [`super::evaluator`] (app groups) and [`super::health_alerts`] (the daemon-health group).

use super::outbox;
use crate::config::Config;
use crate::store::alert_groups::{self, AlertGroup};
use crate::store::failures::Failure;
use crate::store::{StoreError, Tx};
use std::time::Duration;

/// The daemon-health group's key (see [`super::health_alerts`]).
pub const HEALTH_GROUP_KEY: &str = "daemon:health";

pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The alerting knobs the evaluator runs on, detached from [`Config`] so tests can drive it.
#[derive(Clone, Debug)]
pub struct Settings {
    pub persist_after_ms: i64,
    pub repeat_interval_ms: i64,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub send_resolved: bool,
    /// Outbox channels to write rows for (see [`outbox::channels`]).
    pub channels: Vec<&'static str>,
    /// Okta admin console base (`https://acme-admin.okta.com`), for links: `okta.admin_url`,
    /// else derived on Okta's hosts; `None` when neither says where the console is.
    pub admin_base: Option<String>,
    /// The System Log poll interval, which scales the daemon-health threshold.
    pub poll_interval_ms: i64,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            persist_after_ms: ms(cfg.alert.persist_after),
            repeat_interval_ms: ms(cfg.alert.repeat_interval),
            group_wait_ms: ms(cfg.alert.group_wait),
            group_interval_ms: ms(cfg.alert.group_interval),
            send_resolved: cfg.alert.send_resolved,
            channels: outbox::channels(cfg),
            admin_base: cfg.okta.admin_console(),
            poll_interval_ms: ms(cfg.detect.poll_interval),
        }
    }
}

/// `https://acme-admin.okta.com` for `https://acme.okta.com/`; `None` for hosts that are not
/// Okta's (custom domains need `okta.admin_url`; see [`crate::config::admin`]).
pub fn admin_base(org: &url::Url) -> Option<String> {
    crate::config::admin::derive(org).map(|u| u.as_str().trim_end_matches('/').to_string())
}

/// What one evaluation decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Groups that sent a firing (or health) notification.
    pub firing: Vec<String>,
    /// Groups that sent a resolved notification.
    pub resolved: Vec<String>,
    /// Groups with something to say that a silence muted.
    pub silenced: Vec<String>,
    /// Outbox rows written.
    pub rows: usize,
}

impl Outcome {
    pub fn is_empty(&self) -> bool {
        self.firing.is_empty() && self.resolved.is_empty() && self.rows == 0
    }
}

/// Identity of a group's failure set. Only what should re-notify counts: the failure ids and
/// whether retries gave up. The open/retrying/alerted states flip with every retry claim and
/// with our own `alerted` mark, and would re-send the same message each time.
pub fn fingerprint(set: &[&Failure]) -> String {
    let mut keys: Vec<(i64, bool)> = set.iter().map(|f| (f.id, f.retry_exhausted)).collect();
    keys.sort_unstable();
    // FNV-1a: stable across builds and processes (the value is stored).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, exhausted) in keys {
        for b in id.to_le_bytes().into_iter().chain([u8::from(exhausted)]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Writes the group back only when the evaluation changed it.
pub fn save_if_changed(tx: &Tx<'_>, g: &AlertGroup, before: &AlertGroup) -> Result<(), StoreError> {
    if g != before {
        alert_groups::put(tx, g)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_console_host() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        assert_eq!(
            admin_base(&u("https://acme.okta.com/")).as_deref(),
            Some("https://acme-admin.okta.com")
        );
        assert_eq!(admin_base(&u("http://127.0.0.1:8080/")), None);
        assert_eq!(admin_base(&u("https://login.acme.com/")), None);
    }
}
