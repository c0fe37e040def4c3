//! Property tests of config parsing (issue 10): whatever the input (arbitrary text,
//! TOML-shaped documents over the real keys, duration and cron strings), loading never
//! panics, every rejection names the key at fault (or, for a document that is not TOML,
//! the line and column), and everything accepted is within the bounds the daemon's
//! arithmetic relies on.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn env() -> Env {
    Env::from_map([
        ("OKTA_API_TOKEN", "00propTestTokenValue"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/x",
        ),
        ("SMTP_PASSWORD", "pw"),
    ])
}

/// The rule every rejection keeps: a key, or (only for text that is not TOML) a location.
fn assert_names_its_cause(e: &ConfigError) {
    if e.key.is_empty() {
        assert!(
            e.message.starts_with("invalid TOML"),
            "keyless error that is not a syntax error: {e}"
        );
    } else {
        assert!(e.to_string().starts_with(&format!("{}: ", e.key)), "{e}");
    }
    assert!(!e.to_string().contains('\n'), "{e:?}");
    assert!(!e.to_string().contains("00propTestTokenValue"), "{e}");
}

/// Bounds the rest of the daemon relies on (`Instant` arithmetic never overflows).
fn assert_within_bounds(c: &Config) {
    let far = Instant::now();
    for d in [
        c.okta.request_timeout,
        c.detect.poll_interval,
        c.detect.initial_lookback,
        c.retry.initial_backoff,
        c.retry.max_backoff,
        c.alert.persist_after,
        c.alert.repeat_interval,
        c.alert.group_wait,
        c.alert.group_interval,
    ] {
        assert!(d <= Duration::from_secs(90 * 24 * 3600), "{d:?}");
        assert!(far.checked_add(d * 100).is_some());
    }
    assert!(c.detect.poll_interval >= Duration::from_secs(5));
    assert!(c.detect.poll_interval <= Duration::from_secs(24 * 3600));
    // The summary is what check-config and doctor print; it must not panic either.
    assert!(!c.redacted_summary().is_empty());
}

/// Duration-shaped strings: numbers of any size with real and bogus units, sometimes
/// several parts, sometimes junk around them.
fn duration_text() -> impl Strategy<Value = String> {
    let part = (
        prop_oneof![
            "[0-9]{1,3}",
            "[0-9]{4,25}",
            Just("0".to_string()),
            "[0-9]{1,3}\\.[0-9]{1,3}",
        ],
        prop_oneof![
            Just(""),
            Just("ns"),
            Just("ms"),
            Just("s"),
            Just("m"),
            Just("h"),
            Just("d"),
            Just("w"),
            Just("M"),
            Just("y"),
            Just("days"),
            Just("parsecs"),
        ],
    )
        .prop_map(|(n, u)| format!("{n}{u}"));
    (
        prop::collection::vec(part, 1..4),
        prop_oneof![Just(""), Just(" "), Just("-"), Just("+")],
    )
        .prop_map(|(parts, pre)| format!("{pre}{}", parts.join(" ")))
}

/// Cron-shaped strings: 1 to 8 fields of plausible and implausible tokens.
fn cron_text() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("*".to_string()),
        "[0-9]{1,4}",
        "\\*/[0-9]{1,3}",
        "[0-9]{1,2}-[0-9]{1,2}",
        "[0-9]{1,2}(,[0-9]{1,2}){1,3}",
        Just("Mon-Fri".to_string()),
        Just("?".to_string()),
        Just("L".to_string()),
        "[A-Za-z]{1,5}",
    ];
    prop::collection::vec(field, 1..9).prop_map(|f| f.join(" "))
}

/// A TOML value of any of the shapes keys take, valid or not.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_text().prop_map(|s| format!("{s:?}")),
        cron_text().prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        prop_oneof![
            Just("0.5"),
            Just("1.5"),
            Just("nan"),
            Just("-0.0"),
            Just("inf")
        ]
        .prop_map(str::to_string),
        // Printable ASCII without quotes or backslashes, so `{:?}` is a TOML string.
        "[ -~]{0,20}".prop_map(|s| format!("{:?}", s.replace(['\\', '"'], ""))),
        Just("[]".to_string()),
        Just("[\"a@b.example\", \"\"]".to_string()),
        Just("\"OKTA_API_TOKEN\"".to_string()),
        Just("\"https://acme.okta.com\"".to_string()),
        Just("\"smtp://u@127.0.0.1:25\"".to_string()),
        Just("{ x = 1 }".to_string()),
    ]
}

const SECTIONS: [(&str, &[&str]); 10] = [
    (
        "okta",
        &[
            "org_url",
            "api_token_env",
            "api_token",
            "rate_limit_share",
            "max_in_flight",
            "request_timeout",
            "admin_url",
        ],
    ),
    (
        "okta.oauth",
        &["client_id", "private_key_env", "scopes", "key_id"],
    ),
    ("state", &["path"]),
    (
        "detect",
        &[
            "poll_interval",
            "initial_lookback",
            "scan_schedule",
            "apps",
            "poll_intervall",
        ],
    ),
    (
        "retry",
        &[
            "enabled",
            "max_attempts",
            "initial_backoff",
            "max_backoff",
            "per_minute",
        ],
    ),
    (
        "alert",
        &[
            "persist_after",
            "repeat_interval",
            "group_wait",
            "group_interval",
            "send_resolved",
            "digest_schedule",
        ],
    ),
    (
        "slack",
        &["webhook_url_env", "channel", "api_url", "bot_token_env"],
    ),
    (
        "email",
        &[
            "smtp_url",
            "smtp_password_env",
            "from",
            "to",
            "smtp_password",
        ],
    ),
    ("http", &["listen"]),
    ("log", &["level", "format"]),
];

/// A document over the real sections and keys (plus a few misspellings), always with a
/// usable `[okta]` head so validation gets past it often enough to reach the rest.
fn document() -> impl Strategy<Value = String> {
    let entry = (0..SECTIONS.len(), any::<prop::sample::Index>(), value());
    prop::collection::vec(entry, 0..12).prop_map(|entries| {
        let mut by_section: Vec<Vec<String>> = vec![Vec::new(); SECTIONS.len()];
        for (s, k, v) in entries {
            let keys = SECTIONS[s].1;
            let key = keys[k.index(keys.len())];
            let line = format!("{key} = {v}");
            // A key twice in one table is a TOML error; keep the first.
            if !by_section[s]
                .iter()
                .any(|l| l.starts_with(&format!("{key} =")))
            {
                by_section[s].push(line);
            }
        }
        let mut doc = String::from(
            "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\"\n",
        );
        for (i, lines) in by_section.iter().enumerate() {
            let lines: Vec<&String> = lines
                .iter()
                .filter(|l| {
                    !(i == 0 && (l.starts_with("org_url") || l.starts_with("api_token_env")))
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            if i != 0 {
                doc.push_str(&format!("[{}]\n", SECTIONS[i].0));
            }
            for l in lines {
                doc.push_str(l);
                doc.push('\n');
            }
        }
        doc
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_loads_or_names_its_cause(text in "\\PC{0,200}") {
        match Config::from_toml_str(&text, &env()) {
            Ok(c) => assert_within_bounds(&c),
            Err(e) => assert_names_its_cause(&e),
        }
    }

    #[test]
    fn toml_shaped_documents_load_or_name_a_key(doc in document()) {
        match Config::from_toml_str(&doc, &env()) {
            Ok(c) => assert_within_bounds(&c),
            Err(e) => {
                assert_names_its_cause(&e);
                // The document is valid TOML, so the error is about a key of it.
                prop_assert!(!e.key.is_empty(), "{e} for\n{doc}");
            }
        }
    }

    #[test]
    fn every_duration_key_bounds_or_names_itself(
        key in prop::sample::select(vec![
            ("okta", "request_timeout"),
            ("detect", "poll_interval"),
            ("detect", "initial_lookback"),
            ("retry", "initial_backoff"),
            ("retry", "max_backoff"),
            ("alert", "persist_after"),
            ("alert", "repeat_interval"),
            ("alert", "group_wait"),
            ("alert", "group_interval"),
        ]),
        text in duration_text(),
    ) {
        let (section, name) = key;
        let doc = if section == "okta" {
            format!(
                "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\"\n{name} = {text:?}\n"
            )
        } else {
            format!(
                "[okta]\norg_url = \"https://acme.okta.com\"\napi_token_env = \"OKTA_API_TOKEN\"\n[{section}]\n{name} = {text:?}\n"
            )
        };
        match Config::from_toml_str(&doc, &env()) {
            Ok(c) => assert_within_bounds(&c),
            Err(e) => {
                assert_names_its_cause(&e);
                // Only the key itself, or (for the backoff pair) its partner, can be at fault.
                prop_assert!(
                    e.key == format!("{section}.{name}") || e.key == "retry.initial_backoff",
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn durations_never_panic_and_stay_bounded(text in prop_oneof![duration_text(), "\\PC{0,40}"]) {
        match parse_duration("--for", &text) {
            Ok(d) => prop_assert!(d <= MAX_DURATION),
            Err(e) => prop_assert_eq!(e.key(), "--for"),
        }
    }

    #[test]
    fn schedules_never_panic_and_errors_name_the_key(text in prop_oneof![cron_text(), "\\PC{0,40}"]) {
        match parse_schedule("alert.digest_schedule", &text) {
            // Accepted means it fires again: the job it drives will run.
            Ok(s) => prop_assert!(s.upcoming(chrono::Utc).next().is_some()),
            Err(e) => {
                prop_assert_eq!(e.key(), "alert.digest_schedule");
                prop_assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
