//! The one harness every integration test in `tests/` shares: the fakes (Okta org, Slack, SMTP)
//! started on loopback port 0, a temp directory for state, the minimal test config (written
//! here once, not copied per file), a context built from it, an HTTP client, and the waiting
//! helpers for real and paused time.
//!
//! Each test binary compiles this module separately and uses only part of it, hence the
//! `dead_code` allowance.
#![allow(dead_code)]

use okta_provwatch::clock::Clock;
use okta_provwatch::config::{Config, Env};
use okta_provwatch::context::Context;
use okta_sim::slack::FakeSlack;
use okta_sim::smtp::SmtpSink;
use okta_sim::OktaSim;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

/// The variable the test configs name in `api_token_env`; its value comes from the map passed
/// to [`parse_config`], never from the process environment, so tests cannot see each other's.
pub const TOKEN_ENV: &str = "TEST_OKTA_TOKEN";

/// An org URL nothing listens on (the discard port), for tests that never call Okta.
pub const UNREACHABLE_ORG: &str = "http://127.0.0.1:9/";

/// The `[detect]` and `[http]` tables of the detection tests: a 5 s poll, a day of look-back,
/// the hourly scan, and an HTTP listener on a free port.
pub const DETECT_SECTIONS: &str = r#"
[detect]
poll_interval = "5s"
initial_lookback = "24h"
scan_schedule = "0 0 * * * *"

[http]
listen = "127.0.0.1:0"
"#;

// ---- temp state and fakes ------------------------------------------------------------------

/// A fresh temp directory (removed on drop) for the state file and anything else a test writes.
pub fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("creating a temp dir for test state")
}

/// The state file the minimal config points at inside `dir`.
pub fn state_path(dir: &Path) -> std::path::PathBuf {
    dir.join("state.db")
}

/// The simulated Okta org, on a loopback port of its own.
pub async fn start_okta() -> OktaSim {
    OktaSim::start()
        .await
        .expect("the Okta simulator binds 127.0.0.1:0")
}

/// The fake Slack (webhooks and Web API), on a loopback port of its own.
pub async fn start_slack() -> FakeSlack {
    FakeSlack::start()
        .await
        .expect("the fake Slack binds 127.0.0.1:0")
}

/// The SMTP sink, on a loopback port of its own.
pub async fn start_smtp() -> SmtpSink {
    SmtpSink::start()
        .await
        .expect("the SMTP sink binds 127.0.0.1:0")
}

/// A loopback port that nothing listens on (bound, then released), for refused connections.
pub fn closed_port() -> u16 {
    free_port()
}

/// A port that was free a moment ago, for a process that binds it itself. There is a small
/// race with other processes; loopback ports are plentiful enough for tests.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr()
        .expect("a bound socket has an address")
        .port()
}

// ---- config ----------------------------------------------------------------------------------

/// The minimal config every integration test starts from: `[okta]` aimed at `org_url` with
/// its token in [`TOKEN_ENV`], and `[state]` in `dir`. `okta_extra` adds `key = value` lines to
/// `[okta]`; `sections` appends further tables (TOML forbids repeating `[okta]`/`[state]`).
pub fn minimal_toml(org_url: &str, dir: &Path, okta_extra: &str, sections: &str) -> String {
    format!(
        r#"[okta]
org_url = "{org_url}"
api_token_env = "{TOKEN_ENV}"
{okta_extra}

[state]
path = "{state}"
{sections}
"#,
        state = state_path(dir).display(),
    )
}

/// Parses a config the helpers wrote: [`TOKEN_ENV`] is `token`, `env` adds further variables.
pub fn parse_config(toml: &str, token: &str, env: &[(&str, &str)]) -> Config {
    let vars = std::iter::once((TOKEN_ENV, token)).chain(env.iter().copied());
    Config::from_toml_str(toml, &Env::from_map(vars))
        .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{toml}"))
}

/// The detection tests' config aimed at `sim`, keeping state under `dir`: half of each rate
/// limit bucket, [`DETECT_SECTIONS`].
pub fn config_toml(sim: &OktaSim, dir: &Path) -> String {
    minimal_toml(
        sim.base_url().as_str(),
        dir,
        "rate_limit_share = 0.5",
        DETECT_SECTIONS,
    )
}

/// [`config_toml`], parsed with the simulator's token.
pub fn config(sim: &OktaSim, dir: &Path) -> Config {
    parse_config(&config_toml(sim, dir), &sim.api_token(), &[])
}

/// A config aimed at `sim` with state under `dir` and `sections` appended.
pub fn config_with(sim: &OktaSim, dir: &Path, sections: &str) -> Config {
    let toml = minimal_toml(sim.base_url().as_str(), dir, "", sections);
    parse_config(&toml, &sim.api_token(), &[])
}

/// The daemon's context on the wall clock.
pub fn context(config: Config) -> Context {
    context_on(config, Clock::system())
}

/// The daemon's context on `clock` (`Clock::tokio()` for paused-time tests).
pub fn context_on(config: Config, clock: Clock) -> Context {
    Context::new(config, clock).expect("building the context from a valid test config")
}

// ---- HTTP --------------------------------------------------------------------------------------

/// A reqwest client builder. The workspace builds reqwest without a crypto provider of its own
/// (ring, not aws-lc), so the ring provider is installed as the process default first.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A plain client for talking to the fakes and the daemon's HTTP endpoint.
pub fn http_client() -> reqwest::Client {
    http_builder().build().expect("building an HTTP client")
}

// ---- waiting -----------------------------------------------------------------------------------

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, mut cond: F) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sleeps in 1 s steps of (paused) time until `f` holds; panics naming `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
