//! `okta-provwatch retry`: retry failed assignments now, by failure id, app, user or all.
//! A thin shell over [`crate::retry::manual`]: one output line per failure, non-zero exit
//! when any retry failed. Safe to run while the daemon runs: the state store arbitrates.

use crate::clock::Clock;
use crate::context::Context;
use crate::retry::manual::{self, Options, Selector};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path, args: &crate::cli::RetryArgs) -> anyhow::Result<ExitCode> {
    let selector = Selector::from_args(args)?;
    let config = super::load_config(config_path)?;
    let ctx = Context::new(config, Clock::system())?;
    let opts = Options::new(manual::cli_actor(), args.dry_run);
    let summary = manual::run_manual(&ctx, &selector, &opts, |line| {
        println!("{}", line.render());
    })
    .await?;
    if summary.lines.is_empty() {
        println!("nothing to retry: no unresolved failure matches");
    }
    Ok(if summary.any_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
