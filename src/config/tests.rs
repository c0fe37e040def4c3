//! Unit tests for the loading pipeline as a whole: parse → overrides →
//! deserialize → validate. Per-key error cases live in `tests/config.rs`.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

const MINIMAL: &str = r#"
[okta]
org_url = "https://acme.okta.com"
api_token_env = "OKTA_API_TOKEN"
"#;

fn env() -> Env {
    Env::from_map([
        ("OKTA_API_TOKEN", "00TESTtokenValue"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/hooksecret",
        ),
        ("SMTP_PASSWORD", "smtp-secret-pw"),
    ])
}

#[test]
fn minimal_config_gets_every_default() {
    let c = Config::from_toml_str(MINIMAL, &env()).unwrap();
    assert_eq!(c.okta.org_url.as_str(), "https://acme.okta.com/");
    match &c.okta.auth {
        OktaAuth::ApiToken(t) => assert_eq!(t.expose_secret(), "00TESTtokenValue"),
        other => panic!("unexpected auth {other:?}"),
    }
    assert_eq!(c.okta.rate_limit_share, 0.5);
    assert_eq!(c.okta.max_in_flight, 2);
    assert_eq!(c.okta.request_timeout, Duration::from_secs(30));
    assert_eq!(c.state.path, Path::new("/var/lib/okta-provwatch/state.db"));
    assert_eq!(c.detect.poll_interval, Duration::from_secs(60));
    assert_eq!(c.detect.initial_lookback, Duration::from_secs(24 * 3600));
    assert_eq!(c.detect.scan_schedule.to_string(), "0 */30 * * * *");
    assert!(c.detect.apps.is_empty());
    assert_eq!(
        c.retry,
        RetryConfig {
            enabled: true,
            max_attempts: 5,
            initial_backoff: Duration::from_secs(120),
            max_backoff: Duration::from_secs(3600),
            per_minute: 20,
        }
    );
    assert_eq!(c.alert.persist_after, Duration::from_secs(1800));
    assert_eq!(c.alert.repeat_interval, Duration::from_secs(4 * 3600));
    assert_eq!(c.alert.group_wait, Duration::from_secs(30));
    assert_eq!(c.alert.group_interval, Duration::from_secs(300));
    assert!(c.alert.send_resolved);
    assert_eq!(c.alert.digest_schedule.to_string(), "0 0 9 * * Mon-Fri");
    assert!(c.slack.is_none() && c.email.is_none());
    assert_eq!(c.http.listen, "127.0.0.1:9184".parse().unwrap());
    assert_eq!(
        c.log,
        LogConfig {
            format: LogFormat::Text,
            level: "info".into()
        }
    );
    assert_eq!(
        c.secret_sources.okta,
        Some(SecretSource::Env {
            var: "OKTA_API_TOKEN".into()
        })
    );
}

/// The reference file documents the defaults; this keeps it honest.
#[test]
fn example_file_values_are_the_defaults() {
    let example = include_str!("../../config.example.toml");
    let ex = Config::from_toml_str(example, &env()).unwrap();
    let def = Config::from_toml_str(MINIMAL, &env()).unwrap();
    let skip = |k: &str| k.starts_with("slack") || k.starts_with("email");
    let a: Vec<_> = ex
        .redacted_summary()
        .into_iter()
        .filter(|(k, _)| !skip(k))
        .collect();
    let b: Vec<_> = def
        .redacted_summary()
        .into_iter()
        .filter(|(k, _)| !skip(k))
        .collect();
    assert_eq!(a, b);
    let slack = ex.slack.unwrap();
    assert_eq!(slack.api_url.as_str(), "https://slack.com/api/");
}

#[test]
fn env_overrides_beat_the_file() {
    let env = Env::from_map([
        ("OKTA_API_TOKEN", "tok"),
        ("OKTA_PROVWATCH__DETECT__POLL_INTERVAL", "30s"),
        ("OKTA_PROVWATCH__RETRY__ENABLED", "false"),
        ("OKTA_PROVWATCH__OKTA__ORG_URL", "http://127.0.0.1:8080"),
        ("OKTA_PROVWATCH__DETECT__APPS", "[\"Workday\", \"0oa123\"]"),
    ]);
    let text = format!("{MINIMAL}\n[detect]\npoll_interval = \"2m\"\n");
    let c = Config::from_toml_str(&text, &env).unwrap();
    assert_eq!(c.detect.poll_interval, Duration::from_secs(30));
    assert!(!c.retry.enabled);
    assert_eq!(c.okta.org_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!(c.detect.apps, ["Workday", "0oa123"]);
}

#[test]
fn errors_from_overrides_name_the_variable() {
    let env = Env::from_map([
        ("OKTA_API_TOKEN", "tok"),
        ("OKTA_PROVWATCH__DETECT__POLL_INTERVAL", "1s"),
    ]);
    let e = Config::from_toml_str(MINIMAL, &env).unwrap_err();
    assert_eq!(e.key, "detect.poll_interval");
    assert!(
        e.message
            .ends_with("(set by environment variable OKTA_PROVWATCH__DETECT__POLL_INTERVAL)"),
        "{e}"
    );

    let env = Env::from_map([
        ("OKTA_API_TOKEN", "tok"),
        ("OKTA_PROVWATCH__DETECT__POLL_INTERVL", "10s"),
    ]);
    let e = Config::from_toml_str(MINIMAL, &env).unwrap_err();
    assert_eq!(e.key, "detect.poll_intervl");
    assert!(e.message.starts_with("unknown key"), "{e}");
    assert!(
        e.message.contains("OKTA_PROVWATCH__DETECT__POLL_INTERVL"),
        "{e}"
    );
}

#[test]
fn section_errors_list_overrides_in_the_section() {
    let env = Env::from_map([
        ("OKTA_API_TOKEN", "tok"),
        ("OKTA_PROVWATCH__OKTA__API_TOKEN_FILE", "/run/secrets/okta"),
    ]);
    let e = Config::from_toml_str(MINIMAL, &env).unwrap_err();
    assert_eq!(e.key, "okta");
    assert_eq!(
        e.message,
        "api_token_env and api_token_file are both set; choose one \
         (environment overrides in this section: OKTA_PROVWATCH__OKTA__API_TOKEN_FILE)"
    );
}

#[test]
fn syntax_errors_give_line_and_column() {
    let text = "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \n";
    let e = Config::from_toml_str(text, &env()).unwrap_err();
    assert_eq!(e.key, "");
    let shown = e.to_string();
    assert!(
        shown.starts_with("invalid TOML at line 3, column "),
        "{shown}"
    );
    assert!(!shown.contains('\n'));
}

#[test]
fn load_reads_a_file_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = Config::load_with_env(&path, &env()).unwrap();
    assert_eq!(c.okta.org_url.host_str(), Some("acme.okta.com"));

    let missing = dir.path().join("nope.toml");
    let e = Config::load_with_env(&missing, &env()).unwrap_err();
    assert!(e.to_string().contains("nope.toml does not exist"), "{e}");

    std::fs::write(&path, "[okta\n").unwrap();
    let e = Config::load_with_env(&path, &env()).unwrap_err();
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
}

#[test]
fn summary_shows_sources_not_secrets() {
    let example = include_str!("../../config.example.toml");
    let c = Config::from_toml_str(example, &env()).unwrap();
    let summary = c.redacted_summary();
    let get = |k: &str| {
        summary
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {k} in summary"))
    };
    assert_eq!(get("okta.api_token"), "<from env OKTA_API_TOKEN, 16 chars>");
    assert!(get("slack.webhook_url").starts_with("<from env SLACK_WEBHOOK_URL, "));
    assert_eq!(
        get("email.smtp_password"),
        "<from env SMTP_PASSWORD, 14 chars>"
    );
    assert_eq!(get("email.to"), "it-ops@acme.example");
    let all = format!("{summary:?}");
    for secret in ["00TESTtokenValue", "hooksecret", "smtp-secret-pw"] {
        assert!(!all.contains(secret), "summary leaks {secret}");
    }
}

#[test]
fn state_alone_loads_without_any_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \"UNSET_TOKEN\"\n[state]\npath = \"/srv/pw/state.db\"\n",
    )
    .unwrap();
    // The full config needs the token; the state section alone does not.
    assert!(Config::load_with_env(&path, &Env::empty()).is_err());
    let st = Config::load_state_with_env(&path, &Env::empty()).unwrap();
    assert_eq!(st.path, std::path::PathBuf::from("/srv/pw/state.db"));
    // Environment overrides apply, and typos are still errors.
    let st = Config::load_state_with_env(
        &path,
        &Env::from_map([("OKTA_PROVWATCH__STATE__PATH", "/tmp/other.db")]),
    )
    .unwrap();
    assert_eq!(st.path, std::path::PathBuf::from("/tmp/other.db"));
    std::fs::write(&path, "[stat]\npath = \"x\"\n").unwrap();
    let e = Config::load_state_with_env(&path, &Env::empty()).unwrap_err();
    assert_eq!(e.key(), "stat");
}
