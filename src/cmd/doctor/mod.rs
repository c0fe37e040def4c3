//! `okta-provwatch doctor`: checks the whole setup, one pass/warn/fail line per check, so an
//! operator can tell in one command why the daemon is not detecting, retrying or alerting.
//!
//! It checks the config (printing the effective values with secrets redacted), the state
//! store, the Okta credentials and what they are allowed to do, the principal rate limit Okta
//! grants them (against `okta.rate_limit_share`), every watched app's provisioning settings,
//! and the alert channels. Its Okta calls are of [`Class::Doctor`], the lowest priority.
//! Output gets pasted into tickets, so nothing
//! here prints a secret: the config appears through `redacted_summary`, and every error it
//! shows (Okta, Slack, SMTP) is built by its module from status codes, never from credentials.

//!
//! The checks live in submodules by subject: `store` (the state file and the outbox),
//! `okta` (credentials, scopes, the principal rate limit, each app's provisioning) and
//! `channels` (Slack and email). This module owns the report and the order they run in.

mod channels;
mod okta;
mod store;

pub use okta::{judge_capabilities, judge_principal_limit};

use channels::check_channels;
use okta::check_okta;
use store::check_store;

use crate::cli::DoctorArgs;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Neither good nor bad: something this run did not or could not test (a Slack
    /// webhook, which can only be tested by posting). Never counts as passed.
    Info,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// The human-readable form: one line per check, continuation lines indented.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Info => "INFO",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let mut lines = c.detail.lines();
            out.push_str(&format!(
                "[{tag}] {}: {}\n",
                c.name,
                lines.next().unwrap_or("")
            ));
            for l in lines {
                out.push_str(&format!("         {l}\n"));
            }
        }
        let count = |st: Status| self.checks.iter().filter(|c| c.status == st).count();
        let mut tally = vec![format!("{} passed", count(Status::Pass))];
        if count(Status::Info) > 0 {
            tally.push(format!("{} not tested", count(Status::Info)));
        }
        tally.push(plural(count(Status::Warn), "warning", "warnings"));
        tally.push(format!("{} failed", count(Status::Fail)));
        out.push_str(&format!("\n{}\n", tally.join(", ")));
        out
    }
}

/// `1 warning`, `2 warnings`, `0 warnings`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub async fn run(config_path: &Path, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = diagnose(config_path, args).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs every check; never fails as a whole, since a broken setup is what it reports on.
pub async fn diagnose(config_path: &Path, args: &DoctorArgs) -> Report {
    let mut r = Report::default();
    let config = match super::load_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            // Without a config nothing else can be checked.
            r.add("config", Status::Fail, format!("{e:#}"));
            return r;
        }
    };
    let summary: Vec<String> = config
        .redacted_summary()
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    r.add(
        "config",
        Status::Pass,
        format!("{} is valid\n{}", config_path.display(), summary.join("\n")),
    );

    if let Some(w) = crate::retry::pace::budget_warning(&config) {
        r.add("retry rate", Status::Warn, w);
    }
    check_store(&config, &mut r);
    check_okta(&config, &mut r).await;
    check_channels(&config, args.send_test_alert, &mut r).await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_are_singular_and_info_is_not_a_pass() {
        let mut r = Report::default();
        r.add("a", Status::Pass, "ok");
        r.add("slack", Status::Info, "webhook not tested");
        r.add("b", Status::Warn, "hmm");
        let text = r.render_text();
        assert!(
            text.contains("[INFO] slack: webhook not tested\n"),
            "{text}"
        );
        assert!(
            text.ends_with("\n1 passed, 1 not tested, 1 warning, 0 failed\n"),
            "{text}"
        );
        r.add("c", Status::Warn, "again");
        assert!(r
            .render_text()
            .ends_with("\n1 passed, 1 not tested, 2 warnings, 0 failed\n"));
        let only_pass = Report {
            checks: vec![Check {
                name: "a".into(),
                status: Status::Pass,
                detail: "ok".into(),
            }],
        };
        assert!(only_pass
            .render_text()
            .ends_with("\n1 passed, 0 warnings, 0 failed\n"));
        assert_eq!(
            serde_json::to_value(Status::Info).unwrap(),
            serde_json::json!("info")
        );
    }

    #[test]
    fn json_shape() {
        let mut r = Report::default();
        r.add("x", Status::Warn, "y");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"checks": [{"name": "x", "status": "warn", "detail": "y"}]})
        );
        assert!(!r.failed());
        r.add("z", Status::Fail, "w");
        assert!(r.failed());
    }
}
