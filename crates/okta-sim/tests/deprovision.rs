//! Deprovisioning (issue 13) over real sockets: the per-app SCIM 2.0 server (RFC 7644 list,
//! filter, paging, PATCH, POST, auth and faults), Okta's pushes mirrored into it, the blind-spot
//! knobs, and the lifecycle / membership / settings events with their actors and targets.

use std::time::Duration;

use okta_sim::{
    DeprovisionMode, NameStyle, OktaSim, ProvisioningSettings, ScimFault, ScimFaultKind, ScimServer,
};
use serde_json::{json, Value};

async fn scim(
    s: &ScimServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let c = reqwest::Client::new();
    let mut rb = c.request(method, format!("{}{path}", s.base_url()));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    (st, h, r.json().await.unwrap_or(Value::Null))
}

fn filter_path(user_name: &str) -> String {
    let f = format!("userName eq \"{user_name}\"");
    format!(
        "/Users?filter={}",
        url::form_urlencoded::byte_serialize(f.as_bytes()).collect::<String>()
    )
}

fn events_of(sim: &OktaSim, t: &str) -> Vec<Value> {
    sim.log_events()
        .into_iter()
        .filter(|e| e["eventType"] == t)
        .collect()
}

fn target<'a>(ev: &'a Value, kind: &str) -> &'a Value {
    ev["target"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} target in {ev}"))
}

#[tokio::test]
async fn okta_pushes_mirror_into_the_apps_scim_server() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Acme CRM");
    let s = sim.add_scim_server(&app).await.unwrap();
    let tok = s.token();
    let u = sim.add_user("ada.lovelace@example.com");
    sim.assign(&app, &u);
    let su = s
        .user_by_name("ada.lovelace@example.com")
        .expect("created in the app");
    assert!(su.active);
    assert_eq!(su.external_id.as_deref(), Some(u.as_str()));
    assert_eq!(
        sim.app_user(&app, &u).unwrap()["externalId"],
        su.id.as_str()
    );

    let (st, _, list) = scim(
        &s,
        reqwest::Method::GET,
        &filter_path("ADA.lovelace@example.com"),
        None,
        Some(&tok),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        list["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert_eq!(
        list["totalResults"], 1,
        "userName matching is case-insensitive (RFC 7643)"
    );
    assert_eq!(list["Resources"][0]["active"], true);
    let (st, _, one) = scim(
        &s,
        reqwest::Method::GET,
        &format!("/Users/{}", su.id),
        None,
        Some(&tok),
    )
    .await;
    assert_eq!(
        (st, one["userName"].as_str()),
        (200, Some("ada.lovelace@example.com"))
    );

    sim.deactivate_user(&u, "hr.admin@example.com");
    assert!(
        !s.user(&su.id).unwrap().active,
        "deactivation pushed to the app"
    );
    let deact = events_of(&sim, "user.lifecycle.deactivate");
    assert_eq!(deact.len(), 1);
    assert_eq!(deact[0]["actor"]["alternateId"], "hr.admin@example.com");
    assert_eq!(deact[0]["actor"]["type"], "User");
    assert_eq!(target(&deact[0], "User")["id"], u.as_str());
    let pushes = events_of(&sim, "application.provision.user.deactivate");
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0]["outcome"]["result"], "SUCCESS");
    assert!(sim.app_user(&app, &u).is_none());

    // An app whose SCIM server is gone cannot be provisioned.
    s.shutdown();
    let v = sim.add_user("late.joiner@example.com");
    sim.assign(&app, &v);
    let push = events_of(&sim, "application.provision.user.push")
        .pop()
        .unwrap();
    assert_eq!(push["outcome"]["result"], "FAILURE");
    assert!(push["outcome"]["reason"]
        .as_str()
        .unwrap()
        .contains("Unable to connect"));
    assert_eq!(sim.app_user(&app, &v).unwrap()["syncState"], "ERROR");
}

#[tokio::test]
async fn blind_spots_silence_success_without_push_and_an_app_that_disagrees() {
    let sim = OktaSim::start().await.unwrap();
    let (silent, unpushed, stubborn) = (
        sim.add_app("Silent"),
        sim.add_app("Unpushed"),
        sim.add_app("Stubborn"),
    );
    let mut servers = Vec::new();
    for a in [&silent, &unpushed, &stubborn] {
        servers.push(sim.add_scim_server(a).await.unwrap());
    }
    sim.set_deprovision_mode(&silent, DeprovisionMode::Silent);
    sim.set_deprovision_mode(&unpushed, DeprovisionMode::SuccessNotPushed);
    servers[2].ignore_okta_deactivations(true);
    let u = sim.add_user("grace.hopper@example.com");
    for a in [&silent, &unpushed, &stubborn] {
        sim.assign(a, &u);
    }
    sim.deactivate_user(&u, "admin@example.com");
    let pushes = events_of(&sim, "application.provision.user.deactivate");
    let apps: Vec<&str> = pushes
        .iter()
        .map(|e| target(e, "AppInstance")["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        apps,
        vec![unpushed.as_str(), stubborn.as_str()],
        "the silent app logs nothing"
    );
    assert!(pushes.iter().all(|e| e["outcome"]["result"] == "SUCCESS"));
    for s in &servers {
        assert!(
            s.users()[0].active,
            "every app still has the account active"
        );
    }
    for a in [&silent, &unpushed, &stubborn] {
        assert!(
            sim.app_user(a, &u).is_none(),
            "Okta considers them all deprovisioned"
        );
    }
    // Remediation by SCIM PATCH works even where Okta's push was ignored.
    let s = &servers[2];
    let id = s.users()[0].id.clone();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (st, _, v) = scim(
        s,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch.clone()),
        Some(&s.token()),
    )
    .await;
    assert_eq!((st, &v["active"]), (200, &json!(false)));
    assert!(!s.user(&id).unwrap().active);
    let last = s.requests().pop().unwrap();
    assert_eq!((last.method.as_str(), last.body), ("PATCH", Some(patch)));
    assert_eq!(s.stats().by_route["PATCH /Users/{id}"], 1);
}

#[tokio::test]
async fn scim_auth_errors_paging_and_faults() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Paged");
    let s = sim.add_scim_server(&app).await.unwrap();
    let tok = s.token();
    assert!(!format!("{s:?} {sim:?}").contains(&tok), "token in Debug");
    for i in 0..250 {
        s.add_user(&format!("user{i:04}@app.example"), i % 50 != 0);
    }
    let (st, h, e) = scim(&s, reqwest::Method::GET, "/Users", None, None).await;
    assert_eq!(st, 401);
    assert_eq!(
        e["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(e["status"], "401");
    assert!(h.get("www-authenticate").is_some());
    let (st, _, _) = scim(&s, reqwest::Method::GET, "/Users", None, Some("wrong")).await;
    assert_eq!(st, 401);
    let (st, _, e) = scim(&s, reqwest::Method::GET, "/Users/nope", None, Some(&tok)).await;
    assert_eq!((st, e["status"].as_str()), (404, Some("404")));
    let (st, _, e) = scim(
        &s,
        reqwest::Method::GET,
        "/Users?filter=title%20co%20%22x%22",
        None,
        Some(&tok),
    )
    .await;
    assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidFilter")));

    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let (st, _, page) = scim(
            &s,
            reqwest::Method::GET,
            &format!("/Users?startIndex={start}&count=100"),
            None,
            Some(&tok),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(page["totalResults"], 250);
        assert_eq!(page["startIndex"], start);
        let n = page["Resources"].as_array().unwrap().len();
        assert_eq!(page["itemsPerPage"], n);
        seen.extend(
            page["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["userName"].as_str().unwrap().to_string()),
        );
        if n < 100 {
            break;
        }
        start += n;
    }
    assert_eq!(seen.len(), 250);
    seen.dedup();
    assert_eq!(seen.len(), 250);
    let (_, _, inactive) = scim(
        &s,
        reqwest::Method::GET,
        "/Users?filter=active%20eq%20false&count=0",
        None,
        Some(&tok),
    )
    .await;
    assert_eq!(
        (
            inactive["totalResults"].as_u64(),
            inactive["Resources"].as_array().unwrap().len()
        ),
        (Some(5), 0)
    );

    let (st, h, _) = scim(&s, reqwest::Method::POST, "/Users", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "new@app.example"})), Some(&tok)).await;
    assert_eq!(st, 201);
    assert!(h["location"].to_str().unwrap().contains("/Users/"));
    let (st, _, e) = scim(
        &s,
        reqwest::Method::POST,
        "/Users",
        Some(json!({"userName": "NEW@app.example"})),
        Some(&tok),
    )
    .await;
    assert_eq!((st, e["scimType"].as_str()), (409, Some("uniqueness")));
    let (st, _, e) = scim(
        &s,
        reqwest::Method::PATCH,
        &format!("/Users/{}", s.users()[0].id),
        Some(json!({"Operations": []})),
        Some(&tok),
    )
    .await;
    assert_eq!((st, e["scimType"].as_str()), (400, Some("invalidSyntax")));

    s.inject_fault(ScimFault {
        kind: ScimFaultKind::ServerError(503),
        times: 1,
    });
    s.inject_fault(ScimFault {
        kind: ScimFaultKind::RateLimited {
            retry_after_secs: 7,
        },
        times: 1,
    });
    let (st, _, _) = scim(&s, reqwest::Method::GET, "/Users", None, Some(&tok)).await;
    assert_eq!(st, 503);
    let (st, h, _) = scim(&s, reqwest::Method::GET, "/Users", None, Some(&tok)).await;
    assert_eq!((st, h["retry-after"].to_str().unwrap()), (429, "7"));
    let (st, _, _) = scim(&s, reqwest::Method::GET, "/Users", None, Some(&tok)).await;
    assert_eq!(st, 200);

    s.set_rate_limit(Some(2));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (st, h, _) = scim(&s, reqwest::Method::GET, "/Users?count=1", None, Some(&tok)).await;
        statuses.push(st);
        if st == 429 {
            let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&secs));
        }
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    let stats = s.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.unauthorized, 2);
    assert_eq!(stats.server_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn scim_rate_limit_window_resets_on_the_tokio_clock() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Window");
    let s = sim.add_scim_server(&app).await.unwrap();
    s.set_rate_limit(Some(1));
    let tok = s.token();
    assert_eq!(
        scim(&s, reqwest::Method::GET, "/Users", None, Some(&tok))
            .await
            .0,
        200
    );
    assert_eq!(
        scim(&s, reqwest::Method::GET, "/Users", None, Some(&tok))
            .await
            .0,
        429
    );
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(
        scim(&s, reqwest::Method::GET, "/Users", None, Some(&tok))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn user_names_the_app_stores_differently() {
    let sim = OktaSim::start().await.unwrap();
    let (upper, suffixed) = (sim.add_app("Upper"), sim.add_app("Suffixed"));
    let su = sim.add_scim_server(&upper).await.unwrap();
    let ss = sim.add_scim_server(&suffixed).await.unwrap();
    su.set_name_style(NameStyle::Uppercase);
    ss.set_name_style(NameStyle::Suffix("@corp.example".into()));
    let u = sim.add_user("alan.turing@example.com");
    sim.assign(&upper, &u);
    sim.assign(&suffixed, &u);
    assert!(su.user_by_name("ALAN.TURING@EXAMPLE.COM").is_some());
    assert!(ss.user_by_name("alan.turing@corp.example").is_some());
    let found = |s: &ScimServer| {
        let s = s.clone();
        async move {
            scim(
                &s,
                reqwest::Method::GET,
                &filter_path("alan.turing@example.com"),
                None,
                Some(&s.token()),
            )
            .await
            .2["totalResults"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(found(&su).await, 1);
    su.set_case_exact_filter(true);
    assert_eq!(found(&su).await, 0);
    assert_eq!(found(&ss).await, 0);
    // Okta still deprovisions by its own id: the mirror follows externalId, not the name.
    sim.deactivate_user(&u, "admin@example.com");
    assert!(!su.users()[0].active && !ss.users()[0].active);
}

#[tokio::test]
async fn membership_removals_and_suspension_log_okta_shapes() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Grouped");
    let g = sim.add_group("Engineering");
    let g2 = sim.add_group("Contractors");
    sim.assign_group(&app, &g);
    sim.assign_group(&app, &g2);
    let (a, b) = (
        sim.add_user("a.one@example.com"),
        sim.add_user("b.two@example.com"),
    );
    sim.add_to_group(&g, &a);
    sim.add_to_group(&g, &b);
    sim.add_to_group(&g2, &b);
    assert!(sim.app_user(&app, &a).is_some() && sim.app_user(&app, &b).is_some());

    sim.remove_from_group(&g, &a, "it.admin@example.com");
    sim.remove_from_group(&g, &b, "it.admin@example.com");
    let gr = events_of(&sim, "group.user_membership.remove");
    assert_eq!(gr.len(), 2);
    assert_eq!(gr[0]["actor"]["alternateId"], "it.admin@example.com");
    assert_eq!(target(&gr[0], "UserGroup")["id"], g.as_str());
    assert_eq!(target(&gr[0], "User")["id"], a.as_str());
    let ar = events_of(&sim, "application.user_membership.remove");
    assert_eq!(ar.len(), 1, "b keeps the app through the other group");
    assert_eq!(target(&ar[0], "User")["id"], a.as_str());
    assert_eq!(target(&ar[0], "AppInstance")["id"], app.as_str());
    assert_eq!(ar[0]["actor"]["type"], "SystemPrincipal");
    assert!(sim.app_user(&app, &a).is_none());
    assert!(sim.app_user(&app, &b).is_some());
    assert_eq!(
        events_of(&sim, "application.provision.user.deactivate").len(),
        1
    );

    // Direct unassignment by an admin.
    let c = sim.add_user("c.three@example.com");
    sim.assign(&app, &c);
    sim.unassign(&app, &c, "it.admin@example.com");
    let ar = events_of(&sim, "application.user_membership.remove");
    assert_eq!(ar[1]["actor"]["alternateId"], "it.admin@example.com");

    sim.suspend_user(&b, "it.admin@example.com");
    let s = events_of(&sim, "user.lifecycle.suspend");
    assert_eq!(s.len(), 1);
    assert_eq!(target(&s[0], "User")["id"], b.as_str());
    assert!(
        sim.app_user(&app, &b).is_some(),
        "a suspension pushes nothing"
    );
}

#[tokio::test]
async fn deactivate_users_turned_off_by_an_admin_is_logged_with_change_details() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Watched");
    let c = reqwest::Client::new();
    sim.set_lifecycle_deactivate(&app, false, "migration.admin@example.com");
    let ev = events_of(&sim, "application.lifecycle.update");
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"]["alternateId"], "migration.admin@example.com");
    let t = target(&ev[0], "AppInstance");
    assert_eq!(t["id"], app.as_str());
    assert_eq!(t["changeDetails"]["from"]["lifecycleDeactivate"], "ENABLED");
    assert_eq!(t["changeDetails"]["to"]["lifecycleDeactivate"], "DISABLED");
    let feats = c
        .get(format!("{}/api/v1/apps/{app}", sim.base_url()))
        .header("Authorization", format!("SSWS {}", sim.api_token()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(!feats["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "PUSH_USER_DEACTIVATION"));
    // Unchanged settings log nothing.
    sim.set_lifecycle_deactivate(&app, false, "migration.admin@example.com");
    assert_eq!(events_of(&sim, "application.lifecycle.update").len(), 1);

    // Through the API, attributed to the token's owner.
    sim.set_api_token_owner("api.owner@example.com");
    let url = format!(
        "{}/api/v1/apps/{app}/features/USER_PROVISIONING",
        sim.base_url()
    );
    let put = |body: Value| {
        c.put(&url)
            .header("Authorization", format!("SSWS {}", sim.api_token()))
            .json(&body)
            .send()
    };
    let r = put(json!({"update": {"lifecycleDeactivate": {"status": "ENABLED"}}}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let f: Value = r.json().await.unwrap();
    assert_eq!(
        f["capabilities"]["update"]["lifecycleDeactivate"]["status"],
        "ENABLED"
    );
    assert_eq!(
        f["capabilities"]["create"]["lifecycleCreate"]["status"], "ENABLED",
        "absent fields kept"
    );
    let ev = events_of(&sim, "application.lifecycle.update");
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["actor"]["alternateId"], "api.owner@example.com");
    let r = put(json!({"update": {"lifecycleDeactivate": {"status": "MAYBE"}}}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["errorCauses"][0]["errorSummary"]
            .as_str()
            .unwrap()
            .contains("lifecycleDeactivate"),
        "{e}"
    );

    sim.disable_provisioning_as(&app, "migration.admin@example.com");
    let ev = events_of(&sim, "application.lifecycle.update");
    assert_eq!(
        target(&ev[2], "AppInstance")["changeDetails"]["to"]["USER_PROVISIONING"],
        "DISABLED"
    );
    sim.set_provisioning_as(
        &app,
        "migration.admin@example.com",
        ProvisioningSettings {
            create: true,
            update: true,
            deactivate: true,
        },
    );
    assert_eq!(events_of(&sim, "application.lifecycle.update").len(), 4);
}

#[tokio::test]
async fn app_wide_failures_and_success_signals_are_logged() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Tasks");
    let g = sim.add_group("Sales");
    sim.fail_group_push(
        &app,
        &g,
        "Failed to update group Sales in Tasks: 403 Forbidden",
    );
    sim.fail_app_credentials(&app, "Could not verify API credentials: 401 Unauthorized");
    sim.fail_sync_job(&app, "Import failed: the remote server returned 500");
    sim.emit_legacy_success_events(true);
    let u = sim.add_user("new.hire@example.com");
    sim.assign(&app, &u);
    for (t, result) in [
        (
            "application.provision.group_push.mapping.update.or.delete.failed.with.error",
            "FAILURE",
        ),
        ("application.configuration.update", "FAILURE"),
        ("app.app_instance.provision_sync_job.failed", "FAILURE"),
        ("app.user_management.push_new_user_success", "SUCCESS"),
    ] {
        let ev = events_of(&sim, t);
        assert_eq!(ev.len(), 1, "{t}");
        assert_eq!(ev[0]["outcome"]["result"], result, "{t}");
        assert_eq!(target(&ev[0], "AppInstance")["id"], app.as_str());
    }
    let gp = &events_of(
        &sim,
        "application.provision.group_push.mapping.update.or.delete.failed.with.error",
    )[0];
    assert_eq!(target(gp, "UserGroup")["id"], g.as_str());
    assert!(gp["outcome"]["reason"].as_str().unwrap().contains("403"));
}

/// Issue 13's reconciliation scale: 10,000 app accounts page in 10 requests of 1,000 (the
/// server's cap), and the counters say so.
#[tokio::test]
async fn ten_thousand_scim_users_page_in_ten_requests() {
    let sim = OktaSim::start().await.unwrap();
    let app = sim.add_app("Big");
    let s = sim.add_scim_server(&app).await.unwrap();
    for i in 0..10_000 {
        s.add_user(&format!("u{i:05}@big.example"), true);
    }
    let tok = s.token();
    let started = std::time::Instant::now();
    let (mut start, mut seen) = (1, 0);
    loop {
        let (st, _, page) = scim(
            &s,
            reqwest::Method::GET,
            &format!("/Users?startIndex={start}&count=5000"),
            None,
            Some(&tok),
        )
        .await;
        assert_eq!(st, 200);
        let n = page["Resources"].as_array().unwrap().len();
        assert!(n <= okta_sim::SCIM_MAX_COUNT);
        seen += n;
        start += n;
        if seen >= page["totalResults"].as_u64().unwrap() as usize {
            break;
        }
    }
    assert_eq!(seen, 10_000);
    assert_eq!(s.stats().by_route["GET /Users"], 10);
    println!("10,000 SCIM users paged in {:?}", started.elapsed());
}
