//! End-to-end tests of the alert delivery channels over real loopback sockets:
//! the Slack notifier against `okta_sim::slack::FakeSlack` (webhook and bot),
//! the email notifier against `okta_sim::smtp::SmtpSink`, and the mapping of
//! every failure mode to transient/permanent `DeliveryError`s. Also checks
//! that no secret leaks through `Debug` or error text.

mod common;

use common::*;
use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use okta_provwatch::alert::channels::email::EmailNotifier;
use okta_provwatch::alert::channels::slack::SlackNotifier;
use okta_provwatch::alert::channels::DeliveryError;
use okta_provwatch::alert::message::{AlertLine, AlertMessage, MessageKind, Severity};
use okta_provwatch::config::{EmailConfig, SlackConfig, SlackTarget};
use okta_sim::slack::{FakeSlack, SlackMode, SlackVia};
use okta_sim::smtp::SmtpSink;
use secrecy::SecretString;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(5);
const ADMIN_URL: &str = "https://acme-admin.okta.com/admin/app/salesforce/instance/0oa1sfdc";

fn alert(n: usize) -> AlertMessage {
    AlertMessage {
        kind: MessageKind::Firing,
        severity: Severity::Urgent,
        title: format!("Salesforce: {n} users failing provisioning"),
        app_id: Some("0oa1sfdc".into()),
        app_label: Some("Salesforce".into()),
        admin_url: Some(ADMIN_URL.into()),
        summary: format!("Provisioning to Salesforce has failed for {n} users since 12:30 UTC."),
        lines: (0..n)
            .map(|i| AlertLine {
                user_login: format!("user{i}@acme.example"),
                user_id: format!("00u{i}"),
                operation: "PUSH_PROFILE".into(),
                reason: Some("INVALID_FIELD: Title too long".into()),
                first_seen: Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap(),
                attempts: 3,
                app: None,
                next_step: None,
                link: None,
            })
            .collect(),
        total_lines: n,
        group_key: "app:0oa1sfdc".into(),
        created_at: Utc.with_ymd_and_hms(2024, 5, 1, 13, 0, 0).unwrap(),
    }
}

fn api_url(fake: &FakeSlack) -> url::Url {
    url::Url::parse(&fake.api_url()).unwrap()
}

fn webhook_notifier(fake: &FakeSlack, url: String) -> SlackNotifier {
    let cfg = SlackConfig {
        target: SlackTarget::Webhook {
            url: SecretString::from(url),
        },
        api_url: api_url(fake),
    };
    SlackNotifier::new(&cfg, TIMEOUT).unwrap()
}

fn bot_notifier(fake: &FakeSlack, token: &str, channel: &str) -> SlackNotifier {
    let cfg = SlackConfig {
        target: SlackTarget::Bot {
            token: SecretString::from(token.to_string()),
            channel: channel.into(),
        },
        api_url: api_url(fake),
    };
    SlackNotifier::new(&cfg, TIMEOUT).unwrap()
}

fn email_cfg(smtp_url: String, password: Option<&str>, to: &[&str]) -> EmailConfig {
    EmailConfig {
        smtp_url,
        password: password.map(|p| SecretString::from(p.to_string())),
        from: "okta-provwatch <provwatch@acme.example>".parse().unwrap(),
        to: to.iter().map(|t| t.parse().unwrap()).collect(),
    }
}

fn email_notifier(sink: &SmtpSink, to: &[&str]) -> EmailNotifier {
    EmailNotifier::new(&email_cfg(sink.url(), None, to), TIMEOUT).unwrap()
}

fn expect_transient(r: Result<(), DeliveryError>) -> (String, Option<Duration>) {
    match r {
        Err(DeliveryError::Transient {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn expect_permanent(r: Result<(), DeliveryError>) -> String {
    match r {
        Err(DeliveryError::Permanent { message }) => message,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Block Kit assertions

fn blocks_of(body: &Value) -> &Vec<Value> {
    body["blocks"].as_array().expect("blocks array")
}

fn assert_alert_blocks(body: &Value, msg: &AlertMessage) {
    let blocks = blocks_of(body);
    assert_eq!(blocks[0]["type"], "header");
    let header = blocks[0]["text"]["text"].as_str().unwrap();
    assert!(header.contains(&msg.title), "header {header:?}");
    let sections: Vec<&str> = blocks
        .iter()
        .filter(|b| b["type"] == "section")
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(sections[0], msg.summary);
    for line in &msg.lines {
        let expected = format!(
            "*{}* — PUSH_PROFILE — INVALID_FIELD: Title too long — first seen 2024-05-01 12:30 UTC — 3 attempts",
            line.user_login
        );
        assert!(
            sections.contains(&expected.as_str()),
            "missing {expected:?} in {sections:?}"
        );
    }
    let context = blocks
        .iter()
        .filter(|b| b["type"] == "context")
        .map(|b| b["elements"][0]["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(context.contains("URGENT"), "{context}");
    let button = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| &b["elements"][0])
        .expect("actions block");
    assert_eq!(button["type"], "button");
    assert_eq!(button["url"], ADMIN_URL);
    let text = body["text"].as_str().unwrap();
    assert!(text.contains(&msg.title), "fallback text {text:?}");
}

// ---------------------------------------------------------------------------
// Slack: delivery

#[tokio::test]
async fn slack_webhook_delivers_block_kit() {
    let fake = start_slack().await;
    let n = webhook_notifier(&fake, fake.webhook_url());
    let msg = alert(3);
    n.send(&msg).await.unwrap();
    let got = fake.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].via, SlackVia::Webhook);
    assert_eq!(got[0].channel, None);
    assert_alert_blocks(&got[0].body, &msg);
}

#[tokio::test]
async fn slack_bot_delivers_via_chat_post_message() {
    let fake = start_slack().await;
    let n = bot_notifier(&fake, fake.bot_token(), "#okta-alerts");
    let msg = alert(2);
    n.send(&msg).await.unwrap();
    let got = fake.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].via, SlackVia::ChatPostMessage);
    assert_eq!(got[0].channel.as_deref(), Some("#okta-alerts"));
    assert_eq!(got[0].body["channel"], "#okta-alerts");
    assert_alert_blocks(&got[0].body, &msg);
}

#[tokio::test]
async fn slack_large_alert_is_truncated_within_slack_limits() {
    // The fake rejects (invalid_blocks) what Slack would: >50 blocks, section
    // text >3000, header >150. So acceptance proves the truncation.
    let fake = start_slack().await;
    let n = webhook_notifier(&fake, fake.webhook_url());
    let mut msg = alert(120);
    msg.total_lines = 500;
    msg.title = "X".repeat(400);
    msg.summary = "<&>".repeat(2000);
    msg.lines[0].reason = Some("r".repeat(10_000));
    n.send(&msg).await.unwrap();
    let body = &fake.messages()[0].body;
    let blocks = blocks_of(body);
    assert!(blocks.len() <= 50);
    let all = body.to_string();
    assert!(all.contains("…and 460 more"), "no overflow note");
}

// ---------------------------------------------------------------------------
// Slack: failure mapping

#[tokio::test]
async fn slack_rate_limit_is_transient_with_retry_after() {
    let fake = start_slack().await;
    fake.set_mode(SlackMode::RateLimited {
        retry_after_secs: 30,
    });
    let hook = webhook_notifier(&fake, fake.webhook_url());
    let (_, retry) = expect_transient(hook.send(&alert(1)).await);
    assert_eq!(retry, Some(Duration::from_secs(30)));

    let bot = bot_notifier(&fake, fake.bot_token(), "#okta-alerts");
    let (msg, retry) = expect_transient(bot.send(&alert(1)).await);
    assert_eq!(retry, Some(Duration::from_secs(30)));
    assert!(msg.contains("429"), "{msg}");
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn slack_server_errors_are_transient_then_recover() {
    let fake = start_slack().await;
    let hook = webhook_notifier(&fake, fake.webhook_url());
    fake.fail_next(1, SlackMode::Down);
    let (msg, retry) = expect_transient(hook.send(&alert(1)).await);
    assert!(msg.contains("500"), "{msg}");
    assert_eq!(retry, None);

    let bot = bot_notifier(&fake, fake.bot_token(), "#okta-alerts");
    fake.fail_next(1, SlackMode::Unavailable);
    let (msg, _) = expect_transient(bot.send(&alert(1)).await);
    assert!(msg.contains("503"), "{msg}");

    // fail_next is used up: both paths deliver again.
    hook.send(&alert(1)).await.unwrap();
    bot.send(&alert(1)).await.unwrap();
    assert_eq!(fake.messages().len(), 2);
    assert_eq!(fake.request_count(), 4);
}

#[tokio::test]
async fn slack_invalid_auth_is_permanent() {
    let fake = start_slack().await;
    let token = "xoxb-1111111111-2222222222222-WrOnGtOkEnVaLuE";
    let bot = bot_notifier(&fake, token, "#okta-alerts");
    let msg = expect_permanent(bot.send(&alert(1)).await);
    assert!(msg.contains("invalid_auth"), "{msg}");
    assert!(!msg.contains("WrOnGtOkEn"), "token leaked: {msg}");
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn slack_webhook_errors_are_permanent() {
    let fake = start_slack().await;

    let removed = webhook_notifier(&fake, fake.removed_webhook_url());
    let msg = expect_permanent(removed.send(&alert(1)).await);
    assert!(msg.contains("404") && msg.contains("no_service"), "{msg}");

    let bad_secret = webhook_notifier(&fake, fake.webhook_url_with_bad_secret());
    let msg = expect_permanent(bad_secret.send(&alert(1)).await);
    assert!(
        msg.contains("403") && msg.contains("invalid_token"),
        "{msg}"
    );

    let hook = webhook_notifier(&fake, fake.webhook_url());
    for (code, status) in [
        ("channel_is_archived", "410"),
        ("channel_not_found", "404"),
        ("invalid_payload", "400"),
    ] {
        fake.fail_next(1, SlackMode::Permanent(code.into()));
        let msg = expect_permanent(hook.send(&alert(1)).await);
        assert!(msg.contains(code) && msg.contains(status), "{msg}");
        assert!(!msg.contains(fake.webhook_secret()), "secret leaked: {msg}");
    }
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn slack_bot_channel_errors_are_permanent() {
    let fake = start_slack().await;
    let bot = bot_notifier(&fake, fake.bot_token(), "#gone");
    for code in ["channel_not_found", "not_in_channel"] {
        fake.fail_next(1, SlackMode::Permanent(code.into()));
        let msg = expect_permanent(bot.send(&alert(1)).await);
        assert!(msg.contains(code), "{msg}");
    }
    // Slack's own transient API codes stay transient.
    fake.fail_next(1, SlackMode::Permanent("internal_error".into()));
    expect_transient(bot.send(&alert(1)).await);
}

#[tokio::test]
async fn slack_connection_refused_is_transient() {
    let fake = start_slack().await;
    let port = closed_port();
    let url = format!(
        "http://127.0.0.1:{port}/services/T0000FAKE/B0000HOOK/{}",
        fake.webhook_secret()
    );
    let hook = webhook_notifier(&fake, url);
    let (msg, _) = expect_transient(hook.send(&alert(1)).await);
    assert!(!msg.contains(fake.webhook_secret()), "secret leaked: {msg}");
    assert!(msg.contains("connection"), "{msg}");
}

#[tokio::test]
async fn slack_timeout_is_transient() {
    // Accepts TCP but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let cfg = SlackConfig {
        target: SlackTarget::Webhook {
            url: SecretString::from(format!("http://{addr}/services/T1/B1/sEcReTsEcReT")),
        },
        api_url: url::Url::parse(&format!("http://{addr}/api/")).unwrap(),
    };
    let hook = SlackNotifier::new(&cfg, Duration::from_millis(300)).unwrap();
    let (msg, _) = expect_transient(hook.send(&alert(1)).await);
    assert!(msg.contains("timed out"), "{msg}");
    hold.abort();
}

#[tokio::test]
async fn slack_check_uses_auth_test_for_bots_only() {
    let fake = start_slack().await;
    let bot = bot_notifier(&fake, fake.bot_token(), "#okta-alerts");
    let report = bot.check().await.unwrap();
    assert!(
        report.contains("U0000BOT1") && report.contains("#okta-alerts"),
        "{report}"
    );
    assert_eq!(fake.request_count(), 1);

    let wrong = bot_notifier(&fake, "xoxb-not-the-token", "#okta-alerts");
    match wrong.check().await {
        Err(DeliveryError::Permanent { message }) => assert!(message.contains("invalid_auth")),
        other => panic!("expected permanent, got {other:?}"),
    }

    let hook = webhook_notifier(&fake, fake.webhook_url());
    let report = hook.check().await.unwrap();
    assert!(report.contains("webhook"), "{report}");
    assert!(!report.contains(fake.webhook_secret()));
    assert_eq!(fake.request_count(), 2, "webhook check must not post");
    assert!(fake.messages().is_empty());
}

// ---------------------------------------------------------------------------
// Email

/// Minimal MIME reader for assertions: unfolded headers plus decoded parts.
struct Parsed {
    headers: Vec<(String, String)>,
    parts: Vec<(String, String)>, // (content-type, decoded body)
}

fn split_head_body(raw: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let headers = unfolded
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_mail(raw: &str) -> Parsed {
    let (headers, body) = split_head_body(raw);
    let ct = header(&headers, "content-type").expect("content-type");
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("boundary")
        .trim_matches('"')
        .to_string();
    let mut parts = Vec::new();
    for chunk in body.split(&format!("--{boundary}")).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.trim_start_matches("\r\n");
        let (ph, pb) = split_head_body(chunk);
        let pb = pb.trim_end_matches("\r\n");
        let decoded = match header(&ph, "content-transfer-encoding") {
            Some("base64") => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(pb.replace("\r\n", ""))
                    .unwrap(),
            )
            .unwrap(),
            Some("quoted-printable") => decode_qp(pb),
            _ => pb.to_string(),
        };
        let ctype = header(&ph, "content-type").unwrap_or("").to_string();
        parts.push((ctype, decoded));
    }
    Parsed { headers, parts }
}

#[tokio::test]
async fn email_arrives_with_subject_and_both_parts() {
    let sink = start_smtp().await;
    let n = email_notifier(
        &sink,
        &["oncall@acme.example", "Okta Admins <okta@acme.example>"],
    );
    let msg = alert(3);
    n.send(&msg).await.unwrap();

    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "provwatch@acme.example");
    assert_eq!(
        got[0].to,
        vec![
            "oncall@acme.example".to_string(),
            "okta@acme.example".to_string()
        ]
    );
    let mail = parse_mail(&got[0].data);
    assert_eq!(
        header(&mail.headers, "subject"),
        Some("[URGENT] Salesforce: 3 users failing provisioning (okta-provwatch)")
    );
    assert!(header(&mail.headers, "content-type")
        .unwrap()
        .starts_with("multipart/alternative"));
    assert_eq!(mail.parts.len(), 2, "parts: {:?}", mail.parts);
    let text = &mail
        .parts
        .iter()
        .find(|p| p.0.starts_with("text/plain"))
        .unwrap()
        .1;
    let html = &mail
        .parts
        .iter()
        .find(|p| p.0.starts_with("text/html"))
        .unwrap()
        .1;
    for needle in [
        "Salesforce: 3 users failing provisioning",
        "user2@acme.example — PUSH_PROFILE — INVALID_FIELD: Title too long — first seen 2024-05-01 12:30 UTC — 3 attempts",
        ADMIN_URL,
    ] {
        assert!(text.contains(needle), "text part lacks {needle:?}:\n{text}");
    }
    for needle in [
        "user2@acme.example",
        "INVALID_FIELD: Title too long",
        ADMIN_URL,
    ] {
        assert!(html.contains(needle), "html part lacks {needle:?}:\n{html}");
    }
    assert!(html.contains("<table"), "{html}");
}

#[tokio::test]
async fn email_authenticates_with_configured_password() {
    let sink = SmtpSink::start_with_auth("alerts@acme.example", "pa55-w0rd!")
        .await
        .unwrap();
    let url = format!("smtp://alerts%40acme.example@127.0.0.1:{}", sink.port());
    let ok = EmailNotifier::new(
        &email_cfg(url.clone(), Some("pa55-w0rd!"), &["oncall@acme.example"]),
        TIMEOUT,
    )
    .unwrap();
    ok.send(&alert(1)).await.unwrap();
    assert_eq!(
        sink.messages()[0].auth_user.as_deref(),
        Some("alerts@acme.example")
    );
    assert!(ok.check().await.unwrap().contains("authenticated"));

    let wrong = EmailNotifier::new(
        &email_cfg(url, Some("not-the-pa55word"), &["oncall@acme.example"]),
        TIMEOUT,
    )
    .unwrap();
    let msg = expect_permanent(wrong.send(&alert(1)).await);
    assert!(msg.contains("535"), "{msg}");
    assert!(!msg.contains("not-the-pa55word"), "password leaked: {msg}");
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn email_smtp_down_is_transient() {
    let sink = start_smtp().await;
    sink.set_down(true);
    let n = email_notifier(&sink, &["oncall@acme.example"]);
    let (msg, _) = expect_transient(n.send(&alert(1)).await);
    assert!(msg.contains("421"), "{msg}");
    assert!(sink.connection_count() >= 1);
    expect_transient(n.check().await.map(|_| ()));

    sink.set_down(false);
    n.send(&alert(1)).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn email_connection_refused_is_transient() {
    let port = closed_port();
    let n = EmailNotifier::new(
        &email_cfg(
            format!("smtp://127.0.0.1:{port}"),
            None,
            &["oncall@acme.example"],
        ),
        TIMEOUT,
    )
    .unwrap();
    expect_transient(n.send(&alert(1)).await);
    expect_transient(n.check().await.map(|_| ()));
}

#[tokio::test]
async fn email_rejected_recipient_is_permanent() {
    let sink = start_smtp().await;
    sink.reject_recipient("nobody@acme.example");
    let n = email_notifier(&sink, &["nobody@acme.example"]);
    let msg = expect_permanent(n.send(&alert(1)).await);
    assert!(msg.contains("550"), "{msg}");
    assert!(sink.messages().is_empty());
}

// ---------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn debug_output_has_no_secrets() {
    let fake = start_slack().await;
    let hook = webhook_notifier(&fake, fake.webhook_url());
    let dbg = format!("{hook:?}");
    assert!(!dbg.contains(fake.webhook_secret()), "{dbg}");
    assert!(!dbg.contains("/services/"), "{dbg}");

    let bot = bot_notifier(&fake, fake.bot_token(), "#okta-alerts");
    let dbg = format!("{bot:?}");
    assert!(!dbg.contains(fake.bot_token()), "{dbg}");
    assert!(!dbg.contains("xoxb-"), "{dbg}");
    assert!(dbg.contains("#okta-alerts"), "{dbg}");

    let sink = start_smtp().await;
    let url = format!("smtp://alerts@127.0.0.1:{}", sink.port());
    let email = EmailNotifier::new(
        &email_cfg(url, Some("hunter2-very-secret"), &["oncall@acme.example"]),
        TIMEOUT,
    )
    .unwrap();
    let dbg = format!("{email:?}");
    assert!(!dbg.contains("hunter2-very-secret"), "{dbg}");
    assert!(dbg.contains("[redacted]"), "{dbg}");
}
