//! `okta-provwatch demo`: the real daemon against a simulated Okta org, narrated live.
//!
//! Starts the Okta simulator, a fake Slack and an SMTP sink in this process, writes a config
//! pointing at them (intervals shortened so a whole incident fits in half a minute), runs the
//! same `daemon::start` that `run` uses, and prints what happens as it happens: the scenario's
//! moves, each failure's history (detected, retried, resolved) as the daemon writes it to the
//! store, and every Slack message and email the fakes receive. Nothing leaves the machine.
//!
//! The scenario: "Salesforce" is down for a while and then recovers (retries resolve the
//! failures); "Workday" rejects one user because "department is required" (a data problem no
//! retry fixes, so it alerts); "Zoom" fails to deprovision a departing user (urgent).

use crate::cli::DemoArgs;
use crate::clock::Clock;
use crate::config::{parse_schedule, Config, Env};
use crate::context::Context;
use crate::daemon;
use okta_sim::slack::FakeSlack;
use okta_sim::smtp::SmtpSink;
use okta_sim::{Downstream, OktaSim};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

    let ctx = Context::new(config, Clock::system())?;
    let listener = crate::http::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!(
        "  metrics           http://{}/metrics",
        listener.local_addr()?
    );
    println!();
    let stop = CancellationToken::new();
    let (_ctx_tx, ctx_rx) = watch::channel(ctx.clone());
    let http = tokio::spawn(crate::http::serve(
        listener,
        ctx_rx,
        ctx.now_ms(),
        stop.clone(),
    ));
    let running = daemon::start(ctx.clone(), stop.child_token());
    say(
        "daemon",
        "started (the same components `run` starts)".into(),
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
    let (mut recovered, mut deprovisioned) = (false, false);
    let end = Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while t0.elapsed() < end {
        tokio::select! {
            _ = tick.tick() => {}
            _ = interrupt.recv() => {
                say("demo", "interrupted".into());
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

    say("daemon", "stopping (as on SIGTERM)".into());
    let clean = running.stop(DEMO_STOP_GRACE).await;
    stop.cancel();
    // Graceful shutdown waits for open connections (a browser keeping /metrics alive).
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    for (what, line) in watcher.poll(&ctx, &slack, &smtp).await {
        say(what, line);
    }
    let open = ctx
        .store
        .read(crate::store::failures::list_unresolved)
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
        println!(
            "  open: {} {} {}{}",
            f.app_name(),
            f.operation.as_str(),
            f.user_name(),
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
            .call(move |c| {
                let mut stmt = c.prepare(
                    "SELECT h.id, h.kind, h.actor, h.detail, COALESCE(f.app_label, f.app_id),
                            COALESCE(f.user_login, f.user_id), f.operation, f.urgent
                     FROM failure_history h JOIN failures f ON f.id = h.failure_id
                     WHERE h.id > ?1 ORDER BY h.id",
                )?;
                let rows = stmt.query_map([after], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, bool>(7)?,
                    ))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap_or_default();
        for (hid, kind, actor, detail, app, user, op, urgent) in rows {
            self.last_history = hid;
            let what = match kind.as_str() {
                "detected" | "reopened" => "detected",
                "resolved" => "resolved",
                k if k.starts_with("retr") => "retry",
                k if k.starts_with("circuit") => "circuit",
                k if k.starts_with("alert") => "alert",
                _ => "history",
            };
            let subject = if user.is_empty() {
                format!("{app} (whole app)")
            } else {
                format!("{app} {op} {user}")
            };
            let detail = detail.map(|d| format!(": {d}")).unwrap_or_default();
            let urgent = if urgent && what == "detected" {
                " [URGENT]"
            } else {
                ""
            };
            out.push((
                what,
                format!("{subject}{urgent} ({kind} by {actor}){detail}"),
            ));
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
