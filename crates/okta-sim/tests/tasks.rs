//! Tasks-page kinds and budget APIs over real sockets (issues 11, 14): group push mappings with
//! the `status` filter, the default provisioning connection, agent pools, principal rate
//! limits, and the rate-limit buckets as Okta publishes them.

use okta_sim::{AgentStatus, Bucket, OktaSim};
use serde_json::Value;

async fn get(sim: &OktaSim, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url()))
        .header("Authorization", format!("SSWS {}", sim.api_token()))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn group_push_mappings_filter_on_error_and_recover() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Pushed");
    let (g1, g2) = (sim.add_group("Sales"), sim.add_group("Support"));
    let ok = sim.add_group_push(&app, &g1);
    let bad = sim.fail_group_push(&app, &g2, "Group push failed: 409 group already exists");
    let (st, all) = get(&sim, &format!("/api/v1/apps/{app}/group-push/mappings")).await;
    assert_eq!((st, all.as_array().unwrap().len()), (200, 2));
    let (_, errs) = get(
        &sim,
        &format!("/api/v1/apps/{app}/group-push/mappings?status=ERROR"),
    )
    .await;
    let errs = errs.as_array().unwrap();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0]["id"], bad.as_str());
    assert_eq!(errs[0]["sourceGroupId"], g2.as_str());
    assert_eq!(
        errs[0]["errorSummary"],
        "Group push failed: 409 group already exists"
    );
    let (_, active) = get(
        &sim,
        &format!("/api/v1/apps/{app}/group-push/mappings?status=ACTIVE"),
    )
    .await;
    assert_eq!(active[0]["id"], ok.as_str());
    assert!(active[0].get("errorSummary").is_none());
    let (st, _) = get(
        &sim,
        &format!("/api/v1/apps/{app}/group-push/mappings?status=BROKEN"),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = get(&sim, "/api/v1/apps/0oanope/group-push/mappings").await;
    assert_eq!(st, 404);

    sim.clear_group_push_error(&app, &bad);
    let (_, errs) = get(
        &sim,
        &format!("/api/v1/apps/{app}/group-push/mappings?status=ERROR"),
    )
    .await;
    assert!(errs.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn connection_agents_and_principal_limits() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Connected");
    let sso = sim.add_app("SSO only");
    sim.remove_provisioning_feature(&sso);
    let path = format!("/api/v1/apps/{app}/connections/default");
    let (st, c) = get(&sim, &path).await;
    assert_eq!((st, c["status"].as_str()), (200, Some("ENABLED")));
    assert_eq!(c["profile"]["authScheme"], "TOKEN");
    sim.set_connection_broken(&app, true);
    assert_eq!(get(&sim, &path).await.1["status"], "DISABLED");
    sim.set_connection_broken(&app, false);
    assert_eq!(get(&sim, &path).await.1["status"], "ENABLED");
    let (_, c) = get(&sim, &format!("/api/v1/apps/{sso}/connections/default")).await;
    assert_eq!(c["status"], "UNKNOWN");

    let ad = sim.add_agent_pool("corp.example AD", "AD");
    sim.add_agent_pool("OPP agents", "OPP");
    let (st, pools) = get(&sim, "/api/v1/agentPools").await;
    assert_eq!(st, 200);
    assert!(pools
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["operationalStatus"] == "OPERATIONAL"));
    sim.set_agent_status(&ad, AgentStatus::Disrupted);
    let (_, pools) = get(&sim, "/api/v1/agentPools?poolType=AD").await;
    let pools = pools.as_array().unwrap();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0]["operationalStatus"], "DISRUPTED");
    assert_eq!(pools[0]["disruptedAgents"], 1);
    assert_eq!(pools[0]["agents"][0]["operationalStatus"], "DISRUPTED");

    let (st, _) = get(&sim, "/api/v1/principal-rate-limits").await;
    assert_eq!(st, 400, "the principalType filter is required");
    sim.set_principal_rate_limit(30, 40);
    let (st, l) = get(
        &sim,
        "/api/v1/principal-rate-limits?filter=principalType%20eq%20%22SSWS_TOKEN%22",
    )
    .await;
    assert_eq!(st, 200);
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["principalType"], "SSWS_TOKEN");
    assert_eq!(l[0]["defaultPercentage"], 30);
    assert_eq!(l[0]["defaultConcurrencyPercentage"], 40);
    assert!(
        !l[0].to_string().contains(&sim.api_token()),
        "the token never appears"
    );
    sim.register_oauth_client(
        "0oaservice",
        okta_sim::test_keys::RSA_PUBLIC_PEM,
        &["okta.logs.read"],
    );
    let (_, l) = get(
        &sim,
        "/api/v1/principal-rate-limits?filter=principalType%20eq%20%22OAUTH_CLIENT%22",
    )
    .await;
    assert_eq!(l[0]["principalId"], "0oaservice");
}

#[tokio::test]
async fn buckets_as_okta_publishes_them() {
    assert_eq!(Bucket::for_path("/api/v1/apps/0oa1"), Bucket::AppInstance);
    assert_eq!(Bucket::for_path("/api/v1/apps/0oa1/"), Bucket::Apps);
    assert_eq!(Bucket::for_path("/api/v1/apps"), Bucket::Apps);
    assert_eq!(Bucket::for_path("/api/v1/apps/0oa1/users"), Bucket::Apps);
    assert_eq!(
        Bucket::for_path("/api/v1/apps/0oa1/users/00u1"),
        Bucket::Apps
    );
    assert_eq!(Bucket::for_path("/api/v1/users/00u1"), Bucket::Users);
    assert_eq!(Bucket::for_path("/api/v1/users"), Bucket::Other);
    assert_eq!(
        Bucket::for_path("/api/v1/users/00u1/appLinks"),
        Bucket::Other
    );
    assert_eq!(Bucket::for_path("/api/v1/eventHooks"), Bucket::Other);

    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Budget");
    let u = sim.add_user("b@example.com");
    sim.assign(&app, &u);
    sim.set_rate_limit(Bucket::Apps, 1);
    sim.set_rate_limit(Bucket::AppInstance, 2);
    assert_eq!(get(&sim, &format!("/api/v1/apps/{app}/users")).await.0, 200);
    assert_eq!(
        get(&sim, &format!("/api/v1/apps/{app}/users/{u}")).await.0,
        429
    );
    // Explicit app reads draw on their own bucket.
    assert_eq!(get(&sim, &format!("/api/v1/apps/{app}")).await.0, 200);
    assert_eq!(get(&sim, &format!("/api/v1/apps/{app}")).await.0, 200);
    assert_eq!(get(&sim, &format!("/api/v1/apps/{app}")).await.0, 429);
    let stats = sim.stats();
    assert_eq!(stats.by_bucket[&Bucket::AppInstance], 3);
    assert_eq!(stats.by_bucket[&Bucket::Apps], 2);
    assert_eq!(stats.max_per_window[&Bucket::AppInstance], 2);
}
