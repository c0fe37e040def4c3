//! The daemon: a few long-running components sharing one [`Context`], each a loop that
//! `select!`s on the shutdown token. Stopping cancels the token and waits, with a bound, for
//! in-flight work to finish.

use crate::context::Context;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long `stop` waits for components to finish their in-flight work.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Handle to a running daemon.
pub struct Running {
    pub shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Running {
    /// Cancels every component and waits up to `grace` for them to finish.
    pub async fn stop(self, grace: Duration) -> bool {
        self.shutdown.cancel();
        self.wait(grace).await
    }

    /// Waits (up to `grace` after cancellation) for components to finish. Components still
    /// running then are aborted and awaited, so that by the time this returns none of them
    /// can touch the store or Okta (a reload starts the next generation right after). Aborting
    /// loses nothing: every piece of work commits in one transaction or not at all.
    pub async fn wait(mut self, grace: Duration) -> bool {
        self.shutdown.cancelled().await;
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        if !drained {
            tracing::warn!(
                ?grace,
                "components did not stop in time; aborting them (state is durable)"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        drained
    }
}

/// Starts every component on the current runtime.
pub fn start(ctx: Context, shutdown: CancellationToken) -> Running {
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::detect::poller::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(crate::detect::scanner::run(ctx.clone(), shutdown.clone()));
    // Components of later stages register here, one line each.
    tasks.spawn(crate::retry::worker::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(crate::alert::evaluator::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(crate::alert::sender::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(crate::alert::digest::run(ctx.clone(), shutdown.clone()));
    Running { shutdown, tasks }
}
