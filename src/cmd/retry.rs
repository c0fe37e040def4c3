//! `okta-provwatch retry`: retry failed assignments now, by failure id, app, user or all.
//! A thin shell over [`crate::retry::manual`]: one output line per failure, and an exit
//! status a script can branch on (see [`crate::retry::manual::Summary::exit_code`]). Safe to
//! run while the daemon runs: the state store arbitrates.
//!
//! `--dry-run` reads the store only: it loads no secrets and builds no Okta client, so it
//! works without the daemon's token.

use crate::clock::Clock;
use crate::context::Context;
use crate::exit;
use crate::retry::manual::{self, Options, SelectError, Selector, Summary};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path, args: &crate::cli::RetryArgs) -> anyhow::Result<ExitCode> {
    let selector = match Selector::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("okta-provwatch: {e}");
            return Ok(exit::code(exit::USAGE));
        }
    };
    let result = if args.dry_run {
        let store = super::open_existing_store_only(config_path, false)?;
        manual::plan(&store, &selector).await.inspect(|s| {
            s.lines.iter().for_each(|l| println!("{}", l.render()));
        })
    } else {
        let config = super::load_config(config_path)?;
        let ctx = Context::new(config, Clock::system())?;
        let opts = Options::new(manual::cli_actor(), false);
        manual::run_manual(&ctx, &selector, &opts, |line| {
            println!("{}", line.render());
        })
        .await
    };
    Ok(exit::code(finish(result)?))
}

/// Prints what is left to say and picks the exit status.
fn finish(result: Result<Summary, SelectError>) -> anyhow::Result<u8> {
    match result {
        Ok(summary) => {
            if let Some(nothing) = &summary.nothing {
                println!("nothing to retry: {nothing}");
            }
            Ok(summary.exit_code())
        }
        Err(SelectError::Store(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("okta-provwatch: {e}");
            Ok(e.exit_code())
        }
    }
}
