//! Doctor checks of the alert channels: Slack (a webhook is only tested with
//! `--send-test-alert`, since testing means posting) and email (the SMTP relay answers).

use super::{Report, Status};
use crate::alert::channels::email::EmailNotifier;
use crate::alert::channels::slack::SlackNotifier;
use crate::alert::message::{AlertMessage, MessageKind, Severity};
use crate::config::{Config, SlackTarget};
use std::time::Duration;

/// Timeout for each Slack/SMTP check; a doctor run should not hang on a dead relay.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(15);

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

pub(super) async fn check_channels(config: &Config, send_test: bool, r: &mut Report) {
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
}
