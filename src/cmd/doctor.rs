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

use crate::alert::channels::email::EmailNotifier;
use crate::alert::channels::slack::SlackNotifier;
use crate::alert::message::{AlertMessage, MessageKind, Severity};
use crate::cli::DoctorArgs;
use crate::clock::Clock;
use crate::config::{Config, OktaAuth, SlackTarget};
use crate::context::client_options;
use crate::metrics::Metrics;
use crate::okta::ratelimit::PrincipalRateLimit;
use crate::okta::types::Application;
use crate::okta::{Class, OktaClient, OktaError};
use crate::store::Store;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Timeout for each Slack/SMTP check; a doctor run should not hang on a dead relay.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(15);

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

fn check_store(config: &Config, r: &mut Report) {
    let path = &config.state.path;
    // Opening also applies pending migrations, as the daemon would at its next start.
    let store = match Store::open(path) {
        Ok(s) => s,
        Err(e) => {
            r.add("state store", Status::Fail, format!("{e}"));
            return;
        }
    };
    let version = store
        .schema_version()
        .map(|v| v.to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"));
    match store.check_writable() {
        Ok(()) => r.add(
            "state store",
            Status::Pass,
            format!("{} is writable, schema version {version}", path.display()),
        ),
        Err(e) => r.add(
            "state store",
            Status::Fail,
            format!("{} is not writable: {e}", path.display()),
        ),
    }
    check_failed_deliveries(&store, r);
}

/// Alerts the outbox gave up on: people were not told about something.
fn check_failed_deliveries(store: &Store, r: &mut Report) {
    match store.read_blocking(crate::alert::outbox::failed_deliveries) {
        Ok(rows) if rows.is_empty() => r.add(
            "alert deliveries",
            Status::Pass,
            "no failed alert deliveries in the outbox",
        ),
        Ok(rows) => {
            let detail: Vec<String> = rows
                .iter()
                .rev()
                .take(10)
                .map(|d| {
                    format!(
                        "{} {} {:?} after {} attempt(s): {}",
                        d.channel,
                        d.kind,
                        d.title.as_deref().unwrap_or("(unreadable message)"),
                        d.attempts,
                        d.error
                    )
                })
                .collect();
            r.add(
                "alert deliveries",
                Status::Warn,
                format!(
                    "{} alert(s) were never delivered (newest first, at most 10 shown); fix the channel, the alerts are not resent\n{}",
                    rows.len(),
                    detail.join("\n")
                ),
            );
        }
        Err(e) => r.add(
            "alert deliveries",
            Status::Warn,
            format!("could not read the outbox: {e}"),
        ),
    }
}

fn explain_okta(e: &OktaError, needs: &str) -> String {
    match e {
        OktaError::Unauthorized { .. } => format!(
            "{e}\nThe API token or OAuth client was rejected: check that it exists, is not expired or revoked, and belongs to this org"
        ),
        OktaError::Forbidden { .. } => format!(
            "{e}\nAuthenticated but not allowed: the OAuth service app needs the {needs} scope granted, or the API token's admin needs a role that includes it"
        ),
        _ => e.to_string(),
    }
}

async fn check_okta(config: &Config, r: &mut Report) {
    let okta = match OktaClient::new(client_options(config, Clock::system(), Metrics::new())) {
        Ok(c) => c,
        Err(e) => {
            r.add("okta client", Status::Fail, e.to_string());
            return;
        }
    };
    let org = okta.org_url().to_string();
    match okta
        .get_page_with(Class::Doctor, super::run::PROBE_PATH)
        .await
    {
        Ok(_) => r.add(
            "okta logs read",
            Status::Pass,
            format!("{org} reachable; System Log readable (okta.logs.read)"),
        ),
        Err(e) => {
            r.add(
                "okta logs read",
                Status::Fail,
                explain_okta(&e, "okta.logs.read"),
            );
            if matches!(e, OktaError::Unauthorized { .. }) {
                // Every later call would fail the same way; one clear line is better.
                return;
            }
        }
    }
    check_principal_rate_limit(config, &okta, r).await;
    let apps = match okta.list_apps_with(Class::Doctor).await {
        Ok(apps) => {
            r.add(
                "okta apps read",
                Status::Pass,
                format!("{} active apps readable (okta.apps.read)", apps.len()),
            );
            Some(apps)
        }
        Err(e) => {
            r.add(
                "okta apps read",
                Status::Fail,
                explain_okta(&e, "okta.apps.read"),
            );
            None
        }
    };
    check_apps_manage(config, r);
    for (name, status, detail) in super::hooks::doctor_checks(config, &okta).await {
        r.add(name, status, detail);
    }
    if let Some(apps) = apps {
        check_provisioning(config, &okta, &apps, r).await;
    }
}

/// Reads the principal rate limit Okta grants this daemon's token or service app and warns
/// when `okta.rate_limit_share` asks for more: the excess would only ever be answered 429.
async fn check_principal_rate_limit(config: &Config, okta: &OktaClient, r: &mut Report) {
    let name = "okta principal rate limit";
    let (kind, principal) = match &config.okta.auth {
        OktaAuth::OAuth(o) => ("OAUTH_CLIENT", Some(o.client_id.as_str())),
        // An API token cannot learn its own id without side effects (the only `current`
        // route revokes it), so every token's entry is looked at.
        OktaAuth::ApiToken(_) => ("SSWS_TOKEN", None),
    };
    match okta.principal_rate_limits_with(Class::Doctor, kind).await {
        Ok(entries) => {
            let (status, detail) =
                judge_principal_limit(&entries, principal, config.okta.rate_limit_share);
            r.add(name, status, detail);
        }
        Err(e @ OktaError::Forbidden { .. }) => r.add(
            name,
            Status::Info,
            format!(
                "cannot read the principal rate limits ({e}); grant the okta.principalRateLimits.read scope (OAuth) or use an admin role that includes it to have doctor compare okta.rate_limit_share with what Okta grants"
            ),
        ),
        Err(e) => r.add(
            name,
            Status::Warn,
            format!("could not read the principal rate limits: {e}"),
        ),
    }
}

/// Compares `share` with the percentage Okta grants `principal` (an OAuth client id; `None`
/// for an API token, whose entry cannot be told from other tokens': the lowest counts).
pub fn judge_principal_limit(
    entries: &[PrincipalRateLimit],
    principal: Option<&str>,
    share: f64,
) -> (Status, String) {
    let mine: Vec<&PrincipalRateLimit> = match principal {
        Some(id) => entries.iter().filter(|e| e.principal_id == id).collect(),
        None => entries.iter().collect(),
    };
    let granted = mine.iter().filter_map(|e| e.default_percentage).min();
    let Some(pct) = granted else {
        return (
            Status::Info,
            match principal {
                Some(id) => format!("no principal rate limit is set for OAuth client {id}: Okta's org-wide default applies (Admin Console > Security > API > Rate limits)"),
                None => "no principal rate limit is set for API tokens: Okta's org-wide default applies (Admin Console > Security > API > Rate limits)".into(),
            },
        );
    };
    let ambiguous = principal.is_none()
        && mine
            .iter()
            .filter_map(|e| e.default_percentage)
            .any(|p| p != pct);
    let whose = match principal {
        Some(id) => format!("OAuth client {id}"),
        None if ambiguous => {
            "API tokens (the lowest of several tokens' limits; this token's own cannot be told apart)".to_string()
        }
        None => "API tokens".to_string(),
    };
    let asked = share * 100.0;
    if asked > pct as f64 + 1e-9 {
        (
            Status::Warn,
            format!(
                "okta.rate_limit_share = {share} asks for {asked:.0}% of each bucket, but Okta grants {whose} {pct}%: requests beyond that are refused with 429. Set okta.rate_limit_share to at most {:.2}, or raise the principal rate limit in the Admin Console",
                pct as f64 / 100.0
            ),
        )
    } else {
        (
            Status::Pass,
            format!(
                "Okta grants {whose} {pct}% of each bucket; okta.rate_limit_share = {share} stays within it"
            ),
        )
    }
}

fn check_apps_manage(config: &Config, r: &mut Report) {
    let name = "okta apps manage";
    if !config.retry.enabled {
        r.add(
            name,
            Status::Pass,
            "retries are off ([retry] enabled = false); okta.apps.manage is not needed",
        );
        return;
    }
    match &config.okta.auth {
        OktaAuth::OAuth(o) if o.scopes.iter().any(|s| s == "okta.apps.manage") => r.add(
            name,
            Status::Pass,
            "okta.apps.manage is among the configured scopes (Okta refuses the token request if the service app was not granted one of them)",
        ),
        OktaAuth::OAuth(_) => r.add(
            name,
            Status::Fail,
            "retries are on but okta.oauth.scopes lacks okta.apps.manage: every retry would be refused (add the scope and grant it to the service app, or set [retry] enabled = false)",
        ),
        OktaAuth::ApiToken(_) => r.add(
            name,
            Status::Warn,
            "retries are on; an API token's write access cannot be verified without a write, so it is assumed from its admin's role (a read-only admin's token makes every retry fail with 403)",
        ),
    }
}

/// Whether the app object says it pushes users, by the same rule as the assignment scanner
/// (`features` lists PUSH_* or a provisioning feature); `None` when Okta left it out.
fn has_provisioning(app: &Application) -> Option<bool> {
    app.features.as_ref().map(|f| {
        f.iter()
            .any(|x| x.starts_with("PUSH_") || x == "USER_PROVISIONING" || x == "SCIM_PROVISIONING")
    })
}

async fn check_provisioning(
    config: &Config,
    okta: &OktaClient,
    apps: &[Application],
    r: &mut Report,
) {
    // (app, whether the operator named it explicitly)
    let mut watched: Vec<(Application, bool)> = Vec::new();
    if config.detect.apps.is_empty() {
        for a in apps {
            if has_provisioning(a) != Some(false) {
                watched.push((a.clone(), false));
            }
        }
        if watched.is_empty() {
            r.add(
                "watched apps",
                Status::Warn,
                "no active app has provisioning (USER_PROVISIONING): nothing to watch",
            );
        }
    } else {
        for want in &config.detect.apps {
            // The same match as the scanner's (`watched_apps`): id, or label in any case.
            match apps.iter().find(|a| {
                &a.id == want
                    || a.label
                        .as_deref()
                        .is_some_and(|l| l.eq_ignore_ascii_case(want))
            }) {
                // Listed twice (by id and by label): one check, one features call.
                Some(a) if watched.iter().any(|(w, _)| w.id == a.id) => {}
                Some(a) => watched.push((a.clone(), true)),
                None => r.add(
                    format!("app \"{want}\""),
                    Status::Fail,
                    "listed in detect.apps but not found among the org's active apps (check the id or label, and that the app is active)",
                ),
            }
        }
    }
    for (app, explicit) in watched {
        let name = format!("app \"{}\" ({}) provisioning", app.display(), app.id);
        let feature = match okta.provisioning_feature_with(Class::Doctor, &app.id).await {
            Ok(f) => f,
            Err(OktaError::NotFound { .. }) => {
                if explicit {
                    r.add(
                        name,
                        Status::Fail,
                        "listed in detect.apps but has no provisioning (USER_PROVISIONING): nothing will be pushed to it",
                    );
                }
                continue;
            }
            Err(e) => {
                r.add(name, Status::Fail, explain_okta(&e, "okta.apps.read"));
                continue;
            }
        };
        if !feature.enabled() {
            if explicit {
                r.add(
                    name,
                    Status::Fail,
                    "provisioning (USER_PROVISIONING) is disabled for this app",
                );
            }
            continue;
        }
        let (status, detail) = judge_capabilities(
            feature.create_enabled(),
            feature.update_enabled(),
            feature.deactivate_enabled(),
        );
        r.add(name, status, detail);
    }
}

/// Judges the three "To App" settings. Disabled "Create Users" or "Deactivate Users" fail:
/// the first breaks provisioning outright, the second silently stops deprovisioning.
pub fn judge_capabilities(
    create: Option<bool>,
    update: Option<bool>,
    deactivate: Option<bool>,
) -> (Status, String) {
    let mut status = Status::Pass;
    let mut lines = Vec::new();
    let mut worst = |s: Status| {
        if s == Status::Fail || (s == Status::Warn && status == Status::Pass) {
            status = s;
        }
    };
    let show = |v: Option<bool>| match v {
        Some(true) => "enabled",
        Some(false) => "DISABLED",
        None => "not reported",
    };
    lines.push(format!(
        "Create Users {}, Update User Attributes {}, Deactivate Users {}",
        show(create),
        show(update),
        show(deactivate)
    ));
    match create {
        Some(false) => {
            worst(Status::Fail);
            lines.push("Create Users is disabled: vendors' setup guides require it; without it, provisioning new assignments fails (\"creating users is disabled\"). Enable it under Provisioning > To App.".into());
        }
        None => worst(Status::Warn),
        Some(true) => {}
    }
    match update {
        Some(false) => {
            worst(Status::Warn);
            lines.push("Update User Attributes is disabled: profile changes in Okta are not pushed to the app.".into());
        }
        None => worst(Status::Warn),
        Some(true) => {}
    }
    match deactivate {
        Some(false) => {
            worst(Status::Fail);
            lines.push("Deactivate Users is disabled: unassigned or deactivated people keep their access in the app, and no failure is ever logged. It is often unticked during a group reassignment and forgotten; tick it again under Provisioning > To App.".into());
        }
        None => worst(Status::Warn),
        Some(true) => {}
    }
    (status, lines.join("\n"))
}

fn test_message() -> AlertMessage {
    AlertMessage {
        kind: MessageKind::Test,
        severity: Severity::Info,
        title: "okta-provwatch test alert".into(),
        app_id: None,
        app_label: None,
        admin_url: None,
        summary: "This is a test sent by `okta-provwatch doctor --send-test-alert`. If you can read it, alerts reach this channel.".into(),
        lines: Vec::new(),
        total_lines: 0,
        group_key: "doctor-test".into(),
        created_at: chrono::Utc::now(),
    }
}

async fn check_channels(config: &Config, send_test: bool, r: &mut Report) {
    if config.slack.is_none() && config.email.is_none() {
        r.add(
            "alert channels",
            Status::Warn,
            "neither [slack] nor [email] is configured: failures are only visible in `status` and /metrics",
        );
        return;
    }
    let msg = test_message();
    if let Some(cfg) = &config.slack {
        match SlackNotifier::new(cfg, CHANNEL_TIMEOUT) {
            Err(e) => r.add("slack", Status::Fail, format!("{e:#}")),
            Ok(n) => {
                let webhook = matches!(cfg.target, SlackTarget::Webhook { .. });
                match n.check().await {
                    // A webhook can only be tested by posting: without the test alert,
                    // nothing proved it works, so it must not read as PASS.
                    Ok(d) if webhook && !send_test => r.add(
                        "slack",
                        Status::Info,
                        format!(
                            "{d}\nrun `okta-provwatch doctor --send-test-alert` to post a test message"
                        ),
                    ),
                    Ok(d) if webhook => r.add(
                        "slack",
                        Status::Info,
                        format!("{d}; see the test alert below"),
                    ),
                    Ok(d) => r.add("slack", Status::Pass, d),
                    Err(e) => r.add("slack", Status::Fail, e.to_string()),
                }
                if send_test {
                    match n.send(&msg).await {
                        Ok(()) => {
                            r.add("slack test alert", Status::Pass, "sent; check the channel")
                        }
                        Err(e) => r.add("slack test alert", Status::Fail, e.to_string()),
                    }
                }
            }
        }
    }
    if let Some(cfg) = &config.email {
        match EmailNotifier::new(cfg, CHANNEL_TIMEOUT) {
            Err(e) => r.add("email", Status::Fail, format!("{e:#}")),
            Ok(n) => {
                match n.check().await {
                    Ok(d) => r.add("email", Status::Pass, d),
                    Err(e) => r.add("email", Status::Fail, e.to_string()),
                }
                if send_test {
                    let to: Vec<String> = cfg.to.iter().map(|m| m.to_string()).collect();
                    match n.send(&msg).await {
                        Ok(()) => r.add(
                            "email test alert",
                            Status::Pass,
                            format!("sent to {}", to.join(", ")),
                        ),
                        Err(e) => r.add("email test alert", Status::Fail, e.to_string()),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(id: &str, pct: Option<u32>) -> PrincipalRateLimit {
        PrincipalRateLimit {
            principal_id: id.into(),
            principal_type: "OAUTH_CLIENT".into(),
            default_percentage: pct,
            default_concurrency_percentage: None,
        }
    }

    /// The share is compared with this principal's own entry, not another client's; above it
    /// warns with the value to set, within it passes, no entry is INFO.
    #[test]
    fn principal_limit_judged_for_this_principal() {
        let entries = [limit("0oaother", Some(10)), limit("0oame", Some(40))];
        let (st, detail) = judge_principal_limit(&entries, Some("0oame"), 0.5);
        assert_eq!(st, Status::Warn);
        assert!(
            detail.contains("40%") && detail.contains("at most 0.40"),
            "{detail}"
        );
        let (st, _) = judge_principal_limit(&entries, Some("0oame"), 0.4);
        assert_eq!(st, Status::Pass);
        let (st, detail) = judge_principal_limit(&entries, Some("0oanone"), 0.5);
        assert_eq!(st, Status::Info);
        assert!(detail.contains("0oanone"), "{detail}");
        // API tokens: the lowest of several counts, and the detail says why.
        let (st, detail) = judge_principal_limit(&entries, None, 0.2);
        assert_eq!(st, Status::Warn);
        assert!(
            detail.contains("10%") && detail.contains("lowest"),
            "{detail}"
        );
    }

    #[test]
    fn disabled_create_or_deactivate_fails() {
        let (s, d) = judge_capabilities(Some(true), Some(true), Some(true));
        assert_eq!(s, Status::Pass, "{d}");
        let (s, d) = judge_capabilities(Some(false), Some(true), Some(true));
        assert_eq!(s, Status::Fail);
        assert!(d.contains("Create Users is disabled"), "{d}");
        let (s, d) = judge_capabilities(Some(true), Some(true), Some(false));
        assert_eq!(s, Status::Fail);
        assert!(d.contains("Deactivate Users is disabled"), "{d}");
        let (s, _) = judge_capabilities(Some(true), Some(false), Some(true));
        assert_eq!(s, Status::Warn);
    }

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

    #[tokio::test]
    async fn untested_webhook_is_info_with_the_hint() {
        let env = crate::config::Env::from_map([
            ("OKTA_API_TOKEN", "00tok"),
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T0/B0/x",
            ),
        ]);
        let config = Config::from_toml_str(
            "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\"\n\
             [slack]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\n",
            &env,
        )
        .unwrap();
        let mut r = Report::default();
        check_channels(&config, false, &mut r).await;
        let slack = r.checks.iter().find(|c| c.name == "slack").unwrap();
        assert_eq!(slack.status, Status::Info, "{}", slack.detail);
        assert!(
            slack.detail.ends_with(
                "\nrun `okta-provwatch doctor --send-test-alert` to post a test message"
            ),
            "{}",
            slack.detail
        );
        assert!(!slack.detail.contains("services/T0"), "{}", slack.detail);
        assert!(!r.failed());
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
