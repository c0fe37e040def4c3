//! Wake-ups between the daemon's components, so that work starts when it becomes possible
//! rather than on the next tick of a timer.
//!
//! Components still meet only through the store (a wake-up carries no data): a signal says
//! "look at the store again now". Each is a [`tokio::sync::Notify`], whose `notify_one`
//! stores a permit when nobody is waiting, so a wake-up sent while its listener is busy is
//! never lost; several wake-ups before the listener looks again collapse into one pass.
//! Every listener also keeps its own timer for work that becomes due by the clock alone.

use std::sync::Arc;
use tokio::sync::Notify;

/// The wake-ups of one daemon generation (a reloaded context gets fresh ones).
#[derive(Clone, Debug, Default)]
pub struct Signals {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    retry: Notify,
    alert: Notify,
    outbox: Notify,
}

impl Signals {
    /// A detector committed new or changed failures (opened, reopened, a user's profile
    /// changed): the retry worker and the alert evaluator look again.
    pub fn failures_changed(&self) {
        self.inner.retry.notify_one();
        self.inner.alert.notify_one();
    }

    /// Something the retry worker schedules became due or freed (a retry finished).
    pub fn retry_due(&self) {
        self.inner.retry.notify_one();
    }

    /// The evaluator queued notifications: the sender delivers them now.
    pub fn outbox_queued(&self) {
        self.inner.outbox.notify_one();
    }

    /// Resolves at the next [`Signals::failures_changed`] or [`Signals::retry_due`] (at once
    /// when one was sent since the last wait).
    pub async fn retry_wakeup(&self) {
        self.inner.retry.notified().await
    }

    /// Resolves at the next [`Signals::failures_changed`].
    pub async fn alert_wakeup(&self) {
        self.inner.alert.notified().await
    }

    /// Resolves at the next [`Signals::outbox_queued`].
    pub async fn outbox_wakeup(&self) {
        self.inner.outbox.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wakeup_sent_while_nobody_waits_is_kept_once() {
        let s = Signals::default();
        s.failures_changed();
        s.failures_changed();
        let quick = Duration::from_millis(50);
        assert!(tokio::time::timeout(quick, s.retry_wakeup()).await.is_ok());
        assert!(tokio::time::timeout(quick, s.alert_wakeup()).await.is_ok());
        // Two sends collapsed into one permit.
        assert!(tokio::time::timeout(quick, s.retry_wakeup()).await.is_err());
        // The outbox was not signalled.
        assert!(tokio::time::timeout(quick, s.outbox_wakeup())
            .await
            .is_err());
        s.outbox_queued();
        assert!(tokio::time::timeout(quick, s.outbox_wakeup()).await.is_ok());
    }
}
