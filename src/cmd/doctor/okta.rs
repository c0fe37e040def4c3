//! Doctor checks against Okta: the credentials work and carry the scopes the daemon needs,
//! the principal rate limit Okta grants them fits `okta.rate_limit_share`, and every watched
//! app has provisioning switched on the way retries need. All calls are [`Class::Doctor`].

use super::{Report, Status};
use crate::clock::Clock;
use crate::config::{Config, OktaAuth};
use crate::context::client_options;
use crate::metrics::Metrics;
use crate::okta::ratelimit::PrincipalRateLimit;
use crate::okta::types::Application;
use crate::okta::{Class, OktaClient, OktaError};

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

pub(super) async fn check_okta(config: &Config, r: &mut Report) {
    let okta = match OktaClient::new(client_options(config, Clock::system(), Metrics::new())) {
        Ok(c) => c,
        Err(e) => {
            r.add("okta client", Status::Fail, e.to_string());
            return;
        }
    };
    let org = okta.org_url().to_string();
    match okta
        .get_page_with(Class::Doctor, crate::cmd::run::PROBE_PATH)
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
    for (name, status, detail) in crate::cmd::hooks::doctor_checks(config, &okta).await {
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
}
