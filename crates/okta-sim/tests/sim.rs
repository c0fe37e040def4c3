//! Behaviour of the Okta simulator over real HTTP: System Log polling, app users and retries,
//! rate limits under a paused clock, OAuth client assertions, and faults.

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use okta_sim::{test_keys, AuthKind, Bucket, Downstream, Fault, FaultKind, OktaSim};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    // The workspace builds reqwest without a crypto provider (ring, not aws-lc): install one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // No idle pool: its timer would let a paused tokio clock jump while we wait on sockets.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

struct Resp {
    status: u16,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("bad json {e}: {}", self.text))
    }
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
    fn link(&self, rel: &str) -> Option<String> {
        let want = format!("rel=\"{rel}\"");
        self.headers.get_all("link").iter().find_map(|v| {
            let v = v.to_str().ok()?;
            if v.ends_with(&want) {
                let start = v.find('<')? + 1;
                let end = v.find('>')?;
                Some(v[start..end].to_string())
            } else {
                None
            }
        })
    }
}

async fn get_with(c: &reqwest::Client, url: &str, auth: &str) -> Resp {
    let r = c
        .get(url)
        .header("Authorization", auth)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

async fn get(sim: &OktaSim, c: &reqwest::Client, path_or_url: &str) -> Resp {
    let url = if path_or_url.starts_with("http") {
        path_or_url.to_string()
    } else {
        format!("{}{}", sim.base_url(), path_or_url)
    };
    get_with(c, &url, &format!("SSWS {}", sim.api_token())).await
}

async fn post_json(sim: &OktaSim, c: &reqwest::Client, path: &str, body: Value) -> Resp {
    let r = c
        .post(format!("{}{}", sim.base_url(), path))
        .header("Authorization", format!("SSWS {}", sim.api_token()))
        .json(&body)
        .send()
        .await
        .unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

fn target<'a>(ev: &'a Value, ty: &str) -> &'a Value {
    ev["target"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} target in {ev}"))
}

fn raw_event(n: usize, published: &str) -> Value {
    json!({
        "uuid": format!("raw-{n}"),
        "published": published,
        "eventType": "user.session.start",
        "version": "0",
        "severity": "INFO",
        "displayMessage": "raw",
        "outcome": {"result": "SUCCESS"},
        "actor": {"id": "00uraw", "type": "User"},
        "target": []
    })
}

// ---- System Log ------------------------------------------------------------------------------

#[tokio::test]
async fn log_polling_follows_next_links_in_persistence_order() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();

    // Empty log: still a next link.
    let r = get(&sim, &c, "/api/v1/logs?limit=2").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    assert!(r.link("self").is_some());
    let mut next = r.link("next").expect("next link on an empty page");
    assert!(next.starts_with(&format!("{}/api/v1/logs?after=", sim.base_url())));
    assert!(next.contains("limit=2"));

    let app = sim.add_app("Acme SCIM");
    let mut expected = Vec::new();
    for i in 0..5 {
        let u = sim.add_user(&format!("user{i}.person@example.com"));
        sim.assign(&app, &u);
    }
    // A late event: persisted last, published long ago.
    sim.push_log_event(raw_event(0, "2001-01-01T00:00:00.000Z"));
    for ev in sim.log_events() {
        expected.push(ev["uuid"].as_str().unwrap().to_string());
    }
    assert_eq!(expected.len(), 6);

    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = get(&sim, &c, &next).await;
        assert_eq!(r.status, 200);
        let page = r.json();
        assert!(page.as_array().unwrap().len() <= 2, "limit respected");
        let n = r.link("next").expect("next link always present");
        for ev in page.as_array().unwrap() {
            seen.push(ev["uuid"].as_str().unwrap().to_string());
        }
        let empty = page.as_array().unwrap().is_empty();
        next = n;
        if empty {
            break;
        }
    }
    assert_eq!(seen, expected, "every event once, in persistence order");

    // New events show up on the stored next URL.
    let u = sim.add_user("late.comer@example.com");
    sim.assign(&app, &u);
    let r = get(&sim, &c, &next).await;
    let page = r.json();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(target(&page[0], "User")["id"], u.as_str());
    assert_eq!(
        target(&page[0], "AppInstance")["id"],
        app.as_str(),
        "targets found by type"
    );
}

#[tokio::test]
async fn log_filters_since_and_validation() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    let app = sim.add_app("Filtered");
    let ok = sim.add_user("ok.user@example.com");
    sim.assign(&app, &ok);
    sim.set_downstream(&app, Downstream::Down);
    let bad = sim.add_user("bad.user@example.com");
    sim.assign(&app, &bad);

    let f = r#"eventType eq "application.provision.user.push" and outcome.result eq "FAILURE""#;
    let url = format!("{}/api/v1/logs?filter={}", sim.base_url(), url_encode(f));
    let r = get(&sim, &c, &url).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let page = r.json();
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(target(&page[0], "User")["id"], bad.as_str());
    assert!(page[0]["outcome"]["reason"]
        .as_str()
        .unwrap()
        .contains("Unable to connect to the remote server"));
    let next = r.link("next").unwrap();
    assert!(next.contains("filter="), "next keeps the filter: {next}");

    let f2 =
        format!(r#"(target.id eq "{ok}" or target.id eq "{bad}") and not (severity eq "INFO")"#);
    let r = get(
        &sim,
        &c,
        &format!("/api/v1/logs?filter={}", url_encode(&f2)),
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);

    for bad_filter in ["eventType eq", r#"eventType zz "x""#, r#"nosuch eq "x""#] {
        let r = get(
            &sim,
            &c,
            &format!("/api/v1/logs?filter={}", url_encode(bad_filter)),
        )
        .await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["errorCode"], "E0000031");
    }
    let r = get(&sim, &c, "/api/v1/logs?limit=1001").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorCode"], "E0000001");
    let r = get(
        &sim,
        &c,
        "/api/v1/logs?since=2020-01-01T00:00:00Z&after=1_1",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = get(&sim, &c, "/api/v1/logs?since=2000-01-01T00:00:00Z").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorCode"], "E0000053");

    // since in the future: nothing yet, but a next link to poll.
    let future = (sim.now() + chrono::Duration::seconds(5)).to_rfc3339();
    let r = get(
        &sim,
        &c,
        &format!("/api/v1/logs?since={}", url_encode(&future)),
    )
    .await;
    assert_eq!(r.json(), json!([]));
    assert!(r.link("next").is_some());
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- app users and retries -------------------------------------------------------------------

#[tokio::test]
async fn app_users_paginate_fail_and_heal_on_retry() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    let app = sim.add_app("Paginated");
    let mut users = Vec::new();
    for i in 0..7 {
        let u = sim.add_user(&format!("p{i}.user@example.com"));
        sim.assign(&app, &u);
        users.push(u);
    }
    let mut ids = Vec::new();
    let mut url = format!("/api/v1/apps/{app}/users?limit=3&expand=user");
    loop {
        let r = get(&sim, &c, &url).await;
        assert_eq!(r.status, 200);
        for au in r.json().as_array().unwrap() {
            assert_eq!(au["syncState"], "SYNCHRONIZED");
            assert_eq!(au["status"], "PROVISIONED");
            assert!(au["_embedded"]["user"]["profile"]["login"].is_string());
            ids.push(au["id"].as_str().unwrap().to_string());
        }
        match r.link("next") {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(ids, users);

    // Failure: create rejected by the remote server.
    let reason = "Bad Request. Errors reported by remote server: department is required";
    sim.set_downstream(
        &app,
        Downstream::Reject {
            logins: vec!["rejected.one@example.com".into()],
            reason: reason.into(),
        },
    );
    let u = sim.add_user("rejected.one@example.com");
    sim.assign(&app, &u);
    let au = sim.app_user(&app, &u).unwrap();
    assert_eq!(au["status"], "STAGED");
    assert_eq!(au["syncState"], "ERROR");
    let ev = sim.log_events().last().unwrap().clone();
    assert_eq!(ev["eventType"], "application.provision.user.push");
    assert_eq!(ev["outcome"]["result"], "FAILURE");
    assert_eq!(ev["outcome"]["reason"], reason);
    assert_eq!(
        target(&ev, "AppUser")["alternateId"],
        "rejected.one@example.com"
    );

    // A retry while still rejected fails again; once healthy it heals.
    let r = post_json(
        &sim,
        &c,
        &format!("/api/v1/apps/{app}/users/{u}"),
        json!({"profile": {"department": "R&D"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["syncState"], "ERROR");
    sim.set_downstream(&app, Downstream::Healthy);
    let before = sim.log_event_count();
    let r = post_json(
        &sim,
        &c,
        &format!("/api/v1/apps/{app}/users/{u}"),
        json!({"profile": {}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["syncState"], "SYNCHRONIZED");
    assert_eq!(body["status"], "PROVISIONED");
    assert_eq!(body["profile"]["department"], "R&D");
    let events = sim.log_events();
    assert_eq!(events.len(), before + 1);
    assert_eq!(
        events[before]["eventType"],
        "application.provision.user.push"
    );
    assert_eq!(events[before]["outcome"]["result"], "SUCCESS");
    assert_eq!(events[before]["transaction"]["type"], "WEB");

    // Profile push failure, then heal as an update.
    sim.set_downstream(&app, Downstream::Down);
    sim.update_profile(&app, &users[0]);
    assert_eq!(sim.app_user(&app, &users[0]).unwrap()["syncState"], "ERROR");
    sim.set_downstream(&app, Downstream::Healthy);
    let r = post_json(
        &sim,
        &c,
        &format!("/api/v1/apps/{app}/users/{}", users[0]),
        json!({}),
    )
    .await;
    assert_eq!(r.json()["syncState"], "SYNCHRONIZED");
    assert_eq!(
        sim.log_events().last().unwrap()["eventType"],
        "application.provision.user.push_profile"
    );

    // Deactivation failure keeps the user listed; the retry deactivates, never re-creates.
    sim.set_downstream(&app, Downstream::AuthFailure);
    sim.deactivate(&app, &users[1]);
    let au = sim.app_user(&app, &users[1]).unwrap();
    assert_eq!(au["syncState"], "ERROR");
    assert_eq!(au["status"], "REVOKED");
    let evs = sim.log_events();
    let n = evs.len();
    assert_eq!(
        evs[n - 2]["eventType"],
        "application.provision.user.deactivate"
    );
    assert_eq!(evs[n - 2]["severity"], "ERROR");
    assert_eq!(
        evs[n - 1]["eventType"],
        "application.integration.authentication_failure"
    );
    assert_eq!(evs[n - 1]["target"].as_array().unwrap().len(), 1);
    sim.set_downstream(&app, Downstream::Healthy);
    let r = post_json(
        &sim,
        &c,
        &format!("/api/v1/apps/{app}/users/{}", users[1]),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "DEPROVISIONED");
    assert!(sim.app_user(&app, &users[1]).is_none());
    assert_eq!(
        sim.log_events().last().unwrap()["eventType"],
        "application.provision.user.deactivate"
    );
    let r = get(&sim, &c, &format!("/api/v1/apps/{app}/users/{}", users[1])).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errorCode"], "E0000007");
}

#[tokio::test]
async fn apps_features_and_errors() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    let mut apps = Vec::new();
    for i in 0..5 {
        apps.push(sim.add_app(&format!("App {i}")));
    }
    sim.set_app_status(&apps[1], false);
    sim.set_provisioning(&apps[2], true, true, false);
    sim.remove_provisioning_feature(&apps[3]);

    let f = url_encode(r#"status eq "ACTIVE""#);
    let mut url = format!("/api/v1/apps?filter={f}&limit=2");
    let mut seen = Vec::new();
    loop {
        let r = get(&sim, &c, &url).await;
        assert_eq!(r.status, 200, "{}", r.text);
        for a in r.json().as_array().unwrap() {
            assert_eq!(a["status"], "ACTIVE");
            seen.push(a["id"].as_str().unwrap().to_string());
        }
        match r.link("next") {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![
            apps[0].clone(),
            apps[2].clone(),
            apps[3].clone(),
            apps[4].clone()
        ]
    );

    let r = get(
        &sim,
        &c,
        &format!("/api/v1/apps/{}/features/USER_PROVISIONING", apps[2]),
    )
    .await;
    let fj = r.json();
    assert_eq!(
        fj["capabilities"]["create"]["lifecycleCreate"]["status"],
        "ENABLED"
    );
    assert_eq!(
        fj["capabilities"]["update"]["lifecycleDeactivate"]["status"],
        "DISABLED"
    );
    let r = get(
        &sim,
        &c,
        &format!("/api/v1/apps/{}/features/USER_PROVISIONING", apps[3]),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get(&sim, &c, &format!("/api/v1/apps/{}/features", apps[3])).await;
    assert_eq!(r.json(), json!([]));
    let r = get(&sim, &c, "/api/v1/apps/0oanotthere").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["errorSummary"],
        "Not found: Resource not found: 0oanotthere (AppInstance)"
    );
    let r = get(&sim, &c, "/api/v1/nothing/here").await;
    assert_eq!(r.status, 404);

    // Unauthenticated.
    let r = get_with(&c, &format!("{}/api/v1/apps", sim.base_url()), "SSWS wrong").await;
    assert_eq!(r.status, 401);
    let e = r.json();
    assert_eq!(e["errorCode"], "E0000011");
    assert_eq!(e["errorSummary"], "Invalid token provided");
    assert!(e["errorId"].as_str().unwrap().starts_with("oae"));
    assert_eq!(e["errorCauses"], json!([]));

    let recs = sim.requests();
    assert_eq!(recs.last().unwrap().auth, AuthKind::Invalid);
    assert_eq!(recs.last().unwrap().status, 401);
    assert_eq!(recs[0].bucket, Bucket::Apps);
}

// ---- rate limits -----------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn rate_limit_headers_429_and_window_reset() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    sim.set_rate_limit(Bucket::Logs, 3);
    let t0 = sim.now().timestamp();

    let mut resets = HashSet::new();
    for remaining in [2, 1, 0] {
        let r = get(&sim, &c, "/api/v1/logs").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-rate-limit-limit"), "3");
        assert_eq!(r.header("x-rate-limit-remaining"), remaining.to_string());
        resets.insert(r.header("x-rate-limit-reset"));
        assert!(!r.header("date").is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(resets.len(), 1, "one window");
    let reset: i64 = resets.into_iter().next().unwrap().parse().unwrap();
    assert!((t0 + 60..=t0 + 61).contains(&reset), "{reset} vs {t0}");

    let r = get(&sim, &c, "/api/v1/logs").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-rate-limit-remaining"), "0");
    assert_eq!(r.header("x-rate-limit-reset"), reset.to_string());
    let e = r.json();
    assert_eq!(e["errorCode"], "E0000047");
    assert_eq!(
        e["errorSummary"],
        "API call exceeded rate limit due to too many requests."
    );
    assert_eq!(e["errorLink"], "E0000047");
    // Other buckets are unaffected.
    let r = get(&sim, &c, "/api/v1/apps").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rate-limit-limit"), "100");

    // Sleep until Reset on the sim clock: a new window.
    let wait = reset - sim.now().timestamp();
    tokio::time::advance(Duration::from_secs(wait as u64)).await;
    let r = get(&sim, &c, "/api/v1/logs").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-rate-limit-remaining"), "2");
    let new_reset: i64 = r.header("x-rate-limit-reset").parse().unwrap();
    assert!(new_reset >= reset + 59);
    let date = chrono::DateTime::parse_from_rfc2822(&r.header("date")).unwrap();
    assert!(date.timestamp() >= t0 + 60, "Date follows the sim clock");

    let st = sim.stats();
    assert_eq!(st.rate_limited, 1);
    assert_eq!(st.max_per_window[&Bucket::Logs], 3);
    assert_eq!(st.by_bucket[&Bucket::Logs], 5);
    assert_eq!(st.total, 6);
    let recs = sim.requests();
    assert_eq!(recs.iter().filter(|r| r.status == 429).count(), 1);
    assert!(recs.last().unwrap().at >= recs[0].at + chrono::Duration::seconds(60));
}

// ---- faults ----------------------------------------------------------------------------------

#[tokio::test]
async fn injected_faults() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    let app = sim.add_app("Faulty");
    for i in 0..3 {
        let u = sim.add_user(&format!("f{i}@example.com"));
        sim.assign(&app, &u);
    }
    sim.inject_fault(Fault {
        bucket: None,
        kind: FaultKind::ServerError(503),
        times: 2,
    });
    for _ in 0..2 {
        let r = get(&sim, &c, "/api/v1/logs").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["errorCode"], "E0000009");
        assert!(!r.header("x-rate-limit-remaining").is_empty());
    }
    assert_eq!(get(&sim, &c, "/api/v1/logs").await.status, 200);

    sim.inject_fault(Fault {
        bucket: Some(Bucket::Logs),
        kind: FaultKind::MalformedJson,
        times: 1,
    });
    let r = get(&sim, &c, "/api/v1/logs").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_str::<Value>(&r.text).is_err());

    sim.inject_fault(Fault {
        bucket: None,
        kind: FaultKind::Unauthorized,
        times: 1,
    });
    let r = get(&sim, &c, "/api/v1/apps").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["errorCode"], "E0000011");

    // LogNextLoop is not consumed by an apps request.
    sim.inject_fault(Fault {
        bucket: None,
        kind: FaultKind::LogNextLoop,
        times: 1,
    });
    assert_eq!(get(&sim, &c, "/api/v1/apps").await.status, 200);
    let url = format!("{}/api/v1/logs?limit=1", sim.base_url());
    let r = get(&sim, &c, &url).await;
    assert_eq!(r.link("next").unwrap(), url);
    let r = get(&sim, &c, &url).await;
    assert_ne!(r.link("next").unwrap(), url);

    sim.inject_fault(Fault {
        bucket: Some(Bucket::Logs),
        kind: FaultKind::MissingFields,
        times: 1,
    });
    let r = get(&sim, &c, "/api/v1/logs").await;
    let evs = r.json();
    let evs = evs.as_array().unwrap();
    assert!(evs[0].get("eventType").is_none());
    assert!(evs[1].get("uuid").is_none());
    assert!(evs[2].get("target").is_none());
    sim.inject_fault(Fault {
        bucket: Some(Bucket::Apps),
        kind: FaultKind::MissingFields,
        times: 1,
    });
    let r = get(&sim, &c, &format!("/api/v1/apps/{app}/users")).await;
    let aus = r.json();
    assert!(aus[0].get("id").is_none());
    assert!(aus[1].get("syncState").is_none());
}

// ---- OAuth -----------------------------------------------------------------------------------

fn assertion(sim: &OktaSim, key_pem: &str, alg: Algorithm, claims: Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(key_pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    };
    let mut base = json!({
        "iss": "0oaservice",
        "sub": "0oaservice",
        "aud": format!("{}/oauth2/v1/token", sim.base_url()),
        "exp": sim.now().timestamp() + 300,
        "iat": sim.now().timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    for (k, v) in claims.as_object().unwrap() {
        base[k] = v.clone();
    }
    jsonwebtoken::encode(&Header::new(alg), &base, &key).unwrap()
}

async fn token_request(sim: &OktaSim, c: &reqwest::Client, jwt: &str, scope: &str) -> Resp {
    let body = format!(
        "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={}",
        url_encode(scope),
        url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        jwt
    );
    let r = c
        .post(format!("{}/oauth2/v1/token", sim.base_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        text: r.text().await.unwrap(),
    }
}

#[tokio::test]
async fn oauth_client_assertions() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    sim.register_oauth_client(
        "0oaservice",
        test_keys::RSA_PUBLIC_PEM,
        &["okta.logs.read", "okta.apps.read"],
    );
    sim.register_oauth_client(
        "0oaecclient",
        test_keys::EC_PUBLIC_PEM,
        &["okta.apps.manage"],
    );

    let jwt = assertion(
        &sim,
        test_keys::RSA_PRIVATE_PEM,
        Algorithm::RS256,
        json!({}),
    );
    let r = token_request(&sim, &c, &jwt, "okta.logs.read").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tok = r.json();
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 3600);
    assert_eq!(tok["scope"], "okta.logs.read");
    let access = tok["access_token"].as_str().unwrap().to_string();

    // Replay of the same assertion.
    let r = token_request(&sim, &c, &jwt, "okta.logs.read").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "invalid_client");

    // The token works where its scope allows.
    let bearer = format!("Bearer {access}");
    let r = get_with(&c, &format!("{}/api/v1/logs", sim.base_url()), &bearer).await;
    assert_eq!(r.status, 200);
    let r = get_with(&c, &format!("{}/api/v1/apps", sim.base_url()), &bearer).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errorCode"], "E0000006");
    assert!(r.header("www-authenticate").contains("insufficient_scope"));
    assert!(sim.requests().iter().any(|r| r.auth == AuthKind::Bearer));

    let rejected = [
        assertion(
            &sim,
            test_keys::RSA_OTHER_PRIVATE_PEM,
            Algorithm::RS256,
            json!({}),
        ),
        assertion(
            &sim,
            test_keys::RSA_PRIVATE_PEM,
            Algorithm::RS256,
            json!({"aud": "https://wrong.example.com/oauth2/v1/token"}),
        ),
        assertion(
            &sim,
            test_keys::RSA_PRIVATE_PEM,
            Algorithm::RS256,
            json!({"exp": sim.now().timestamp() - 10}),
        ),
        assertion(
            &sim,
            test_keys::RSA_PRIVATE_PEM,
            Algorithm::RS256,
            json!({"exp": sim.now().timestamp() + 7200}),
        ),
        assertion(
            &sim,
            test_keys::RSA_PRIVATE_PEM,
            Algorithm::RS256,
            json!({"iss": "someone-else"}),
        ),
        assertion(
            &sim,
            test_keys::RSA_PRIVATE_PEM,
            Algorithm::RS256,
            json!({"jti": ""}),
        ),
    ];
    for (i, jwt) in rejected.iter().enumerate() {
        let r = token_request(&sim, &c, jwt, "okta.logs.read").await;
        assert_eq!(r.status, 401, "case {i}: {}", r.text);
        assert_eq!(r.json()["error"], "invalid_client", "case {i}");
    }
    // Scope not granted.
    let jwt = assertion(
        &sim,
        test_keys::RSA_PRIVATE_PEM,
        Algorithm::RS256,
        json!({}),
    );
    let r = token_request(&sim, &c, &jwt, "okta.logs.read okta.users.manage").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "invalid_scope");

    // ES256.
    let jwt = assertion(
        &sim,
        test_keys::EC_PRIVATE_PEM,
        Algorithm::ES256,
        json!({"iss": "0oaecclient", "sub": "0oaecclient"}),
    );
    let r = token_request(&sim, &c, &jwt, "okta.apps.manage").await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(start_paused = true)]
async fn access_tokens_expire_on_the_sim_clock() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    sim.register_oauth_client("0oaservice", test_keys::RSA_PUBLIC_PEM, &["okta.logs.read"]);
    let jwt = assertion(
        &sim,
        test_keys::RSA_PRIVATE_PEM,
        Algorithm::RS256,
        json!({}),
    );
    let r = token_request(&sim, &c, &jwt, "okta.logs.read").await;
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let url = format!("{}/api/v1/logs", sim.base_url());
    assert_eq!(
        get_with(&c, &url, &format!("Bearer {access}")).await.status,
        200
    );
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_eq!(
        get_with(&c, &url, &format!("Bearer {access}")).await.status,
        401
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    assert_eq!(get(&sim, &c, "/api/v1/apps").await.status, 200);
    sim.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c
        .get(format!("{}/api/v1/apps", sim.base_url()))
        .send()
        .await;
    assert!(r.is_err());
}
