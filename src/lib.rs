//! okta-provwatch: watches an Okta org for failed app provisioning, retries what it can and
//! alerts on what it cannot. `main.rs` only parses the command line and calls into this crate.

pub mod alert;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod context;
pub mod daemon;
pub mod detect;
pub mod exit;
pub mod health;
pub mod http;
pub mod metrics;
pub mod okta;
pub mod pacer;
pub mod retry;
pub mod store;
pub mod systemd;
pub mod telemetry;
