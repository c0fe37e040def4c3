//! `okta-provwatch retry` (being written).

use std::path::Path;
use std::process::ExitCode;

pub async fn run(_config: &Path, _args: &crate::cli::RetryArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("retry is not available in this build yet")
}
