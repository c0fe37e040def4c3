//! Alerting: deciding whom to tell about what, and telling them. The flow is one way:
//! failure rows and daemon health -> [`evaluator`] / [`health_alerts`] / [`digest`] decide,
//! [`compose`] words the channel-neutral [`message`], [`outbox`] stores it in the decision's
//! transaction, [`sender`] delivers it through the [`channels`].
//!
//! - [`group`]: the aggregation group (settings, outcome, fingerprint, save-if-changed).
//! - [`evaluator`]: app groups: persistence, group wait/interval, repeat, resolved, silences.
//! - [`health_alerts`]: the daemon-health group, on `crate::health::verdict`.
//! - [`digest`]: the scheduled digest.
//! - [`compose`]: message composition from failures and health.
//! - [`message`]: the channel-neutral message model and its plain-text form.
//! - [`outbox`]: channel list, enqueue, delivery backoff, failed deliveries.
//! - [`sender`]: the delivery loop over the outbox.
//! - [`channels`]: one file per receiver behind the `Channel` trait (Slack, email).

pub mod channels;
pub mod compose;
pub mod digest;
pub mod evaluator;
pub mod group;
pub mod health_alerts;
pub mod message;
pub mod outbox;
pub mod sender;
