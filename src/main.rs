//! The `okta-provwatch` binary: parses the command line and hands over to the library.

use okta_provwatch::cli::{self, Command};
use okta_provwatch::{cmd, exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    let result = match cli.command {
        Command::CheckConfig => cmd::check_config::run(&cli.config),
        Command::Status(ref a) => cmd::status::run(&cli.config, a),
        Command::Man { ref out_dir } => cmd::generate::man(out_dir),
        Command::Completions { shell } => cmd::generate::completions(shell),
        _ => runtime().and_then(|rt| {
            let result = rt.block_on(async {
                match &cli.command {
                    Command::Run => cmd::run::run(&cli.config, cli.log_format).await,
                    Command::Retry(a) => cmd::retry::run(&cli.config, a).await,
                    Command::Resolve(a) => cmd::resolve::run(&cli.config, a).await,
                    Command::Remediate(a) => cmd::remediate::run(&cli.config, a).await,
                    Command::Doctor(a) => cmd::doctor::run(&cli.config, a).await,
                    Command::Silence(a) => cmd::silence::run(&cli.config, a).await,
                    Command::Hooks(a) => cmd::hooks::run(&cli.config, a).await,
                    Command::Demo(a) => cmd::demo::run(a).await,
                    _ => unreachable!("handled above"),
                }
            });
            // A blocking task still running (a SQLite call in its busy timeout, a DNS lookup)
            // must not hold the exit past systemd's TimeoutStopSec.
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            result
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line a person can act on; the chain says where it came from. The status
            // says what kind of failure it was, for scripts and systemd (see `exit`).
            eprintln!("okta-provwatch: {e:#}");
            exit::code(exit::for_error(&e))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // The ops hosts have two cores; two workers keep the daemon from fighting its neighbours.
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
