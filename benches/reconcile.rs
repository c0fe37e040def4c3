//! Reconciliation benchmark (`cargo bench --bench reconcile`): an app with 10,000 SCIM users
//! (every one pushed by Okta) plus planted orphans (accounts created in the app directly, and
//! people deactivated in Okta whose account Okta never deactivated in the app). Reports the
//! orphans found and the requests used: SCIM list pages (`startIndex`/`count` = 1,000) and
//! Okta app-user pages (500 each), against the minimum possible.

use okta_provwatch::clock::Clock;
use okta_provwatch::config::{Config, Env};
use okta_provwatch::context::Context;
use okta_provwatch::deprovision::{verify, Clients};
use okta_sim::{Bucket, DeprovisionMode, OktaSim};
use std::time::Instant;

const USERS: usize = 10_000;
const DIRECT_ORPHANS: usize = 20;
const DEPARTED: usize = 5;

async fn run() {
    let sim = OktaSim::start().await.expect("simulator");
    sim.set_rate_limit(Bucket::Apps, 100_000);
    let app = sim.add_app("Acme CRM");
    let scim = sim.add_scim_server(&app).await.expect("SCIM server");
    let mut users = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let u = sim.add_user(&format!("user{i:05}@acme.example"));
        sim.assign(&app, &u);
        users.push(u);
    }
    let mut planted = Vec::new();
    for i in 0..DIRECT_ORPHANS {
        let name = format!("contractor{i}@elsewhere.example");
        scim.add_user(&name, true);
        planted.push(name);
    }
    // Departed: Okta logs SUCCESS but never tells the app (the account stays active).
    sim.set_deprovision_mode(&app, DeprovisionMode::SuccessNotPushed);
    for (i, u) in users.iter().take(DEPARTED).enumerate() {
        sim.deactivate_user(u, "hr.admin@acme.example");
        planted.push(format!("user{i:05}@acme.example"));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        "[okta]\norg_url = \"{}\"\napi_token_env = \"T\"\n[state]\npath = \"{}\"\n\
         [[verify]]\napp = \"Acme CRM\"\nscim_url = \"{}\"\ntoken_env = \"S\"\nrequests_per_minute = 6000\n",
        sim.base_url(),
        dir.path().join("state.db").display(),
        scim.base_url()
    );
    let env = Env::from_map([("T", sim.api_token()), ("S", scim.token())]);
    let config = Config::from_toml_str(&toml, &env).expect("config");
    let ctx = Context::new(config, Clock::system()).expect("context");
    let clients = Clients::new(&ctx);
    let (_, client) = clients.for_app(&app, Some("Acme CRM")).expect("client");
    let okta_before = sim.requests().len();
    let start = Instant::now();
    let r = verify::reconcile(&ctx, client, &app)
        .await
        .expect("reconcile");
    let el = start.elapsed();
    let okta_requests = sim.requests().len() - okta_before;
    let found = ctx
        .store
        .read(move |tx| okta_provwatch::store::expectations::orphans(tx, &r.app_id))
        .await
        .expect("orphans");
    let mut found_names: Vec<_> = found.iter().filter_map(|o| o.user_name.clone()).collect();
    found_names.sort();
    planted.sort();
    let scim_users = USERS + DIRECT_ORPHANS;
    println!(
        "reconcile: {} SCIM users, {} orphans found ({} planted, all found: {}), {} SCIM requests \
         (minimum {}), {} Okta requests (minimum {}), {:.2}s",
        scim_users,
        found.len(),
        planted.len(),
        found_names == planted,
        client.requests(),
        scim_users.div_ceil(1000),
        okta_requests,
        (USERS - DEPARTED).div_ceil(500),
        el.as_secs_f64()
    );
    assert_eq!(
        found_names, planted,
        "every planted orphan and nothing else"
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
