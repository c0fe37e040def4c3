//! `okta-provwatch run`: the daemon in the foreground, for systemd (`Type=notify`).
//!
//! Start-up is ordered so that `systemctl start` fails visibly instead of reporting a daemon
//! that cannot work: config, state store, the HTTP listener and one real Okta call all succeed
//! before READY=1. Errors that a restart cannot fix (bad config, rejected token) exit with
//! [`exit::CONFIG`], which the unit lists in `RestartPreventExitStatus=`.
//!
//! A second `run` on the same state exits at once with [`EXIT_LOCKED`] (75), naming the
//! holder's pid and host ([`crate::daemon::lock`]).
//!
//! Once started, the daemon is a [`Supervisor`] fed by signals: SIGTERM/SIGINT stop polling and
//! give in-flight Okta calls and alert deliveries [`daemon::SHUTDOWN_GRACE`] to finish, then
//! exit 0 (a second signal at least [`daemon::FORCE_AFTER`] later exits at once). SIGHUP
//! reloads: the new config is validated and proved against Okta while the old daemon keeps
//! running; only then is the old one stopped and the new one started. A bad new config is
//! logged and the old one stays in force. A component that dies exits 1 (systemd restarts).

use crate::cli::LogFormatArg;
use crate::clock::Clock;
use crate::config::LogFormat;
use crate::context::Context;
use crate::daemon::lock::{LockError, StateLock};
use crate::daemon::{self, Supervisor};
use crate::exit;
use crate::okta::{OktaClient, OktaError};
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long start-up keeps retrying an Okta that is unreachable (not one that refuses us),
/// kept under the unit's `TimeoutStartSec=`.
pub const STARTUP_OKTA_DEADLINE: Duration = Duration::from_secs(60);

pub use crate::daemon::lock::EXIT_LOCKED;

/// Exit status for a failure to build the context: [`exit::CONFIG`] only for what a restart
/// cannot fix (an unusable OAuth key, a state file from a newer version); anything else (a
/// busy or briefly unwritable database) exits 1 so that systemd restarts the service.
fn startup_exit_code(e: &anyhow::Error) -> u8 {
    let permanent = e.chain().any(|c| {
        matches!(c.downcast_ref::<OktaError>(), Some(OktaError::Config(_)))
            || matches!(
                c.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::TooNew { .. })
            )
            || c.is::<crate::store::diagnose::Unusable>()
    });
    if permanent {
        exit::CONFIG
    } else {
        exit::GENERIC
    }
}

/// The System Log is what the daemon cannot work without, so it is what start-up proves.
pub const PROBE_PATH: &str = "/api/v1/logs?limit=1";

pub async fn run(config_path: &Path, log_format: Option<LogFormatArg>) -> anyhow::Result<ExitCode> {
    // Handlers first: a SIGTERM during a slow start-up must still end in a clean exit.
    let mut events = daemon::signal_events()?;
    let config = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("okta-provwatch: {e:#}");
            return Ok(exit::code(exit::CONFIG));
        }
    };
    let format = match log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Text) => LogFormat::Text,
        None => config.log.format,
    };
    crate::telemetry::init(format, &config.log.level);
    // Before the store is opened: a refused second daemon must not even run migrations.
    let lock = match StateLock::acquire(&config.state.path) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            tracing::error!("cannot start: {e}");
            return Ok(ExitCode::from(EXIT_LOCKED));
        }
        Err(e) => {
            // The lock sits beside the database: the same causes stop both, named once.
            if let Some(why) = crate::store::diagnose::unusable(&config.state.path) {
                tracing::error!("cannot start: {why}");
                return Ok(exit::code(exit::CONFIG));
            }
            tracing::error!("cannot start: {e}");
            // A state directory that is read-only, not ours or impossible to create stays so
            // across restarts: 78 stops systemd from retrying every RestartSec.
            let permanent = matches!(&e, LockError::Io { source, .. } if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::NotADirectory
            ));
            return Ok(exit::code(if permanent {
                exit::CONFIG
            } else {
                exit::GENERIC
            }));
        }
    };
    let clock = Clock::system();
    let ctx = match Context::new(config, clock).and_then(|c| {
        c.store
            .check_writable()
            .with_context(|| format!("state store {} is not writable", c.store.path().display()))?;
        Ok(c)
    }) {
        Ok(c) => c.with_lock(lock),
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
                exit::code(exit::CONFIG)
            } else {
                ExitCode::FAILURE
            });
        },
        _ = daemon::stop_requested(&mut events) => {
            tracing::info!("stopped before start-up finished");
            return Ok(ExitCode::SUCCESS);
        }
    }

    tracing::info!(%listen, "ready");
    let path = config_path.to_path_buf();
    let outcome = Supervisor::new(ctx)
        .http(listener)
        .watchdog(crate::systemd::watchdog_interval())
        .reloader(Arc::new(move |old| {
            let path = path.clone();
            Box::pin(async move { prepare_reload(&path, &old).await })
        }))
        .run(events)
        .await;
    Ok(match outcome.failed_component {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
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
                detail: format!("no answer within {}", humantime::format_duration(deadline)),
            })
        });
        match attempt {
            Ok(_) => return Ok(()),
            Err(e) if e.is_transient() && tokio::time::Instant::now() + wait < until => {
                tracing::warn!(error = %e, retry_in = %humantime::format_duration(wait), "Okta not answering yet; retrying");
                crate::systemd::status(&format!("waiting for Okta: {e}"));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(15));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Loads, validates and proves the new config without touching the running daemon.
async fn prepare_reload(path: &Path, old: &Context) -> anyhow::Result<Context> {
    let config = super::load_config(path)?;
    let ctx = old.reload(config)?;
    ctx.store
        .check_writable()
        .with_context(|| format!("state store {} is not writable", ctx.store.path().display()))?;
    probe_okta(&ctx.okta, Duration::from_secs(20))
        .await
        .context("the new configuration cannot read the System Log")?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Env};

    fn ctx(dir: &Path, org: &str) -> Context {
        let text = format!(
            "[okta]\norg_url = \"{org}\"\napi_token_env = \"T\"\n[state]\npath = \"{}\"\n",
            dir.join("state.db").display()
        );
        let config = Config::from_toml_str(&text, &Env::from_map([("T", "secret-token")])).unwrap();
        Context::new(config, Clock::system()).unwrap()
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
