//! The Okta client against the simulator over real sockets: pagination, the shared rate budget
//! (429s, window ceilings), 5xx/timeout backoff, both auth modes and typed errors.
//! Rate-limit windows are 60 s, so those tests run on tokio's paused clock (the simulator
//! follows it), with connection reuse off as paused-time tests require.

mod common;

use common::*;
use okta_provwatch::clock::Clock;
use okta_provwatch::okta::{
    Bucket as ClientBucket, ClientOptions, Credentials, OktaClient, OktaError,
};
use okta_sim::{test_keys, Bucket, Fault, FaultKind, OktaSim};
use secrecy::SecretString;
use std::time::Duration;
use tokio::time::Instant;

fn options(sim: &OktaSim, credentials: Credentials) -> ClientOptions {
    let mut o = ClientOptions::new(sim.base_url().parse().unwrap(), credentials);
    o.clock = Clock::tokio();
    o.keep_alive = false;
    o
}

fn ssws(sim: &OktaSim) -> OktaClient {
    OktaClient::new(options(
        sim,
        Credentials::ApiToken(SecretString::from(sim.api_token())),
    ))
    .unwrap()
}

/// Another integration of the org spends `n` of the shared logs bucket.
async fn other_integration_reads_logs(sim: &OktaSim, n: usize) {
    let other = http_builder().pool_max_idle_per_host(0).build().unwrap();
    for _ in 0..n {
        other
            .get(format!("{}/api/v1/logs?limit=1", sim.base_url()))
            .header("Authorization", format!("SSWS {}", sim.api_token()))
            .send()
            .await
            .unwrap();
    }
}

fn count(sim: &OktaSim, bucket: Bucket, status: u16) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.bucket == bucket && r.status == status)
        .count()
}

#[tokio::test(start_paused = true)]
async fn pages_follow_the_next_link() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Apps, 1000);
    let app = sim.add_app("Workday");
    let mut ids = Vec::new();
    for i in 0..1203 {
        let u = sim.add_user(&format!("u{i}@acme.example"));
        sim.assign(&app, &u);
        ids.push(u);
    }
    let c = ssws(&sim);
    let mut url = OktaClient::app_users_url(&app);
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = c.get_page(&url).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 500);
        got.extend(
            page.items
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned()),
        );
        match page.next {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "every app user exactly once");
}

/// The ceiling: 200 calls against a bucket of 60 with share 0.5 never take more than 30
/// of a window, and Okta answers no 429.
#[tokio::test(start_paused = true)]
async fn a_burst_of_200_calls_takes_at_most_half_of_each_window() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::AppInstance, 60);
    let app = sim.add_app("Jira");
    let c = ssws(&sim);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let c = c.clone();
        let app = app.clone();
        tasks.push(tokio::spawn(
            async move { c.get_app(&app).await.map(|_| ()) },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0, "Okta answered 429");
    assert!(
        stats.max_per_window[&Bucket::AppInstance] <= 30,
        "{:?}",
        stats.max_per_window
    );
    assert!(stats.max_in_flight <= 2, "{}", stats.max_in_flight);
    // 200 calls at 30 a window need at least 6 full windows.
    assert!(
        start.elapsed() >= Duration::from_secs(6 * 60),
        "{:?}",
        start.elapsed()
    );
    let snap = c.budget().snapshot();
    let apps = snap
        .iter()
        .find(|s| s.bucket == ClientBucket::AppInstance)
        .unwrap();
    assert_eq!(apps.limit, Some(60));
    assert_eq!(apps.budget, 30);
}

/// Another integration drained the bucket: the client's call gets a 429, waits until the
/// window resets (plus jitter) and then succeeds, without hammering in between.
#[tokio::test(start_paused = true)]
async fn a_429_waits_for_the_reset() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Logs, 10);
    other_integration_reads_logs(&sim, 10).await;
    let c = ssws(&sim);
    let start = Instant::now();
    c.get_page("/api/v1/logs?limit=1").await.unwrap();
    let waited = start.elapsed();
    assert_eq!(
        count(&sim, Bucket::Logs, 429),
        1,
        "exactly one 429, then a wait"
    );
    assert!(
        waited >= Duration::from_secs(55) && waited <= Duration::from_secs(63),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_and_timeouts_back_off_then_succeed_or_fail_typed() {
    let sim = start_okta().await;
    let app = sim.add_app("Box");
    let c = ssws(&sim);
    sim.inject_fault(Fault {
        bucket: Some(Bucket::AppInstance),
        kind: FaultKind::ServerError(503),
        times: 2,
    });
    let start = Instant::now();
    c.get_app(&app).await.unwrap();
    // Two backoffs: at least 0.5 s + 1 s with full jitter over 1 s and 2 s.
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(count(&sim, Bucket::AppInstance, 503), 2);

    sim.inject_fault(Fault {
        bucket: Some(Bucket::AppInstance),
        kind: FaultKind::ServerError(500),
        times: 4,
    });
    let e = c.get_app(&app).await.unwrap_err();
    assert!(matches!(e, OktaError::Retryable { .. }), "{e}");
    assert!(e.is_transient());
    assert_eq!(
        count(&sim, Bucket::AppInstance, 500),
        4,
        "gives up after 4 attempts"
    );

    // A response slower than the timeout is abandoned and retried.
    let mut o = options(
        &sim,
        Credentials::ApiToken(SecretString::from(sim.api_token())),
    );
    o.request_timeout = Duration::from_secs(2);
    let c = OktaClient::new(o).unwrap();
    sim.inject_fault(Fault {
        bucket: Some(Bucket::AppInstance),
        kind: FaultKind::Slow(Duration::from_secs(30)),
        times: 1,
    });
    c.get_app(&app).await.unwrap();
}

#[tokio::test]
async fn errors_are_typed_and_never_carry_the_token() {
    let sim = start_okta().await;
    let c = ssws(&sim);
    let e = c.get_app("0oanope").await.unwrap_err();
    assert!(matches!(e, OktaError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("E0000007"), "{e}");

    let bad = OktaClient::new(options(
        &sim,
        Credentials::ApiToken(SecretString::from("00wrong-token-value")),
    ))
    .unwrap();
    let e = bad.get_page("/api/v1/logs?limit=1").await.unwrap_err();
    assert!(matches!(e, OktaError::Unauthorized { .. }), "{e}");
    assert!(!e.to_string().contains("00wrong-token-value"));
    assert!(!format!("{bad:?}").contains("00wrong-token-value"));
    assert!(!format!("{c:?}").contains(&sim.api_token()));

    let e = c.get_page("/api/v1/logs?limit=5000").await.unwrap_err();
    assert!(matches!(e, OktaError::Permanent { status: 400, .. }), "{e}");
}

fn oauth(sim: &OktaSim, pem: &str, scopes: &[&str]) -> OktaClient {
    OktaClient::new(options(
        sim,
        Credentials::OAuth {
            client_id: "0oaservice".into(),
            private_key_pem: SecretString::from(pem.to_owned()),
            key_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        },
    ))
    .unwrap()
}

#[tokio::test]
async fn oauth_private_key_jwt_token_is_fetched_once_and_used_as_bearer() {
    let sim = start_okta().await;
    sim.register_oauth_client(
        "0oaservice",
        test_keys::RSA_PUBLIC_PEM,
        &["okta.logs.read", "okta.apps.read"],
    );
    let app = sim.add_app("Slack");
    let c = oauth(
        &sim,
        test_keys::RSA_PRIVATE_PEM,
        &["okta.logs.read", "okta.apps.read"],
    );
    for _ in 0..3 {
        c.get_page("/api/v1/logs?limit=1").await.unwrap();
        c.get_app(&app).await.unwrap();
    }
    assert_eq!(
        count(&sim, Bucket::OAuthToken, 200),
        1,
        "the token is cached"
    );
    assert!(sim
        .requests()
        .iter()
        .filter(|r| r.bucket != Bucket::OAuthToken)
        .all(|r| r.auth == okta_sim::AuthKind::Bearer));

    // Missing okta.apps.manage: the retry route is refused with a typed error.
    let e = c
        .update_app_user(&app, "00unope", &serde_json::json!({"profile": {}}))
        .await
        .unwrap_err();
    assert!(matches!(e, OktaError::Forbidden { .. }), "{e}");

    // A key Okta does not know: the token request is refused.
    let wrong = oauth(&sim, test_keys::RSA_OTHER_PRIVATE_PEM, &["okta.logs.read"]);
    let e = wrong.get_page("/api/v1/logs?limit=1").await.unwrap_err();
    assert!(matches!(e, OktaError::Unauthorized { .. }), "{e}");

    // EC keys work too.
    sim.register_oauth_client("0oaec", test_keys::EC_PUBLIC_PEM, &["okta.logs.read"]);
    let ec = OktaClient::new(options(
        &sim,
        Credentials::OAuth {
            client_id: "0oaec".into(),
            private_key_pem: SecretString::from(test_keys::EC_PRIVATE_PEM.to_owned()),
            key_id: None,
            scopes: vec!["okta.logs.read".into()],
        },
    ))
    .unwrap();
    ec.get_page("/api/v1/logs?limit=1").await.unwrap();
}

#[tokio::test]
async fn oauth_dpop_required_client_switches_to_dpop_and_keeps_its_token() {
    let sim = start_okta().await;
    sim.register_oauth_client_dpop(
        "0oaservice",
        test_keys::RSA_PUBLIC_PEM,
        &["okta.logs.read", "okta.apps.read"],
    );
    let app = sim.add_app("Slack");
    let c = oauth(
        &sim,
        test_keys::RSA_PRIVATE_PEM,
        &["okta.logs.read", "okta.apps.read"],
    );
    for _ in 0..3 {
        c.get_page("/api/v1/logs?limit=1").await.unwrap();
        c.get_app(&app).await.unwrap();
    }
    // Without a proof (invalid_dpop_proof), then without the nonce (use_dpop_nonce), then the
    // DPoP token, kept for every later call.
    assert_eq!(count(&sim, Bucket::OAuthToken, 400), 2);
    assert_eq!(
        count(&sim, Bucket::OAuthToken, 200),
        1,
        "the token is cached"
    );
    let api: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.bucket != Bucket::OAuthToken)
        .collect();
    assert_eq!(api.len(), 6);
    assert!(api
        .iter()
        .all(|r| r.auth == okta_sim::AuthKind::Dpop && r.status == 200));

    // A resource server that wants a nonce: one 401 use_dpop_nonce, then the call succeeds.
    sim.require_dpop_resource_nonce(true);
    c.get_page("/api/v1/logs?limit=1").await.unwrap();
    c.get_app(&app).await.unwrap();
    let last: Vec<u16> = sim
        .requests()
        .iter()
        .rev()
        .take(3)
        .map(|r| r.status)
        .collect();
    assert_eq!(last, vec![200, 200, 401]);
    assert_eq!(count(&sim, Bucket::OAuthToken, 200), 1);

    // Missing okta.apps.manage: still a typed error, not a DPoP failure.
    let e = c
        .update_app_user(&app, "00unope", &serde_json::json!({"profile": {}}))
        .await
        .unwrap_err();
    assert!(matches!(e, OktaError::Forbidden { .. }), "{e}");
}

/// A `private_key_jwt` client assertion for the sim's token endpoint, signed by the test key.
fn client_assertion(sim: &OktaSim) -> String {
    let now = sim.now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &serde_json::json!({
            "iss": "0oadpop", "sub": "0oadpop",
            "aud": format!("{}/oauth2/v1/token", sim.base_url()),
            "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string(),
        }),
        &jsonwebtoken::EncodingKey::from_rsa_pem(test_keys::RSA_PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Swaps the proof's claims for others, keeping the header and signature.
fn tamper(proof: &str, claims: serde_json::Value) -> String {
    use base64::Engine;
    let parts: Vec<&str> = proof.split('.').collect();
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{forged}.{}", parts[0], parts[2])
}

#[tokio::test]
async fn the_sim_rejects_absent_tampered_or_foreign_dpop_proofs() {
    use okta_provwatch::okta::dpop::{self, DpopKey};
    let sim = start_okta().await;
    sim.register_oauth_client_dpop("0oadpop", test_keys::RSA_PUBLIC_PEM, &["okta.logs.read"]);
    let http = http_client();
    let token_url: url::Url = format!("{}/oauth2/v1/token", sim.base_url())
        .parse()
        .unwrap();
    let key = DpopKey::generate().unwrap();
    let now = || sim.now().timestamp();
    let token_req = |proof: Option<String>| {
        let mut r = http.post(token_url.clone()).form(&[
            ("grant_type", "client_credentials"),
            ("scope", "okta.logs.read"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &client_assertion(&sim)),
        ]);
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send()
    };
    let error_of = |v: &serde_json::Value| v["error"].as_str().unwrap_or("").to_owned();

    // No proof at all.
    let r = token_req(None).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error_of(&body), "invalid_dpop_proof");
    assert_eq!(
        body["error_description"],
        "The DPoP proof JWT header is missing."
    );

    // A good proof without the nonce: asked for one.
    let p = key.proof("POST", &token_url, now(), None, None).unwrap();
    let r = token_req(Some(p)).await.unwrap();
    assert_eq!(r.status(), 400);
    let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    assert_eq!(error_of(&r.json().await.unwrap()), "use_dpop_nonce");

    // Tampered claims, wrong method, stale iat: refused.
    let p = key
        .proof("POST", &token_url, now(), Some(&nonce), None)
        .unwrap();
    let forged = tamper(
        &p,
        serde_json::json!({"htm": "POST", "htu": token_url.as_str(), "iat": now(),
            "jti": "forged", "nonce": nonce}),
    );
    let bad = [
        forged,
        key.proof("GET", &token_url, now(), Some(&nonce), None)
            .unwrap(),
        key.proof("POST", &token_url, now() - 3600, Some(&nonce), None)
            .unwrap(),
    ];
    for p in bad {
        let r = token_req(Some(p)).await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(error_of(&r.json().await.unwrap()), "invalid_dpop_proof");
    }

    // The good proof gets a DPoP token; the same proof again is a replay.
    let r = token_req(Some(p.clone())).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let r = token_req(Some(p)).await.unwrap();
    assert_eq!(error_of(&r.json().await.unwrap()), "invalid_dpop_proof");

    // Resource requests: only `DPoP <token>` with a fresh proof by the same key, with `ath`.
    let logs: url::Url = format!("{}/api/v1/logs", sim.base_url()).parse().unwrap();
    let call = |scheme: &str, proof: Option<String>| {
        let mut r = http
            .get(logs.clone())
            .header("Authorization", format!("{scheme} {token}"));
        if let Some(p) = proof {
            r = r.header("DPoP", p);
        }
        r.send()
    };
    let other = DpopKey::generate().unwrap();
    let good = key.proof("GET", &logs, now(), None, Some(&token)).unwrap();
    let forged = tamper(
        &good,
        serde_json::json!({"htm": "GET", "htu": logs.as_str(), "iat": now(),
            "jti": "forged2", "ath": dpop::ath(&token)}),
    );
    let refused = [
        ("Bearer", None),
        ("DPoP", None),
        (
            "DPoP",
            Some(key.proof("GET", &logs, now(), None, None).unwrap()),
        ),
        (
            "DPoP",
            Some(
                other
                    .proof("GET", &logs, now(), None, Some(&token))
                    .unwrap(),
            ),
        ),
        ("DPoP", Some(forged)),
    ];
    for (scheme, proof) in refused {
        let r = call(scheme, proof).await.unwrap();
        assert_eq!(r.status(), 401, "{scheme}");
        let www = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            www.starts_with("DPoP ") && www.contains("error=\"invalid_dpop_proof\""),
            "{www}"
        );
    }
    let r = call("DPoP", Some(good)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        sim.requests().last().unwrap().auth,
        okta_sim::AuthKind::Dpop
    );
}

#[test]
fn a_garbage_private_key_is_a_config_error() {
    let e = OktaClient::new(ClientOptions::new(
        "https://acme.okta.com".parse().unwrap(),
        Credentials::OAuth {
            client_id: "x".into(),
            private_key_pem: SecretString::from("not a key".to_owned()),
            key_id: None,
            scopes: vec![],
        },
    ))
    .unwrap_err();
    assert!(matches!(e, OktaError::Config(_)));
}

/// A request waiting out its bucket's window holds no in-flight slot: with a single slot, a
/// call to another bucket still goes through at once.
#[tokio::test(start_paused = true)]
async fn a_blocked_bucket_does_not_hold_the_in_flight_slots() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Logs, 10);
    let app = sim.add_app("Box");
    let mut o = options(
        &sim,
        Credentials::ApiToken(SecretString::from(sim.api_token())),
    );
    o.max_in_flight = 1;
    let c = OktaClient::new(o).unwrap();
    // Learn the logs bucket, then let another integration drain it.
    c.get_page("/api/v1/logs?limit=1").await.unwrap();
    other_integration_reads_logs(&sim, 9).await;
    let logs = {
        let c = c.clone();
        tokio::spawn(async move { c.get_page("/api/v1/logs?limit=1").await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    c.get_app(&app).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !logs.is_finished(),
        "the logs call should still be waiting for its window"
    );
    logs.await.unwrap().unwrap();
}

/// A first request to a bucket that is dropped before its answer (a shutdown, a caller's
/// timeout) gives the bucket's probe back, so the next request is not blocked forever.
#[tokio::test(start_paused = true)]
async fn a_dropped_probe_does_not_block_its_bucket() {
    let sim = start_okta().await;
    let app = sim.add_app("Box");
    let c = ssws(&sim);
    sim.inject_fault(Fault {
        bucket: Some(Bucket::AppInstance),
        kind: FaultKind::Slow(Duration::from_secs(20)),
        times: 1,
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), c.get_app(&app))
            .await
            .is_err()
    );
    tokio::time::timeout(Duration::from_secs(10), c.get_app(&app))
        .await
        .expect("the bucket stayed blocked by the dropped probe")
        .unwrap();
}
