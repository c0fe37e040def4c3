//! Alerting: the channel-neutral alert message and the channels that deliver it
//! (Slack, email).

pub mod email;
pub mod message;
pub mod slack;
