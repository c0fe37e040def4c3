//! `okta-provwatch demo`: the real daemon against a simulated Okta org, narrated live.
//!
//! Starts the Okta simulator, a fake Slack and an SMTP sink in this process, writes a config
//! pointing at them (intervals shortened so a whole incident fits in half a minute), runs the
//! same [`Supervisor`] that `run` uses, and prints what happens as it happens: the scenario's
//! moves, each failure's history (detected, retried, resolved) as the daemon writes it to the
//! store, and every Slack message and email the fakes receive. Nothing leaves the machine.
//!
//! The scenario: "Salesforce" is down for a while and then recovers (retries resolve the
//! failures); "Workday" rejects one user because "department is required" (a data problem no
//! retry fixes, so it alerts); "Zoom" fails to deprovision a departing user (urgent).
//!
//! With `--keep` everything stays up after the story (daemon, simulator, config and state) and
//! the exact `status`, `retry`, `silence` and `curl .../metrics` commands to try are printed,
//! until Ctrl-C. Only built with the `demo` cargo feature: release packages carry no fakes.

use crate::cli::DemoArgs;
use crate::clock::Clock;
use crate::config::{parse_schedule, Config, Env};
use crate::context::Context;
use crate::daemon::lock::StateLock;
use crate::daemon::{Event, Supervisor};
use crate::store::failures::Operation;
use crate::store::narration::{self, Happened};
use okta_sim::slack::FakeSlack;
use okta_sim::smtp::SmtpSink;
use okta_sim::{Downstream, OktaSim};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const REJECT_REASON: &str = "Bad Request. Errors reported by remote server: department is required";
const TOKEN_VAR: &str = "DEMO_OKTA_API_TOKEN";
const WEBHOOK_VAR: &str = "DEMO_SLACK_WEBHOOK_URL";
/// The simulator answers at once, so the demo's daemon stops in well under a second; this
/// bounds a stuck one without stretching the demo by the production grace of 20 s.
const DEMO_STOP_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // The daemon's own logs would drown the narration; warnings and errors still show.
    crate::telemetry::init(crate::config::LogFormat::Text, "warn");
    let seconds = args.seconds.max(10);
    let t0 = Instant::now();
    let say = |what: &str, line: String| {
        println!("[{:>5.1}s] {what:<9} {line}", t0.elapsed().as_secs_f64());
    };

    // Installed once, before anything else: a Ctrl-C between two polls of a fresh
    // `ctrl_c()` future would be swallowed (the handler is installed, nobody is listening).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let sim = OktaSim::start().await?;
    let slack = FakeSlack::start().await?;
    let smtp = SmtpSink::start().await?;
    // Removed when this function returns, by any path (an error with `?` included).
    let dir = TempDir::create()?;
    let dir = dir.path();
    let config_path = dir.join("config.toml");
    std::fs::write(
        &config_path,
        demo_config(&sim.base_url(), &smtp.url(), &dir.join("state.db")),
    )?;
    let env = Env::from_map([
        (TOKEN_VAR, sim.api_token()),
        (WEBHOOK_VAR, slack.webhook_url()),
    ]);
    let mut config = Config::load_with_env(&config_path, &env)?;
    shorten(&mut config)?;

    println!("okta-provwatch demo: a simulated Okta org, fake Slack and SMTP on loopback.");
    println!("  Okta (simulated)  {}", sim.base_url());
    println!("  config            {}", config_path.display());
    println!(
        "  intervals         poll 1s, assignment scan every 5s, first retry after 2s, alert after 5s unresolved"
    );

    // The org before the daemon starts: three apps, a few people.
    let salesforce = sim.add_app("Salesforce");
    let workday = sim.add_app("Workday");
    let zoom = sim.add_app("Zoom");
    let people: Vec<(String, String)> = ["alice", "bob", "carol", "dana", "erin", "frank"]
        .iter()
        .map(|n| {
            let login = format!("{n}@acme.example");
            (sim.add_user(&login), login)
        })
        .collect();
    let id = |n: usize| people[n].0.clone();
    sim.assign(&zoom, &id(5));

    // The same exclusive lock `run` takes: the demo's daemon owns its (fresh) state.
    let lock = StateLock::acquire(&config.state.path)?;
    let ctx = Context::new(config, Clock::system())?.with_lock(lock);
    let listener = crate::http::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let metrics_url = format!("http://{}/metrics", listener.local_addr()?);
    println!("  metrics           {metrics_url}");
    println!();
    let (events, events_rx) = mpsc::channel(4);
    let daemon = tokio::spawn(
        Supervisor::new(ctx.clone())
            .http(listener)
            .grace(DEMO_STOP_GRACE)
            .run(events_rx),
    );
    say(
        "daemon",
        "started (the same supervisor and components `run` starts)".into(),
    );

    say(
        "scenario",
        "Salesforce's SCIM server goes down; alice, bob and carol are assigned to it".into(),
    );
    sim.set_downstream(&salesforce, Downstream::Down);
    for n in 0..3 {
        sim.assign(&salesforce, &id(n));
    }
    say(
        "scenario",
        format!("Workday rejects dana: \"{REJECT_REASON}\"; erin is assigned too"),
    );
    sim.set_downstream(
        &workday,
        Downstream::Reject {
            logins: vec![people[3].1.clone()],
            reason: REJECT_REASON.into(),
        },
    );
    sim.assign(&workday, &id(3));
    sim.assign(&workday, &id(4));

    let mut watcher = Watcher::default();
    let recover_at = Duration::from_secs((seconds * 2 / 5).max(8));
    let deprovision_at = Duration::from_secs(3);
    let (mut recovered, mut deprovisioned, mut interrupted) = (false, false, false);
    let end = Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while t0.elapsed() < end {
        tokio::select! {
            _ = tick.tick() => {}
            _ = interrupt.recv() => {
                say("demo", "interrupted".into());
                interrupted = true;
                break;
            }
        }
        if !deprovisioned && t0.elapsed() >= deprovision_at {
            deprovisioned = true;
            say(
                "scenario",
                "frank leaves: unassigned from Zoom while Zoom's SCIM server is failing".into(),
            );
            sim.set_downstream(&zoom, Downstream::Down);
            sim.deactivate(&zoom, &id(5));
        }
        if !recovered && t0.elapsed() >= recover_at {
            recovered = true;
            say("scenario", "Salesforce's SCIM server is back up".into());
            sim.set_downstream(&salesforce, Downstream::Healthy);
        }
        for (what, line) in watcher.poll(&ctx, &slack, &smtp).await {
            say(what, line);
        }
    }

    if args.keep && !interrupted {
        print_try_it(&config_path, &sim.api_token(), &metrics_url);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for (what, line) in watcher.poll(&ctx, &slack, &smtp).await {
                        say(what, line);
                    }
                }
                _ = interrupt.recv() => break,
            }
        }
    }

    say("daemon", "stopping (as on SIGTERM)".into());
    let _ = events.send(Event::Stop).await;
    // The supervisor also waits (bounded) for the HTTP server's open connections.
    let clean = daemon.await.map(|o| o.clean).unwrap_or(false);
    for (what, line) in watcher.poll(&ctx, &slack, &smtp).await {
        say(what, line);
    }
    let open = ctx
        .store
        .read(narration::open_failures)
        .await
        .unwrap_or_default();
    println!();
    println!(
        "Stopped {}. {} failure(s) still open, {} Slack message(s) and {} email(s) sent.",
        if clean {
            "cleanly"
        } else {
            "after the grace period"
        },
        open.len(),
        slack.messages().len(),
        smtp.messages().len()
    );
    for f in &open {
        let who = if f.user_name().is_empty() {
            "the whole app".to_string()
        } else {
            f.user_name().to_string()
        };
        println!(
            "  still open: {}: {} {who}{}",
            f.app_name(),
            doing(f.operation),
            if f.urgent { " (URGENT)" } else { "" }
        );
    }
    println!("Try it on your org: see README.md, then `okta-provwatch doctor`.");
    sim.shutdown();
    Ok(ExitCode::SUCCESS)
}

/// The demo's working directory (config and state), removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn create() -> anyhow::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "okta-provwatch-demo-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo_config(org: &str, smtp_url: &str, state: &std::path::Path) -> String {
    format!(
        r#"# Written by `okta-provwatch demo`; the demo shortens the intervals after loading.
[okta]
org_url = "{org}"
api_token_env = "{TOKEN_VAR}"

[state]
path = "{state}"

[detect]
initial_lookback = "1h"

[retry]
enabled = true
max_attempts = 4
initial_backoff = "2s"
max_backoff = "4s"

[alert]
persist_after = "5s"
group_wait = "1s"
group_interval = "5s"
repeat_interval = "1h"

[slack]
webhook_url_env = "{WEBHOOK_VAR}"

[email]
smtp_url = "{smtp_url}"
from = "okta-provwatch demo <provwatch@acme.example>"
to = ["it-ops@acme.example"]
"#,
        state = state.display()
    )
}

/// Intervals below what the config validator allows for production (it refuses polls under
/// 5 s so a real org is not hammered); fine against a simulator.
fn shorten(c: &mut Config) -> anyhow::Result<()> {
    c.detect.poll_interval = Duration::from_secs(1);
    c.detect.scan_schedule = parse_schedule("detect.scan_schedule", "*/5 * * * * *")?;
    c.retry.initial_backoff = Duration::from_secs(2);
    c.alert.persist_after = Duration::from_secs(5);
    c.alert.group_wait = Duration::from_secs(1);
    c.alert.group_interval = Duration::from_secs(5);
    Ok(())
}

/// Remembers what has been printed so each history row and message is shown once.
#[derive(Default)]
struct Watcher {
    last_history: i64,
    slack_seen: usize,
    mail_seen: usize,
}

impl Watcher {
    async fn poll(
        &mut self,
        ctx: &Context,
        slack: &FakeSlack,
        smtp: &SmtpSink,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let after = self.last_history;
        let rows = ctx
            .store
            .read(move |tx| narration::history_since(tx, after))
            .await
            .unwrap_or_default();
        for h in rows {
            self.last_history = h.history_id;
            out.push(tell(&h));
        }
        let msgs = slack.messages();
        for m in msgs.iter().skip(self.slack_seen) {
            let text = m
                .body
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or("(blocks only)");
            out.push(("slack", first_line(text)));
        }
        self.slack_seen = msgs.len();
        let mails = smtp.messages();
        for m in mails.iter().skip(self.mail_seen) {
            let subject = m
                .data
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("(no subject)");
            out.push(("email", format!("to {}: {subject}", m.to.join(", "))));
        }
        self.mail_seen = mails.len();
        out
    }
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("");
    if l.chars().count() > 160 {
        format!("{}…", l.chars().take(160).collect::<String>())
    } else {
        l.to_string()
    }
}

/// What an operation was doing, as a person would say it ("creating", "removing access for").
fn doing(op: Operation) -> &'static str {
    match op {
        Operation::Create => "creating the account of",
        Operation::Update => "updating the account of",
        Operation::Deactivate => "removing access for",
        Operation::Reactivate => "restoring access for",
        Operation::Password => "syncing the password of",
        Operation::GroupPush => "pushing groups for",
        Operation::Import => "importing",
        Operation::Integration => "talking to the app for",
        Operation::Other => "provisioning",
        Operation::DeprovisioningDisabled => "deprovisioning users of",
        Operation::Verification => "checking the app account of",
    }
}

/// One history row as a line of the story: the column label and plain words, no internal
/// names (history kinds, component names, Okta ids).
fn tell(h: &Happened) -> (&'static str, String) {
    let who = h.user.as_deref().unwrap_or("the whole app");
    let subject = format!("{}: {} {who}", h.app, doing(h.operation));
    let why = h
        .detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let urgent = if h.urgent { " [URGENT]" } else { "" };
    match h.kind.as_str() {
        "detected" => ("detected", format!("{subject} failed{urgent}{why}")),
        "reopened" => ("detected", format!("{subject} failed again{urgent}{why}")),
        "resolved" => ("resolved", format!("{subject} works now{why}")),
        "retry_started" => ("retry", format!("{subject}: retrying")),
        "retry_succeeded" => ("retry", format!("{subject}: the retry worked")),
        "retries_exhausted" => ("retry", format!("{subject}: giving up retrying{why}")),
        "retry_lease_expired" => (
            "retry",
            format!("{subject}: a retry was interrupted; it will run again"),
        ),
        k if k.starts_with("retry") => ("retry", format!("{subject}: the retry did not work{why}")),
        k if k.starts_with("circuit") => (
            "circuit",
            format!("{}: retries paused, the app itself is failing{why}", h.app),
        ),
        // The detail is "<group key> via <channels>"; the group key is internal.
        "alerted" => match h.detail.as_deref().and_then(|d| d.rsplit_once(" via ")) {
            Some((_, channels)) => ("alert", format!("{subject}: people told by {channels}")),
            None => ("alert", format!("{subject}: people told")),
        },
        other => (
            "history",
            format!("{subject}: {}{why}", other.replace('_', " ")),
        ),
    }
}

/// After the story, with `--keep`: the exact commands to look around with.
fn print_try_it(config: &std::path::Path, token: &str, metrics_url: &str) {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "okta-provwatch".to_string());
    let cfg = config.display();
    println!();
    println!("Everything keeps running (daemon, simulated Okta, fake Slack and SMTP). Try, in another terminal:");
    println!("  {exe} --config {cfg} status");
    println!("  {TOKEN_VAR}={token} {exe} --config {cfg} retry --all");
    println!("  {exe} --config {cfg} silence --app Workday --for 1h --reason \"trying the demo\"");
    println!("  {exe} --config {cfg} silence --list");
    println!("  curl -s {metrics_url}");
    println!("Ctrl-C here stops everything and removes the demo's config and state.");
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_uses_plain_words() {
        let h = Happened {
            history_id: 1,
            kind: "retry_started".into(),
            detail: Some("attempt 1".into()),
            app: "Salesforce".into(),
            user: Some("alice@acme.example".into()),
            operation: Operation::Create,
            urgent: false,
        };
        assert_eq!(
            tell(&h),
            (
                "retry",
                "Salesforce: creating the account of alice@acme.example: retrying".to_string()
            )
        );
        let h = Happened {
            kind: "alerted".into(),
            detail: None,
            operation: Operation::Deactivate,
            urgent: true,
            ..h
        };
        let (_, line) = tell(&h);
        assert_eq!(
            line,
            "Salesforce: removing access for alice@acme.example: people told"
        );
        assert!(!line.contains("alerter") && !line.contains("retry-worker"));
        let h = Happened {
            detail: Some("app:0oa0000037sCSKpAZqZU via slack, email".into()),
            ..h
        };
        assert_eq!(
            tell(&h).1,
            "Salesforce: removing access for alice@acme.example: people told by slack, email"
        );
    }
}
