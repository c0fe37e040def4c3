//! Event hooks over real sockets: the Management API, the verification handshake, delivery
//! with the configured headers, retries (one, none on 4xx), `event_hook.delivery` failures, and
//! the duplicate/reorder knobs. A small axum receiver plays the daemon.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use okta_sim::{HookDeliveryKnobs, OktaSim};
use serde_json::{json, Value};

#[derive(Default)]
struct Received {
    /// (method, authorization, x-custom, challenge, body)
    requests: Vec<(String, String, String, String, Value)>,
    /// Statuses to answer POSTs with, in turn (200 once exhausted).
    script: Vec<u16>,
    echo_wrong: bool,
    delay: Option<Duration>,
}

type Shared = Arc<Mutex<Received>>;

async fn receiver_handle(State(s): State<Shared>, req: Request) -> axum::response::Response {
    let (auth, custom, challenge) = {
        let h = |k: &str| {
            req.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (
            h("authorization"),
            h("x-custom"),
            h("x-okta-verification-challenge"),
        )
    };
    let method = req.method().to_string();
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let (status, delay, wrong) = {
        let mut r = s.lock().unwrap();
        r.requests
            .push((method.clone(), auth, custom, challenge.clone(), body));
        let status = if method == "POST" && !r.script.is_empty() {
            r.script.remove(0)
        } else {
            200
        };
        (status, r.delay, r.echo_wrong)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    if method == "GET" {
        let v = if wrong { "nope".to_string() } else { challenge };
        return axum::Json(json!({ "verification": v })).into_response();
    }
    StatusCode::from_u16(status).unwrap().into_response()
}

async fn receiver() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .fallback(receiver_handle)
        .with_state(shared.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/okta/events",
        l.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, shared)
}

async fn call(
    sim: &OktaSim,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut rb = c
        .request(method, format!("{}{path}", sim.base_url()))
        .header("Authorization", format!("SSWS {}", sim.api_token()));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST /api/v1/eventHooks` with [`hook_body`]: Okta's status and answer.
async fn create_hook(sim: &OktaSim, url: &str, types: &[&str]) -> (u16, Value) {
    call(
        sim,
        reqwest::Method::POST,
        "/api/v1/eventHooks",
        Some(hook_body(url, types)),
    )
    .await
}

fn hook_body(url: &str, types: &[&str]) -> Value {
    json!({
        "name": "provwatch",
        "events": {"type": "EVENT_TYPE", "items": types},
        "channel": {"type": "HTTP", "version": "1.0.0", "config": {
            "uri": url,
            "headers": [{"key": "X-Custom", "value": "c1"}],
            "authScheme": {"type": "HEADER", "key": "Authorization", "value": "s3cret-hook"}
        }}
    })
}

/// Creates, activates (default) and verifies a hook for `types`. Returns its id.
async fn verified_hook(sim: &OktaSim, url: &str, types: &[&str]) -> String {
    let (st, h) = create_hook(sim, url, types).await;
    assert_eq!(st, 200, "{h}");
    let id = h["id"].as_str().unwrap().to_string();
    let (st, v) = call(
        sim,
        reqwest::Method::POST,
        &format!("/api/v1/eventHooks/{id}/lifecycle/verify"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["verificationStatus"], "VERIFIED");
    id
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn posts(r: &Shared) -> Vec<Value> {
    r.lock()
        .unwrap()
        .requests
        .iter()
        .filter(|q| q.0 == "POST")
        .map(|q| q.4.clone())
        .collect()
}

#[tokio::test]
async fn management_api_and_verification_handshake() {
    let sim = OktaSim::start().await.unwrap();
    let (url, rec) = receiver().await;
    let (st, h) = create_hook(&sim, &url, &["user.lifecycle.deactivate"]).await;
    assert_eq!(st, 200);
    assert_eq!(h["status"], "ACTIVE");
    assert_eq!(h["verificationStatus"], "UNVERIFIED");
    assert_eq!(h["channel"]["config"]["authScheme"]["key"], "Authorization");
    assert!(
        !h.to_string().contains("s3cret-hook"),
        "the secret is write-only: {h}"
    );
    let id = h["id"].as_str().unwrap().to_string();
    assert!(
        !format!("{sim:?}").contains("s3cret-hook"),
        "secret in Debug"
    );

    // Unverified hooks receive nothing.
    let u = sim.add_user("early.leaver@example.com");
    sim.deactivate_user(&u, "admin@example.com");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(posts(&rec).is_empty());

    rec.lock().unwrap().echo_wrong = true;
    let (st, e) = call(
        &sim,
        reqwest::Method::POST,
        &format!("/api/v1/eventHooks/{id}/lifecycle/verify"),
        None,
    )
    .await;
    assert_eq!(st, 400, "{e}");
    assert!(
        e["errorCauses"][0]["errorSummary"]
            .as_str()
            .unwrap()
            .contains("challenge"),
        "{e}"
    );
    rec.lock().unwrap().echo_wrong = false;
    let (st, v) = call(
        &sim,
        reqwest::Method::POST,
        &format!("/api/v1/eventHooks/{id}/lifecycle/verify"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["verificationStatus"], "VERIFIED");
    let gets: Vec<_> = rec
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.0 == "GET")
        .cloned()
        .collect();
    assert_eq!(gets.len(), 2);
    assert!(gets[1].3.len() >= 20, "challenge header sent");
    assert_eq!(gets[1].1, "s3cret-hook");

    // Ineligible types (failed deprovisioning is poll-only) are refused.
    let (st, e) = create_hook(&sim, &url, &["application.provision.user.deactivate"]).await;
    assert_eq!(st, 400);
    assert!(e["errorCauses"][0]["errorSummary"]
        .as_str()
        .unwrap()
        .contains("eligible"));
    let (st, _) = create_hook(&sim, "ftp://example.com/x", &["user.lifecycle.deactivate"]).await;
    assert_eq!(st, 400);

    let (st, list) = call(&sim, reqwest::Method::GET, "/api/v1/eventHooks", None).await;
    assert_eq!((st, list.as_array().unwrap().len()), (200, 1));
    let mut replace = hook_body(
        &url,
        &["user.lifecycle.deactivate", "user.lifecycle.suspend"],
    );
    replace["channel"]["config"]["authScheme"]
        .as_object_mut()
        .unwrap()
        .remove("value");
    let (st, r) = call(
        &sim,
        reqwest::Method::PUT,
        &format!("/api/v1/eventHooks/{id}"),
        Some(replace),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["events"]["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["verificationStatus"], "VERIFIED",
        "same URI stays verified"
    );

    let (st, _) = call(
        &sim,
        reqwest::Method::DELETE,
        &format!("/api/v1/eventHooks/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 400, "an ACTIVE hook cannot be deleted");
    let (st, d) = call(
        &sim,
        reqwest::Method::POST,
        &format!("/api/v1/eventHooks/{id}/lifecycle/deactivate"),
        None,
    )
    .await;
    assert_eq!((st, d["status"].as_str()), (200, Some("INACTIVE")));
    let (st, _) = call(
        &sim,
        reqwest::Method::DELETE,
        &format!("/api/v1/eventHooks/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = call(
        &sim,
        reqwest::Method::GET,
        &format!("/api/v1/eventHooks/{id}"),
        None,
    )
    .await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn eligible_events_are_delivered_with_the_configured_headers() {
    let sim = OktaSim::start().await.unwrap();
    let (url, rec) = receiver().await;
    verified_hook(
        &sim,
        &url,
        &[
            "user.lifecycle.deactivate",
            "application.user_membership.remove",
        ],
    )
    .await;
    let app = sim.add_app("Hooked");
    let u = sim.add_user("leaver@example.com");
    sim.assign(&app, &u);
    sim.unassign(&app, &u, "admin@example.com");
    wait_for("one delivery", || posts(&rec).len() == 1).await;
    let body = &posts(&rec)[0];
    assert_eq!(body["eventType"], "com.okta.event_hook");
    let events = body["data"]["events"].as_array().unwrap();
    assert_eq!(events[0]["eventType"], "application.user_membership.remove");
    let r = rec.lock().unwrap().requests.last().cloned().unwrap();
    assert_eq!((r.1.as_str(), r.2.as_str()), ("s3cret-hook", "c1"));
    // The deactivation push itself is not eligible: only the membership event went out.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(posts(&rec).len(), 1);
    assert_eq!(sim.hook_deliveries()[0].status, Some(200));
}

#[tokio::test]
async fn one_retry_on_5xx_none_on_4xx_and_failures_are_logged() {
    let sim = OktaSim::start().await.unwrap();
    let (url, rec) = receiver().await;
    let id = verified_hook(&sim, &url, &["user.lifecycle.suspend"]).await;
    rec.lock().unwrap().script = vec![500, 200, 503, 502, 401];
    for i in 0..3 {
        let u = sim.add_user(&format!("s{i}@example.com"));
        sim.suspend_user(&u, "admin@example.com");
    }
    wait_for("the deliverer to go idle", || sim.hook_deliveries_idle()).await;
    let attempts: Vec<(u8, Option<u16>)> = sim
        .hook_deliveries()
        .iter()
        .map(|d| (d.attempt, d.status))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, Some(500)),
            (2, Some(200)),
            (1, Some(503)),
            (2, Some(502)),
            (1, Some(401))
        ]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.hook_deliveries().len(), 5, "no retry after a 4xx");
    let failures: Vec<Value> = sim
        .log_events()
        .into_iter()
        .filter(|e| e["eventType"] == "event_hook.delivery")
        .collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["outcome"]["result"], "FAILURE");
    assert!(failures[0]["outcome"]["reason"]
        .as_str()
        .unwrap()
        .contains("HTTP 502"));
    assert!(failures[1]["outcome"]["reason"]
        .as_str()
        .unwrap()
        .contains("HTTP 401"));
    assert_eq!(failures[0]["target"][0]["id"], id.as_str());
    assert!(!failures[0].to_string().contains("s3cret-hook"));
}

#[tokio::test]
async fn a_receiver_slower_than_3s_times_out_twice() {
    let sim = OktaSim::start().await.unwrap();
    let (url, rec) = receiver().await;
    verified_hook(&sim, &url, &["user.lifecycle.suspend"]).await;
    rec.lock().unwrap().delay = Some(Duration::from_secs(5));
    let u = sim.add_user("slow@example.com");
    let started = std::time::Instant::now();
    sim.suspend_user(&u, "admin@example.com");
    wait_for("the delivery failure", || {
        sim.log_events()
            .iter()
            .any(|e| e["eventType"] == "event_hook.delivery")
    })
    .await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(6) && elapsed < Duration::from_secs(9),
        "{elapsed:?}"
    );
    let d = sim.hook_deliveries();
    assert_eq!(d.len(), 2);
    assert!(d
        .iter()
        .all(|d| d.status.is_none() && d.error.as_deref().unwrap().contains("timed out")));
}

async fn delivered_order(seed: u64) -> (Vec<String>, Vec<String>) {
    let sim = OktaSim::start().await.unwrap();
    let (url, rec) = receiver().await;
    verified_hook(&sim, &url, &["user.lifecycle.suspend"]).await;
    sim.set_hook_delivery(HookDeliveryKnobs {
        duplicate: true,
        reorder: true,
        seed,
        hold: true,
        ..Default::default()
    });
    for i in 0..8 {
        let u = sim.add_user(&format!("r{i}@example.com"));
        sim.suspend_user(&u, "admin@example.com");
    }
    assert_eq!(sim.pending_hook_events(), 8);
    let logged: Vec<String> = sim
        .log_events()
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect();
    sim.release_hook_deliveries();
    wait_for("16 deliveries", || posts(&rec).len() == 16).await;
    let got: Vec<String> = posts(&rec)
        .iter()
        .map(|b| b["data"]["events"][0]["uuid"].as_str().unwrap().to_string())
        .collect();
    (logged, got)
}

#[tokio::test]
async fn duplicate_and_reordered_delivery_is_seeded() {
    let (logged, got) = delivered_order(7).await;
    // Each event twice, in a shuffled order.
    let firsts: Vec<String> = got.iter().step_by(2).cloned().collect();
    assert_eq!(
        got.iter().skip(1).step_by(2).cloned().collect::<Vec<_>>(),
        firsts
    );
    let mut sorted = firsts.clone();
    sorted.sort();
    let mut want = logged.clone();
    want.sort();
    assert_eq!(sorted, want);
    assert_ne!(firsts, logged, "reordered");
    // Same seed, same permutation (of positions).
    let (logged2, got2) = delivered_order(7).await;
    let pos = |l: &[String], g: &[String]| -> Vec<usize> {
        g.iter()
            .step_by(2)
            .map(|u| l.iter().position(|x| x == u).unwrap())
            .collect()
    };
    assert_eq!(pos(&logged, &got), pos(&logged2, &got2));
}
