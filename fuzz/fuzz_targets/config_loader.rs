//! Fuzzes the config loader: TOML parsing, every key's validation (durations, schedules, URLs,
//! addresses) and the secrets' environment lookup. Nothing may panic; a rejection's message
//! must name something (a key, a line) rather than be empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use okta_provwatch::config::{Config, Env};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = Env::from_map([
        ("OKTA_API_TOKEN", "fuzz-token"),
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x"),
        ("SMTP_PASSWORD", "fuzz-password"),
    ]);
    if let Err(e) = Config::from_toml_str(text, &env) {
        assert!(!e.to_string().trim().is_empty(), "an empty error");
    }
});
