//! Budget benchmarks (`cargo bench --bench budget`), the "Measured" list of issue 11: the whole
//! daemon (`daemon::start`: poller, scanner, retry worker, alerting) against the simulator over
//! loopback, on tokio's paused clock, which the simulator follows: an hour of Okta windows
//! passes in seconds of wall time, and every figure below is in that virtual time unless it
//! says "wall".
//!
//! 1. `scan`: 30 apps x 5,000 users scanned while 200 failures need retries, apps bucket
//!    100/min, share 0.5: first retry after due, retries/min, when the scan completes, 429s,
//!    requests per retry (mean, max).
//! 2. `storm`: 10,000 failures; retries/min against `per_minute` 600 and 60 with ample budget,
//!    and budget-bound (apps bucket 100/min) as a percentage of the apps budget.
//! 3. `stop`: stop (SIGTERM's path) with 200 retries waiting for budget: time to exit, and
//!    re-push POSTs sent after the stop.
//! 4. `rss`: the process's resident memory idle and at its peak (it includes the simulator and
//!    its org, so it is an upper bound for the daemon).
//!
//! `BUDGET_BENCH_SCALE` (default 1.0) scales the org and the storm down for a quick run;
//! `BUDGET_BENCH_ONLY=scan,storm,...` picks scenarios.

use okta_provwatch::clock::Clock;
use okta_provwatch::config::{Config, Env};
use okta_provwatch::context::Context;
use okta_provwatch::daemon;
use okta_provwatch::detect::scanner::LAST_SCAN_KEY;
use okta_provwatch::store::{failures, meta};
use okta_sim::{Bucket, Downstream, OktaSim, RequestRecord};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn scale() -> f64 {
    std::env::var("BUDGET_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(1.0)
}

fn wanted(name: &str) -> bool {
    match std::env::var("BUDGET_BENCH_ONLY") {
        Ok(v) => v.split(',').any(|s| s.trim() == name),
        Err(_) => true,
    }
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(1)
}

/// `VmRSS` and `VmHWM` (peak) of this process, in MB.
fn rss_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn config(sim: &OktaSim, dir: &std::path::Path, sections: &str) -> Config {
    let toml = format!(
        "[okta]\norg_url = \"{}\"\napi_token_env = \"T\"\nrate_limit_share = 0.5\n[state]\npath = \"{}\"\n{sections}",
        sim.base_url(),
        dir.join("state.db").display()
    );
    Config::from_toml_str(&toml, &Env::from_map([("T", sim.api_token())])).expect("config")
}

fn is_retry_post(r: &RequestRecord) -> bool {
    r.method == "POST" && r.path.starts_with("/api/v1/apps/") && r.path.contains("/users/")
}

/// The app user a request is about (`/api/v1/apps/{a}/users/{u}`), if any.
fn app_user_of(r: &RequestRecord) -> Option<(String, String)> {
    let path = r.path.split('?').next()?;
    let rest = path.strip_prefix("/api/v1/apps/")?;
    let mut parts = rest.split('/');
    let app = parts.next()?;
    (parts.next()? == "users").then_some(())?;
    let user = parts.next()?;
    Some((app.to_owned(), user.to_owned()))
}

/// POSTs per minute between the first and the last one.
fn per_minute(posts: &[&RequestRecord]) -> f64 {
    if posts.len() < 2 {
        return f64::NAN;
    }
    let first = posts.first().unwrap().at;
    let last = posts.last().unwrap().at;
    let mins = (last - first).num_milliseconds() as f64 / 60_000.0;
    (posts.len() - 1) as f64 / mins.max(1e-9)
}

/// Creates `n` failures: users assigned to `app` while its downstream is down, then healthy
/// again so that a retry can succeed.
fn fail_pushes(sim: &OktaSim, app: &str, n: usize, tag: &str) -> Vec<String> {
    // A transient reason (a 5xx from the app): retried with backoff. A connection error
    // ("Unable to connect") would be app-wide since the retry classes, and rightly open the
    // app's circuit after three users, so only probes would run: not what a storm measures.
    let logins: Vec<String> = (0..n).map(|i| format!("{tag}{i}@acme.example")).collect();
    sim.set_downstream(
        app,
        Downstream::Reject {
            logins: logins.clone(),
            reason: "Internal Server Error (500). The remote server is temporarily unavailable"
                .into(),
        },
    );
    let users: Vec<String> = logins
        .iter()
        .map(|login| {
            let u = sim.add_user(login);
            sim.assign(app, &u);
            u
        })
        .collect();
    sim.set_downstream(app, Downstream::Healthy);
    users
}

async fn wait_for(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done().await {
        if start.elapsed() > limit {
            println!("  (gave up waiting for {what} after {limit:?})");
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    start.elapsed()
}

async fn scan_with_retries() {
    let wall = std::time::Instant::now();
    let sim = OktaSim::start().await.expect("sim");
    sim.set_rate_limit(Bucket::Apps, 100);
    let per_app = scaled(5_000);
    let mut apps = Vec::new();
    for a in 0..30 {
        let app = sim.add_app(&format!("App {a:02}"));
        for i in 0..per_app {
            let u = sim.add_user(&format!("a{a}u{i}@acme.example"));
            sim.assign(&app, &u);
        }
        apps.push(app);
    }
    // The healthy assignments' events fall outside the first poll's look-back.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let mut failing = Vec::new();
    for app in apps.iter().take(10) {
        for u in fail_pushes(&sim, app, 20, &format!("f{app}-")) {
            failing.push((app.clone(), u));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &sim,
        dir.path(),
        "[detect]\npoll_interval = \"10s\"\ninitial_lookback = \"5m\"\nscan_schedule = \"0 0 */6 * * *\"\nscan_share = 0.5\n[retry]\nper_minute = 60\ninitial_backoff = \"1m\"\nmax_backoff = \"10m\"\n",
    );
    let initial_backoff = cfg.retry.initial_backoff;
    let ctx = Context::new(cfg, Clock::tokio()).expect("context");
    let sim_t0 = sim.now();
    let ctx_t0 = ctx.now_ms();
    let stop = CancellationToken::new();
    let running = daemon::start(ctx.clone(), stop.clone());
    let mut scan_done_after = None;
    let started = Instant::now();
    let took = wait_for(
        "the scan and every retry",
        Duration::from_secs(4 * 3600),
        async || {
            if scan_done_after.is_none() {
                let done = ctx
                    .store
                    .read(|tx| meta::get(tx, LAST_SCAN_KEY))
                    .await
                    .ok()
                    .flatten();
                if done.is_some() {
                    scan_done_after = Some(started.elapsed());
                }
            }
            let open = ctx
                .store
                .read(failures::list_unresolved)
                .await
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            scan_done_after.is_some() && open == 0
        },
    )
    .await;
    running.stop(Duration::from_secs(30)).await;
    let all = ctx.store.read(failures::list_all).await.expect("failures");
    let reqs = sim.requests();
    let posts: Vec<&RequestRecord> = reqs.iter().filter(|r| is_retry_post(r)).collect();
    // First retry of each failure after it was due (first seen + initial backoff).
    let mut first_post: HashMap<(String, String), chrono::DateTime<chrono::Utc>> = HashMap::new();
    for p in &posts {
        if let Some(k) = app_user_of(p) {
            first_post.entry(k).or_insert(p.at);
        }
    }
    let mut late: Vec<f64> = all
        .iter()
        .filter_map(|f| {
            let at = first_post.get(&(f.app_id.clone(), f.user_id.clone()))?;
            let post_ms = ctx_t0 + (*at - sim_t0).num_milliseconds();
            let due = f.first_seen + initial_backoff.as_millis() as i64;
            Some((post_ms - due) as f64 / 1000.0)
        })
        .collect();
    late.sort_by(|a, b| a.total_cmp(b));
    // Requests per retry: every apps-bucket call about a failing app user, per POST.
    let mut calls: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for r in reqs.iter().filter(|r| r.bucket == Bucket::Apps) {
        if let Some(k) = app_user_of(r) {
            let e = calls.entry(k).or_default();
            e.0 += 1;
            e.1 += is_retry_post(r) as usize;
        }
    }
    let ratios: Vec<f64> = calls
        .values()
        .filter(|(_, p)| *p > 0)
        .map(|(c, p)| *c as f64 / *p as f64)
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
    let max = ratios.iter().cloned().fold(0.0, f64::max);
    let pct = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "scan: 30 apps x {per_app} users, {} failures, apps 100/min share 0.5 scan_share 0.5 per_minute 60\n  \
         scan completed after {:.1} min; all resolved after {:.1} min; 429s: {}\n  \
         first retry after due (s): min {:.1} median {:.1} max {:.1} ({} of {} retried)\n  \
         retries/min {:.1} ({} POSTs); requests per retry: mean {:.2} max {:.0}\n  \
         scan pages: {}; wall {:.1} s",
        failing.len(),
        scan_done_after.map_or(f64::NAN, |d| d.as_secs_f64() / 60.0),
        took.as_secs_f64() / 60.0,
        sim.stats().rate_limited,
        pct(0.0),
        pct(0.5),
        pct(1.0),
        late.len(),
        failing.len(),
        per_minute(&posts),
        posts.len(),
        mean,
        max,
        reqs.iter().filter(|r| r.path.contains("/users?limit=")).count(),
        wall.elapsed().as_secs_f64(),
    );
}

async fn storm(per_minute_cfg: u32, apps_limit: u32) {
    let wall = std::time::Instant::now();
    let sim = OktaSim::start().await.expect("sim");
    sim.set_rate_limit(Bucket::Apps, apps_limit);
    let app = sim.add_app("Storm");
    let n = scaled(10_000);
    fail_pushes(&sim, &app, n, "s");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &sim,
        dir.path(),
        &format!(
            "[detect]\npoll_interval = \"10s\"\ninitial_lookback = \"1h\"\nscan_schedule = \"0 0 */6 * * *\"\n[retry]\nper_minute = {per_minute_cfg}\ninitial_backoff = \"1m\"\nmax_backoff = \"10m\"\n"
        ),
    );
    let ctx = Context::new(cfg, Clock::tokio()).expect("context");
    let stop = CancellationToken::new();
    let running = daemon::start(ctx.clone(), stop.clone());
    // Ten minutes of steady retrying after the first, or until every failure is retried.
    let mut first = None;
    wait_for("the storm", Duration::from_secs(6 * 3600), async || {
        let posts = sim.requests().iter().filter(|r| is_retry_post(r)).count();
        if posts > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        posts >= n || first.is_some_and(|f| f.elapsed() >= Duration::from_secs(600))
    })
    .await;
    let (_, peak) = rss_mb();
    running.stop(Duration::from_secs(30)).await;
    let reqs = sim.requests();
    let posts: Vec<&RequestRecord> = reqs.iter().filter(|r| is_retry_post(r)).collect();
    let rate = per_minute(&posts);
    let budget = apps_limit as f64 * 0.5;
    println!(
        "storm: {n} failures, per_minute {per_minute_cfg}, apps {apps_limit}/min (our budget {budget:.0}/min): \
         {rate:.1} retries/min = {:.1} % of per_minute, {:.1} % of the apps budget's calls; {} POSTs, 429s {}; peak RSS so far {peak:.1} MB; wall {:.1} s",
        100.0 * rate / per_minute_cfg as f64,
        100.0 * rate / budget,
        posts.len(),
        sim.stats().rate_limited,
        wall.elapsed().as_secs_f64(),
    );
}

async fn stop_with_retries_waiting() {
    let sim = OktaSim::start().await.expect("sim");
    sim.set_rate_limit(Bucket::Apps, 20);
    let app = sim.add_app("Slow");
    fail_pushes(&sim, &app, 200, "w");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &sim,
        dir.path(),
        "[detect]\npoll_interval = \"10s\"\ninitial_lookback = \"1h\"\nscan_schedule = \"0 0 */6 * * *\"\n[retry]\nper_minute = 600\ninitial_backoff = \"1s\"\n",
    );
    let ctx = Context::new(cfg, Clock::tokio()).expect("context");
    let stop = CancellationToken::new();
    let running = daemon::start(ctx.clone(), stop.clone());
    wait_for("retries to start", Duration::from_secs(600), async || {
        sim.requests().iter().filter(|r| is_retry_post(r)).count() >= 3
    })
    .await;
    let waiting = ctx
        .okta
        .budget()
        .snapshot()
        .iter()
        .map(|s| s.waiting)
        .sum::<usize>();
    let sim_stop = sim.now();
    let t = Instant::now();
    let wall = std::time::Instant::now();
    let clean = running.stop(Duration::from_secs(30)).await;
    let took = t.elapsed();
    let after = sim
        .requests()
        .iter()
        .filter(|r| is_retry_post(r) && r.at > sim_stop)
        .count();
    println!(
        "stop: 200 failures, apps 20/min, {waiting} requests waiting on the budget: stopped in {:.2} s (wall {:.3} s, clean: {clean}); re-push POSTs after the stop: {after}",
        took.as_secs_f64(),
        wall.elapsed().as_secs_f64()
    );
}

async fn idle_rss() {
    let sim = OktaSim::start().await.expect("sim");
    let app = sim.add_app("Quiet");
    let u = sim.add_user("q@acme.example");
    sim.assign(&app, &u);
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&sim, dir.path(), "[detect]\npoll_interval = \"60s\"\n");
    let ctx = Context::new(cfg, Clock::tokio()).expect("context");
    let stop = CancellationToken::new();
    let running = daemon::start(ctx, stop.clone());
    tokio::time::sleep(Duration::from_secs(300)).await;
    let (rss, peak) = rss_mb();
    running.stop(Duration::from_secs(30)).await;
    println!("rss: after 5 min idle (daemon + simulator in one process): {rss:.1} MB, peak so far {peak:.1} MB");
}

fn main() {
    // `cargo test --benches` runs bench binaries without --bench; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("budget bench: run with `cargo bench --bench budget`");
        return;
    }
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime")
    };
    println!(
        "budget bench, scale {} ({} cores)",
        scale(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wanted("rss") {
        rt().block_on(idle_rss());
    }
    if wanted("stop") {
        rt().block_on(stop_with_retries_waiting());
    }
    if wanted("storm") {
        rt().block_on(storm(600, 10_000));
        rt().block_on(storm(60, 10_000));
        rt().block_on(storm(600, 100));
    }
    if wanted("scan") {
        rt().block_on(scan_with_retries());
    }
    let (rss, peak) = rss_mb();
    println!("rss at the end: {rss:.1} MB, peak {peak:.1} MB");
}
