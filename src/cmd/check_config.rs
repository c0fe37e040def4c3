//! `okta-provwatch check-config`: validates the config file without touching the network.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(path)?;
    println!("{}: OK", path.display());
    for (key, value) in config.redacted_summary() {
        println!("  {key} = {value}");
    }
    Ok(ExitCode::SUCCESS)
}
