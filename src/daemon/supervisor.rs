//! The supervisor: serves the HTTP endpoint, runs one generation of components at a time and
//! turns [`Event`]s (stop, reload) and a component ending on its own into a bounded stop, a
//! swap of generations, or an exit that systemd restarts. See the parent module's doc.
//!
//! About 170 of its lines are unit tests, kept beside the code they pin.

use super::{Running, FORCE_AFTER, SHUTDOWN_GRACE, STOP_DEADLINE};
use crate::context::Context;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the supervisor reacts to, besides a component ending on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGTERM, SIGINT, or the demo ending. A second one, [`FORCE_AFTER`] or later, forces the
    /// exit without waiting for in-flight work.
    Stop,
    /// SIGHUP: load, validate and prove the config again, then swap generations.
    Reload,
}

/// Starts a generation of components for a context.
pub type Components = Arc<dyn Fn(Context, CancellationToken) -> Running + Send + Sync>;

/// Builds the next context on SIGHUP from the running one, proving it before it is used; an
/// error keeps the running configuration.
pub type Reloader = Arc<
    dyn Fn(Context) -> Pin<Box<dyn Future<Output = anyhow::Result<Context>> + Send>> + Send + Sync,
>;

/// How a supervised daemon ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every component finished its in-flight work within the grace period.
    pub clean: bool,
    /// A second stop request cut the grace period short.
    pub forced: bool,
    /// A component ended on its own (returned or panicked), which stopped the daemon.
    pub failed_component: Option<&'static str>,
}

/// Runs a daemon: see the module doc.
pub struct Supervisor {
    components: Components,
    reloader: Option<Reloader>,
    listener: Option<TcpListener>,
    grace: Duration,
    stop_deadline: Duration,
    watchdog: Option<Duration>,
    contexts: watch::Sender<Context>,
}

impl Supervisor {
    /// A supervisor for `ctx` running the real components, with production grace periods, no
    /// reload and no HTTP endpoint until configured.
    pub fn new(ctx: Context) -> Supervisor {
        Supervisor {
            components: Arc::new(super::start),
            reloader: None,
            listener: None,
            grace: SHUTDOWN_GRACE,
            stop_deadline: STOP_DEADLINE,
            watchdog: None,
            contexts: watch::channel(ctx).0,
        }
    }

    pub fn components(mut self, c: Components) -> Self {
        self.components = c;
        self
    }

    /// What a [`Event::Reload`] runs; without one, reloads are refused with a log line.
    pub fn reloader(mut self, r: Reloader) -> Self {
        self.reloader = Some(r);
        self
    }

    /// Serve `/metrics` and `/healthz` on this listener for as long as the daemon runs.
    pub fn http(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The components' grace period on stop; the whole stop is bounded by this plus 5 s.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self.stop_deadline = grace + Duration::from_secs(5);
        self
    }

    /// Ping the systemd watchdog this often, each ping after a liveness check.
    pub fn watchdog(mut self, every: Option<Duration>) -> Self {
        self.watchdog = every;
        self
    }

    /// The context in force, updated by every applied reload.
    pub fn contexts(&self) -> watch::Receiver<Context> {
        self.contexts.subscribe()
    }

    /// Starts the HTTP endpoint and the components, then handles events until a stop (or the
    /// end of the event stream), and stops within the bounds described on [`Outcome`].
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> Outcome {
        let mut current = self.contexts.borrow().clone();
        let http_stop = CancellationToken::new();
        let http = self.listener.take().map(|l| {
            tokio::spawn(crate::http::serve(
                l,
                self.contexts.subscribe(),
                current.now_ms(),
                http_stop.clone(),
            ))
        });
        // Every generation runs on a child of `root`, so cancelling `root` stops whichever
        // generation exists, even one being started by a reload at that moment.
        let root = CancellationToken::new();
        let mut running = Some((self.components)(current.clone(), root.child_token()));
        crate::systemd::ready(&format!("watching {}", current.okta.org_url()));
        log_watching(&current);

        let mut wd_tick = tokio::time::interval(self.watchdog.unwrap_or(Duration::from_secs(3600)));
        wd_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reload: Option<Pin<Box<dyn Future<Output = Reloaded> + Send>>> = None;
        // The liveness check behind each watchdog ping, while it runs.
        let mut wd_check: Option<Pin<Box<dyn Future<Output = bool> + Send>>> = None;
        let mut failed = None;

        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Event::Stop) | None => break,
                    Some(Event::Reload) if reload.is_some() => {
                        tracing::info!("reload requested while one is in progress; ignored");
                    }
                    Some(Event::Reload) => match &self.reloader {
                        None => tracing::warn!("reload requested, but this daemon cannot reload"),
                        Some(reloader) => {
                            tracing::info!("reloading the configuration");
                            crate::systemd::reloading();
                            let old = running.take().expect("a generation runs outside a reload");
                            reload = Some(Box::pin(reload_daemon(
                                reloader.clone(),
                                self.components.clone(),
                                current.clone(),
                                old,
                                root.clone(),
                                self.grace,
                            )));
                        }
                    },
                },
                done = async { reload.as_mut().expect("guarded").await }, if reload.is_some() => {
                    reload = None;
                    match done {
                        Reloaded::Applied(ctx, r) => {
                            log_reload(&current, &ctx);
                            current = ctx.clone();
                            let _ = self.contexts.send(ctx);
                            running = Some(r);
                        }
                        Reloaded::Rejected(r, e) => {
                            tracing::error!("reload rejected, keeping the running configuration: {e:#}");
                            running = Some(r);
                        }
                        Reloaded::Stopped => unreachable!("root is cancelled only after the loop"),
                    }
                    crate::systemd::ready(&format!("watching {}", current.okta.org_url()));
                }
                (name, how) = async { running.as_mut().expect("guarded").ended().await }, if running.is_some() => {
                    // Every component loops until cancelled; one that ends has lost its job
                    // (a bug or a panic). A daemon missing a component would look healthy
                    // while, say, never alerting: exit non-zero so systemd restarts it whole.
                    tracing::error!(component = name, "a component {how} unexpectedly; stopping the daemon so that it is restarted");
                    failed = Some(name);
                    break;
                }
                // This loop may run on the thread that called `block_on`, so it would keep
                // ticking with every worker wedged; each ping therefore waits for proof that a
                // worker can still run a task and get the store, as every component needs to.
                _ = wd_tick.tick(), if self.watchdog.is_some() && wd_check.is_none() => {
                    let within = self.watchdog.expect("guarded");
                    wd_check = Some(Box::pin(alive(current.clone(), within)));
                }
                ok = async { wd_check.as_mut().expect("guarded").await }, if wd_check.is_some() => {
                    wd_check = None;
                    if ok {
                        crate::systemd::watchdog();
                    } else {
                        tracing::error!("liveness check failed: no watchdog ping (systemd restarts a wedged daemon)");
                    }
                }
            }
        }

        let first_stop = Instant::now();
        tracing::info!("stopping: letting in-flight work finish");
        crate::systemd::stopping();
        root.cancel();
        let grace = self.grace;
        let stop = async {
            if let Some(pending) = reload.take() {
                // Cancelled by `root`, the reload ends without starting a new generation; at
                // most it finishes stopping the old one, whose grace began before the stop.
                match pending.await {
                    Reloaded::Applied(_, r) | Reloaded::Rejected(r, _) => running = Some(r),
                    Reloaded::Stopped => {}
                }
            }
            match running.take() {
                Some(r) => r.stop(grace).await,
                None => true,
            }
        };
        // `Running::stop` aborts after its grace, but an aborted task only ends at its next
        // await point; this bound keeps the exit inside the unit's TimeoutStopSec= regardless.
        let deadline = self.stop_deadline;
        let (clean, forced) = tokio::select! {
            clean = tokio::time::timeout(deadline, stop) => (clean.unwrap_or_else(|_| {
                tracing::warn!(deadline = %humantime::format_duration(deadline), "in-flight work did not stop in time; exiting anyway");
                false
            }), false),
            _ = second_stop(&mut events, first_stop + FORCE_AFTER) => {
                tracing::warn!("second stop request: exiting without waiting for in-flight work");
                (false, true)
            }
        };
        http_stop.cancel();
        if let Some(http) = http {
            let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
        }
        tracing::info!(clean, "stopped");
        Outcome {
            clean,
            forced,
            failed_component: failed,
        }
    }
}

/// Resolves on a stop request at or after `not_before`; earlier ones are the first request
/// arriving twice (see [`FORCE_AFTER`]) and reloads during a stop mean nothing.
async fn second_stop(events: &mut mpsc::Receiver<Event>, not_before: Instant) {
    loop {
        match events.recv().await {
            Some(Event::Stop) if Instant::now() >= not_before => return,
            Some(Event::Stop) => {
                tracing::debug!("stop request right after the first: the same request");
            }
            Some(Event::Reload) => {}
            None => std::future::pending::<()>().await,
        }
    }
}

/// SIGTERM and SIGINT as [`Event::Stop`], SIGHUP as [`Event::Reload`]. Install this before
/// anything slow, so that a signal during start-up is not lost (or fatal: the default action).
pub fn signal_events() -> anyhow::Result<mpsc::Receiver<Event>> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = term.recv() => Event::Stop,
                _ = int.recv() => Event::Stop,
                _ = hup.recv() => Event::Reload,
            };
            if tx.send(ev).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// Waits for a stop request, dropping reloads (for start-up, before there is anything to
/// reload); `true` when a stop came, `false` if the stream ended.
pub async fn stop_requested(events: &mut mpsc::Receiver<Event>) -> bool {
    loop {
        match events.recv().await {
            Some(Event::Stop) => return true,
            Some(Event::Reload) => {
                tracing::info!("reload requested during start-up: the config is being loaded now")
            }
            None => return false,
        }
    }
}

/// Whether the daemon can still make progress: a task spawned on the runtime's workers takes
/// the store connection and opens a transaction within `within`.
async fn alive(ctx: Context, within: Duration) -> bool {
    let check = tokio::spawn(async move { ctx.store.read(|_tx| Ok(())).await });
    matches!(tokio::time::timeout(within, check).await, Ok(Ok(Ok(()))))
}

enum Reloaded {
    Applied(Context, Running),
    Rejected(Running, anyhow::Error),
    /// Shutdown began while the old generation was being stopped: nothing is running.
    Stopped,
}

async fn reload_daemon(
    reloader: Reloader,
    components: Components,
    old_ctx: Context,
    old: Running,
    root: CancellationToken,
    grace: Duration,
) -> Reloaded {
    let prepared = tokio::select! {
        r = reloader(old_ctx) => r,
        _ = root.cancelled() => Err(anyhow::anyhow!("shutting down")),
    };
    match prepared {
        Err(e) => Reloaded::Rejected(old, e),
        Ok(ctx) => {
            // Strictly one generation at a time: two pollers on one cursor would race.
            old.stop(grace).await;
            if root.is_cancelled() {
                // A stop arrived meanwhile: starting (and then stopping) a new generation
                // would only push the exit past TimeoutStopSec=.
                return Reloaded::Stopped;
            }
            let r = components(ctx.clone(), root.child_token());
            Reloaded::Applied(ctx, r)
        }
    }
}

/// What is watched, in the words and units an operator wrote, one `(field, value)` per line
/// of the start-up summary and per possible change on reload.
pub fn watching(ctx: &Context) -> Vec<(&'static str, String)> {
    let c = &ctx.config;
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let apps = if c.detect.apps.is_empty() {
        "all".to_string()
    } else {
        c.detect.apps.join(", ")
    };
    let mut channels = Vec::new();
    if c.slack.is_some() {
        channels.push("slack");
    }
    if c.email.is_some() {
        channels.push("email");
    }
    let retry = if c.retry.enabled {
        format!(
            "up to {} attempts, backoff {} to {}",
            c.retry.max_attempts,
            d(c.retry.initial_backoff),
            d(c.retry.max_backoff)
        )
    } else {
        "off".to_string()
    };
    vec![
        ("org", c.okta.org_url.to_string()),
        ("apps", apps),
        ("poll_interval", d(c.detect.poll_interval)),
        ("scan_schedule", c.detect.scan_schedule.to_string()),
        ("retry", retry),
        ("alert_after", d(c.alert.persist_after)),
        (
            "channels",
            if channels.is_empty() {
                "none (status and /metrics only)".to_string()
            } else {
                channels.join(", ")
            },
        ),
        ("listen", c.http.listen.to_string()),
        ("state", ctx.store.path().display().to_string()),
    ]
}

fn log_watching(ctx: &Context) {
    let w: HashMap<_, _> = watching(ctx).into_iter().collect();
    tracing::info!(
        org = %w["org"],
        apps = %w["apps"],
        poll_interval = %w["poll_interval"],
        scan_schedule = %w["scan_schedule"],
        retry = %w["retry"],
        alert_after = %w["alert_after"],
        channels = %w["channels"],
        listen = %w["listen"],
        state = %w["state"],
        "watching"
    );
}

/// "poll_interval 30s -> 10s; channels slack -> slack, email", or `None` when nothing an
/// operator would see changed.
pub fn changes(old: &Context, new: &Context) -> Option<String> {
    let new_w: HashMap<_, _> = watching(new).into_iter().collect();
    let changed: Vec<String> = watching(old)
        .into_iter()
        .filter(|(k, v)| new_w.get(k) != Some(v))
        .map(|(k, v)| format!("{k} {v} -> {}", new_w[k]))
        .collect();
    (!changed.is_empty()).then(|| changed.join("; "))
}

fn log_reload(old: &Context, new: &Context) {
    match changes(old, new) {
        Some(changed) => tracing::info!(%changed, "configuration reloaded"),
        None => tracing::info!("configuration reloaded; nothing watched changed"),
    }
    if new.config.http.listen != old.config.http.listen {
        tracing::warn!(old = %old.config.http.listen, new = %new.config.http.listen,
            "http.listen changed: restart the service to move the endpoint");
    }
    if new.config.log != old.config.log {
        tracing::warn!("[log] changes take effect at the next restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::{Config, Env};
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ctx_with(dir: &Path, extra: &str) -> Context {
        let text = format!(
            "[okta]\norg_url = \"http://127.0.0.1:9\"\napi_token_env = \"T\"\n[state]\npath = \"{}\"\n{extra}",
            dir.join("state.db").display()
        );
        let config = Config::from_toml_str(&text, &Env::from_map([("T", "secret-token")])).unwrap();
        Context::new(config, Clock::system()).unwrap()
    }

    /// Components that count their generations; `stubborn` ones ignore cancellation.
    fn fake(generations: Arc<AtomicUsize>, stubborn: bool) -> Components {
        Arc::new(move |_ctx, token: CancellationToken| {
            generations.fetch_add(1, Ordering::SeqCst);
            let mut r = Running::new(token.clone());
            r.spawn("fake", async move {
                if stubborn {
                    std::future::pending::<()>().await
                } else {
                    token.cancelled().await
                }
            });
            r
        })
    }

    fn reload_to(next: Option<Context>) -> Reloader {
        Arc::new(move |_old| {
            let next = next.clone();
            Box::pin(async move { next.ok_or_else(|| anyhow::anyhow!("invalid config")) })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn reload_applies_a_valid_config_and_keeps_the_old_on_an_invalid_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = ctx_with(dir.path(), "");
        let new = ctx_with(dir.path(), "[detect]\npoll_interval = \"10s\"\n");
        assert_ne!(
            old.config.detect.poll_interval,
            new.config.detect.poll_interval
        );
        let gens = Arc::new(AtomicUsize::new(0));

        // Invalid: the first generation keeps running with the old config.
        let sup = Supervisor::new(old.clone())
            .components(fake(gens.clone(), false))
            .reloader(reload_to(None));
        let seen = sup.contexts();
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(sup.run(rx));
        tx.send(Event::Reload).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(gens.load(Ordering::SeqCst), 1, "no new generation");
        assert_eq!(
            seen.borrow().config.detect.poll_interval,
            old.config.detect.poll_interval
        );
        tx.send(Event::Stop).await.unwrap();
        let out = task.await.unwrap();
        assert!(
            out.clean && !out.forced && out.failed_component.is_none(),
            "{out:?}"
        );

        // Valid: the old generation is stopped, a new one runs with the new config.
        let gens = Arc::new(AtomicUsize::new(0));
        let sup = Supervisor::new(old.clone())
            .components(fake(gens.clone(), false))
            .reloader(reload_to(Some(new.clone())));
        let seen = sup.contexts();
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(sup.run(rx));
        tx.send(Event::Reload).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(gens.load(Ordering::SeqCst), 2);
        assert_eq!(
            seen.borrow().config.detect.poll_interval,
            Duration::from_secs(10)
        );
        assert_eq!(
            changes(&old, &new).as_deref(),
            Some("poll_interval 1m -> 10s")
        );
        tx.send(Event::Stop).await.unwrap();
        assert!(task.await.unwrap().clean);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_at_most_the_grace_and_near_simultaneous_signals_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx_with(dir.path(), "");
        let grace = Duration::from_secs(20);
        let sup = Supervisor::new(ctx)
            .components(fake(Arc::new(AtomicUsize::new(0)), true))
            .grace(grace);
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(sup.run(rx));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        // As GNU `timeout` sends them: to the process and to its group, microseconds apart.
        tx.send(Event::Stop).await.unwrap();
        tx.send(Event::Stop).await.unwrap();
        let out = task.await.unwrap();
        assert!(!out.clean && !out.forced, "{out:?}");
        assert_eq!(t0.elapsed(), grace, "waited the whole grace, no more");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_stop_after_the_interval_forces_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx_with(dir.path(), "");
        let sup = Supervisor::new(ctx).components(fake(Arc::new(AtomicUsize::new(0)), true));
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(sup.run(rx));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t0 = Instant::now();
        tx.send(Event::Stop).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        tx.send(Event::Stop).await.unwrap();
        let out = task.await.unwrap();
        assert!(out.forced && !out.clean, "{out:?}");
        assert_eq!(t0.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_component_that_ends_on_its_own_stops_the_daemon_named() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx_with(dir.path(), "");
        let components: Components = Arc::new(|_ctx, token: CancellationToken| {
            let mut r = Running::new(token.clone());
            r.spawn("steady", async move { token.cancelled().await });
            r.spawn("broken", async { panic!("bug") });
            r
        });
        let sup = Supervisor::new(ctx).components(components);
        let (_tx, rx) = mpsc::channel(4);
        let out = sup.run(rx).await;
        assert_eq!(out.failed_component, Some("broken"));
        assert!(out.clean, "the others stopped within the grace: {out:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchdog_liveness_needs_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx_with(dir.path(), "");
        assert!(alive(c.clone(), Duration::from_secs(30)).await);
        // A component wedged while holding the connection: no proof of life, so no ping.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let store = c.store.clone();
        let wedged = std::thread::spawn(move || {
            store
                .read_blocking(|_| {
                    held_tx.send(()).unwrap();
                    let _ = release_rx.recv();
                    Ok(())
                })
                .unwrap()
        });
        held_rx.recv().unwrap();
        assert!(!alive(c.clone(), Duration::from_millis(300)).await);
        release_tx.send(()).unwrap();
        wedged.join().unwrap();
        assert!(alive(c, Duration::from_secs(30)).await);
    }
}
