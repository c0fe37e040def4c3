//! One module per subcommand. Each exposes `run(...) -> anyhow::Result<ExitCode>`.

pub mod check_config;
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod retry;
pub mod run;
pub mod silence;
pub mod status;

use crate::config::Config;
use crate::store::Store;
use anyhow::Context as _;
use std::path::Path;

/// Loads and validates the config, naming the file in the error.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("config {}", path.display()))
}

/// Opens the state store named by the config, for commands that need nothing else (no
/// secrets, no Okta), so an operator can run them without the daemon's credentials.
pub fn open_store_only(path: &Path) -> anyhow::Result<Store> {
    let state = Config::load_state(path).with_context(|| format!("config {}", path.display()))?;
    Store::open(&state.path)
        .with_context(|| format!("opening the state store {}", state.path.display()))
}
