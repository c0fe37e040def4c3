//! The daemon and its supervisor.
//!
//! The daemon is a few long-running components sharing one [`Context`], each a loop that
//! `select!`s on its shutdown token ([`start`]). The [`Supervisor`] owns their life: it serves
//! `/metrics` and `/healthz`, starts a generation of components, and then reacts to a stream of
//! [`Event`]s (stop, reload) and to a component ending on its own, pinging the systemd watchdog
//! meanwhile. Stopping cancels the token and waits at most a grace period for in-flight work.
//!
//! The supervisor knows nothing of signals or config files: `run` turns signals into events
//! ([`signal_events`]) and hands it a [`Reloader`] that loads and proves a new config; `demo`
//! sends its own stop. So every rule here (one generation at a time, a bad reload keeps the
//! old config, a stop is bounded, a second signal forces the exit) is tested with
//! `tokio::time::pause` and a channel, without spawning the binary.

pub mod lock;
mod supervisor;

pub use supervisor::{
    changes, signal_events, stop_requested, watching, Components, Event, Outcome, Reloader,
    Supervisor,
};

use crate::context::Context;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long `stop` waits for components to finish their in-flight work.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Upper bound on everything a stop does before the HTTP server is closed: the components'
/// grace plus a little for aborting stragglers, under the unit's `TimeoutStopSec=30`.
pub const STOP_DEADLINE: Duration = Duration::from_secs(SHUTDOWN_GRACE.as_secs() + 5);

/// A stop request arriving this long or longer after the first forces the exit. Closer ones
/// are the same request: GNU `timeout` (and a Ctrl-C in a shell) signals the process and its
/// process group, so one intent often arrives as two signals a few microseconds apart.
pub const FORCE_AFTER: Duration = Duration::from_secs(1);

/// Handle to one running generation of components.
pub struct Running {
    pub shutdown: CancellationToken,
    tasks: JoinSet<()>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Running {
    pub fn new(shutdown: CancellationToken) -> Running {
        Running {
            shutdown,
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// Starts one component, named for the logs should it end on its own.
    pub fn spawn<F>(&mut self, name: &'static str, component: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.tasks.spawn(component);
        self.names.insert(handle.id(), name);
    }

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
                grace = %humantime::format_duration(grace),
                "components did not stop in time; aborting them (state is durable)"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
        drained
    }

    /// Resolves when a component ends before being asked to (it returned or panicked), with
    /// its name and how; never resolves while all are running.
    async fn ended(&mut self) -> (&'static str, String) {
        match self.tasks.join_next_with_id().await {
            Some(Ok((id, ()))) => (self.name(id), "returned".to_string()),
            Some(Err(e)) => {
                let how = if e.is_panic() {
                    "panicked".to_string()
                } else {
                    "was cancelled".to_string()
                };
                (self.name(e.id()), how)
            }
            None => std::future::pending().await,
        }
    }

    fn name(&self, id: tokio::task::Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("component")
    }
}

/// Starts every component on the current runtime.
pub fn start(ctx: Context, shutdown: CancellationToken) -> Running {
    let mut r = Running::new(shutdown.clone());
    // Shutdown ends every wait on the Okta budget at once; requests on the wire finish.
    ctx.okta.stop_on(shutdown.clone());
    r.spawn(
        "poller",
        crate::detect::poller::run(ctx.clone(), shutdown.clone()),
    );
    r.spawn(
        "scanner",
        crate::detect::scanner::run(ctx.clone(), shutdown.clone()),
    );
    // Components of later stages register here, one line each.
    r.spawn(
        "retry-worker",
        crate::retry::worker::run(ctx.clone(), shutdown.clone()),
    );
    r.spawn(
        "alert-evaluator",
        crate::alert::evaluator::run(ctx.clone(), shutdown.clone()),
    );
    r.spawn(
        "alert-sender",
        crate::alert::sender::run(ctx.clone(), shutdown.clone()),
    );
    r.spawn(
        "digest",
        crate::alert::digest::run(ctx.clone(), shutdown.clone()),
    );
    r.spawn(
        "deprovision",
        crate::deprovision::run(ctx.clone(), shutdown.clone()),
    );
    if ctx.config.hooks.is_some() {
        r.spawn(
            "hook-receiver",
            crate::hooks::run(ctx.clone(), shutdown.clone()),
        );
    }
    r.spawn("timings", observe_timings(ctx, shutdown));
    r
}

/// How often [`observe_timings`] reads the history.
const TIMINGS_EVERY: Duration = Duration::from_secs(15);

/// Feeds the time-to-heal and detection-latency histograms from the store's history, so that
/// every path that resolves or detects a failure (poller, scanner, retry worker, a manual
/// `retry` from the CLI) is measured without each of them knowing about histograms.
async fn observe_timings(ctx: Context, shutdown: CancellationToken) {
    use crate::store::narration::{self, Timed};
    let mut after: Option<i64> = None;
    let mut tick = tokio::time::interval(TIMINGS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let read = match after {
            // First read: start at the end, so a restart does not observe old rows again.
            None => ctx.store.read(narration::last_history_id).await.map(|id| {
                after = Some(id);
                Vec::new()
            }),
            Some(id) => {
                ctx.store
                    .read(move |tx| narration::timings_since(tx, id, 1000))
                    .await
            }
        };
        match read {
            Ok(rows) => {
                for t in rows {
                    after = Some(t.history_id);
                    let name = match t.what {
                        Timed::Healed => "provwatch_time_to_heal_seconds",
                        Timed::Detected => "provwatch_detection_latency_seconds",
                    };
                    ctx.metrics
                        .observe(name, &[("operation", t.operation.as_str())], t.seconds);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the history for the timing histograms")
            }
        }
    }
}
