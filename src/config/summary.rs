//! A printable view of the effective configuration for `doctor`.
//!
//! Operators debugging "why is it not alerting" need to see the values the
//! daemon actually runs with (after defaults and environment overrides), and
//! to confirm each secret was found — but the output gets pasted into tickets,
//! so secrets appear only as their source and length.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::secret::SecretSource;
use super::{Config, OktaAuth, SlackTarget};

fn secret(value: &SecretString, source: Option<&SecretSource>) -> String {
    let len = value.expose_secret().chars().count();
    match source {
        Some(s) => format!("<from {s}, {len} chars>"),
        None => format!("<secret, {len} chars>"),
    }
}

/// `d` as the operator wrote it (`24h`, `91d`), if that spelling is still the value in
/// force; otherwise (changed in code, or a hand-built config) in humantime's form.
fn dur(written: &BTreeMap<String, String>, key: &str, d: Duration) -> String {
    match written.get(key) {
        Some(w) if humantime::parse_duration(w).ok() == Some(d) => w.clone(),
        _ => humantime::format_duration(d).to_string(),
    }
}

fn list(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

impl Config {
    /// Every effective setting as (dotted key, value), in file order.
    ///
    /// Secrets are shown as `<from env OKTA_API_TOKEN, 40 chars>`: where they
    /// came from, never what they are.
    pub fn redacted_summary(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| out.push((k.to_string(), v));
        let src = &self.secret_sources;
        let dur = |key: &str, d: Duration| dur(&self.durations_as_written, key, d);

        let o = &self.okta;
        put("okta.org_url", o.org_url.to_string());
        put(
            "okta.admin_url",
            match (&o.admin_url, o.admin_console()) {
                (Some(u), _) => u.to_string(),
                (None, Some(derived)) => format!("{derived} (derived from okta.org_url)"),
                (None, None) => "(none: alerts carry no Admin Console links)".into(),
            },
        );
        match &o.auth {
            OktaAuth::ApiToken(t) => {
                put("okta.auth", "api token".into());
                put("okta.api_token", secret(t, src.okta.as_ref()));
            }
            OktaAuth::OAuth(a) => {
                put("okta.auth", "oauth".into());
                put("okta.oauth.client_id", a.client_id.clone());
                put(
                    "okta.oauth.private_key",
                    secret(&a.private_key_pem, src.okta.as_ref()),
                );
                put(
                    "okta.oauth.key_id",
                    a.key_id.clone().unwrap_or_else(|| "(none)".into()),
                );
                put("okta.oauth.scopes", list(a.scopes.iter().cloned()));
            }
        }
        put("okta.rate_limit_share", o.rate_limit_share.to_string());
        put("okta.max_in_flight", o.max_in_flight.to_string());
        put(
            "okta.request_timeout",
            dur("okta.request_timeout", o.request_timeout),
        );

        put("state.path", self.state.path.display().to_string());

        let d = &self.detect;
        put(
            "detect.poll_interval",
            dur("detect.poll_interval", d.poll_interval),
        );
        put(
            "detect.initial_lookback",
            dur("detect.initial_lookback", d.initial_lookback),
        );
        put("detect.scan_schedule", d.scan_schedule.to_string());
        put("detect.scan_share", d.scan_share.to_string());
        put(
            "detect.apps",
            if d.apps.is_empty() {
                "(every active app with provisioning)".into()
            } else {
                list(d.apps.iter().cloned())
            },
        );

        let r = &self.retry;
        put("retry.enabled", r.enabled.to_string());
        put("retry.max_attempts", r.max_attempts.to_string());
        put(
            "retry.initial_backoff",
            dur("retry.initial_backoff", r.initial_backoff),
        );
        put("retry.max_backoff", dur("retry.max_backoff", r.max_backoff));
        put("retry.per_minute", r.per_minute.to_string());

        let a = &self.alert;
        put(
            "alert.persist_after",
            dur("alert.persist_after", a.persist_after),
        );
        put(
            "alert.repeat_interval",
            dur("alert.repeat_interval", a.repeat_interval),
        );
        put("alert.group_wait", dur("alert.group_wait", a.group_wait));
        put(
            "alert.group_interval",
            dur("alert.group_interval", a.group_interval),
        );
        put("alert.send_resolved", a.send_resolved.to_string());
        put("alert.digest_schedule", a.digest_schedule.to_string());

        match &self.slack {
            None => put("slack", "(off)".into()),
            Some(s) => {
                match &s.target {
                    SlackTarget::Webhook { url } => {
                        put("slack.webhook_url", secret(url, src.slack.as_ref()));
                    }
                    SlackTarget::Bot { token, channel } => {
                        put("slack.bot_token", secret(token, src.slack.as_ref()));
                        put("slack.channel", channel.clone());
                    }
                }
                put("slack.api_url", s.api_url.to_string());
            }
        }

        match &self.email {
            None => put("email", "(off)".into()),
            Some(e) => {
                put("email.smtp_url", e.smtp_url.clone());
                put(
                    "email.smtp_password",
                    e.password.as_ref().map_or_else(
                        || "(none)".into(),
                        |p| secret(p, src.smtp_password.as_ref()),
                    ),
                );
                put("email.from", e.from.to_string());
                put("email.to", list(e.to.iter().map(ToString::to_string)));
            }
        }

        put("http.listen", self.http.listen.to_string());
        match &self.hooks {
            None => put("hooks", "(off)".into()),
            Some(h) => {
                put("hooks.listen", h.listen.to_string());
                put("hooks.path", h.path.clone());
                put("hooks.secret", secret(&h.secret, src.hooks.as_ref()));
                put(
                    "hooks.tls",
                    if h.tls.is_some() {
                        "on"
                    } else {
                        "off (reverse proxy)"
                    }
                    .into(),
                );
            }
        }
        put("log.format", self.log.format.to_string());
        put("log.level", self.log.level.clone());
        out
    }
}
