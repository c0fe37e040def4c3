//! okta-provwatch: watches an Okta org for failed app provisioning, retries what it can and
//! alerts on what it cannot. `main.rs` only parses the command line and calls into this crate.
//!
//! # Layout
//!
//! Data flows one way; no module imports from a layer downstream of it:
//!
//! ```text
//!          poll (System Log), event hooks, scans
//! Okta ──────────────> detect ──> store ──> retry ──> Okta (re-push)
//!                        │          │
//!                        │          ├────> alert ──> channels (Slack, email, ...)
//!                        │          │
//!                        └──> deprovision (ledger, SLA) ──> scim ──> the app (verify, remediate)
//! ```
//!
//! Detection, retries and alerting never call each other: they meet only through rows of the
//! store, each change in one transaction, so a crash anywhere loses nothing and applies
//! nothing twice.
//!
//! - [`domain`]: the vocabulary every layer speaks: failures, observations, operations,
//!   states, history kinds, the urgency rule. Imports nothing of the crate.
//! - [`okta`]: everything that talks to Okta: HTTP client, credentials, rate-limit budget,
//!   resource types.
//! - [`detect`]: the System Log poller, the assignment scanner and the Tasks-page reads
//!   (group push, connections, agent pools) turn Okta's reports into observations applied to
//!   the store.
//! - [`hooks`]: the Okta event hook receiver (its own listener, a durable inbox applied through
//!   the same classifier as the poller) and the Event Hooks API behind `hooks register`.
//! - [`deprovision`]: the expected-deprovisioning ledger: what Okta owes after a deactivation or
//!   unassignment, the SLA, "Deactivate Users" switched off, verification and remediation
//!   through [`scim`].
//! - [`scim`]: a small RFC 7643/7644 client for the apps' own SCIM APIs.
//! - [`store`]: the SQLite state, one module per table; owns every SQL statement.
//! - [`deprovision`]: the expected-deprovisioning ledger (issue 13): expectations opened by
//!   deactivations and unassignments, the SLA, "Deactivate Users" switched off, checks against
//!   the app's own SCIM API ([`scim`]), remediation and reconciliation.
//! - [`retry`]: automatic (worker) and manual retries of failed pushes, backoff, circuit
//!   breakers.
//! - [`alert`]: decides when to tell people (grouping, silences, digests) and delivers through
//!   the channels, via a durable outbox.
//! - [`daemon`]: the supervisor (signals, reload, bounded stop), the components it starts, and
//!   the exclusive lock on the state.
//! - [`signal`]: wake-ups between components (a failure opened, the outbox has work), so work
//!   starts when it becomes possible rather than on a timer.
//! - [`exit`]: the process exit codes every command uses.
//! - [`http`]: `/healthz` and `/metrics`.
//! - [`hooks`]: the Okta Event Hook receiver (its own listener), its inbox applier and health.
//! - [`health`]: the daemon's view of its own liveness (last poll, failures in a row, lag).
//! - [`metrics`], [`telemetry`]: the metric registry and log set-up.
//! - [`config`]: loading and validating the TOML config and its secrets.
//! - [`context`]: the handle every component shares (config, store, Okta client, metrics,
//!   health, clock).
//! - [`cli`], [`cmd`]: the command line and one module per subcommand.
//! - [`signal`]: wake-ups between components (a failure opened, a notification queued).
//! - [`clock`], [`pacer`], [`systemd`]: wall time that tests can pause, a tokio-driven rate
//!   limiter, the systemd notify protocol.
//!
//! # Where does X live
//!
//! - Urgency rule (which failures page someone at once): `Operation::is_urgent` in
//!   [`domain`].
//! - Slack layout (Block Kit of a message): `alert/channels/slack.rs`.
//! - Silences: rows in [`store::silences`]; applied by the alert evaluator; set with
//!   `okta-provwatch silence` ([`cmd::silence`]).
//! - Health rule (when the daemon counts as unhealthy, for `/healthz` and the health alert):
//!   [`health`].
//! - Retry backoff and which failures are retried: [`retry::policy`]; the due selection and
//!   claims in [`store::claims`].
//! - System Log cursor: stored in [`store::cursor`], advanced by [`detect::poller`].
//! - Rate budget (our share of the org's Okta rate limits, request classes and their
//!   priorities): [`okta::ratelimit`]; the retry pace per minute: [`pacer`] and
//!   `retry::pace`.
//! - Which failures a retry can fix (data errors, app throttling, credentials, transient):
//!   `retry::classes`.
//! - Deprovisioning SLA and expectations: [`deprovision`], rows in `store::expectations`.
//! - Event hook secret check and inbox: `hooks::receiver`, rows in `store::inbox`.
//! - Exit codes: [`exit`].

pub mod alert;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod context;
pub mod daemon;
pub mod deprovision;
pub mod detect;
pub mod domain;
pub mod exit;
pub mod health;
pub mod hooks;
pub mod http;
pub mod metrics;
pub mod okta;
pub mod pacer;
pub mod retry;
pub mod scim;
pub mod signal;
pub mod store;
pub mod systemd;
pub mod telemetry;
