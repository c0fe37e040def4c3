//! `okta-provwatch silence` (being written).

use std::path::Path;
use std::process::ExitCode;

pub async fn run(_config: &Path, _args: &crate::cli::SilenceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("silence is not available in this build yet")
}
