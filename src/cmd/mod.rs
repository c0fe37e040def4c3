//! One module per subcommand. Each exposes `run(...) -> anyhow::Result<ExitCode>`.

pub mod check_config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod hooks;
pub mod remediate;
pub mod resolve;
pub mod retry;
pub mod run;
pub mod silence;
pub mod status;
pub mod status_deprovision;

/// Without the `demo` feature, `okta-provwatch demo` says how to get a build that has it: the
/// simulator (a fake Okta org, Slack and SMTP) stays out of release binaries and packages.
#[cfg(not(feature = "demo"))]
pub mod demo {
    use crate::cli::DemoArgs;
    use std::process::ExitCode;

    /// sysexits.h `EX_UNAVAILABLE`: this build lacks the feature.
    pub const EXIT_NO_DEMO: u8 = 69;

    pub async fn run(_args: &DemoArgs) -> anyhow::Result<ExitCode> {
        eprintln!(
            "okta-provwatch: this build has no demo (the simulator is left out of release builds); \
             from a source checkout run: cargo run --release --features demo -- demo"
        );
        Ok(ExitCode::from(EXIT_NO_DEMO))
    }
}

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
    open_store(&state.path)
}

/// Opens (or creates) the state store at `path`. When that fails, the error says why in the
/// file system's terms ([`crate::store::diagnose`]: read-only, permissions with owner and
/// uid, a file where a directory should be), once, instead of SQLite's "unable to open
/// database file" with the path repeated.
pub fn open_store(path: &Path) -> anyhow::Result<Store> {
    Store::open(path).map_err(|e| match crate::store::diagnose::unusable(path) {
        Some(why) => anyhow::Error::new(why),
        None => anyhow::Error::new(e),
    })
}

/// Like [`open_store_only`] for commands that only look at existing state (`status`,
/// `silence --list`/`--remove`): never creates the file or its directory, so a mistyped
/// `[state] path` is an error naming the path, not an empty store read as "all clear".
pub fn open_existing_store_only(path: &Path, writable: bool) -> anyhow::Result<Store> {
    let state = Config::load_state(path).with_context(|| format!("config {}", path.display()))?;
    let store = if writable {
        Store::open_existing_writable(&state.path)
    } else {
        Store::open_existing(&state.path)
    };
    // The store error already names the path and the next step.
    Ok(store?)
}
