//! `okta-sim`: serves a demo Okta org with some healthy and some failing provisioning, for
//! trying okta-provwatch by hand.
//!
//! Usage: `okta-sim [ADDR]` (default `127.0.0.1:8089`). `OKTA_SIM_TOKEN` fixes the API token.
//! The test service app `0oasimdemoservice` is registered with the TEST-ONLY RSA key from
//! `okta_sim::test_keys`.

use okta_sim::{test_keys, Downstream, OktaSim};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8089".to_string());
    let addr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let sim = OktaSim::start_on(addr).await?;
    if let Ok(t) = std::env::var("OKTA_SIM_TOKEN") {
        sim.set_api_token(&t);
    }
    sim.register_oauth_client(
        "0oasimdemoservice",
        test_keys::RSA_PUBLIC_PEM,
        &[
            "okta.logs.read",
            "okta.apps.read",
            "okta.apps.manage",
            "okta.users.read",
        ],
    );

    let hr = sim.add_app("Workday-ish HR (healthy)");
    let crm = sim.add_app("CRM SCIM (rejects some users)");
    let wiki = sim.add_app("Wiki SCIM (down)");
    let legacy = sim.add_app("Legacy SSO only");
    sim.remove_provisioning_feature(&legacy);
    // The HR app has its own SCIM API, and keeps accounts Okta says it deprovisioned.
    let hr_scim = sim.add_scim_server(&hr).await?;
    hr_scim.ignore_okta_deactivations(true);
    let users: Vec<String> = [
        "ada.lovelace@example.com",
        "alan.turing@example.com",
        "grace.hopper@example.com",
        "edsger.dijkstra@example.com",
    ]
    .iter()
    .map(|l| sim.add_user(l))
    .collect();
    for u in &users {
        sim.assign(&hr, u);
        sim.assign(&legacy, u);
    }
    sim.set_downstream(
        &crm,
        Downstream::Reject {
            logins: vec!["grace.hopper@example.com".into()],
            reason: "Bad Request. Errors reported by remote server: department is required".into(),
        },
    );
    for u in &users[..3] {
        sim.assign(&crm, u);
    }
    sim.set_downstream(&wiki, Downstream::Down);
    sim.assign(&wiki, &users[0]);
    sim.set_downstream(&hr, Downstream::AuthFailure);
    sim.deactivate(&hr, &users[3]);
    sim.set_downstream(&hr, Downstream::Healthy);

    println!("okta-sim serving a demo org at {}", sim.base_url());
    println!("  API token (SSWS): {}", sim.api_token());
    println!(
        "  OAuth client id:  0oasimdemoservice (TEST-ONLY key in crates/okta-sim/tests/fixtures)"
    );
    println!("  apps: hr={hr} crm={crm} wiki={wiki} legacy={legacy}");
    println!(
        "  hr SCIM API: {} (Bearer {})",
        hr_scim.base_url(),
        hr_scim.token()
    );
    println!(
        "  {} System Log events; Ctrl-C to stop",
        sim.log_event_count()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
