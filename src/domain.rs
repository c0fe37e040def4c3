//! The vocabulary every layer speaks: what a provisioning failure is ([`Failure`]), what was
//! seen about one ([`Observation`]), which operation failed ([`Operation`]) and how urgent
//! that is (the urgency rule, [`Operation::is_urgent`]), where a failure stands ([`State`]),
//! and what happened to it ([`HistoryKind`], [`HistoryEntry`]).
//!
//! This module sits on the ground floor: it imports nothing of the crate, so detection, the
//! store, retries, alerting and the CLI can all depend on it without an import circle. The
//! store converts these types to and from its rows at its boundary (`as_str` / `parse`); no
//! other layer spells a state or a history kind as a string.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Create,
    Update,
    Deactivate,
    Reactivate,
    Password,
    GroupPush,
    Import,
    /// App-wide: the integration itself failed (credentials, rate limit, general failure).
    Integration,
    Other,
    /// App-wide: an admin turned "Deactivate Users" (or provisioning as a whole) off on a
    /// watched app, so Okta silently stops deprovisioning anybody there (issue 13).
    DeprovisioningDisabled,
    /// A check of a deprovisioning against the app's own SCIM API could not run (401,
    /// unreachable, the app stores the user name differently): nothing is known either way,
    /// which is never reported as "still active".
    Verification,
}

impl Operation {
    pub const ALL: [Operation; 11] = [
        Operation::Create,
        Operation::Update,
        Operation::Deactivate,
        Operation::Reactivate,
        Operation::Password,
        Operation::GroupPush,
        Operation::Import,
        Operation::Integration,
        Operation::Other,
        Operation::DeprovisioningDisabled,
        Operation::Verification,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Deactivate => "deactivate",
            Operation::Reactivate => "reactivate",
            Operation::Password => "password",
            Operation::GroupPush => "group_push",
            Operation::Import => "import",
            Operation::Integration => "integration",
            Operation::Other => "other",
            Operation::DeprovisioningDisabled => "deprovisioning_disabled",
            Operation::Verification => "verification",
        }
    }

    pub fn parse(s: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// A failed deprovisioning leaves a person who lost access in Okta with access in the app.
    pub fn is_deprovisioning(&self) -> bool {
        matches!(self, Operation::Deactivate)
    }

    /// Failures that go to a person at once. A switched-off deprovisioning is urgent: every
    /// departure from then on leaves an account behind. A verification that could not run is
    /// not (it says nothing about the account), but it still alerts after `persist_after`.
    pub fn is_urgent(&self) -> bool {
        matches!(
            self,
            Operation::Deactivate | Operation::Integration | Operation::DeprovisioningDisabled
        )
    }

    /// App-wide operations: the failure row has no user.
    pub fn is_app_wide(&self) -> bool {
        matches!(
            self,
            Operation::Integration | Operation::DeprovisioningDisabled
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Retrying,
    Alerted,
    Resolved,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Open => "open",
            State::Retrying => "retrying",
            State::Alerted => "alerted",
            State::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        [
            State::Open,
            State::Retrying,
            State::Alerted,
            State::Resolved,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Log,
    Scan,
}

/// One thing seen about an (app, user, operation): a failure or a success.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub app_id: String,
    pub app_label: Option<String>,
    /// Empty for app-wide failures.
    pub user_id: String,
    pub user_login: Option<String>,
    pub operation: Operation,
    pub failed: bool,
    pub reason: Option<String>,
    pub event_uuid: Option<String>,
    /// When Okta says it happened (ms); `None` for scan observations.
    pub published_ms: Option<i64>,
    pub source: Source,
}

impl Observation {
    /// A failure of `operation` for `user_id` (empty: the whole app) in `app_id`, seen in the
    /// System Log, with nothing else known; set the rest with struct update syntax.
    pub fn failure(app_id: &str, user_id: &str, operation: Operation) -> Observation {
        Observation {
            app_id: app_id.to_owned(),
            app_label: None,
            user_id: user_id.to_owned(),
            user_login: None,
            operation,
            failed: true,
            reason: None,
            event_uuid: None,
            published_ms: None,
            source: Source::Log,
        }
    }
}

/// A failure row.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Failure {
    pub id: i64,
    pub app_id: String,
    pub app_label: Option<String>,
    pub user_id: String,
    pub user_login: Option<String>,
    pub operation: Operation,
    pub state: State,
    pub urgent: bool,
    /// "log", "scan" or "both".
    pub source: &'static str,
    pub reason: Option<String>,
    pub event_uuid: Option<String>,
    pub event_published: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub attempts: u32,
    pub next_attempt_at: Option<i64>,
    pub retry_exhausted: bool,
    pub resolved_at: Option<i64>,
}

impl Failure {
    pub fn app_name(&self) -> &str {
        self.app_label.as_deref().unwrap_or(&self.app_id)
    }
    pub fn user_name(&self) -> &str {
        self.user_login.as_deref().unwrap_or(&self.user_id)
    }
    /// The one-line name of the record the CLI commands print before what they did to it:
    /// `#id app / user operation`, with `(app-wide)` for a record that has no user.
    pub fn heading(&self) -> String {
        format!(
            "#{} {} / {} {}",
            self.id,
            self.app_name(),
            if self.user_id.is_empty() {
                "(app-wide)"
            } else {
                self.user_name()
            },
            self.operation.as_str()
        )
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct HistoryEntry {
    pub at: i64,
    pub kind: HistoryKind,
    pub actor: String,
    pub detail: Option<String>,
}

/// What happened to a failure, one row of its append-only history. The wire names (`as_str`)
/// are what the store keeps and `status --json` shows; never rename one that has shipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// First seen failing.
    Detected,
    /// Failing again after it had been resolved.
    Reopened,
    /// Fixed: a success event, a scan that saw it synchronized, or a retry.
    Resolved,
    /// A person was told (the alert evaluator).
    Alerted,
    /// A retry claimed the failure.
    RetryStarted,
    /// A retry pushed the user and it worked.
    RetrySucceeded,
    /// A retry pushed the user and it failed again (counts as an attempt).
    RetryFailed,
    /// A retry could not run because Okta itself was in trouble (not counted).
    RetryDeferred,
    /// Shutdown interrupted a retry (not counted).
    RetryInterrupted,
    /// A claimer died mid-retry and its lease ran out (not counted).
    RetryLeaseExpired,
    /// No more automatic retries for this failure.
    RetriesExhausted,
    /// The probe of an open circuit failed.
    ProbeFailed,
    /// The app's circuit breaker opened because of this failure.
    CircuitOpened,
    /// A person closed the failure by hand (`okta-provwatch resolve`); the detail is their
    /// note.
    ResolvedByHand,
    /// The app's own SCIM API confirmed the account is inactive or gone.
    Verified,
    /// The app's own SCIM API still shows the account active although Okta reports it
    /// deprovisioned.
    StillActive,
    /// A check against the app's SCIM API could not run (the detail says why).
    VerificationFailed,
    /// `PATCH active=false` was sent to the app (by `remediate --yes` or automatic mode).
    Remediated,
    /// A remediation PATCH failed; it is never retried blindly.
    RemediationFailed,
    /// A retry pushed the user again; its outcome comes from the System Log (not yet counted).
    RetryPushed,
    /// The retry worker held the failure back by its class (the app throttles Okta, the app
    /// rejected the data) or released it again (the user's profile changed).
    RetryHeld,
    /// A kind this build does not know (written by a newer version); shown, never written.
    Unknown,
}

impl HistoryKind {
    pub const ALL: [HistoryKind; 22] = [
        HistoryKind::Detected,
        HistoryKind::Reopened,
        HistoryKind::Resolved,
        HistoryKind::Alerted,
        HistoryKind::RetryStarted,
        HistoryKind::RetrySucceeded,
        HistoryKind::RetryFailed,
        HistoryKind::RetryDeferred,
        HistoryKind::RetryInterrupted,
        HistoryKind::RetryLeaseExpired,
        HistoryKind::RetriesExhausted,
        HistoryKind::ProbeFailed,
        HistoryKind::CircuitOpened,
        HistoryKind::ResolvedByHand,
        HistoryKind::Verified,
        HistoryKind::StillActive,
        HistoryKind::VerificationFailed,
        HistoryKind::Remediated,
        HistoryKind::RemediationFailed,
        HistoryKind::RetryPushed,
        HistoryKind::RetryHeld,
        HistoryKind::Unknown,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            HistoryKind::Detected => "detected",
            HistoryKind::Reopened => "reopened",
            HistoryKind::Resolved => "resolved",
            HistoryKind::Alerted => "alerted",
            HistoryKind::RetryStarted => "retry_started",
            HistoryKind::RetrySucceeded => "retry_succeeded",
            HistoryKind::RetryFailed => "retry_failed",
            HistoryKind::RetryDeferred => "retry_deferred",
            HistoryKind::RetryInterrupted => "retry_interrupted",
            HistoryKind::RetryLeaseExpired => "retry_lease_expired",
            HistoryKind::RetriesExhausted => "retries_exhausted",
            HistoryKind::ProbeFailed => "probe_failed",
            HistoryKind::CircuitOpened => "circuit_opened",
            HistoryKind::ResolvedByHand => "resolved_by_hand",
            HistoryKind::Verified => "verified",
            HistoryKind::StillActive => "still_active",
            HistoryKind::VerificationFailed => "verification_failed",
            HistoryKind::Remediated => "remediated",
            HistoryKind::RemediationFailed => "remediation_failed",
            HistoryKind::RetryPushed => "retry_pushed",
            HistoryKind::RetryHeld => "retry_held",
            HistoryKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<HistoryKind> {
        HistoryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The failure (re)appeared: what a digest counts as "detected".
    pub fn is_detection(&self) -> bool {
        matches!(self, HistoryKind::Detected | HistoryKind::Reopened)
    }
}

impl std::fmt::Display for HistoryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the wire name, so reports and tests can say `kind == "resolved"`.
impl PartialEq<&str> for HistoryKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for HistoryKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for k in HistoryKind::ALL {
            assert_eq!(HistoryKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for o in Operation::ALL {
            assert_eq!(Operation::parse(o.as_str()), Some(o));
        }
        assert_eq!(HistoryKind::parse("retry-started"), None);
    }

    #[test]
    fn urgency_rule() {
        let urgent: Vec<_> = Operation::ALL
            .into_iter()
            .filter(|o| o.is_urgent())
            .collect();
        assert_eq!(
            urgent,
            [
                Operation::Deactivate,
                Operation::Integration,
                Operation::DeprovisioningDisabled
            ]
        );
        assert!(!Operation::Verification.is_urgent());
        assert!(Operation::Deactivate.is_deprovisioning());
        assert!(!Operation::Integration.is_deprovisioning());
    }
}
