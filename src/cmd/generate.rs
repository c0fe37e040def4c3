//! `okta-provwatch man` and `okta-provwatch completions`: generated from the clap definitions.

use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;

pub fn man(out_dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    clap_mangen::generate_to(crate::cli::command(), out_dir)
        .with_context(|| format!("writing man pages to {}", out_dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::cli::command();
    clap_complete::generate(shell, &mut cmd, "okta-provwatch", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
