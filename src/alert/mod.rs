//! Alerting: the channel-neutral alert message and the channels that deliver it
//! (Slack, email).

pub mod digest;
pub mod email;
pub mod health_alerts;
pub mod message;
pub mod outbox;
pub mod policy;
pub mod sender;
pub mod slack;
