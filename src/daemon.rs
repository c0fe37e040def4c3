//! The daemon: a few long-running components sharing one [`Context`], each a loop that
//! `select!`s on the shutdown token. Stopping cancels the token and waits, with a bound, for
//! in-flight work to finish.

use crate::context::Context;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long `stop` waits for components to finish their in-flight work.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Handle to a running daemon.
pub struct Running {
    pub shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Running {
    /// Cancels every component and waits up to `grace` for them to finish.
    pub async fn stop(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.wait(grace).await
    }

    /// Waits (up to `grace` after cancellation) for components to finish.
    pub async fn wait(self, grace: Duration) -> bool {
        self.shutdown.cancelled().await;
        let finished = tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                ?grace,
                "components did not stop in time; exiting anyway (state is durable)"
            );
        }
        finished
    }
}

/// Starts every component on the current runtime.
pub fn start(ctx: Context, shutdown: CancellationToken) -> Running {
    let tracker = TaskTracker::new();
    tracker.spawn(crate::detect::poller::run(ctx.clone(), shutdown.clone()));
    tracker.spawn(crate::detect::scanner::run(ctx.clone(), shutdown.clone()));
    // Components of later stages register here, one line each.
    tracker.spawn(crate::retry::worker::run(ctx.clone(), shutdown.clone()));
    tracker.spawn(crate::alert::policy::run(ctx.clone(), shutdown.clone()));
    tracker.spawn(crate::alert::sender::run(ctx.clone(), shutdown.clone()));
    tracker.spawn(crate::alert::digest::run(ctx.clone(), shutdown.clone()));
    tracker.close();
    Running { shutdown, tracker }
}
