//! Issue 13 over real sockets against the simulator: a deprovisioning Okta never reports
//! becomes an URGENT failure after the SLA and `resolve` closes it with the note in history;
//! "Deactivate Users" switched off alarms within one poll naming the admin (and switching it on
//! resolves); Okta SUCCESS with the app still active alarms, `remediate` shows and sends the
//! exact PATCH, and the app's confirmation resolves the failure.

mod common;

use common::*;
use okta_provwatch::alert::evaluator::evaluate;
use okta_provwatch::alert::group::Settings;
use okta_provwatch::clock::Clock;
use okta_provwatch::cmd::resolve::resolve_by_hand;
use okta_provwatch::context::Context;
use okta_provwatch::deprovision::{self, verify, Clients};
use okta_provwatch::detect::poller;
use okta_provwatch::domain::{Failure, HistoryKind, Operation, State};
use okta_provwatch::store::expectations as exp;
use okta_provwatch::store::{failures, history};
use okta_sim::{DeprovisionMode, OktaSim};
use std::time::Duration;

const DEPROVISION: &str = "[deprovision]\nsla = \"15m\"\n";

fn ctx_with(sim: &OktaSim, dir: &std::path::Path, extra: &str, env: &[(&str, &str)]) -> Context {
    let toml = minimal_toml(
        sim.base_url().as_str(),
        dir,
        "rate_limit_share = 0.5",
        &format!("{DETECT_SECTIONS}\n{DEPROVISION}\n{extra}"),
    );
    context_on(parse_config(&toml, &sim.api_token(), env), Clock::tokio())
}

/// Ada, assigned to Acme CRM and seen by a poll, is deactivated in Okta, which removes her
/// app user and logs nothing at all; a second poll sees the deactivation. Returns (app, ada).
async fn silently_deprovisioned(sim: &OktaSim, ctx: &Context) -> (String, String) {
    let app = sim.add_app("Acme CRM");
    let ada = sim.add_user("ada@example.com");
    sim.assign(&app, &ada);
    poller::poll_once(ctx).await.unwrap();
    sim.set_deprovision_mode(&app, DeprovisionMode::Silent);
    sim.deactivate_user(&ada, "hr.admin@example.com");
    poller::poll_once(ctx).await.unwrap();
    (app, ada)
}

/// The `[[verify]]` section that checks Acme CRM's SCIM server at `scim_url` with the token in
/// `CRM_SCIM`.
fn verify_toml(scim_url: &str) -> String {
    format!("[[verify]]\napp = \"Acme CRM\"\nscim_url = \"{scim_url}\"\ntoken_env = \"CRM_SCIM\"\n")
}

fn open(ctx: &Context) -> Vec<Failure> {
    ctx.store.read_blocking(failures::list_unresolved).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_deprovisioning_never_reported_alarms_after_the_sla_and_resolve_closes_it() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let slack = "[slack]\nwebhook_url_env = \"SLACK_HOOK\"\n";
    let ctx = ctx_with(
        &sim,
        dir.path(),
        slack,
        &[("SLACK_HOOK", "http://127.0.0.1:9/hook")],
    );
    let settings = Settings::from_config(&ctx.config);
    silently_deprovisioned(&sim, &ctx).await;
    let clients = Clients::new(&ctx);
    deprovision::tick(&ctx, &clients).await.unwrap();
    assert!(open(&ctx).is_empty(), "nothing before the SLA");
    let live = ctx.store.read_blocking(exp::list_live).unwrap();
    assert_eq!(live.len(), 1, "{live:?}");

    tokio::time::advance(Duration::from_secs(16 * 60)).await;
    deprovision::tick(&ctx, &clients).await.unwrap();
    let f = open(&ctx);
    assert_eq!(f.len(), 1, "{f:?}");
    let f = &f[0];
    assert_eq!(f.operation, Operation::Deactivate);
    assert!(f.urgent);
    assert_eq!(f.user_name(), "ada@example.com");
    assert_eq!(f.app_name(), "Acme CRM");
    let reason = f.reason.as_deref().unwrap();
    assert!(
        reason.contains("no deprovisioning seen within 15m"),
        "{reason}"
    );
    assert!(reason.contains("hr.admin@example.com"), "{reason}");
    // A second tick does not open a second failure.
    deprovision::tick(&ctx, &clients).await.unwrap();
    assert_eq!(open(&ctx).len(), 1);

    // Urgent: the alert pipeline fires for it.
    let now = ctx.now_ms();
    let s2 = settings.clone();
    // The first evaluation opens the group; it fires once its group wait has passed.
    let fired = ctx
        .store
        .write_blocking(move |tx| {
            evaluate(tx, &s2, None, now + 1_000)?;
            evaluate(tx, &s2, None, now + 600_000)
        })
        .unwrap();
    assert_eq!(fired.firing.len(), 1, "{fired:?}");

    let id = f.id;
    let f2 = f.clone();
    let done = ctx
        .store
        .write_blocking(move |tx| {
            resolve_by_hand(tx, &[f2], "removed by hand in the app", "cli:ops", 1)
        })
        .unwrap();
    assert_eq!(done, [id]);
    let h = ctx
        .store
        .read_blocking(move |tx| history::list(tx, id))
        .unwrap();
    let last = h.last().unwrap();
    assert_eq!(last.kind, HistoryKind::ResolvedByHand);
    assert_eq!(last.actor, "cli:ops");
    assert!(last
        .detail
        .as_deref()
        .unwrap()
        .contains("removed by hand in the app"));
    assert!(open(&ctx).is_empty());
    assert!(ctx.store.read_blocking(exp::list_live).unwrap().is_empty());
    // ... and announces it resolved.
    let resolved = ctx
        .store
        .write_blocking(move |tx| evaluate(tx, &settings, None, now + 3_600_000))
        .unwrap();
    assert_eq!(resolved.resolved.len(), 1, "{resolved:?}");
}

#[tokio::test(start_paused = true)]
async fn deactivate_users_switched_off_alarms_within_one_poll_naming_the_admin() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = ctx_with(&sim, dir.path(), "", &[]);
    let app = sim.add_app("Acme CRM");
    poller::poll_once(&ctx).await.unwrap();
    sim.set_lifecycle_deactivate(&app, false, "it.admin@example.com");
    poller::poll_once(&ctx).await.unwrap();
    let f = open(&ctx);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].operation, Operation::DeprovisioningDisabled);
    assert!(f[0].urgent && f[0].user_id.is_empty());
    let reason = f[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("it.admin@example.com") && reason.contains("Acme CRM"),
        "{reason}"
    );

    // A user deactivated meanwhile opens no per-user expectation (the app-wide failure says it).
    sim.set_lifecycle_deactivate(&app, true, "it.admin@example.com");
    poller::poll_once(&ctx).await.unwrap();
    assert!(open(&ctx).is_empty(), "turning it back on resolves");
    let all = ctx.store.read_blocking(failures::list_all).unwrap();
    assert_eq!(all[0].state, State::Resolved);
}

#[tokio::test(start_paused = true)]
async fn okta_success_but_the_app_still_active_alarms_and_remediation_resolves() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let app = sim.add_app("Acme CRM");
    let scim = sim.add_scim_server(&app).await.unwrap();
    let verify = verify_toml(&scim.base_url());
    let token = scim.token();
    let ctx = ctx_with(&sim, dir.path(), &verify, &[("CRM_SCIM", &token)]);
    let ada = sim.add_user("ada@example.com");
    sim.assign(&app, &ada);
    poller::poll_once(&ctx).await.unwrap();
    // Okta logs SUCCESS but never tells the app.
    sim.set_deprovision_mode(&app, DeprovisionMode::SuccessNotPushed);
    sim.deactivate_user(&ada, "hr.admin@example.com");
    poller::poll_once(&ctx).await.unwrap();
    let clients = Clients::new(&ctx);
    deprovision::tick(&ctx, &clients).await.unwrap();
    let f = open(&ctx);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].urgent);
    let reason = f[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("Okta reports deprovisioned, the app still has an active account"),
        "{reason}"
    );

    // The dry run's plan is the exact PATCH; sending it deactivates, the check resolves.
    let (cfg, client) = clients.for_app(&app, Some("Acme CRM")).unwrap();
    assert!(!cfg.remediate);
    let id = f[0].id;
    let e = ctx
        .store
        .read_blocking(move |tx| exp::for_failure(tx, id))
        .unwrap()
        .unwrap();
    let scim_id = e.scim_id.clone().unwrap();
    let plan = verify::Plan::new(client, &scim_id);
    let shown = plan.render();
    assert!(
        shown.starts_with(&format!("PATCH {}/Users/{scim_id}", scim.base_url())),
        "{shown}"
    );
    assert!(
        shown.contains(r#""op": "replace""#) && shown.contains(r#""path": "active""#),
        "{shown}"
    );
    assert!(!shown.contains(&token));
    assert!(
        scim.user(&scim_id).unwrap().active,
        "a dry run sends nothing"
    );
    verify::remediate(&ctx.store, client, &plan, id, "cli:ops", ctx.now_ms())
        .await
        .unwrap()
        .unwrap();
    assert!(!scim.user(&scim_id).unwrap().active);
    let patches: Vec<_> = scim
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1);
    assert!(scim.requests().iter().all(|r| r.method != "DELETE"));
    tokio::time::advance(deprovision::VERIFY_INTERVAL + Duration::from_secs(1)).await;
    deprovision::tick(&ctx, &clients).await.unwrap();
    assert!(open(&ctx).is_empty(), "{:?}", open(&ctx));
    let h = ctx
        .store
        .read_blocking(move |tx| history::list(tx, id))
        .unwrap();
    let kinds: Vec<_> = h.iter().map(|h| h.kind).collect();
    assert!(
        kinds.contains(&HistoryKind::Remediated) && kinds.contains(&HistoryKind::Verified),
        "{kinds:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_401_from_the_app_is_an_alert_about_the_check_not_a_false_still_active() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let app = sim.add_app("Acme CRM");
    let scim = sim.add_scim_server(&app).await.unwrap();
    let verify = verify_toml(&scim.base_url());
    let ctx = ctx_with(&sim, dir.path(), &verify, &[("CRM_SCIM", "wrong-token")]);
    let ada = sim.add_user("ada@example.com");
    sim.assign(&app, &ada);
    poller::poll_once(&ctx).await.unwrap();
    sim.deactivate_user(&ada, "hr.admin@example.com");
    poller::poll_once(&ctx).await.unwrap();
    deprovision::tick(&ctx, &Clients::new(&ctx)).await.unwrap();
    let f = open(&ctx);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].operation, Operation::Verification);
    assert!(!f[0].urgent);
    let reason = f[0].reason.as_deref().unwrap();
    assert!(
        reason.contains("401") && !reason.contains("still has an active"),
        "{reason}"
    );
    assert!(!reason.contains("wrong-token"));
}

#[tokio::test(start_paused = true)]
async fn a_success_logged_after_the_sla_resolves_the_missing_deprovisioning() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = ctx_with(&sim, dir.path(), "", &[]);
    let (app, ada) = silently_deprovisioned(&sim, &ctx).await;
    let clients = Clients::new(&ctx);
    tokio::time::advance(Duration::from_secs(16 * 60)).await;
    deprovision::tick(&ctx, &clients).await.unwrap();
    assert_eq!(open(&ctx).len(), 1);
    // Okta's deprovisioning finally shows up in the log.
    let published = ctx
        .clock
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    sim.push_log_event(serde_json::json!({
        "uuid": "late-success", "published": published,
        "eventType": "application.provision.user.deactivate",
        "outcome": {"result": "SUCCESS"},
        "target": [
            {"id": app, "type": "AppInstance", "alternateId": "Acme CRM", "displayName": "Acme CRM"},
            {"id": ada, "type": "User", "alternateId": "ada@example.com"}
        ]
    }));
    poller::poll_once(&ctx).await.unwrap();
    assert!(open(&ctx).is_empty(), "{:?}", open(&ctx));
    assert!(ctx.store.read_blocking(exp::list_live).unwrap().is_empty());
}

/// The app stores `ada@corp.example` for Okta's `ada@example.com`: the check finds no such
/// user name, finds Okta's id for the account (learnt by the scan) active under another name,
/// and says so as a verification problem, not as "still active".
#[tokio::test(start_paused = true)]
async fn a_user_name_stored_differently_is_a_verification_problem_not_still_active() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let app = sim.add_app("Acme CRM");
    let scim = sim.add_scim_server(&app).await.unwrap();
    scim.set_name_style(okta_sim::NameStyle::Suffix("@corp.example".into()));
    let verify = verify_toml(&scim.base_url());
    let token = scim.token();
    let ctx = ctx_with(&sim, dir.path(), &verify, &[("CRM_SCIM", &token)]);
    let ada = sim.add_user("ada@example.com");
    sim.assign(&app, &ada);
    poller::poll_once(&ctx).await.unwrap();
    okta_provwatch::detect::scanner::scan_once(&ctx, &tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    sim.set_deprovision_mode(&app, DeprovisionMode::SuccessNotPushed);
    sim.deactivate_user(&ada, "hr.admin@example.com");
    poller::poll_once(&ctx).await.unwrap();
    deprovision::tick(&ctx, &Clients::new(&ctx)).await.unwrap();
    let f = open(&ctx);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].operation, Operation::Verification);
    let reason = f[0].reason.as_deref().unwrap();
    assert!(reason.contains("ada@corp.example"), "{reason}");
    assert!(!reason.contains("still has an active account"), "{reason}");
    let live = ctx.store.read_blocking(exp::list_live).unwrap();
    assert_eq!(live[0].verify, exp::Verify::Error);
}

/// The commands as an operator runs them: `remediate` (dry run by default, then `--yes`),
/// `status --json`, and `resolve --app --user --note`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediate_and_resolve_from_the_command_line() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let app = sim.add_app("Acme CRM");
    let scim = sim.add_scim_server(&app).await.unwrap();
    let token = scim.token();
    let extra = verify_toml(&scim.base_url());
    let toml = minimal_toml(
        sim.base_url().as_str(),
        dir.path(),
        "",
        &format!("{DETECT_SECTIONS}\n{DEPROVISION}\n{extra}"),
    );
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, &toml).unwrap();
    let ctx = context(parse_config(
        &toml,
        &sim.api_token(),
        &[("CRM_SCIM", &token)],
    ));
    let (ada, bob) = (
        sim.add_user("ada@example.com"),
        sim.add_user("bob@example.com"),
    );
    sim.assign(&app, &ada);
    sim.assign(&app, &bob);
    poller::poll_once(&ctx).await.unwrap();
    sim.set_deprovision_mode(&app, DeprovisionMode::SuccessNotPushed);
    sim.deactivate_user(&ada, "hr.admin@example.com");
    sim.deactivate_user(&bob, "hr.admin@example.com");
    poller::poll_once(&ctx).await.unwrap();
    deprovision::tick(&ctx, &Clients::new(&ctx)).await.unwrap();
    let f = open(&ctx);
    assert_eq!(f.len(), 2, "{f:?}");
    let ada_f = f
        .iter()
        .find(|f| f.user_name() == "ada@example.com")
        .unwrap()
        .id;

    let bin = env!("CARGO_BIN_EXE_okta-provwatch");
    let (sim_token, cfg) = (sim.api_token(), cfg_path.clone());
    let run = move |args: Vec<String>| {
        let (t, tok, cfg) = (sim_token.clone(), token.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .arg("--config")
                .arg(&cfg)
                .args(&args)
                .env(TOKEN_ENV, t)
                .env("CRM_SCIM", tok)
                .env("USER", "ops-alice")
                .env_remove("OKTA_PROVWATCH_CONFIG")
                .env_remove("NOTIFY_SOCKET")
                .output()
                .unwrap()
        })
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let id = ada_f.to_string();
    let out = run(s(&["remediate", "--failure", &id])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("dry run") && stdout.contains("PATCH ") && stdout.contains("\"active\""),
        "{stdout}"
    );
    assert!(
        scim.requests().iter().all(|r| r.method != "PATCH"),
        "a dry run sends nothing"
    );

    let out = run(s(&["remediate", "--failure", &id, "--yes"]))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        scim.requests()
            .iter()
            .filter(|r| r.method == "PATCH")
            .count(),
        1
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is now resolved"),
        "{out:?}"
    );

    let out = run(s(&[
        "resolve",
        "--app",
        "Acme CRM",
        "--user",
        "bob@example.com",
        "--note",
        "removed by hand",
    ]))
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(open(&ctx).is_empty(), "{:?}", open(&ctx));
    let bob_f = f
        .iter()
        .find(|f| f.user_name() == "bob@example.com")
        .unwrap()
        .id;
    let h = ctx
        .store
        .read_blocking(move |tx| history::list(tx, bob_f))
        .unwrap();
    let last = h.last().unwrap();
    assert_eq!(
        (last.kind, last.actor.as_str()),
        (HistoryKind::ResolvedByHand, "cli:ops-alice")
    );

    let out = run(s(&["status", "--json", "--all"])).await.unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        j["deprovisioning"]["expectations"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{j}"
    );
    let a = j["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == ada_f)
        .unwrap();
    assert_eq!(
        (a["operation"].as_str(), a["urgent"].as_bool()),
        (Some("deactivate"), Some(true))
    );
}

/// A suspension pushes nothing to apps; it is expected only with `include_suspended = true`.
#[tokio::test(start_paused = true)]
async fn suspensions_count_only_when_configured() {
    for (include, expected) in [(false, 0), (true, 1)] {
        let sim = start_okta().await;
        let dir = temp_dir();
        let toml = minimal_toml(
            sim.base_url().as_str(),
            dir.path(),
            "",
            &format!("{DETECT_SECTIONS}\n[deprovision]\ninclude_suspended = {include}\n"),
        );
        let ctx = context_on(parse_config(&toml, &sim.api_token(), &[]), Clock::tokio());
        let app = sim.add_app("Acme CRM");
        let ada = sim.add_user("ada@example.com");
        sim.assign(&app, &ada);
        poller::poll_once(&ctx).await.unwrap();
        sim.suspend_user(&ada, "hr.admin@example.com");
        poller::poll_once(&ctx).await.unwrap();
        let live = ctx.store.read_blocking(exp::list_live).unwrap();
        assert_eq!(
            live.len(),
            expected,
            "include_suspended = {include}: {live:?}"
        );
        tokio::time::advance(Duration::from_secs(16 * 60)).await;
        deprovision::tick(&ctx, &Clients::new(&ctx)).await.unwrap();
        assert_eq!(open(&ctx).len(), expected, "include_suspended = {include}");
    }
}
