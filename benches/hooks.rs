//! Event hook benchmarks (`cargo bench --bench hooks`), over real sockets against the
//! simulator, with the whole daemon running (poller, scanner, hook receiver and applier, retry
//! worker, alerting):
//!
//! 1. a push-eligible create failure delivered by hook -> the retry worker's first `POST` of the
//!    app user reaching Okta: p50/p99 over 100 events (configured `retry.initial_backoff` of
//!    100 ms included, stated);
//! 2. an urgent failure (`application.provision.user.delete` FAILURE) delivered by hook -> its
//!    Slack alert: p50/p99 over 100 events (the urgent group wait, here 1 s, included, stated);
//! 3. 1,000 events delivered by hook (each delivery twice, reordered) *and* read by the poll:
//!    duplicates detected and wrong final states, both expected 0.

use okta_provwatch::clock::Clock;
use okta_provwatch::config::{Config, Env};
use okta_provwatch::context::Context;
use okta_provwatch::detect::poller;
use okta_provwatch::store::{failures, history, inbox};
use okta_sim::slack::FakeSlack;
use okta_sim::{Bucket, Downstream, HookDeliveryKnobs, OktaSim};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "Bearer bench-hook-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn context(sim: &OktaSim, slack: Option<&FakeSlack>, dir: &std::path::Path) -> Context {
    let port = free_port();
    let slack_section = slack
        .map(|_| "[slack]\nwebhook_url_env = \"W\"\n".to_string())
        .unwrap_or_default();
    let toml = format!(
        r#"[okta]
org_url = "{org}"
api_token_env = "T"
[state]
path = "{state}"
[detect]
poll_interval = "60s"
scan_schedule = "0 0 0 1 1 *"
[retry]
initial_backoff = "100ms"
per_minute = 6000
[alert]
group_wait = "1s"
[http]
listen = "127.0.0.1:0"
[hooks]
listen = "127.0.0.1:{port}"
path = "/okta/events"
secret_env = "S"
{slack_section}"#,
        org = sim.base_url(),
        state = dir.join("state.db").display(),
    );
    let webhook = slack.map(|s| s.webhook_url()).unwrap_or_default();
    let env = Env::from_map([
        ("T", sim.api_token()),
        ("S", SECRET.to_string()),
        ("W", webhook),
    ]);
    let config = Config::from_toml_str(&toml, &env).expect("bench config");
    Context::new(config, Clock::system()).expect("context")
}

async fn wait_port(ctx: &Context) {
    let addr = ctx.config.hooks.as_ref().unwrap().listen;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("receiver did not listen");
}

async fn register(ctx: &Context) {
    let url = format!(
        "http://127.0.0.1:{}/okta/events",
        ctx.config.hooks.as_ref().unwrap().listen.port()
    );
    let secret = ctx.config.hooks.as_ref().unwrap().secret.clone();
    let body = okta_provwatch::hooks::api::hook_body(&url, &secret, false);
    let h = okta_provwatch::hooks::api::create_or_replace(&ctx.okta, None, &body)
        .await
        .expect("create hook");
    let v = okta_provwatch::hooks::api::lifecycle(&ctx.okta, &h.id, "verify")
        .await
        .expect("verify hook");
    assert!(v.is_verified());
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut d: Vec<Duration>, note: &str) {
    d.sort();
    println!(
        "{what}: n={} p50={:.0} ms p99={:.0} ms max={:.0} ms ({note})",
        d.len(),
        pct(&d, 0.5).as_secs_f64() * 1000.0,
        pct(&d, 0.99).as_secs_f64() * 1000.0,
        d.last().unwrap().as_secs_f64() * 1000.0
    );
}

async fn bench_latency() {
    let sim = OktaSim::start().await.expect("sim");
    sim.set_rate_limit(Bucket::Apps, 10_000);
    let slack = FakeSlack::start().await.expect("slack");
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&sim, Some(&slack), dir.path());
    let stop = CancellationToken::new();
    let running = okta_provwatch::daemon::start(ctx.clone(), stop.clone());
    wait_port(&ctx).await;
    register(&ctx).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // 1. create failure by hook -> first retry POST.
    let n = 100;
    let mut started = Vec::new();
    let app = sim.add_app("Bench CRM");
    for i in 0..n {
        let u = sim.add_user(&format!("b{i}@acme.example"));
        sim.set_downstream(&app, Downstream::Down);
        let t = Instant::now();
        sim.assign(&app, &u);
        // The retry succeeds: no circuit opens in the middle of the run.
        sim.set_downstream(&app, Downstream::Healthy);
        started.push((format!("/api/v1/apps/{app}/users/{u}"), t, None::<Duration>));
        // One event a second: below the worker's sustained rate (8 retries at once, each
        // holding its slot for the 5 s settle: 1.6/s), so this measures latency, not a queue.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            poll_posts(&sim, &mut started);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while started.iter().any(|s| s.2.is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        poll_posts(&sim, &mut started);
    }
    let missing = started.iter().filter(|s| s.2.is_none()).count();
    report(
        "hook -> first retry POST",
        started.iter().filter_map(|s| s.2).collect(),
        &format!("includes retry.initial_backoff = 100 ms; {missing} not retried within 60 s"),
    );

    // 2. urgent failure by hook -> Slack alert, one app each (one alert group each).
    let mut pending: Vec<(String, Instant, Option<Duration>)> = Vec::new();
    for i in 0..n {
        let label = format!("Urgent App {i:03}");
        let a = sim.add_app(&label);
        let now = sim
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let t = Instant::now();
        sim.push_log_event(json!({
            "uuid": format!("urgent-{i}"), "published": now,
            "eventType": "application.provision.user.delete",
            "outcome": {"result": "FAILURE", "reason": "Unable to connect to the remote server."},
            "target": [
                {"id": a, "type": "AppInstance", "alternateId": label, "displayName": label},
                {"id": format!("00uurgent{i:011}"), "type": "User", "alternateId": format!("gone{i}@acme.example")}
            ]
        }));
        pending.push((label, t, None));
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            poll_slack(&slack, &mut pending);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while pending.iter().any(|s| s.2.is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        poll_slack(&slack, &mut pending);
    }
    let missing = pending.iter().filter(|s| s.2.is_none()).count();
    report(
        "hook -> urgent Slack alert",
        pending.iter().filter_map(|s| s.2).collect(),
        &format!("urgent groups do not wait; {missing} not alerted within 60 s"),
    );
    stop.cancel();
    running.stop(Duration::from_secs(20)).await;
}

fn poll_posts(sim: &OktaSim, started: &mut [(String, Instant, Option<Duration>)]) {
    let reqs = sim.requests();
    for s in started.iter_mut().filter(|s| s.2.is_none()) {
        if reqs
            .iter()
            .any(|r| r.method == "POST" && r.path.starts_with(&s.0))
        {
            s.2 = Some(s.1.elapsed());
        }
    }
}

fn poll_slack(slack: &FakeSlack, pending: &mut [(String, Instant, Option<Duration>)]) {
    let msgs: Vec<String> = slack
        .messages()
        .iter()
        .map(|m| m.body.to_string())
        .collect();
    for p in pending.iter_mut().filter(|p| p.2.is_none()) {
        if msgs.iter().any(|m| m.contains(&p.0)) {
            p.2 = Some(p.1.elapsed());
        }
    }
}

async fn bench_both_paths() {
    let sim = OktaSim::start().await.expect("sim");
    sim.set_rate_limit(Bucket::Logs, 6000);
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&sim, None, dir.path());
    let stop = CancellationToken::new();
    tokio::spawn(okta_provwatch::hooks::run(ctx.clone(), stop.clone()));
    wait_port(&ctx).await;
    register(&ctx).await;
    sim.set_hook_delivery(HookDeliveryKnobs {
        duplicate: true,
        reorder: true,
        seed: 14,
        hold: true,
        batch_size: 25,
    });
    // 600 create failures, then 400 successes for the first 400 users: 1,000 events.
    let app = sim.add_app("Both Paths");
    let base = sim.now();
    let ev = |i: usize, ok: bool, ms: i64| {
        json!({
            "uuid": format!("both-{}-{i}", if ok { "ok" } else { "ko" }),
            "published": (base + chrono::Duration::milliseconds(ms)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventType": "application.provision.user.push",
            "outcome": if ok { json!({"result": "SUCCESS"}) } else { json!({"result": "FAILURE", "reason": "Unable to connect to the remote server."}) },
            "target": [
                {"id": app, "type": "AppInstance", "displayName": "Both Paths"},
                {"id": format!("00uboth{i:013}"), "type": "User", "alternateId": format!("u{i}@acme.example")}
            ]
        })
    };
    for i in 0..600 {
        sim.push_log_event(ev(i, false, i as i64));
    }
    for i in 0..400 {
        sim.push_log_event(ev(i, true, 1_000 + i as i64));
    }
    let t = Instant::now();
    sim.release_hook_deliveries();
    while !(sim.pending_hook_events() == 0 && sim.hook_deliveries_idle()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while ctx.store.read(inbox::pending_count).await.unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hook_time = t.elapsed();
    loop {
        if !poller::poll_once(&ctx).await.expect("poll").backlog {
            break;
        }
    }
    let posts: usize = sim.hook_deliveries().len();
    let (rows, detections, resolved, wrong) = ctx
        .store
        .read(move |tx| {
            let all = failures::list_all(tx)?;
            let mut detections = 0;
            let mut wrong = 0;
            for f in &all {
                detections += history::list(tx, f.id)?
                    .iter()
                    .filter(|h| h.kind.is_detection())
                    .count();
                let i: usize = f.user_id.trim_start_matches("00uboth").parse().unwrap();
                let want_resolved = i < 400;
                if want_resolved != (f.state == okta_provwatch::domain::State::Resolved) {
                    wrong += 1;
                }
            }
            let resolved = all
                .iter()
                .filter(|f| f.state == okta_provwatch::domain::State::Resolved)
                .count();
            Ok((all.len(), detections, resolved, wrong))
        })
        .await
        .unwrap();
    println!(
        "both paths: 1000 events, {posts} hook POSTs (every delivery twice, reordered), applied by hook in {:.2} s, then polled: {rows} failures, {} duplicate detections, {resolved} resolved, {wrong} wrong final states",
        hook_time.as_secs_f64(),
        detections.saturating_sub(rows)
    );
    stop.cancel();
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("hooks bench: run with `cargo bench --bench hooks`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        bench_latency().await;
        bench_both_paths().await;
    });
}
