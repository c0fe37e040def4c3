//! `okta-provwatch demo` (being written).

use std::process::ExitCode;

pub async fn run(_args: &crate::cli::DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo is not available in this build yet")
}
