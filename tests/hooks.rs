//! The event hook receiver and the wider detection of issue 14, over real sockets: the
//! simulator's Event Hooks API and deliverer (verification, the configured header, 3 s timeout,
//! one retry, duplicates and reordering), the receiver on its own port (plain and TLS), the
//! `hooks register/status/remove` commands as the binary, and the Tasks-page kinds (group push,
//! connections, agent pools, credentials, sync jobs, success signals).

mod common;

use common::*;
use okta_provwatch::context::Context;
use okta_provwatch::detect::{poller, scanner};
use okta_provwatch::domain::{Failure, Operation, State};
use okta_provwatch::health::{verdict, Cause, Verdict};
use okta_provwatch::hooks;
use okta_provwatch::store::{failures, inbox};
use okta_sim::{AgentStatus, Downstream, HookDeliveryKnobs, OktaSim};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "Bearer hook-secret-0123456789abcdef";
const SECRET_ENV: &str = "TEST_HOOK_SECRET";
const BIN: &str = env!("CARGO_BIN_EXE_okta-provwatch");

fn hooks_section(port: u16, tls: Option<&Path>) -> String {
    let tls = tls
        .map(|d| {
            format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            )
        })
        .unwrap_or_default();
    format!(
        "{DETECT_SECTIONS}\n[hooks]\nlisten = \"127.0.0.1:{port}\"\npath = \"/okta/events\"\nsecret_env = \"{SECRET_ENV}\"\nmax_body_bytes = 65536\n{tls}"
    )
}

fn toml_for(sim: &OktaSim, dir: &Path, port: u16, tls: Option<&Path>) -> String {
    minimal_toml(sim.base_url().as_str(), dir, "", &hooks_section(port, tls))
}

fn hook_ctx(sim: &OktaSim, dir: &Path, port: u16, tls: Option<&Path>) -> Context {
    let cfg = parse_config(
        &toml_for(sim, dir, port, tls),
        &sim.api_token(),
        &[(SECRET_ENV, SECRET)],
    );
    context(cfg)
}

/// Starts the hook component (receiver and applier) and waits until the port accepts.
async fn start_receiver(ctx: &Context) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(hooks::run(ctx.clone(), stop.clone()));
    let addr = ctx.config.hooks.as_ref().unwrap().listen;
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(up, "the receiver did not start listening on {addr}");
    stop
}

fn url(ctx: &Context) -> String {
    format!(
        "http://127.0.0.1:{}/okta/events",
        ctx.config.hooks.as_ref().unwrap().listen.port()
    )
}

fn inbox_rows(ctx: &Context) -> Vec<(String, i64)> {
    ctx.store.read_blocking(inbox::results).unwrap()
}

fn inbox_total(ctx: &Context) -> i64 {
    inbox_rows(ctx).iter().map(|(_, n)| n).sum()
}

fn all_failures(ctx: &Context) -> Vec<Failure> {
    ctx.store.read_blocking(failures::list_all).unwrap()
}

fn open_failures(ctx: &Context) -> Vec<Failure> {
    ctx.store.read_blocking(failures::list_unresolved).unwrap()
}

/// Registers the hook through the API module (what `hooks register` does), verified.
async fn register(ctx: &Context, failures_only: bool) -> String {
    let secret = ctx.config.hooks.as_ref().unwrap().secret.clone();
    let body = hooks::api::hook_body(&url(ctx), &secret, failures_only);
    let h = hooks::api::create_or_replace(&ctx.okta, None, &body)
        .await
        .unwrap();
    hooks::api::lifecycle(&ctx.okta, &h.id, "activate")
        .await
        .unwrap();
    let v = hooks::api::lifecycle(&ctx.okta, &h.id, "verify")
        .await
        .unwrap();
    assert!(v.is_verified());
    h.id
}

/// Polls until the System Log is caught up.
async fn poll_all(ctx: &Context) -> poller::PollOutcome {
    let mut total = poller::PollOutcome::default();
    loop {
        let o = poller::poll_once(ctx).await.unwrap();
        total.events += o.events;
        total.duplicates += o.duplicates;
        total.opened += o.opened;
        total.resolved += o.resolved;
        if !o.backlog {
            return total;
        }
    }
}

async fn deliveries_done(sim: &OktaSim) {
    assert!(
        eventually(Duration::from_secs(15), || sim.pending_hook_events() == 0
            && sim.hook_deliveries_idle())
        .await,
        "the simulator did not finish delivering"
    );
}

fn delivery(events: Vec<Value>) -> Value {
    json!({"eventType": "com.okta.event_hook", "eventId": "d-1", "data": {"events": events}})
}

fn push_failure_event(uuid: &str, app: &str, user: &str, published: &str) -> Value {
    json!({
        "uuid": uuid, "published": published, "eventType": "application.provision.user.push",
        "outcome": {"result": "FAILURE", "reason": "Unable to connect to the remote server."},
        "target": [
            {"id": app, "type": "AppInstance", "displayName": "Acme"},
            {"id": user, "type": "User", "alternateId": format!("{user}@acme.example")}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_and_deliveries_are_authenticated_and_bad_requests_store_nothing() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = hook_ctx(&sim, dir.path(), free_port(), None);
    let stop = start_receiver(&ctx).await;
    let http = http_client();
    let u = url(&ctx);

    // Okta's verification: the challenge comes back as {"verification": ...}.
    let r = http
        .get(&u)
        .header("X-Okta-Verification-Challenge", "c0ffee-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"verification": "c0ffee-42"})
    );
    let r = http
        .get(&u)
        .header("X-Okta-Verification-Challenge", "c")
        .header("Authorization", "Bearer wrong-wrong-wrong-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(http.get(&u).send().await.unwrap().status(), 400);

    let good = delivery(vec![push_failure_event(
        "e-1",
        "0oaX",
        "00u1",
        "2026-11-20T10:00:00.000Z",
    )]);
    // Missing and wrong secrets: 401, nothing stored, and the answer never echoes a secret.
    for auth in [None, Some("Bearer hook-secret-0123456789abcdeX"), Some("")] {
        let mut rb = http.post(&u).json(&good);
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("hook-secret"), "{body}");
    }
    assert_eq!(inbox_total(&ctx), 0);

    // Oversize (declared and streamed), malformed JSON, wrong shape: 4xx, nothing stored.
    let big = delivery(
        (0..400)
            .map(|i| {
                push_failure_event(&format!("big-{i}"), "0oaX", "00u1", "2026-11-20T10:00:00Z")
            })
            .collect(),
    );
    let r = http
        .post(&u)
        .header("Authorization", SECRET)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        chunked_post(&ctx, 20 * 8192).await,
        413,
        "a body without Content-Length is bounded too"
    );
    for bad in [
        "{not json".to_string(),
        "{\"data\":{}}".to_string(),
        "{\"data\":{\"events\":[{\"eventType\":\"x\"}]}}".to_string(),
    ] {
        let r = http
            .post(&u)
            .header("Authorization", SECRET)
            .header("Content-Type", "application/json")
            .body(bad.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let why: Value = r.json().await.unwrap();
        assert!(why["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(inbox_total(&ctx), 0, "a refused request stored something");

    // The right secret: 200, stored, applied into a failure.
    let r = http
        .post(&u)
        .header("Authorization", SECRET)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(eventually(Duration::from_secs(5), || open_failures(&ctx).len() == 1).await);
    let f = &open_failures(&ctx)[0];
    assert_eq!(
        (f.app_id.as_str(), f.user_id.as_str(), f.operation),
        ("0oaX", "00u1", Operation::Create)
    );
    let m = &ctx.metrics;
    let get = |r: &str| {
        m.get("provwatch_hook_requests_total", &[("result", r)])
            .unwrap_or(0.0)
    };
    assert_eq!(get("unauthorized"), 4.0);
    assert_eq!(get("too_large"), 2.0);
    assert_eq!(get("malformed"), 4.0);
    assert_eq!(get("accepted"), 1.0);
    assert_eq!(get("verification"), 1.0);
    stop.cancel();
}

/// POSTs `len` bytes with `Transfer-Encoding: chunked` (no Content-Length) over a raw socket;
/// returns the status.
async fn chunked_post(ctx: &Context, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ctx.config.hooks.as_ref().unwrap().listen;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /okta/events HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 8192];
    let mut sent = 0;
    while sent < len {
        // The server may answer and close before the whole body is sent.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
            || s.write_all(&chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_reordered_deliveries_and_the_poll_apply_each_event_once() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = hook_ctx(&sim, dir.path(), free_port(), None);
    let stop = start_receiver(&ctx).await;
    register(&ctx, false).await;
    let app = sim.add_app("Acme CRM");
    sim.set_hook_delivery(HookDeliveryKnobs {
        duplicate: true,
        reorder: true,
        seed: 7,
        hold: true,
        batch_size: 3,
    });
    // Ten users fail their create push; the first five are then pushed successfully.
    sim.set_downstream(&app, Downstream::Down);
    let users: Vec<String> = (0..10)
        .map(|i| {
            let u = sim.add_user(&format!("u{i}@acme.example"));
            sim.assign(&app, &u);
            u
        })
        .collect();
    sim.set_downstream(&app, Downstream::Healthy);
    for u in &users[..5] {
        let au = ctx.okta.get_app_user(&app, u).await.unwrap();
        let body = json!({"credentials": au.credentials, "profile": au.profile});
        ctx.okta.update_app_user(&app, u, &body).await.unwrap();
    }
    sim.release_hook_deliveries();
    deliveries_done(&sim).await;
    assert!(
        eventually(Duration::from_secs(5), || ctx
            .store
            .read_blocking(inbox::pending_count)
            .unwrap()
            == 0)
        .await
    );
    // Every delivery was sent twice; each event is in the inbox once.
    let delivered: usize = sim
        .hook_deliveries()
        .iter()
        .map(|d| d.event_uuids.len())
        .sum();
    assert!(delivered >= 2 * 15, "{delivered}");
    assert_eq!(inbox_total(&ctx), 15);

    let check = |ctx: &Context| {
        let all = all_failures(ctx);
        assert_eq!(all.len(), 10, "{all:#?}");
        for f in &all {
            let i = users.iter().position(|u| *u == f.user_id).unwrap();
            let want = if i < 5 { State::Resolved } else { State::Open };
            assert_eq!(f.state, want, "user {i}");
        }
    };
    // Reordering may deliver a success before its failure; then the poll, reading the log in
    // order, settles it. After the poll the result is exactly the truth, each change once.
    let polled = poll_all(&ctx).await;
    check(&ctx);
    let detected: i64 = ctx
        .store
        .read_blocking(|tx| {
            Ok(all_failures_history(tx)?
                .into_iter()
                .filter(|k| k == "detected" || k == "reopened")
                .count() as i64)
        })
        .unwrap();
    assert_eq!(detected, 10, "a failure was detected or reopened twice");
    // The poll found every failure already applied by hook.
    assert!(polled.duplicates >= 10, "{polled:?}");
    assert_eq!(polled.opened, 0, "{polled:?}");
    // Polling again, and the whole delivery again, change nothing.
    poll_all(&ctx).await;
    check(&ctx);
    stop.cancel();
}

fn all_failures_history(
    tx: &okta_provwatch::store::Tx<'_>,
) -> Result<Vec<String>, okta_provwatch::store::StoreError> {
    let mut kinds = Vec::new();
    for f in failures::list_all(tx)? {
        for h in okta_provwatch::store::history::list(tx, f.id)? {
            kinds.push(h.kind.as_str().to_string());
        }
    }
    Ok(kinds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_receiver_verifies_and_accepts_deliveries() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hooks_tls");
    let ctx = hook_ctx(&sim, dir.path(), free_port(), Some(&fixtures));
    let stop = start_receiver(&ctx).await;
    let cert =
        reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("ca.pem")).unwrap()).unwrap();
    let http = http_builder().add_root_certificate(cert).build().unwrap();
    let u = format!(
        "https://localhost:{}/okta/events",
        ctx.config.hooks.as_ref().unwrap().listen.port()
    );
    let r = http
        .get(&u)
        .header("X-Okta-Verification-Challenge", "tls-challenge")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["verification"],
        "tls-challenge"
    );
    let r = http
        .post(&u)
        .header("Authorization", SECRET)
        .json(&delivery(vec![push_failure_event(
            "t-1",
            "0oaT",
            "00u9",
            "2026-11-20T10:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(eventually(Duration::from_secs(5), || open_failures(&ctx).len() == 1).await);
    // Plain HTTP to the TLS port gets no answer a client could take for Okta's.
    let plain = http_client()
        .post(u.replace("https://localhost", "http://127.0.0.1"))
        .header("Authorization", SECRET)
        .json(&delivery(vec![]))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    stop.cancel();
}

/// Runs the binary (the receiver in this process must keep serving meanwhile: it answers the
/// verification the command triggers).
async fn cli(config: &Path, args: &[&str], sim: &OktaSim) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env(TOKEN_ENV, sim.api_token())
        .env(SECRET_ENV, SECRET)
        .env_remove("OKTA_PROVWATCH_CONFIG")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_register_status_remove_against_the_simulator() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let port = free_port();
    let toml = toml_for(&sim, dir.path(), port, None);
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, &toml).unwrap();
    let ctx = hook_ctx(&sim, dir.path(), port, None);
    let stop = start_receiver(&ctx).await;
    let u = url(&ctx);

    let out = cli(&cfg_path, &["hooks", "register", "--url", &u], &sim).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("verified"), "{stdout}");
    let hooks_now = sim.event_hooks();
    assert_eq!(hooks_now.len(), 1);
    let h = &hooks_now[0];
    assert_eq!(h["status"], "ACTIVE");
    assert_eq!(h["verificationStatus"], "VERIFIED");
    assert_eq!(h["channel"]["config"]["uri"], u.as_str());
    assert!(!h.to_string().contains("hook-secret"));
    let items: Vec<&str> = h["events"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(items, hooks::event_types());

    // Registering again replaces ours instead of adding a second hook.
    let out = cli(&cfg_path, &["hooks", "register", "--url", &u], &sim).await;
    assert!(out.status.success());
    assert_eq!(sim.event_hooks().len(), 1);

    // A failure pushed by the hook shows as a delivery in status.
    let app = sim.add_app("Acme CRM");
    sim.set_downstream(&app, Downstream::Down);
    let ann = sim.add_user("ann@acme.example");
    sim.assign(&app, &ann);
    deliveries_done(&sim).await;
    assert!(eventually(Duration::from_secs(5), || open_failures(&ctx).len() == 1).await);
    let out = cli(&cfg_path, &["hooks", "status", "--json"], &sim).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["hook"]["status"], "ACTIVE");
    assert!(!st["deliveries"].as_array().unwrap().is_empty(), "{st}");
    assert!(st["events"]["applied"].as_i64().unwrap() >= 1, "{st}");

    let out = cli(&cfg_path, &["hooks", "remove"], &sim).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sim.event_hooks().is_empty());
    let out = cli(&cfg_path, &["hooks", "status"], &sim).await;
    assert!(!out.status.success(), "status without a hook is not OK");
    assert!(String::from_utf8_lossy(&out.stdout).contains("none in this org"));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_raise_the_health_alert_and_a_delivery_clears_it() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = hook_ctx(&sim, dir.path(), free_port(), None);
    let stop = start_receiver(&ctx).await;
    let id = register(&ctx, false).await;
    ctx.store
        .write_blocking(move |tx| {
            okta_provwatch::store::meta::set(tx, hooks::health::HOOK_ID_KEY, &id)
        })
        .unwrap();
    poll_all(&ctx).await;
    let healthy = |ctx: &Context| {
        let h = ctx.health.snapshot();
        verdict(&h, Duration::from_secs(5), h.started_ms, ctx.now_ms())
    };
    assert_eq!(healthy(&ctx), Verdict::Healthy);

    // The receiver goes away: Okta's delivery fails twice and logs event_hook.delivery.
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let app = sim.add_app("Acme CRM");
    sim.set_downstream(&app, Downstream::Down);
    let ann = sim.add_user("ann@acme.example");
    sim.assign(&app, &ann);
    deliveries_done(&sim).await;
    assert!(sim.hook_deliveries().iter().any(|d| d.status.is_none()));
    poll_all(&ctx).await;
    match healthy(&ctx) {
        Verdict::Unhealthy { cause, reason, .. } => {
            assert_eq!(cause, Cause::HookDelivery);
            assert!(reason.contains("event hook delivery"), "{reason}");
        }
        v => panic!("{v:?}"),
    }
    // The failure itself was still found, by polling.
    assert_eq!(open_failures(&ctx).len(), 1);

    // Back up: the next delivery clears it.
    let stop = start_receiver(&ctx).await;
    let bob = sim.add_user("bob@acme.example");
    sim.assign(&app, &bob);
    deliveries_done(&sim).await;
    assert!(eventually(Duration::from_secs(5), || healthy(&ctx) == Verdict::Healthy).await);
    stop.cancel();
}

async fn scan(ctx: &Context) {
    scanner::scan_once(ctx, &CancellationToken::new())
        .await
        .unwrap();
}

fn find(ctx: &Context, app: &str, user: &str, op: Operation) -> Option<Failure> {
    let (a, u) = (app.to_string(), user.to_string());
    ctx.store
        .read_blocking(move |tx| failures::find(tx, &a, &u, op))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_page_kinds_are_detected_and_resolved() {
    let sim = start_okta().await;
    // Six scans of a few calls each: a roomy Apps bucket keeps the budget from pacing them.
    sim.set_rate_limit(okta_sim::Bucket::Apps, 6000);
    sim.set_rate_limit(okta_sim::Bucket::Other, 6000);
    let dir = temp_dir();
    let ctx = context(config(&sim, dir.path()));
    let app = sim.add_app("Acme CRM");
    let other = sim.add_app("Wiki");
    let g = sim.add_group("Sales");
    sim.assign_group(&app, &g);

    // 5. Group push: the event and the ERROR mapping are one failure with Okta's errorSummary.
    let mapping = sim.fail_group_push(&app, &g, "Group name already exists in the app");
    poll_all(&ctx).await;
    let f = find(&ctx, &app, &g, Operation::GroupPush).expect("group push failure from the log");
    assert!(f.reason.as_deref().unwrap().contains("already exists"));
    scan(&ctx).await;
    let f = find(&ctx, &app, &g, Operation::GroupPush).unwrap();
    assert_eq!(f.source, "both");
    sim.clear_group_push_error(&app, &mapping);
    scan(&ctx).await;
    assert_eq!(
        find(&ctx, &app, &g, Operation::GroupPush).unwrap().state,
        State::Resolved
    );

    // 6. A broken provisioning connection: one app-wide failure, the app's circuit opens (its
    // retries pause), and it resolves, closing the circuit, once the connection is back.
    sim.set_connection_broken(&other, true);
    scan(&ctx).await;
    let f = find(&ctx, &other, "", Operation::Integration).expect("connection failure");
    assert!(f.urgent && f.state != State::Resolved);
    let opened = ctx
        .store
        .write_blocking(|tx| {
            okta_provwatch::retry::circuit::open_for_integration_failures(
                tx,
                &ctx.config.retry,
                ctx.now_ms(),
                "test",
            )
        })
        .unwrap();
    assert_eq!(opened, vec![other.clone()]);
    sim.set_connection_broken(&other, false);
    scan(&ctx).await;
    assert_eq!(
        find(&ctx, &other, "", Operation::Integration)
            .unwrap()
            .state,
        State::Resolved
    );
    let closed = ctx
        .store
        .write_blocking(|tx| {
            okta_provwatch::retry::circuit::close_where_resolved_elsewhere(tx, ctx.now_ms(), "test")
        })
        .unwrap();
    assert_eq!(closed, vec![other.clone()]);

    // 6. Credentials Okta could not verify: app-wide, from the log.
    sim.fail_app_credentials(&app, "Invalid API token");
    // 7. A failed sync job: app-wide too (same row: one alert per app).
    sim.fail_sync_job(&other, "Provisioning sync job failed: timeout");
    poll_all(&ctx).await;
    let f = find(&ctx, &app, "", Operation::Integration).expect("credentials failure");
    assert!(f.reason.as_deref().unwrap().contains("Invalid API token"));
    let f = find(&ctx, &other, "", Operation::Integration).expect("sync job failure");
    assert_eq!(f.state, State::Open);

    // 7. An agent pool without an operational agent: an org-wide failure until it recovers.
    let pool = sim.add_agent_pool("corp-ad", "AD");
    sim.set_agent_status(&pool, AgentStatus::Disrupted);
    scan(&ctx).await;
    let pool_app = format!("agentpool:{pool}");
    let f = find(&ctx, &pool_app, "", Operation::Integration).expect("agent pool failure");
    assert!(f.reason.as_deref().unwrap().contains("corp-ad"));
    sim.set_agent_status(&pool, AgentStatus::Operational);
    scan(&ctx).await;
    assert_eq!(
        find(&ctx, &pool_app, "", Operation::Integration)
            .unwrap()
            .state,
        State::Resolved
    );

    // 8. The legacy success signal alone resolves a failed create.
    sim.set_downstream(&other, Downstream::Down);
    let ann = sim.add_user("ann@acme.example");
    sim.assign(&other, &ann);
    poll_all(&ctx).await;
    assert_eq!(
        find(&ctx, &other, &ann, Operation::Create).unwrap().state,
        State::Open
    );
    sim.push_log_event(json!({
        "uuid": "legacy-1", "published": okta_sim_now(&sim),
        "eventType": "app.user_management.push_new_user_success",
        "outcome": {"result": "SUCCESS"},
        "target": [
            {"id": other, "type": "AppInstance", "displayName": "Wiki"},
            {"id": ann, "type": "User", "alternateId": "ann@acme.example"}
        ]
    }));
    poll_all(&ctx).await;
    assert_eq!(
        find(&ctx, &other, &ann, Operation::Create).unwrap().state,
        State::Resolved
    );
}

fn okta_sim_now(sim: &OktaSim) -> String {
    (sim.now() + chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
