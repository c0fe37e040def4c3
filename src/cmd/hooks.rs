//! `okta-provwatch hooks register --url URL | status | remove`: the Okta event hook that pushes
//! provisioning events to the receiver of `[hooks]`.
//!
//! `register` creates the hook (or replaces ours in place) with the embedded eligible event
//! types and `[hooks]`'s secret as the `Authorization` header, activates it and asks Okta to
//! verify it (Okta then calls the receiver: the daemon must be running and reachable at the
//! URL). `status` shows the hook and the last deliveries from the inbox; `remove` deactivates
//! and deletes it. The hook's id is kept in the state store so that another integration's
//! hooks in the same org are never touched or counted.

use crate::cli::{HooksArgs, HooksCommand};
use crate::clock::Clock;
use crate::config::Config;
use crate::context::client_options;
use crate::hooks::api::{self, EventHook, SCOPE};
use crate::hooks::health::HOOK_ID_KEY;
use crate::metrics::Metrics;
use crate::okta::{OktaClient, OktaError};
use crate::store::{inbox, meta, Store};
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config_path: &Path, args: &HooksArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let Some(hooks) = config.hooks.clone() else {
        anyhow::bail!(
            "no [hooks] section in {}: configure the receiver first (listen, path, secret_env), start the daemon, then run hooks register",
            config_path.display()
        );
    };
    let okta = OktaClient::new(client_options(&config, Clock::system(), Metrics::new()))
        .context("building the Okta client")?;
    let store = Store::open(&config.state.path)
        .with_context(|| format!("opening the state store {}", config.state.path.display()))?;
    let stored_id = store
        .read(|tx| meta::get(tx, HOOK_ID_KEY))
        .await?
        .filter(|id| !id.is_empty());
    let explain = |e: OktaError| {
        match e {
        OktaError::Forbidden { .. } => anyhow::anyhow!(
            "{e}\nthe Event Hooks API needs the {SCOPE} scope (OAuth service app) or a super admin's API token"
        ),
        e => anyhow::Error::new(e),
    }
    };
    match &args.command {
        HooksCommand::Register { url, failures_only } => {
            let parsed =
                url::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
            if parsed.scheme() != "https" && !crate::config::is_loopback_host(&parsed) {
                anyhow::bail!("--url must be https (Okta calls only https endpoints; terminate TLS in [hooks] or a reverse proxy)");
            }
            if !parsed.path().ends_with(&hooks.path) {
                eprintln!(
                    "warning: --url path {} does not end in [hooks] path {}; make sure the reverse proxy maps it",
                    parsed.path(),
                    hooks.path
                );
            }
            let existing = api::find(&okta, stored_id.as_deref())
                .await
                .map_err(explain)?;
            let existing = match existing {
                Some(h) => Some(h),
                // The stored id may point at a hook someone deleted: fall back to the name.
                None if stored_id.is_some() => api::find(&okta, None).await.map_err(explain)?,
                None => None,
            };
            let body = api::hook_body(url, &hooks.secret, *failures_only);
            let hook = api::create_or_replace(&okta, existing.as_ref(), &body)
                .await
                .map_err(explain)?;
            let id = hook.id.clone();
            store
                .write({
                    let id = id.clone();
                    move |tx| meta::set(tx, HOOK_ID_KEY, &id)
                })
                .await?;
            println!(
                "{} event hook {id} for {url} ({} event types{})",
                if existing.is_some() {
                    "replaced"
                } else {
                    "created"
                },
                hook.events.items.len(),
                if *failures_only {
                    ", failures only"
                } else {
                    ""
                }
            );
            if !hook.is_active() {
                api::lifecycle(&okta, &id, "activate")
                    .await
                    .map_err(explain)?;
                println!("activated");
            }
            match api::lifecycle(&okta, &id, "verify").await {
                Ok(h) if h.is_verified() => {
                    println!("verified: Okta reached the receiver and it answered the challenge");
                    Ok(ExitCode::SUCCESS)
                }
                other => {
                    let why = match other {
                        Err(e) => e.to_string(),
                        Ok(_) => "Okta did not mark the hook verified".into(),
                    };
                    eprintln!(
                        "verification failed: {why}\nthe hook exists and is active but receives nothing until verified: check that the daemon runs with this [hooks] section, that {url} reaches it from the internet (TLS, reverse proxy, firewall open to Okta's IP ranges), then run hooks register again"
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        HooksCommand::Status { json } => {
            let hook = api::find(&okta, stored_id.as_deref())
                .await
                .map_err(explain)?;
            let (deliveries, results, pending) = store
                .read(|tx| {
                    Ok((
                        inbox::recent_deliveries(tx, 10)?,
                        inbox::results(tx)?,
                        inbox::pending_count(tx)?,
                    ))
                })
                .await?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "hook": hook,
                        "receiver": {"listen": hooks.listen.to_string(), "path": hooks.path, "tls": hooks.tls.is_some()},
                        "deliveries": deliveries,
                        "events": results.iter().map(|(k, v)| (k.clone(), *v)).collect::<std::collections::BTreeMap<_, _>>(),
                        "pending": pending,
                    }))?
                );
            } else {
                print_status(hook.as_ref(), &hooks, &deliveries, &results, pending);
            }
            Ok(
                if hook
                    .as_ref()
                    .is_some_and(|h| h.is_active() && h.is_verified())
                {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        HooksCommand::Remove => {
            let Some(hook) = api::find(&okta, stored_id.as_deref())
                .await
                .map_err(explain)?
            else {
                println!("no okta-provwatch event hook in this org; nothing to remove");
                store.write(clear_id).await?;
                return Ok(ExitCode::SUCCESS);
            };
            if hook.is_active() {
                api::lifecycle(&okta, &hook.id, "deactivate")
                    .await
                    .map_err(explain)?;
            }
            api::delete(&okta, &hook.id).await.map_err(explain)?;
            store.write(clear_id).await?;
            println!(
                "deactivated and deleted event hook {} ({}); detection is back to polling only",
                hook.id,
                hook.uri()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn clear_id(tx: &crate::store::Tx<'_>) -> Result<(), crate::store::StoreError> {
    meta::set(tx, HOOK_ID_KEY, "")
}

fn when(ms: i64) -> String {
    crate::clock::from_ms(ms)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

fn print_status(
    hook: Option<&EventHook>,
    cfg: &crate::config::HooksConfig,
    deliveries: &[inbox::Delivery],
    results: &[(String, i64)],
    pending: i64,
) {
    match hook {
        None => println!(
            "event hook: none in this org (run okta-provwatch hooks register --url https://...)"
        ),
        Some(h) => {
            println!(
                "event hook: {} {} ({}, {})",
                h.id,
                h.uri(),
                h.status,
                h.verification_status.as_deref().unwrap_or("UNVERIFIED")
            );
            println!(
                "  {} event types{}",
                h.events.items.len(),
                if h.events.filter.is_some() {
                    ", filtered to failures"
                } else {
                    ""
                }
            );
            if !h.is_active() || !h.is_verified() {
                println!("  Okta delivers nothing to a hook that is not ACTIVE and VERIFIED: run hooks register again");
            }
        }
    }
    println!(
        "receiver: {} {} ({})",
        cfg.listen,
        cfg.path,
        if cfg.tls.is_some() {
            "TLS"
        } else {
            "plain HTTP behind a reverse proxy"
        }
    );
    if deliveries.is_empty() {
        println!("deliveries: none received yet");
    } else {
        println!("last deliveries (newest first):");
        for d in deliveries {
            println!(
                "  {}  {} event(s), {} new",
                when(d.received_at),
                d.events,
                d.new_events
            );
        }
    }
    let counts: Vec<String> = results.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if !counts.is_empty() {
        println!("events: {} (pending {pending})", counts.join(", "));
    }
}

/// `doctor`'s checks of the hook, only when `[hooks]` is configured: the Event Hooks scope and
/// whether our hook is ACTIVE and VERIFIED.
pub async fn doctor_checks(
    config: &Config,
    okta: &OktaClient,
) -> Vec<(&'static str, super::doctor::Status, String)> {
    use super::doctor::Status;
    let mut out = Vec::new();
    let Some(hooks) = &config.hooks else {
        return out;
    };
    if let crate::config::OktaAuth::OAuth(o) = &config.okta.auth {
        if !o.scopes.iter().any(|s| s == SCOPE) {
            out.push((
                "okta event hooks scope",
                Status::Warn,
                format!("[hooks] is configured but okta.oauth.scopes lacks {SCOPE}: hooks register/status/remove will be refused (the receiver itself needs no scope)"),
            ));
            return out;
        }
    }
    // The stored id is only a hint here: doctor never creates the state store.
    let stored = crate::store::Store::open_existing(&config.state.path)
        .ok()
        .and_then(|s| {
            s.read_blocking(|tx| meta::get(tx, HOOK_ID_KEY))
                .ok()
                .flatten()
        })
        .filter(|id| !id.is_empty());
    match api::find(okta, stored.as_deref()).await {
        Ok(Some(h)) if h.is_active() && h.is_verified() => out.push((
            "okta event hook",
            Status::Pass,
            format!("{} delivers to {} ({} event types; {SCOPE} works)", h.id, h.uri(), h.events.items.len()),
        )),
        Ok(Some(h)) => out.push((
            "okta event hook",
            Status::Fail,
            format!("{} is {} / {}: Okta delivers nothing until it is ACTIVE and VERIFIED; run hooks register --url {}", h.id, h.status, h.verification_status.as_deref().unwrap_or("UNVERIFIED"), h.uri()),
        )),
        Ok(None) => out.push((
            "okta event hook",
            Status::Warn,
            format!("[hooks] listens on {}{} but no okta-provwatch event hook exists in the org; run hooks register --url https://<public host>{}", hooks.listen, hooks.path, hooks.path),
        )),
        Err(e @ OktaError::Forbidden { .. }) => out.push((
            "okta event hook",
            Status::Fail,
            format!("{e}\nthe Event Hooks API needs the {SCOPE} scope granted to the service app (or a super admin's API token)"),
        )),
        Err(e) => out.push(("okta event hook", Status::Warn, format!("could not read the org's event hooks: {e}"))),
    }
    out
}
