//! Wire details where the fakes once differed from what Okta, Slack and RFC 4954 document.
//! One test per fix; each fails against the old behaviour.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use okta_sim::slack::{FakeSlack, SlackMode};
use okta_sim::{test_keys, Bucket, Fault, FaultKind, OktaSim};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    // The workspace builds reqwest without a crypto provider (ring, not aws-lc): install one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn http_date_epoch(r: &reqwest::Response) -> i64 {
    let d = header(r, "date");
    chrono::DateTime::parse_from_rfc2822(&d)
        .unwrap_or_else(|e| panic!("bad Date {d:?}: {e}"))
        .timestamp()
}

async fn ssws_get(sim: &OktaSim, c: &reqwest::Client, path: &str) -> reqwest::Response {
    c.get(format!("{}{path}", sim.base_url()))
        .header("Authorization", format!("SSWS {}", sim.api_token()))
        .send()
        .await
        .unwrap()
}

/// Okta (rate-limit best practices): "when a request exceeds the limit for concurrent
/// requests, X-Rate-Limit-Limit, X-Rate-Limit-Remaining, and X-Rate-Limit-Reset report the
/// concurrent values" -- not the per-minute bucket, whose window is untouched.
#[tokio::test]
async fn concurrency_429_reports_the_concurrent_limit_not_the_bucket() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    sim.set_concurrency_limit(1);
    sim.inject_fault(Fault {
        bucket: Some(Bucket::Apps),
        kind: FaultKind::Slow(Duration::from_millis(500)),
        times: 1,
    });
    let (s2, c2) = (sim.clone(), c.clone());
    let slow = tokio::spawn(async move { ssws_get(&s2, &c2, "/api/v1/apps").await.status() });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let r = ssws_get(&sim, &c, "/api/v1/logs").await;
    assert_eq!(r.status(), 429);
    assert_eq!(
        header(&r, "x-rate-limit-limit"),
        "1",
        "the concurrent ceiling"
    );
    assert_eq!(header(&r, "x-rate-limit-remaining"), "0");
    let reset: i64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    let now = http_date_epoch(&r);
    assert!(
        (now..=now + 5).contains(&reset),
        "an estimate seconds away, not the minute window: reset {reset}, now {now}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000047");
    assert_eq!(slow.await.unwrap(), 200);
    let st = sim.stats();
    assert_eq!(st.max_in_flight, 2);
    assert_eq!(st.rate_limited, 1);

    // Back under the concurrent limit, the headers report the Logs bucket again, whose quota
    // the refused request did not use.
    let r = ssws_get(&sim, &c, "/api/v1/logs").await;
    assert_eq!(r.status(), 200);
    let limit = Bucket::Logs.default_limit();
    assert_eq!(header(&r, "x-rate-limit-limit"), limit.to_string());
    assert_eq!(
        header(&r, "x-rate-limit-remaining"),
        (limit - 1).to_string()
    );
}

fn assertion(sim: &OktaSim) -> String {
    let key = EncodingKey::from_rsa_pem(test_keys::RSA_PRIVATE_PEM.as_bytes()).unwrap();
    let claims = json!({
        "iss": "0oafidelity",
        "sub": "0oafidelity",
        "aud": format!("{}/oauth2/v1/token", sim.base_url()),
        "exp": sim.now().timestamp() + 300,
        "iat": sim.now().timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

/// Okta's insufficient-scope answer names the org as realm and the requested path as
/// resource: `Bearer authorization_uri="https://org/oauth2/v1/authorize",
/// realm="https://org", scope="…", error="insufficient_scope", …, resource="/api/v1/…"`.
#[tokio::test]
async fn insufficient_scope_names_the_org_and_the_requested_resource() {
    let sim = OktaSim::start().await.unwrap();
    let c = client();
    sim.register_oauth_client(
        "0oafidelity",
        test_keys::RSA_PUBLIC_PEM,
        &["okta.logs.read"],
    );
    let form = [
        ("grant_type", "client_credentials".to_string()),
        ("scope", "okta.logs.read".to_string()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", assertion(&sim)),
    ];
    let body = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let r = c
        .post(format!("{}/oauth2/v1/token", sim.base_url()))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: Value = r.json().await.unwrap();
    let access = tok["access_token"].as_str().unwrap().to_string();

    let app = sim.add_app("Workday");
    let path = format!("/api/v1/apps/{app}/users");
    let r = c
        .get(format!("{}{path}?limit=5", sim.base_url()))
        .header("Authorization", format!("Bearer {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let www = header(&r, "www-authenticate");
    let base = sim.base_url();
    for part in [
        format!("Bearer authorization_uri=\"{base}/oauth2/v1/authorize\""),
        format!("realm=\"{base}\""),
        "scope=\"okta.apps.read\"".to_string(),
        "error=\"insufficient_scope\"".to_string(),
        format!("resource=\"{path}\""),
    ] {
        assert!(www.contains(&part), "{part} missing from {www}");
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000006");
}

/// Slack's incoming-webhook error table: HTTP 500 answers the plain-text body `rollup_error`.
/// The Web API keeps its own shapes.
#[tokio::test]
async fn slack_webhook_500_body_is_rollup_error() {
    let fake = FakeSlack::start().await.unwrap();
    let c = client();
    fake.fail_next(1, SlackMode::Down);
    let r = c
        .post(fake.webhook_url())
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(header(&r, "content-type").starts_with("text/"));
    assert_eq!(r.text().await.unwrap(), "rollup_error");

    fake.fail_next(1, SlackMode::Permanent("rollup_error".into()));
    let r = c
        .post(fake.webhook_url())
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "rollup_error is Slack's 500 code");

    let r = c
        .post(fake.webhook_url())
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    assert_eq!(fake.messages().len(), 1);
}

/// Slack answers a Web API method it does not know like any other Web API error: HTTP 200 with
/// `{"ok":false,"error":"unknown_method"}`, not a plain-text 404.
#[tokio::test]
async fn slack_unknown_web_api_method_is_ok_false_with_http_200() {
    let fake = FakeSlack::start().await.unwrap();
    let c = client();
    let r = c
        .post(format!("{}chat.postMessag", fake.api_url()))
        .bearer_auth(fake.bot_token())
        .json(&json!({"channel": "#x", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("application/json"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, json!({"ok": false, "error": "unknown_method"}));
    assert!(fake.messages().is_empty());
}
