//! Configuration loading through the public API: the shipped example, defaults,
//! environment overrides, every rejected case (checked by the dotted key it
//! reports), and that no secret ever shows in `Debug`, errors or `doctor`'s summary.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

use okta_provwatch::config::{
    parse_duration, parse_schedule, Config, ConfigError, Env, LogFormat, OktaAuth, SecretSource,
    SlackTarget, DEFAULT_CONFIG_PATH,
};
use secrecy::ExposeSecret;

const TOKEN: &str = "00okta-TEST-token-abcdefghijklmnopqrstuv";
const WEBHOOK: &str = "https://hooks.slack.com/services/T000/B000/webhookSECRETpart";
const BOT_TOKEN: &str = "xoxb-bot-SECRET-token";
const SMTP_PASSWORD: &str = "smtp-SECRET-password";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEpemSECRETbody\n-----END PRIVATE KEY-----\n";

const EXAMPLE: &str = include_str!("../config.example.toml");

const BASE: &str = r#"
[okta]
org_url = "https://acme.okta.com"
api_token_env = "OKTA_API_TOKEN"
"#;

fn base_env() -> Vec<(String, String)> {
    vec![
        ("OKTA_API_TOKEN".into(), TOKEN.into()),
        ("SLACK_WEBHOOK_URL".into(), WEBHOOK.into()),
        ("SLACK_BOT_TOKEN".into(), BOT_TOKEN.into()),
        ("SMTP_PASSWORD".into(), SMTP_PASSWORD.into()),
        ("OKTA_PRIVATE_KEY".into(), PEM.into()),
    ]
}

fn env_with(extra: &[(&str, &str)]) -> Env {
    let mut vars = base_env();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::from_map(vars)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, &env_with(&[]))
}

/// BASE plus `extra` appended (sections may repeat only if BASE lacks them).
fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

/// Replaces the `[okta]` section entirely.
fn okta(section_body: &str) -> String {
    format!("[okta]\n{section_body}\n")
}

#[track_caller]
fn assert_err(text: &str, key: &str, needle: &str) -> ConfigError {
    assert_err_env(text, &env_with(&[]), key, needle)
}

#[track_caller]
fn assert_err_env(text: &str, env: &Env, key: &str, needle: &str) -> ConfigError {
    let e = match Config::from_toml_str(text, env) {
        Ok(c) => panic!("expected an error for {key}, got {c:?}"),
        Err(e) => e,
    };
    assert_eq!(e.key(), key, "wrong key in: {e}");
    let shown = e.to_string();
    assert!(shown.contains(needle), "{shown:?} lacks {needle:?}");
    assert!(!shown.contains('\n'), "multi-line error: {shown:?}");
    if !key.is_empty() {
        assert!(shown.starts_with(&format!("{key}: ")), "{shown}");
    }
    for secret in [TOKEN, WEBHOOK, BOT_TOKEN, SMTP_PASSWORD, "SECRET"] {
        assert!(!shown.contains(secret), "error leaks a secret: {shown}");
    }
    e
}

// ------------------------------------------------------------------ happy paths

#[test]
fn example_config_validates() {
    let c = load(EXAMPLE).expect("config.example.toml must load");
    assert_eq!(c.okta.org_url.as_str(), "https://acme.okta.com/");
    assert!(matches!(&c.okta.auth, OktaAuth::ApiToken(t) if t.expose_secret() == TOKEN));
    match &c.slack.as_ref().unwrap().target {
        SlackTarget::Webhook { url } => assert_eq!(url.expose_secret(), WEBHOOK),
        other => panic!("unexpected {other:?}"),
    }
    let email = c.email.as_ref().unwrap();
    assert_eq!(
        email.smtp_url,
        "smtps://okta-provwatch@smtp.acme.example:465"
    );
    assert_eq!(
        email.password.as_ref().unwrap().expose_secret(),
        SMTP_PASSWORD
    );
    assert_eq!(email.from.email.to_string(), "okta-provwatch@acme.example");
    assert_eq!(email.to.len(), 1);
}

#[test]
fn example_config_needs_its_env_var() {
    let e = Config::from_toml_str(EXAMPLE, &Env::empty()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "okta.api_token_env: environment variable OKTA_API_TOKEN is not set or empty"
    );
}

#[test]
fn defaults_apply_when_sections_are_omitted() {
    let c = load(BASE).unwrap();
    assert_eq!(c.okta.rate_limit_share, 0.5);
    assert_eq!(c.okta.max_in_flight, 2);
    assert_eq!(c.okta.request_timeout, Duration::from_secs(30));
    assert_eq!(c.state.path, Path::new("/var/lib/okta-provwatch/state.db"));
    assert_eq!(c.detect.poll_interval, Duration::from_secs(60));
    assert_eq!(c.detect.initial_lookback, Duration::from_secs(86_400));
    assert!(c.detect.apps.is_empty());
    assert!(c.retry.enabled);
    assert_eq!(c.retry.max_attempts, 5);
    assert_eq!(c.retry.initial_backoff, Duration::from_secs(120));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(3600));
    assert_eq!(c.retry.per_minute, 20);
    assert_eq!(c.alert.persist_after, Duration::from_secs(1800));
    assert_eq!(c.alert.repeat_interval, Duration::from_secs(14_400));
    assert_eq!(c.alert.group_wait, Duration::from_secs(30));
    assert!(c.alert.send_resolved);
    assert!(c.slack.is_none(), "no [slack] means Slack is off");
    assert!(c.email.is_none(), "no [email] means email is off");
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:9184");
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert_eq!(DEFAULT_CONFIG_PATH, "/etc/okta-provwatch/config.toml");
}

#[test]
fn environment_overrides_file_values() {
    let env = env_with(&[
        ("OKTA_PROVWATCH__DETECT__POLL_INTERVAL", "30s"),
        (
            "OKTA_PROVWATCH__OKTA__ORG_URL",
            "https://other.oktapreview.com",
        ),
        ("OKTA_PROVWATCH__OKTA__MAX_IN_FLIGHT", "4"),
        ("OKTA_PROVWATCH__LOG__FORMAT", "json"),
        ("OKTA_PROVWATCH__EMAIL__TO", "solo@acme.example"),
    ]);
    let text = with(
        "[detect]\npoll_interval = \"5m\"\n[log]\nformat = \"text\"\n\
         [email]\nsmtp_url = \"smtp://localhost:25\"\nfrom = \"a@acme.example\"\nto = [\"b@acme.example\"]\n",
    );
    let c = Config::from_toml_str(&text, &env).unwrap();
    assert_eq!(c.detect.poll_interval, Duration::from_secs(30));
    assert_eq!(c.okta.org_url.host_str(), Some("other.oktapreview.com"));
    assert_eq!(c.okta.max_in_flight, 4);
    assert_eq!(c.log.format, LogFormat::Json);
    let to = &c.email.unwrap().to;
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].email.to_string(), "solo@acme.example");
}

#[test]
fn environment_can_supply_a_whole_required_key() {
    let env = env_with(&[("OKTA_PROVWATCH__OKTA__ORG_URL", "https://acme.okta.com")]);
    let c = Config::from_toml_str("[okta]\napi_token_env = \"OKTA_API_TOKEN\"\n", &env).unwrap();
    assert_eq!(c.okta.org_url.as_str(), "https://acme.okta.com/");
}

#[test]
fn loopback_http_is_allowed_for_tests() {
    for url in [
        "http://localhost:8080",
        "http://127.0.0.1:9000/",
        "http://[::1]:9000",
    ] {
        let text = okta(&format!(
            "org_url = \"{url}\"\napi_token_env = \"OKTA_API_TOKEN\""
        ));
        let c = load(&text).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(c.okta.org_url.scheme(), "http");
    }
}

#[test]
fn token_from_file_and_credential() {
    let dir = temp_dir();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let text = okta(&format!(
        "org_url = \"https://acme.okta.com\"\napi_token_file = \"{}\"",
        file.display()
    ));
    let c = Config::from_toml_str(&text, &Env::empty()).unwrap();
    assert!(matches!(&c.okta.auth, OktaAuth::ApiToken(t) if t.expose_secret() == TOKEN));
    assert_eq!(
        c.secret_sources.okta,
        Some(SecretSource::File { path: file.clone() })
    );

    let creds = temp_dir();
    std::fs::write(creds.path().join("okta-token"), TOKEN).unwrap();
    let env = Env::from_map([(
        "CREDENTIALS_DIRECTORY",
        creds.path().to_str().unwrap().to_string(),
    )]);
    let text = okta("org_url = \"https://acme.okta.com\"\napi_token_credential = \"okta-token\"");
    let c = Config::from_toml_str(&text, &env).unwrap();
    assert!(matches!(&c.okta.auth, OktaAuth::ApiToken(t) if t.expose_secret() == TOKEN));
    let summary = c.redacted_summary();
    assert!(summary
        .iter()
        .any(|(k, v)| k == "okta.api_token" && v == "<from credential okta-token, 40 chars>"));
}

#[test]
fn oauth_config() {
    let dir = temp_dir();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, PEM).unwrap();
    let text = okta(&format!(
        "org_url = \"https://acme.okta.com\"\n[okta.oauth]\nclient_id = \"0oaCLIENT\"\n\
         private_key_file = \"{}\"\nkey_id = \"kid-1\"\nscopes = [\"okta.logs.read\"]",
        key.display()
    ));
    let c = load(&text).unwrap();
    let OktaAuth::OAuth(o) = &c.okta.auth else {
        panic!("expected oauth");
    };
    assert_eq!(o.client_id, "0oaCLIENT");
    assert_eq!(o.key_id.as_deref(), Some("kid-1"));
    assert_eq!(o.scopes, ["okta.logs.read"]);
    assert!(o
        .private_key_pem
        .expose_secret()
        .contains("MIIEpemSECRETbody"));

    // Default scopes, key from an env var with escaped newlines.
    let env = env_with(&[("ESCAPED_KEY", &PEM.replace('\n', "\\n"))]);
    let text = okta(
        "org_url = \"https://acme.okta.com\"\n[okta.oauth]\nclient_id = \"0oa\"\n\
         private_key_env = \"ESCAPED_KEY\"",
    );
    let c = Config::from_toml_str(&text, &env).unwrap();
    let OktaAuth::OAuth(o) = &c.okta.auth else {
        panic!("expected oauth");
    };
    assert_eq!(o.private_key_pem.expose_secret(), PEM.trim());
    assert_eq!(
        o.scopes,
        ["okta.logs.read", "okta.apps.read", "okta.apps.manage"]
    );
    assert!(o.key_id.is_none());
}

#[test]
fn slack_bot_target() {
    let c = load(&with(
        "[slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\nchannel = \"#okta-alerts\"\n\
         api_url = \"http://127.0.0.1:4000/api\"\n",
    ))
    .unwrap();
    let slack = c.slack.unwrap();
    match &slack.target {
        SlackTarget::Bot { token, channel } => {
            assert_eq!(token.expose_secret(), BOT_TOKEN);
            assert_eq!(channel, "#okta-alerts");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(slack.api_url.as_str(), "http://127.0.0.1:4000/api/");
    assert_eq!(
        slack.api_url.join("chat.postMessage").unwrap().as_str(),
        "http://127.0.0.1:4000/api/chat.postMessage"
    );
}

// ------------------------------------------------------------------ secrecy

#[test]
fn debug_and_summary_never_show_secrets() {
    let dir = temp_dir();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, PEM).unwrap();
    let configs = [
        load(EXAMPLE).unwrap(),
        load(&with(
            "[slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\nchannel = \"C123\"\n",
        ))
        .unwrap(),
        load(&okta(&format!(
            "org_url = \"https://acme.okta.com\"\n[okta.oauth]\nclient_id = \"0oa\"\nprivate_key_file = \"{}\"",
            key.display()
        )))
        .unwrap(),
    ];
    for c in &configs {
        let debug = format!("{c:?}");
        let pretty = format!("{c:#?}");
        let summary = format!("{:?}", c.redacted_summary());
        for shown in [&debug, &pretty, &summary] {
            for secret in [
                TOKEN,
                WEBHOOK,
                "webhookSECRETpart",
                BOT_TOKEN,
                SMTP_PASSWORD,
                "MIIEpemSECRETbody",
            ] {
                assert!(!shown.contains(secret), "leaked {secret:?} in {shown}");
            }
        }
    }
}

#[test]
fn summary_lists_every_section() {
    let c = load(EXAMPLE).unwrap();
    let keys: Vec<String> = c.redacted_summary().into_iter().map(|(k, _)| k).collect();
    for k in [
        "okta.org_url",
        "okta.api_token",
        "state.path",
        "detect.poll_interval",
        "retry.max_attempts",
        "alert.digest_schedule",
        "slack.webhook_url",
        "email.smtp_url",
        "email.smtp_password",
        "http.listen",
        "log.level",
    ] {
        assert!(keys.iter().any(|x| x == k), "summary lacks {k}");
    }
}

// ------------------------------------------------------------------ errors

#[test]
fn toml_syntax_error_has_line_number() {
    let e = assert_err(
        "[okta]\norg_url = \"https://acme.okta.com\"\n\n[detect\n",
        "",
        "line 4",
    );
    assert!(e.to_string().starts_with("invalid TOML"), "{e}");
}

#[test]
fn unknown_keys_at_every_level() {
    assert_err(&with("[foo]\nbar = 1\n"), "foo", "unknown key");
    assert_err(&with("[detect]\nbar = 1\n"), "detect.bar", "unknown key");
    assert_err(
        &format!("{BASE}\nrate_limit = 0.5\n"),
        "okta.rate_limit",
        "unknown key",
    );
    assert_err(
        &with("[okta.oauth]\nclient_id = \"x\"\nprivate_key = \"y\"\n"),
        "okta.oauth.private_key",
        "name it with `private_key_env`, `private_key_file` or `private_key_credential`",
    );
    assert_err(
        &with("[slack]\nwebhook_url = \"https://hooks.slack.com/x\"\n"),
        "slack.webhook_url",
        "name it with `webhook_url_env`, `webhook_url_file` or `webhook_url_credential`",
    );
    assert_err(
        &with("[email]\npassword = \"x\"\n"),
        "email.password",
        "unknown key",
    );
    let e = assert_err(
        &with("[retry]\nmax_attempt = 3\n"),
        "retry.max_attempt",
        "unknown key",
    );
    assert!(e.message.contains("did you mean `max_attempts`"), "{e}");
    assert_err_env(
        BASE,
        &env_with(&[("OKTA_PROVWATCH__HTTP__LISTEN_ADDR", "0.0.0.0:1")]),
        "http.listen_addr",
        "OKTA_PROVWATCH__HTTP__LISTEN_ADDR",
    );
}

#[test]
fn wrong_types_name_the_key() {
    assert_err(
        &with("[retry]\nenabled = \"yes\"\n"),
        "retry.enabled",
        "invalid type",
    );
    assert_err(
        &with("[retry]\nmax_attempts = \"five\"\n"),
        "retry.max_attempts",
        "invalid type",
    );
    assert_err(&with("[detect]\napps = 5\n"), "detect.apps", "invalid type");
}

#[test]
fn okta_errors() {
    let e = assert_err(
        &okta("org_url = \"http://acme.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\""),
        "okta.org_url",
        "must use https",
    );
    assert_eq!(
        e.to_string(),
        "okta.org_url: must use https (plain http is allowed only for loopback hosts)"
    );
    assert_err(
        &okta("org_url = \"http://10.0.0.5:8080\"\napi_token_env = \"OKTA_API_TOKEN\""),
        "okta.org_url",
        "must use https",
    );
    assert_err(
        &okta("api_token_env = \"OKTA_API_TOKEN\""),
        "okta.org_url",
        "required",
    );
    assert_err(
        &okta("org_url = \"acme.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\""),
        "okta.org_url",
        "include the scheme",
    );
    assert_err(
        &okta(
            "org_url = \"https://acme.okta.com/oauth2/default\"\napi_token_env = \"OKTA_API_TOKEN\"",
        ),
        "okta.org_url",
        "no path",
    );
    assert_err(
        &okta("org_url = \"https://acme-admin.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\""),
        "okta.org_url",
        "https://acme.okta.com",
    );

    let e = assert_err(
        &okta("org_url = \"https://acme.okta.com\""),
        "okta",
        "no API credential",
    );
    assert_eq!(
        e.to_string(),
        "okta: no API credential: set one of api_token_env, api_token_file, \
         api_token_credential, or an [okta.oauth] table"
    );

    let e = assert_err_env(BASE, &Env::empty(), "okta.api_token_env", "OKTA_API_TOKEN");
    assert_eq!(
        e.to_string(),
        "okta.api_token_env: environment variable OKTA_API_TOKEN is not set or empty"
    );
    assert_err_env(
        BASE,
        &Env::from_map([("OKTA_API_TOKEN", "")]),
        "okta.api_token_env",
        "not set or empty",
    );

    assert_err(
        &format!("{BASE}api_token_file = \"/etc/x\"\n"),
        "okta",
        "api_token_env and api_token_file are both set",
    );
    assert_err(
        &format!(
            "{BASE}[okta.oauth]\nclient_id = \"0oa\"\nprivate_key_env = \"OKTA_PRIVATE_KEY\"\n"
        ),
        "okta",
        "both api_token_env and an [okta.oauth] table",
    );

    for (value, shown) in [("1.5", "1.5"), ("0", "0"), ("-0.2", "-0.2"), ("nan", "NaN")] {
        let e = assert_err(
            &format!("{BASE}rate_limit_share = {value}\n"),
            "okta.rate_limit_share",
            "must be in (0, 1]",
        );
        assert_eq!(
            e.to_string(),
            format!("okta.rate_limit_share: must be in (0, 1], got {shown}")
        );
    }
    assert!(load(&format!("{BASE}rate_limit_share = 1\n")).is_ok());
    for n in ["0", "9", "-1"] {
        assert_err(
            &format!("{BASE}max_in_flight = {n}\n"),
            "okta.max_in_flight",
            "between 1 and 8",
        );
    }
    assert_err(
        &format!("{BASE}request_timeout = \"0s\"\n"),
        "okta.request_timeout",
        "greater than 0",
    );
    assert_err(
        &format!("{BASE}request_timeout = \"soon\"\n"),
        "okta.request_timeout",
        "invalid duration \"soon\"",
    );
}

#[test]
fn secret_file_problems_name_key_and_path() {
    let dir = temp_dir();
    let missing = dir.path().join("missing-token");
    let text = okta(&format!(
        "org_url = \"https://acme.okta.com\"\napi_token_file = \"{}\"",
        missing.display()
    ));
    let e = assert_err(&text, "okta.api_token_file", "does not exist");
    assert!(e.message.contains(&missing.display().to_string()), "{e}");

    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let text = okta(&format!(
        "org_url = \"https://acme.okta.com\"\napi_token_file = \"{}\"",
        empty.display()
    ));
    let e = assert_err(&text, "okta.api_token_file", "is empty");
    assert!(e.message.contains(&empty.display().to_string()), "{e}");

    let text = okta("org_url = \"https://acme.okta.com\"\napi_token_credential = \"okta-token\"");
    assert_err_env(
        &text,
        &Env::empty(),
        "okta.api_token_credential",
        "CREDENTIALS_DIRECTORY",
    );
    let creds = temp_dir();
    let env = Env::from_map([(
        "CREDENTIALS_DIRECTORY",
        creds.path().to_str().unwrap().to_string(),
    )]);
    assert_err_env(&text, &env, "okta.api_token_credential", "does not exist");

    let email = with(&format!(
        "[email]\nsmtp_url = \"smtps://u@smtp.acme.example\"\nsmtp_password_file = \"{}\"\n\
         from = \"a@acme.example\"\nto = [\"b@acme.example\"]\n",
        missing.display()
    ));
    assert_err(&email, "email.smtp_password_file", "does not exist");
}

#[test]
fn oauth_errors() {
    let head = "org_url = \"https://acme.okta.com\"\n[okta.oauth]\n";
    assert_err(
        &okta(&format!("{head}private_key_env = \"OKTA_PRIVATE_KEY\"")),
        "okta.oauth.client_id",
        "required",
    );
    assert_err(
        &okta(&format!("{head}client_id = \"0oa\"")),
        "okta.oauth",
        "no private key",
    );
    assert_err(
        &okta(&format!(
            "{head}client_id = \"0oa\"\nprivate_key_env = \"OKTA_PRIVATE_KEY\"\nprivate_key_file = \"/k\""
        )),
        "okta.oauth",
        "both set",
    );
    assert_err(
        &okta(&format!(
            "{head}client_id = \"0oa\"\nprivate_key_env = \"OKTA_API_TOKEN\""
        )),
        "okta.oauth.private_key_env",
        "does not hold a PEM private key",
    );
    assert_err(
        &okta(&format!(
            "{head}client_id = \"0oa\"\nprivate_key_env = \"OKTA_PRIVATE_KEY\"\nscopes = []"
        )),
        "okta.oauth.scopes",
        "at least one scope",
    );
}

#[test]
fn detect_errors() {
    let e = assert_err(
        &with("[detect]\npoll_interval = \"5 parsecs\"\n"),
        "detect.poll_interval",
        "invalid duration",
    );
    assert_eq!(
        e.to_string(),
        "detect.poll_interval: invalid duration \"5 parsecs\" (use e.g. \"30s\", \"15m\", \"4h\")"
    );
    assert_err(
        &with("[detect]\npoll_interval = \"4s\"\n"),
        "detect.poll_interval",
        "at least 5s",
    );
    assert!(load(&with("[detect]\npoll_interval = \"5s\"\n")).is_ok());
    assert_err(
        &with("[detect]\ninitial_lookback = \"91d\"\n"),
        "detect.initial_lookback",
        "at most 90d",
    );
    assert!(load(&with("[detect]\ninitial_lookback = \"90d\"\n")).is_ok());
    let e = assert_err(
        &with("[detect]\nscan_schedule = \"every half hour\"\n"),
        "detect.scan_schedule",
        "invalid cron expression \"every half hour\" : ",
    );
    assert!(e.message.len() > "invalid cron expression".len());
    assert_err(
        &with("[detect]\nscan_schedule = \"*/30 * * * *\"\n"),
        "detect.scan_schedule",
        "did you mean \"0 */30 * * * *\"",
    );
    assert_err(
        &with("[detect]\napps = [\"Workday\", \"\"]\n"),
        "detect.apps",
        "must not be empty",
    );
}

#[test]
fn retry_and_alert_errors() {
    assert_err(
        &with("[retry]\nmax_attempts = 0\n"),
        "retry.max_attempts",
        "at least 1, got 0",
    );
    assert_err(
        &with("[retry]\ninitial_backoff = \"2h\"\nmax_backoff = \"1h\"\n"),
        "retry.initial_backoff",
        "must not exceed retry.max_backoff",
    );
    assert!(load(&with(
        "[retry]\ninitial_backoff = \"1h\"\nmax_backoff = \"1h\"\n"
    ))
    .is_ok());
    assert_err(
        &with("[retry]\nper_minute = 0\n"),
        "retry.per_minute",
        "at least 1, got 0",
    );
    assert_err(
        &with("[retry]\nper_minute = -3\n"),
        "retry.per_minute",
        "at least 1, got -3",
    );
    assert_err(
        &with("[alert]\nrepeat_interval = \"0s\"\n"),
        "alert.repeat_interval",
        "greater than 0",
    );
    assert_err(
        &with("[alert]\ndigest_schedule = \"0 0 25 * * *\"\n"),
        "alert.digest_schedule",
        "invalid cron expression",
    );
    assert_err(
        &with("[alert]\ngroup_wait = 30\n"),
        "alert.group_wait",
        "invalid duration \"30\"",
    );
}

#[test]
fn slack_errors() {
    assert_err(
        &with(
            "[slack]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\nbot_token_env = \"SLACK_BOT_TOKEN\"\nchannel = \"#a\"\n",
        ),
        "slack",
        "both a webhook URL",
    );
    assert_err(
        &with("[slack]\nbot_token_env = \"SLACK_BOT_TOKEN\"\n"),
        "slack.channel",
        "required with a bot token",
    );
    assert_err(
        &with("[slack]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\nchannel = \"#a\"\n"),
        "slack.channel",
        "only used with a bot token",
    );
    assert_err(&with("[slack]\n"), "slack", "no destination");
    assert_err(
        &with("[slack]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\nwebhook_url_file = \"/x\"\n"),
        "slack",
        "webhook_url_env and webhook_url_file are both set",
    );
    assert_err(
        &with("[slack]\nwebhook_url_env = \"NOPE\"\n"),
        "slack.webhook_url_env",
        "environment variable NOPE is not set or empty",
    );
    // A broken webhook URL is still a secret: the error names its source only.
    let env = env_with(&[("BAD_HOOK", "hooks.slack.com/services/webhookSECRETpart")]);
    assert_err_env(
        &with("[slack]\nwebhook_url_env = \"BAD_HOOK\"\n"),
        &env,
        "slack.webhook_url_env",
        "env BAD_HOOK does not hold a valid URL",
    );
    let env = env_with(&[("PLAIN_HOOK", "http://hooks.example/webhookSECRETpart")]);
    assert_err_env(
        &with("[slack]\nwebhook_url_env = \"PLAIN_HOOK\"\n"),
        &env,
        "slack.webhook_url_env",
        "must use https",
    );
    assert_err(
        &with("[slack]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\napi_url = \"http://slack.example/api/\"\n"),
        "slack.api_url",
        "must use https",
    );
}

#[test]
fn email_errors() {
    let email = |body: &str| with(&format!("[email]\n{body}\n"));
    let ok_rest = "from = \"a@acme.example\"\nto = [\"b@acme.example\"]";

    let e = assert_err(
        &email(&format!(
            "smtp_url = \"smtps://user:{SMTP_PASSWORD}@smtp.acme.example:465\"\n{ok_rest}"
        )),
        "email.smtp_url",
        "must not contain a password",
    );
    assert!(e.message.contains("smtp_password_env"), "{e}");

    assert_err(
        &email("smtp_url = \"smtps://u@smtp.acme.example\"\nfrom = \"a@acme.example\"\nto = []"),
        "email.to",
        "at least one address",
    );
    assert_err(
        &email("smtp_url = \"smtps://u@smtp.acme.example\"\nfrom = \"a@acme.example\""),
        "email.to",
        "at least one address",
    );
    let e = assert_err(
        &email(
            "smtp_url = \"smtps://u@smtp.acme.example\"\nfrom = \"a@acme.example\"\nto = [\"it-ops@\"]",
        ),
        "email.to",
        "invalid address",
    );
    assert!(e.message.contains("it-ops@"), "{e}");
    assert_err(
        &email("smtp_url = \"smtps://u@smtp.acme.example\"\nfrom = \"not an address\"\nto = [\"b@acme.example\"]"),
        "email.from",
        "invalid address",
    );
    assert_err(
        &email("smtp_url = \"smtps://u@smtp.acme.example\"\nto = [\"b@acme.example\"]"),
        "email.from",
        "required",
    );
    assert_err(&email(ok_rest), "email.smtp_url", "required");
    assert_err(
        &email(&format!(
            "smtp_url = \"https://smtp.acme.example\"\n{ok_rest}"
        )),
        "email.smtp_url",
        "smtp:// or smtps://",
    );
    assert_err(
        &email(&format!(
            "smtp_url = \"smtp://smtp.acme.example?tls=maybe\"\n{ok_rest}"
        )),
        "email.smtp_url",
        "tls",
    );
    assert_err(
        &email(&format!(
            "smtp_url = \"smtps://smtp.acme.example\"\nsmtp_password_env = \"SMTP_PASSWORD\"\n{ok_rest}"
        )),
        "email.smtp_url",
        "no user name",
    );
    assert_err(
        &email(&format!(
            "smtp_url = \"smtp://u@smtp.acme.example:25\"\nsmtp_password_env = \"SMTP_PASSWORD\"\n{ok_rest}"
        )),
        "email.smtp_url",
        "unencrypted",
    );
    assert!(load(&email(&format!(
        "smtp_url = \"smtp://u@smtp.acme.example:587?tls=required\"\nsmtp_password_env = \"SMTP_PASSWORD\"\n{ok_rest}"
    )))
    .is_ok());
    assert_err(
        &email(&format!(
            "smtp_url = \"smtps://u@smtp.acme.example\"\nsmtp_password_env = \"SMTP_PASSWORD\"\n\
             smtp_password_credential = \"smtp\"\n{ok_rest}"
        )),
        "email",
        "both set",
    );
}

#[test]
fn http_log_state_errors() {
    assert_err(
        &with("[http]\nlisten = \"localhost:9184\"\n"),
        "http.listen",
        "expected IP:port",
    );
    assert_err(
        &with("[log]\nformat = \"xml\"\n"),
        "log.format",
        "\"text\" or \"json\"",
    );
    assert_err(
        &with("[log]\nlevel = \"verbose\"\n"),
        "log.level",
        "must be one of",
    );
    assert!(load(&with("[log]\nlevel = \"okta_provwatch=debug,warn\"\n")).is_ok());
    assert_err(
        &with("[state]\npath = \"\"\n"),
        "state.path",
        "must not be empty",
    );
}

// ------------------------------------------------------------------ helpers

#[test]
fn duration_and_schedule_helpers_are_public() {
    assert_eq!(
        parse_duration("--for", "2h").unwrap(),
        Duration::from_secs(7200)
    );
    let e = parse_duration("--for", "forever").unwrap_err();
    assert_eq!(e.key(), "--for");
    assert!(parse_schedule("--at", "0 0 9 * * Mon-Fri").is_ok());
    assert!(parse_schedule("--at", "nonsense").is_err());
}

#[test]
fn load_from_disk() {
    let dir = temp_dir();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let c = Config::load_with_env(&path, &env_with(&[])).unwrap();
    assert!(c.slack.is_some() && c.email.is_some());
}

// ------------------------------------------------------------------ issues 10 and 12

/// Issue 10 defect 6: an absurd duration was accepted and later overflowed `Instant`
/// arithmetic in `/healthz`. Every duration key is now bounded, and the error names it.
#[test]
fn every_duration_key_is_bounded() {
    for (section, key, max) in [
        ("okta", "request_timeout", "10m"),
        ("detect", "poll_interval", "24h"),
        ("detect", "initial_lookback", "90d"),
        ("retry", "initial_backoff", "7d"),
        ("retry", "max_backoff", "7d"),
        ("alert", "persist_after", "7d"),
        ("alert", "repeat_interval", "30d"),
        ("alert", "group_wait", "1h"),
        ("alert", "group_interval", "24h"),
    ] {
        let text = if section == "okta" {
            BASE.replace("[okta]\n", "[okta]\nrequest_timeout = \"500000000000y\"\n")
        } else {
            with(&format!("[{section}]\n{key} = \"500000000000y\"\n"))
        };
        let e = assert_err(
            &text,
            &format!("{section}.{key}"),
            &format!("must be at most {max}, got \"500000000000y\""),
        );
        assert!(!e.message.contains("months"), "{e}");
    }
    // Beyond even humantime's own arithmetic: still a keyed error, not a panic.
    assert_err(
        &with("[detect]\npoll_interval = \"99999999999999999999y\"\n"),
        "detect.poll_interval",
        "is too long",
    );
    // The exact message, echoing the value as written.
    let e = load(&with("[detect]\npoll_interval = \"500000000000y\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "detect.poll_interval: must be at most 24h, got \"500000000000y\""
    );
    // The bounds themselves are accepted.
    assert!(load(&with("[detect]\npoll_interval = \"24h\"\n")).is_ok());
    assert!(load(&with("[alert]\nrepeat_interval = \"30d\"\n")).is_ok());
}

/// Issue 12: durations are echoed in the units the operator wrote.
#[test]
fn durations_are_echoed_as_written() {
    let e = load(&with("[detect]\ninitial_lookback = \"91d\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "detect.initial_lookback: must be at most 90d, got \"91d\" \
         (Okta keeps System Log events for 90 days)"
    );
    let e = load(&with("[detect]\npoll_interval = \"4s\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "detect.poll_interval: must be at least 5s, got \"4s\""
    );
    let e = load(&with(
        "[retry]\ninitial_backoff = \"2h\"\nmax_backoff = \"90m\"\n",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "retry.initial_backoff: must not exceed retry.max_backoff (2h > 90m)"
    );
    let c = load(&with(
        "[detect]\ninitial_lookback = \"24h\"\npoll_interval = \"1m 30s\"\n[alert]\nrepeat_interval = \"1440m\"\n",
    ))
    .unwrap();
    let summary: std::collections::HashMap<String, String> =
        c.redacted_summary().into_iter().collect();
    assert_eq!(summary["detect.initial_lookback"], "24h");
    assert_eq!(summary["detect.poll_interval"], "1m 30s");
    assert_eq!(summary["alert.repeat_interval"], "1440m");
    // Defaults are shown as the example file spells them.
    assert_eq!(summary["alert.persist_after"], "30m");
    // A value changed after loading (the demo does this) is shown as it now is.
    let mut c = c;
    c.detect.poll_interval = Duration::from_secs(1);
    let summary: std::collections::HashMap<String, String> =
        c.redacted_summary().into_iter().collect();
    assert_eq!(summary["detect.poll_interval"], "1s");
}

/// Issue 10 defect 7: a bogus `log.level` filter used to fall back to `info` silently.
#[test]
fn bogus_log_filters_are_rejected() {
    for (level, why) in [
        (
            "okta_provwatch=loud",
            "invalid filter \"okta_provwatch=loud\"",
        ),
        ("info,warning", "\"warning\" is not a level"),
        ("info,,debug", "empty directive"),
        ("okta_provwatch[{=debug", "invalid filter"),
    ] {
        let e = assert_err(
            &with(&format!("[log]\nlevel = {level:?}\n")),
            "log.level",
            why,
        );
        assert!(e.message.contains("must be one of trace, debug"), "{e}");
    }
    let e = load(&with("[log]\nlevel = \"verbose\"\n")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "log.level: \"verbose\" is not a level; must be one of trace, debug, info, warn, \
         error, off, or a filter such as \"okta_provwatch=debug,warn\""
    );
    for ok in [
        "info",
        "WARN",
        "okta_provwatch=debug,warn",
        "okta_provwatch::detect=trace",
        "off",
    ] {
        assert!(
            load(&with(&format!("[log]\nlevel = {ok:?}\n"))).is_ok(),
            "{ok}"
        );
    }
}

/// Issue 10 defect 8: a password over plain smtp:// to a loopback relay is fine for any
/// loopback spelling, not only `localhost` and `[::1]`.
#[test]
fn smtp_password_to_any_loopback_relay_is_accepted() {
    let rest = "smtp_password_env = \"SMTP_PASSWORD\"\nfrom = \"w@acme.example\"\nto = [\"ops@acme.example\"]\n";
    for url in [
        "smtp://user@127.0.0.1",
        "smtp://user@127.0.0.1:2525",
        "smtp://user@127.8.9.10:25",
        "smtp://user@localhost:25",
        "smtp://user@[::1]:25",
    ] {
        let text = with(&format!("[email]\nsmtp_url = {url:?}\n{rest}"));
        let c = load(&text).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(c.email.unwrap().password.is_some());
    }
    for url in ["smtp://user@10.0.0.1", "smtp://user@128.0.0.1"] {
        assert_err(
            &with(&format!("[email]\nsmtp_url = {url:?}\n{rest}")),
            "email.smtp_url",
            "would send the password unencrypted",
        );
    }
}

/// Issue 12: a password source without a login suggests both ways out.
#[test]
fn smtp_password_without_user_suggests_removing_it() {
    let e = load(&with(
        "[email]\nsmtp_url = \"smtps://smtp.acme.example\"\nsmtp_password_env = \"SMTP_PASSWORD\"\n\
         from = \"w@acme.example\"\nto = [\"ops@acme.example\"]\n",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "email.smtp_url: smtp_password_env is set but the URL has no user name: add the login \
         to the URL (e.g. \"smtps://USER@smtp.example.com\"), or remove smtp_password_env if \
         the relay needs no login"
    );
}

/// Issue 12: `api_token = "..."` inline names the three places a secret may come from.
#[test]
fn inline_api_token_points_at_env_file_or_credential() {
    let text = BASE.replace("[okta]\n", "[okta]\napi_token = \"00inlineTOKEN\"\n");
    let e = assert_err(
        &text,
        "okta.api_token",
        "`api_token_env`, `api_token_file` or `api_token_credential`",
    );
    assert!(!e.to_string().contains("00inlineTOKEN"));
    assert!(!e.to_string().contains("unknown key"), "{e}");
}

/// A credential the config names but nobody installed says where the unit looks for it.
#[test]
fn missing_credential_says_where_to_install_it() {
    let creds = tempfile::tempdir().unwrap();
    let env = Env::from_map([(
        "CREDENTIALS_DIRECTORY",
        creds.path().to_str().unwrap().to_string(),
    )]);
    let text =
        okta("org_url = \"https://acme.okta.com\"\napi_token_credential = \"okta-api-token\"");
    let e = Config::from_toml_str(&text, &env).unwrap_err();
    assert_eq!(e.key(), "okta.api_token_credential");
    assert!(
        e.message.ends_with(
            "does not exist; install it as /etc/credstore/okta-api-token (root:root, mode 0600), \
             or add LoadCredential=okta-api-token:/path in a drop-in"
        ),
        "{e}"
    );
    let text = okta(
        "org_url = \"https://acme.okta.com\"\napi_token_credential = \"okta-api-token.encrypted\"",
    );
    let e = Config::from_toml_str(&text, &env).unwrap_err();
    assert!(
        e.message
            .contains("install it as /etc/credstore.encrypted/okta-api-token.encrypted"),
        "{e}"
    );
}

/// `check-config` exits with the config status (78) and prints the cause once.
#[test]
fn check_config_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[okta]\norg_url = \"https://acme.okta.com\"\napi_token = \"00inline\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_okta-provwatch"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("OKTA_PROVWATCH_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(okta_provwatch::exit::CONFIG as i32));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "okta-provwatch: config {}: okta.api_token: secrets are not written in the config \
             file (it is often world-readable and ends up in backups); put the value in an \
             environment variable, a file or a systemd credential and name it with \
             `api_token_env`, `api_token_file` or `api_token_credential`",
            path.display()
        )
    );
    assert!(!stderr.contains("00inline"));

    // And a valid one echoes durations as written.
    std::fs::write(
        &path,
        "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \"T\"\n[detect]\ninitial_lookback = \"24h\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_okta-provwatch"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("T", "00tokenvalue")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("  detect.initial_lookback = 24h\n"),
        "{stdout}"
    );
}
