//! `okta-provwatch run`: the daemon in the foreground, for systemd (`Type=notify`).
//!
//! Start-up is ordered so that `systemctl start` fails visibly instead of reporting a daemon
//! that cannot work: config, state store, the HTTP listener and one real Okta call all succeed
//! before READY=1. Errors that a restart cannot fix (bad config, rejected token) exit with
//! [`EXIT_CONFIG`], which the unit lists in `RestartPreventExitStatus=`.
//!
//! Signals: SIGTERM/SIGINT stop polling and give in-flight Okta calls and alert deliveries
//! [`daemon::SHUTDOWN_GRACE`] to finish, then exit 0 (a second signal exits at once). SIGHUP
//! reloads: the new config is validated and proved against Okta while the old daemon keeps
//! running; only then is the old one stopped and the new one started. A bad new config is
//! logged and the old one stays in force.

use crate::cli::LogFormatArg;
use crate::clock::Clock;
use crate::config::{Config, LogFormat};
use crate::context::{client_options, Context};
use crate::daemon::{self, Running};
use crate::okta::{OktaClient, OktaError};
use crate::store::Store;
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Exit status for failures a restart will not fix (sysexits.h `EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;

/// How long start-up keeps retrying an Okta that is unreachable (not one that refuses us),
/// kept under the unit's `TimeoutStartSec=`.
pub const STARTUP_OKTA_DEADLINE: Duration = Duration::from_secs(60);

/// Upper bound on everything a stop does before the HTTP server is closed: the components'
/// grace plus a little for aborting stragglers, under the unit's `TimeoutStopSec=30`.
pub const STOP_DEADLINE: Duration = Duration::from_secs(daemon::SHUTDOWN_GRACE.as_secs() + 5);

/// Exit status for a failure to build the context: [`EXIT_CONFIG`] only for what a restart
/// cannot fix (an unusable OAuth key, a state file from a newer version); anything else (a
/// busy or briefly unwritable database) exits 1 so that systemd restarts the service.
fn startup_exit_code(e: &anyhow::Error) -> u8 {
    let permanent = e.chain().any(|c| {
        matches!(c.downcast_ref::<OktaError>(), Some(OktaError::Config(_)))
            || matches!(
                c.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::TooNew { .. })
            )
    });
    if permanent {
        EXIT_CONFIG
    } else {
        1
    }
}

/// The System Log is what the daemon cannot work without, so it is what start-up proves.
pub const PROBE_PATH: &str = "/api/v1/logs?limit=1";

pub async fn run(config_path: &Path, log_format: Option<LogFormatArg>) -> anyhow::Result<ExitCode> {
    // Handlers first: a SIGTERM during a slow start-up must still end in a clean exit.
    let mut sigs = Signals::install()?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let config = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("okta-provwatch: {e:#}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let format = match log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => config.log.format,
    };
    crate::telemetry::init(format, &config.log.level);
    let clock = Clock::system();
    let ctx = match Context::new(config, clock).and_then(|c| {
        c.store
            .check_writable()
            .with_context(|| format!("state store {} is not writable", c.store.path().display()))?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return Ok(ExitCode::from(startup_exit_code(&e)));
        }
    };
    tracing::info!(org = %ctx.okta.org_url(), state = %ctx.store.path().display(), "okta-provwatch starting");
    let listen = ctx.config.http.listen;
    let listener = match crate::http::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%listen, "cannot listen for /metrics and /healthz: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };

    crate::systemd::status("checking Okta");
    tokio::select! {
        r = probe_okta(&ctx.okta, STARTUP_OKTA_DEADLINE) => if let Err(e) = r {
            tracing::error!("cannot start: {e}");
            return Ok(if e.is_auth() || matches!(e, OktaError::Config(_)) {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            });
        },
        _ = sigs.stop() => {
            tracing::info!("stopped before start-up finished");
            return Ok(ExitCode::SUCCESS);
        }
    }

    let started_ms = ctx.now_ms();
    let (ctx_tx, ctx_rx) = watch::channel(ctx.clone());
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(crate::http::serve(
        listener,
        ctx_rx,
        started_ms,
        http_stop.clone(),
    ));
    // Every daemon generation runs on a child of `root`, so cancelling `root` stops whichever
    // generation exists, even one being started by a reload at that moment.
    let root = CancellationToken::new();
    let mut current = ctx.clone();
    let mut running = Some(daemon::start(ctx, root.child_token()));
    crate::systemd::ready(&format!("watching {}", current.okta.org_url()));
    tracing::info!(%listen, "ready");

    let watchdog = crate::systemd::watchdog_interval();
    let mut wd_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    wd_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reload: Option<std::pin::Pin<Box<dyn std::future::Future<Output = Reloaded> + Send>>> =
        None;
    // The liveness check behind each watchdog ping, while it runs.
    let mut wd_check: Option<std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>> =
        None;

    loop {
        tokio::select! {
            _ = sigs.stop() => break,
            _ = hup.recv(), if reload.is_none() => {
                tracing::info!("SIGHUP: reloading the configuration");
                crate::systemd::reloading();
                let old = running.take().expect("a daemon is running outside a reload");
                reload = Some(Box::pin(reload_daemon(
                    config_path.to_path_buf(),
                    current.clone(),
                    old,
                    root.clone(),
                )));
            }
            done = async { reload.as_mut().expect("guarded").await }, if reload.is_some() => {
                reload = None;
                match done {
                    Reloaded::Applied(ctx, r) => {
                        if ctx.config.http.listen != listen {
                            tracing::warn!(old = %listen, new = %ctx.config.http.listen,
                                "http.listen changed: restart the service to move the endpoint");
                        }
                        current = ctx.clone();
                        let _ = ctx_tx.send(ctx);
                        running = Some(r);
                        tracing::info!("configuration reloaded");
                    }
                    Reloaded::Rejected(r, e) => {
                        tracing::error!("reload rejected, keeping the running configuration: {e:#}");
                        running = Some(r);
                    }
                    Reloaded::Stopped => unreachable!("root is cancelled only after the loop"),
                }
                crate::systemd::ready(&format!("watching {}", current.okta.org_url()));
            }
            // This loop runs on the thread that called `block_on`, so it would keep ticking
            // with every worker wedged; each ping therefore waits for proof that a worker can
            // still run a task and get the store, as every component needs to.
            _ = wd_tick.tick(), if watchdog.is_some() && wd_check.is_none() => {
                let within = watchdog.expect("guarded");
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

    tracing::info!("stopping: letting in-flight work finish");
    crate::systemd::stopping();
    root.cancel();
    let stop = async {
        if let Some(pending) = reload.take() {
            // Cancelled by `root`, the reload ends without starting a new generation; at most
            // it finishes stopping the old one, whose grace began before the signal.
            match pending.await {
                Reloaded::Applied(_, r) | Reloaded::Rejected(r, _) => running = Some(r),
                Reloaded::Stopped => {}
            }
        }
        match running.take() {
            Some(r) => r.stop(daemon::SHUTDOWN_GRACE).await,
            None => true,
        }
    };
    // `Running::stop` aborts after its grace, but an aborted task only ends at its next await
    // point; this bound keeps the exit inside the unit's TimeoutStopSec= whatever happens.
    let clean = tokio::select! {
        clean = tokio::time::timeout(STOP_DEADLINE, stop) => clean.unwrap_or_else(|_| {
            tracing::warn!(?STOP_DEADLINE, "in-flight work did not stop in time; exiting anyway");
            false
        }),
        _ = sigs.stop() => {
            tracing::warn!("second signal: exiting without waiting for in-flight work");
            false
        }
    };
    http_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    tracing::info!(clean, "stopped");
    Ok(ExitCode::SUCCESS)
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn stop(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// One authenticated System Log read. Credentials and permission errors fail at once (no
/// amount of waiting fixes a revoked token); unreachable Okta is retried until `deadline`.
pub async fn probe_okta(okta: &OktaClient, deadline: Duration) -> Result<(), OktaError> {
    let until = tokio::time::Instant::now() + deadline;
    let mut wait = Duration::from_secs(2);
    loop {
        // One `get_page` retries 5xx and timeouts itself (several request timeouts in all), so
        // the deadline bounds each attempt too, not just the decision to try again.
        let attempt = tokio::time::timeout_at(until, okta.get_page(PROBE_PATH)).await;
        let attempt = attempt.unwrap_or_else(|_| {
            Err(OktaError::Retryable {
                path: PROBE_PATH.to_string(),
                detail: format!("no answer within {deadline:?}"),
            })
        });
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if e.is_transient() && tokio::time::Instant::now() + wait < until => {
                tracing::warn!(error = %e, "Okta not answering yet; retrying in {wait:?}");
                crate::systemd::status(&format!("waiting for Okta: {e}"));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(15));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether the daemon can still make progress: a task spawned on the runtime's workers takes
/// the store connection and runs a query within `within`.
async fn alive(ctx: Context, within: Duration) -> bool {
    let check = tokio::spawn(async move {
        ctx.store
            .call(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
    });
    matches!(tokio::time::timeout(within, check).await, Ok(Ok(Ok(1))))
}

enum Reloaded {
    Applied(Context, Running),
    Rejected(Running, anyhow::Error),
    /// Shutdown began while the old generation was being stopped: nothing is running.
    Stopped,
}

async fn reload_daemon(
    path: std::path::PathBuf,
    old_ctx: Context,
    old: Running,
    root: CancellationToken,
) -> Reloaded {
    let prepared = tokio::select! {
        r = prepare_reload(&path, &old_ctx) => r,
        _ = root.cancelled() => Err(anyhow::anyhow!("shutting down")),
    };
    match prepared {
        Err(e) => Reloaded::Rejected(old, e),
        Ok(ctx) => {
            // Strictly one generation at a time: two pollers on one cursor would race.
            old.stop(daemon::SHUTDOWN_GRACE).await;
            if root.is_cancelled() {
                // A stop signal arrived meanwhile: starting (and then stopping) a new
                // generation would only push the exit past TimeoutStopSec=.
                return Reloaded::Stopped;
            }
            let r = daemon::start(ctx.clone(), root.child_token());
            Reloaded::Applied(ctx, r)
        }
    }
}

/// Loads, validates and proves the new config without touching the running daemon.
async fn prepare_reload(path: &Path, old: &Context) -> anyhow::Result<Context> {
    let config = super::load_config(path)?;
    if config.log != old.config.log {
        tracing::warn!("[log] changes take effect at the next restart");
    }
    let ctx = context_reusing(config, old)?;
    ctx.store
        .check_writable()
        .with_context(|| format!("state store {} is not writable", ctx.store.path().display()))?;
    probe_okta(&ctx.okta, Duration::from_secs(20))
        .await
        .context("the new configuration cannot read the System Log")?;
    Ok(ctx)
}

/// A context for `config` that keeps the old metrics registry and health record, so counters
/// do not reset and `/healthz` keeps its history across a reload.
fn context_reusing(config: Config, old: &Context) -> anyhow::Result<Context> {
    let store = Store::open(&config.state.path)
        .with_context(|| format!("opening the state store {}", config.state.path.display()))?;
    let okta = OktaClient::new(client_options(&config, old.clock, old.metrics.clone()))
        .context("building the Okta client")?;
    Ok(Context {
        config: std::sync::Arc::new(config),
        store,
        okta,
        metrics: old.metrics.clone(),
        health: old.health.clone(),
        clock: old.clock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn ctx(dir: &Path, org: &str) -> Context {
        let text = format!(
            "[okta]\norg_url = \"{org}\"\napi_token_env = \"T\"\n[state]\npath = \"{}\"\n",
            dir.join("state.db").display()
        );
        let config = Config::from_toml_str(&text, &Env::from_map([("T", "secret-token")])).unwrap();
        Context::new(config, Clock::system()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchdog_liveness_needs_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path(), "http://127.0.0.1:9");
        assert!(alive(c.clone(), Duration::from_secs(30)).await);
        // A component wedged while holding the connection: no proof of life, so no ping.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let store = c.store.clone();
        let wedged = std::thread::spawn(move || {
            store
                .blocking(|_| {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_startup_probe_keeps_its_deadline_when_okta_never_answers() {
        // Accepts connections (the kernel does, into the backlog) but never answers, like a
        // black-holed proxy: each request would wait out the 30 s request timeout, retried.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let org = format!("http://{}", silent.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let c = ctx(dir.path(), &org);
        let t = std::time::Instant::now();
        let r = probe_okta(&c.okta, Duration::from_secs(1)).await;
        assert!(matches!(r, Err(OktaError::Retryable { .. })), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        drop(silent);
    }
}
