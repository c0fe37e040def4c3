//! The command line, defined once here so that `main.rs`, the man page and the shell
//! completions all come from the same clap definitions.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "okta-provwatch",
    version,
    about = "Watches an Okta org for failed app provisioning, retries it, and alerts when it persists",
    propagate_version = true
)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "OKTA_PROVWATCH_CONFIG",
        default_value = crate::config::DEFAULT_CONFIG_PATH
    )]
    pub config: PathBuf,

    /// Log format on stderr (overrides [log] format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll the System Log, scan assignments, retry, alert.
    ///
    /// One daemon per state file: a second `run` on the same `[state] path` exits at once with
    /// 75 (EX_TEMPFAIL), naming the pid and host holding `<state path>.lock`. Exit status: 0
    /// after SIGTERM/SIGINT, 78 for a config or credentials problem a restart cannot fix, 1
    /// otherwise (systemd restarts).
    Run,
    /// List open provisioning failures from the state store (no Okta calls).
    Status(StatusArgs),
    /// Retry failed assignments now.
    ///
    /// Pushes each selected user to the app again through Okta, one at a time at the
    /// configured pace, also while the daemon runs (the state store makes sure only one of
    /// them pushes a user at a time). `--dry-run` reads the state only and needs no Okta
    /// token.
    ///
    /// Exit status: 0 every selected failure was fixed (or, with --dry-run, would be retried),
    /// or the app or user exists but has nothing open; 1 a push failed again, or the failure
    /// named by --failure cannot be retried (a failed deprovisioning: remove the access in
    /// the app, then `okta-provwatch resolve`); 65 no failure, app or user by that name; 75
    /// a failure is being retried by someone else right now, or Okta could not be asked
    /// (rate limit, outage): try again later; 78 the config is invalid or Okta refused the
    /// credentials (an OAuth service app needs the okta.apps.manage scope).
    Retry(RetryArgs),
    /// Close failures by hand with a note (e.g. an account removed by hand in the app).
    Resolve(crate::cmd::resolve::ResolveArgs),
    /// Deactivate an account through the app's SCIM API (dry run unless --yes).
    Remediate(crate::cmd::remediate::RemediateArgs),
    /// Check the setup: config, state store, Okta token and scopes, app settings, Slack, SMTP.
    Doctor(DoctorArgs),
    /// Validate the config file without touching the network.
    CheckConfig,
    /// Mute alerts for an app during maintenance.
    Silence(SilenceArgs),
    /// Manage the Okta event hook that pushes provisioning events to the [hooks] receiver.
    Hooks(HooksArgs),
    /// Run the daemon against a built-in simulated Okta org and show what it does.
    ///
    /// Only in builds with the `demo` cargo feature (`cargo run --release --features demo --
    /// demo`); release packages carry no simulator and exit with 69 (EX_UNAVAILABLE) here.
    Demo(DemoArgs),
    /// Write the man page(s) to a directory.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Print shell completions.
    Completions {
        /// The shell to print completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Machine-readable output: {"failures": [...]}.
    #[arg(long)]
    pub json: bool,
    /// Include resolved failures.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// A failure id (from `status`).
    #[arg(long, conflicts_with_all = ["app", "user", "all"])]
    pub failure: Option<i64>,
    /// An app id or label.
    #[arg(long)]
    pub app: Option<String>,
    /// A user id or login (with or without --app).
    #[arg(long)]
    pub user: Option<String>,
    /// Every open failure that can be retried.
    #[arg(long, conflicts_with_all = ["app", "user"])]
    pub all: bool,
    /// List what would be retried, retry nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output: {"checks": [{"name", "status", "detail"}]}.
    #[arg(long)]
    pub json: bool,
    /// Also send one test alert to every configured channel.
    #[arg(long)]
    pub send_test_alert: bool,
}

#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// App id or label to mute.
    #[arg(long, required_unless_present_any = ["list", "remove"])]
    pub app: Option<String>,
    /// How long, e.g. "2h".
    #[arg(long = "for", required_unless_present_any = ["list", "remove"])]
    pub duration: Option<String>,
    /// Why, shown in `silence --list` and in the log (e.g. "Workday maintenance").
    #[arg(long)]
    pub reason: Option<String>,
    /// List active silences.
    #[arg(long)]
    pub list: bool,
    /// Remove a silence by id.
    #[arg(long)]
    pub remove: Option<i64>,
}

#[derive(Debug, Args)]
pub struct HooksArgs {
    #[command(subcommand)]
    pub command: HooksCommand,
}

#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Create (or replace) the event hook, activate it and have Okta verify the receiver.
    Register {
        /// The public https URL Okta calls (ending in [hooks] path).
        #[arg(long)]
        url: String,
        /// Ask Okta to push only events with outcome FAILURE (orgs with event hook filters).
        #[arg(long)]
        failures_only: bool,
    },
    /// Show the hook as Okta has it and the receiver's last deliveries.
    Status {
        /// Print JSON (hook, receiver, deliveries, events by result) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Deactivate and delete the hook (detection falls back to polling only).
    Remove,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to run the scenario, in seconds.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Keep the daemon, the simulator, the config and the state after the story, and print
    /// the commands to try (`status`, `retry`, `silence`, `/metrics`), until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
}

/// Subcommands that read no config: `--config` is accepted there (it is global) but hidden
/// from their help, which would otherwise suggest it matters.
const IGNORE_CONFIG: [&str; 3] = ["man", "completions", "demo"];

/// The exit statuses, for the end of `okta-provwatch --help` (from [`crate::exit::ALL`]).
fn exit_status_help() -> String {
    let mut s = String::from("Exit status:\n");
    for (code, meaning) in crate::exit::ALL {
        s.push_str(&format!("  {code:>3}  {meaning}\n"));
    }
    s
}

/// The clap command, for parsing, man pages and completions: the derived definition with
/// the exit statuses appended to the long help and `--config` hidden where it is ignored.
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command().after_long_help(exit_status_help());
    // clap copies a global argument into every subcommand that has none of that name when
    // the command is built; a hidden local `--config` there takes its place, so the option
    // is still accepted (scripts pass it everywhere) but not offered.
    for name in IGNORE_CONFIG {
        cmd = cmd.mut_subcommand(name, |sc| {
            sc.arg(
                clap::Arg::new("config")
                    .long("config")
                    .value_parser(clap::value_parser!(PathBuf))
                    .hide(true),
            )
        });
    }
    cmd
}

/// Parses the process's arguments with [`command`] (clap exits with 2 on a usage error).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}
