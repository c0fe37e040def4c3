//! Detection benchmarks (`cargo bench --bench detect`):
//! 1. events classified per second on one core (JSON → `LogEvent` → observation);
//! 2. catching up a 24 h backlog of 100,000 events from the simulator over real HTTP: the
//!    number of Okta requests used against the minimum possible (100 pages of 1,000), and the
//!    end-to-end rate including SQLite commits.

use okta_provwatch::clock::Clock;
use okta_provwatch::config::{Config, Env};
use okta_provwatch::context::Context;
use okta_provwatch::detect::classify::{classify, Classified};
use okta_provwatch::detect::poller;
use okta_provwatch::okta::types::LogEvent;
use okta_sim::{Bucket, OktaSim};
use serde_json::{json, Value};
use std::time::Instant;

const TYPES: [&str; 6] = [
    "application.provision.user.push",
    "application.provision.user.push_profile",
    "application.provision.user.deactivate",
    "application.integration.rate_limit_exceeded",
    "application.provision.user.sync",
    "user.session.start",
];

/// An event of one of `types`' kinds.
fn event_of(types: &[&str], i: usize, published: &str) -> Value {
    let t = types[i % types.len()];
    json!({
        "uuid": format!("bench-{i:08}"),
        "published": published,
        "eventType": t,
        "version": "0",
        "severity": "WARN",
        "displayMessage": "Push new user to external application",
        "outcome": {"result": if i % 3 == 0 { "SUCCESS" } else { "FAILURE" }, "reason": "Bad Request. Errors reported by remote server: department is required"},
        "actor": {"id": "0oa000000000000000", "type": "PublicClientApp", "alternateId": "Okta", "displayName": "Okta"},
        "target": [
            {"id": format!("0oa{:017}", i % 40), "type": "AppInstance", "alternateId": "App", "displayName": "App"},
            {"id": format!("00u{:017}", i % 20_000), "type": "User", "alternateId": format!("user{}@acme.example", i % 20_000), "displayName": "User"}
        ],
        "debugContext": {"debugData": {"requestId": "abc", "threatSuspected": "false"}}
    })
}

fn bench_classify() {
    let n = 200_000;
    let published = "2026-11-23T10:00:00.000Z";
    let raw: Vec<String> = (0..n)
        .map(|i| event_of(&TYPES, i, published).to_string())
        .collect();
    let start = Instant::now();
    let mut failures = 0usize;
    for r in &raw {
        let ev: LogEvent = serde_json::from_str(r).expect("valid event");
        if let Classified::Observation(o) = classify(&ev) {
            failures += o.failed as usize;
        }
    }
    let el = start.elapsed();
    println!(
        "classify: {n} events in {:.3} s on one thread = {:.0} events/s ({failures} failures)",
        el.as_secs_f64(),
        n as f64 / el.as_secs_f64()
    );
}

async fn bench_backlog() {
    let sim = OktaSim::start().await.expect("sim");
    // Okta's largest published /logs limit; the daemon may use half of it.
    sim.set_rate_limit(Bucket::Logs, 6000);
    let n = 100_000;
    let now = sim.now();
    for i in 0..n {
        // Spread over the last 24 hours.
        let published = now - chrono::Duration::milliseconds(((n - i) as i64) * 864);
        // Only types the poller's filter asks for, so every event must be fetched.
        sim.push_log_event(event_of(
            &TYPES[..5],
            i,
            &published.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "[okta]\norg_url = \"{}\"\napi_token_env = \"T\"\n[state]\npath = \"{}\"\n",
        sim.base_url(),
        dir.path().join("state.db").display()
    );
    let config =
        Config::from_toml_str(&toml, &Env::from_map([("T", sim.api_token())])).expect("config");
    let ctx = Context::new(config, Clock::system()).expect("context");
    let start = Instant::now();
    let mut polls = 0;
    loop {
        polls += 1;
        if !poller::poll_once(&ctx).await.expect("poll").backlog {
            break;
        }
    }
    let el = start.elapsed();
    let requests = sim
        .requests()
        .iter()
        .filter(|r| r.bucket == Bucket::Logs)
        .count();
    println!(
        "backlog: {n} events (24 h) caught up with {requests} Okta requests ({polls} polls; minimum possible 100 pages + 1 empty page to know it is caught up) in {:.2} s = {:.0} events/s end to end, 429s served: {}",
        el.as_secs_f64(),
        n as f64 / el.as_secs_f64(),
        sim.stats().rate_limited
    );
}

fn main() {
    // `cargo test --benches` runs bench binaries with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("detect bench: run with `cargo bench --bench detect`");
        return;
    }
    bench_classify();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(bench_backlog());
}
