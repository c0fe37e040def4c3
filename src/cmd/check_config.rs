//! `okta-provwatch check-config`: validates the config file without touching the network.
//!
//! A config that does not validate exits with [`crate::exit::CONFIG`] (78), the code the
//! daemon exits with for the same file, so a deployment script can tell "fix the file"
//! from any other failure.

use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match super::load_config(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("okta-provwatch: {e:#}");
            return Ok(crate::exit::code(crate::exit::CONFIG));
        }
    };
    println!("{}: OK", path.display());
    for (key, value) in config.redacted_summary() {
        println!("  {key} = {value}");
    }
    if let Some(hint) = config.okta.admin_console_hint() {
        println!("hint: {hint}");
    }
    Ok(ExitCode::SUCCESS)
}
