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
use anyhow::Context as _;
use std::path::Path;

/// Loads and validates the config, naming the file in the error.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).with_context(|| format!("config {}", path.display()))
}
