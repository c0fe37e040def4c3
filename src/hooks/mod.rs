//! Okta Event Hooks: detection in seconds instead of a poll interval.
//!
//! Okta pushes eligible events to an HTTPS endpoint; this module owns that endpoint and what
//! follows it. Polling stays the ground truth: not every provisioning event can be pushed
//! (failed `.deactivate` and `application.integration.*` cannot) and pushes can be lost, so
//! a hook only makes detection faster, never the only path.
//!
//! - [`receiver`]: the listener on `[hooks] listen` (apart from `[http]`), plain HTTP or TLS
//!   ([`tls`]). It answers Okta's one-time verification `GET`, authenticates each `POST` by
//!   constant-time comparison of the `Authorization` header with the configured secret, and
//!   writes the events to the durable inbox (`store::inbox`) *before* it replies, well within
//!   Okta's 3 s timeout. Refused requests store nothing and are counted.
//! - [`apply`]: applies inbox rows asynchronously through the poller's classifier and the same
//!   seen-uuid table, so an event delivered by hook and by poll, twice, or out of order
//!   changes nothing twice.
//! - [`health`]: `event_hook.delivery` failures the poller reads, and eligible events the
//!   poller sees that never came by hook, feed the daemon's own health alert.
//! - [`api`]: the Event Hooks management API behind `okta-provwatch hooks register/status/
//!   remove`.

pub mod api;
pub mod apply;
pub mod health;
pub mod receiver;
pub mod tls;

use crate::context::Context;
use tokio_util::sync::CancellationToken;

/// The checked-in list of event types a hook subscribes to (see the file's header).
const EVENT_TYPES_FILE: &str = include_str!("event_types.txt");

/// The event types `hooks register` subscribes to, as embedded at build time.
pub fn event_types() -> Vec<&'static str> {
    EVENT_TYPES_FILE
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Whether Okta can push this event type to our hook.
pub fn is_eligible(event_type: &str) -> bool {
    EVENT_TYPES_FILE
        .lines()
        .any(|l| l.trim() == event_type && !l.starts_with('#'))
}

/// The hook component: the receiver and the applier, until `shutdown`. Does nothing when
/// `[hooks]` is not configured.
pub async fn run(ctx: Context, shutdown: CancellationToken) {
    let Some(cfg) = ctx.config.hooks.clone() else {
        return shutdown.cancelled().await;
    };
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let applier = tokio::spawn(apply::run(ctx.clone(), wake.clone(), shutdown.clone()));
    match receiver::bind(&cfg).await {
        Ok(listener) => {
            if let Err(e) = receiver::serve(listener, ctx.clone(), wake, shutdown.clone()).await {
                tracing::error!(error = %e, "the event hook receiver stopped");
            }
        }
        Err(e) => {
            // The component ends, which stops the daemon with its name in the log: a receiver
            // that cannot listen would otherwise fail every delivery silently.
            tracing::error!(listen = %cfg.listen, error = %e, "cannot start the event hook receiver; check [hooks] listen and tls_* files");
            applier.abort();
            return;
        }
    }
    let _ = applier.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::classify::operation_for;

    /// Every subscribed type is one the classifier models (else a delivery is wasted), and none
    /// is a type Okta refuses to push.
    #[test]
    fn subscribed_types_are_classified_and_eligible() {
        let types = event_types();
        assert!(types.len() >= 8, "{types:?}");
        for t in &types {
            assert!(operation_for(t).is_some(), "{t} is not classified");
            assert!(is_eligible(t));
        }
        for never in [
            "application.provision.user.deactivate",
            "application.integration.authentication_failure",
            "app.app_instance.provision_sync_job.failed",
        ] {
            assert!(!is_eligible(never), "{never}");
        }
    }
}
