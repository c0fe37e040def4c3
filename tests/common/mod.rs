//! Shared helpers for integration tests: a simulated Okta org on a loopback port and a config
//! with a temp state dir pointing at it.
#![allow(dead_code)]

use okta_provwatch::clock::Clock;
use okta_provwatch::config::{Config, Env};
use okta_provwatch::context::Context;
use okta_sim::OktaSim;
use std::path::Path;
use std::time::Duration;

pub const TOKEN_ENV: &str = "TEST_OKTA_TOKEN";

/// The TOML of a config aimed at `sim`, keeping state under `dir`.
pub fn config_toml(sim: &OktaSim, dir: &Path) -> String {
    format!(
        r#"
[okta]
org_url = "{org}"
api_token_env = "{TOKEN_ENV}"
rate_limit_share = 0.5

[state]
path = "{state}"

[detect]
poll_interval = "5s"
initial_lookback = "24h"
scan_schedule = "0 0 * * * *"

[http]
listen = "127.0.0.1:0"
"#,
        org = sim.base_url(),
        state = dir.join("state.db").display(),
    )
}

pub fn config(sim: &OktaSim, dir: &Path) -> Config {
    Config::from_toml_str(
        &config_toml(sim, dir),
        &Env::from_map([(TOKEN_ENV, sim.api_token())]),
    )
    .expect("test config is valid")
}

pub fn context(config: Config) -> Context {
    Context::new(config, Clock::system()).expect("context")
}

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
