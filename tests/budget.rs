//! The Okta budget over real sockets: priority classes against the simulator's buckets, the
//! scan ceiling and skipped scan runs, the prompt stop of every wait on the budget, and
//! `doctor`'s principal rate limit check.
//!
//! Rate-limit windows are 60 s, so the budget tests run on tokio's paused clock (the simulator
//! follows it), with connection reuse off as paused-time tests require.

mod common;

use common::*;
use okta_provwatch::cli::DoctorArgs;
use okta_provwatch::clock::Clock;
use okta_provwatch::cmd::doctor::{self, Status};
use okta_provwatch::detect::scanner;
use okta_provwatch::okta::{Class, ClientOptions, Credentials, OktaClient, OktaError};
use okta_provwatch::store::meta;
use okta_sim::{test_keys, Bucket, OktaSim};
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn client(sim: &OktaSim, share: f64) -> OktaClient {
    let mut o = ClientOptions::new(
        sim.base_url().parse().unwrap(),
        Credentials::ApiToken(SecretString::from(sim.api_token())),
    );
    o.clock = Clock::tokio();
    o.keep_alive = false;
    o.rate_limit_share = share;
    OktaClient::new(o).unwrap()
}

fn served(sim: &OktaSim, bucket: Bucket) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.bucket == bucket && r.status != 429)
        .count()
}

/// An org whose apps bucket is tight (20 a minute: 10 for us at share 0.5, one call every 6 s):
/// a long queue of scan pages is waiting when three retries turn up. The retries go first,
/// and nothing draws a 429.
#[tokio::test(start_paused = true)]
async fn retries_overtake_a_queue_of_scan_pages() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Apps, 20);
    let app = sim.add_app("Workday");
    let u = sim.add_user("ada@acme.example");
    sim.assign(&app, &u);
    let c = client(&sim, 0.5);
    // Learn the bucket's limit first, so the queue below is ordered by class alone.
    c.get_page_with(Class::Scan, &OktaClient::app_users_url(&app))
        .await
        .unwrap();
    let done: Arc<Mutex<Vec<(Class, Duration)>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    let spawn = |class: Class, tasks: &mut Vec<tokio::task::JoinHandle<()>>| {
        let c = c.clone();
        let done = done.clone();
        let url = OktaClient::app_users_url(&app);
        tasks.push(tokio::spawn(async move {
            c.get_page_with(class, &url).await.unwrap();
            done.lock().unwrap().push((class, start.elapsed()));
        }));
    };
    for _ in 0..8 {
        spawn(Class::Scan, &mut tasks);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..3 {
        spawn(Class::Retry, &mut tasks);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    let retries: Vec<usize> = done
        .iter()
        .enumerate()
        .filter(|(_, (c, _))| *c == Class::Retry)
        .map(|(i, _)| i)
        .collect();
    // At most one scan page (already on its way) before each retry; the floor may let one
    // more scan page through in the window, never more.
    assert!(
        retries.iter().all(|i| *i <= 4),
        "retries finished at positions {retries:?}: {done:?}"
    );
    assert_eq!(sim.stats().rate_limited, 0, "Okta answered 429");
    assert!(sim.stats().max_per_window[&Bucket::Apps] <= 10);
}

/// A large org scanned on a schedule much shorter than the scan: the scan stays under its
/// ceiling (`detect.scan_share` of the daemon's share), completes, and the scheduled runs it
/// overlapped are skipped, counted in the metric and in the store for `status`.
#[tokio::test(start_paused = true)]
async fn a_long_scan_stays_under_its_ceiling_and_skips_overlapped_runs() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Apps, 20);
    let dir = temp_dir();
    let toml = minimal_toml(
        sim.base_url().as_str(),
        dir.path(),
        "rate_limit_share = 0.5",
        "[detect]\nscan_schedule = \"*/20 * * * * *\"\nscan_share = 0.5\n",
    );
    let config = parse_config(&toml, &sim.api_token(), &[]);
    assert_eq!(config.detect.scan_share, 0.5);
    let ctx = context_on(config, Clock::tokio());
    // 2 apps x 1,200 users: 3 pages each + the app list = 7 calls; at 5 a window (half of
    // our 10) the scan needs more than one window.
    for a in 0..2 {
        let app = sim.add_app(&format!("App {a}"));
        for i in 0..1_200 {
            let u = sim.add_user(&format!("u{a}-{i}@acme.example"));
            sim.assign(&app, &u);
        }
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(scanner::run(ctx.clone(), stop.clone()));
    let start = Instant::now();
    loop {
        let done = ctx
            .store
            .read(|tx| meta::get(tx, scanner::LAST_SCAN_KEY))
            .await
            .unwrap();
        if done.is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the scan did not complete"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let took = start.elapsed();
    stop.cancel();
    task.await.unwrap();
    assert!(took > Duration::from_secs(60), "{took:?}");
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0);
    // The ceiling: 5 of the 20-a-minute bucket per window, whatever else is idle.
    assert!(
        stats.max_per_window[&Bucket::Apps] <= 5,
        "{:?}",
        stats.max_per_window
    );
    let skipped: u64 = ctx
        .store
        .read(|tx| meta::get(tx, scanner::TICKS_SKIPPED_KEY))
        .await
        .unwrap()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Runs every 20 s during a scan of more than a minute: at least 3 skipped.
    assert!(skipped >= 3, "skipped {skipped} in {took:?}");
    assert_eq!(
        ctx.metrics.get("provwatch_scan_ticks_skipped_total", &[]),
        Some(skipped as f64)
    );

    // `status` (another process, reading the store only) reports them, in text and JSON.
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &toml).unwrap();
    let status = |json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_okta-provwatch"));
        c.args(["status", "--config"]).arg(&path);
        if json {
            c.arg("--json");
        }
        let out = c
            .env_remove("OKTA_PROVWATCH_CONFIG")
            .env(TOKEN_ENV, sim.api_token())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = status(false);
    assert!(
        text.contains(&format!(
            "{skipped} scheduled assignment scan(s) skipped because a scan was still running"
        )),
        "{text}"
    );
    let j: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(j["scan"]["ticks_skipped"], skipped);
    assert!(j["scan"]["last_completed"].is_string(), "{j}");
}

/// SIGTERM's side of the budget: with the window spent and requests queued for the next one,
/// `stop` ends every wait at once with `Cancelled`, and nothing more reaches Okta.
#[tokio::test(start_paused = true)]
async fn stop_cancels_every_wait_at_once_and_sends_nothing_more() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Apps, 20);
    let app = sim.add_app("Workday");
    let c = client(&sim, 0.5);
    let url = OktaClient::app_users_url(&app);
    let mut tasks = Vec::new();
    for i in 0..30 {
        let c = c.clone();
        let url = url.clone();
        let class = if i % 2 == 0 {
            Class::Retry
        } else {
            Class::Scan
        };
        tasks.push(tokio::spawn(async move {
            c.get_page_with(class, &url).await.map(|_| ())
        }));
    }
    // Let the first window's calls go out (10 at most).
    tokio::time::sleep(Duration::from_secs(50)).await;
    let before = served(&sim, Bucket::Apps);
    assert!((1..=10).contains(&before), "{before}");
    let t = Instant::now();
    c.stop();
    let mut cancelled = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => {}
            Err(OktaError::Cancelled) => cancelled += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(cancelled + before, 30);
    // Nothing more goes out, even after the window resets.
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(served(&sim, Bucket::Apps), before);
    // And a request made after the stop starts nothing.
    assert!(matches!(
        c.get_page_with(Class::Poll, &url).await,
        Err(OktaError::Cancelled)
    ));
    assert_eq!(served(&sim, Bucket::Apps), before);
}

/// `doctor` runs against the simulator's principal rate limits: a share above what Okta grants
/// the token warns and says what to set; a share within it passes; an OAuth client without
/// `okta.principalRateLimits.read` gets INFO, not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_compares_the_share_with_the_principal_rate_limit() {
    let sim = start_okta().await;
    sim.set_principal_rate_limit(40, 50);
    let dir = temp_dir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, sim.api_token()).unwrap();
    let args = DoctorArgs {
        json: false,
        send_test_alert: false,
    };
    let check = |report: &doctor::Report| {
        report
            .checks
            .iter()
            .find(|c| c.name == "okta principal rate limit")
            .cloned()
            .unwrap_or_else(|| panic!("no principal rate limit check: {report:?}"))
    };
    let write = |share: &str, auth: &str| {
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            format!(
                "[okta]\norg_url = \"{}\"\n{auth}\nrate_limit_share = {share}\n[state]\npath = \"{}\"\n",
                sim.base_url(),
                state_path(dir.path()).display()
            ),
        )
        .unwrap();
        path
    };
    let ssws = format!("api_token_file = \"{}\"", token_file.display());

    let c = check(&doctor::diagnose(&write("0.5", &ssws), &args).await);
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains("40%"), "{}", c.detail);
    assert!(c.detail.contains("at most 0.40"), "{}", c.detail);
    assert!(!c.detail.contains(&sim.api_token()));

    let c = check(&doctor::diagnose(&write("0.4", &ssws), &args).await);
    assert_eq!(c.status, Status::Pass, "{c:?}");

    sim.register_oauth_client(
        "0oadoctor",
        test_keys::RSA_PUBLIC_PEM,
        &["okta.logs.read", "okta.apps.read"],
    );
    let oauth = format!(
        "[okta.oauth]\nclient_id = \"0oadoctor\"\nprivate_key_file = \"{}\"\nscopes = [\"okta.logs.read\", \"okta.apps.read\"]",
        test_keys::rsa_private_key_path().display()
    );
    // `rate_limit_share` must stay in [okta]: the oauth table goes last.
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[okta]\norg_url = \"{}\"\nrate_limit_share = 0.5\n{oauth}\n[state]\npath = \"{}\"\n",
            sim.base_url(),
            state_path(dir.path()).display()
        ),
    )
    .unwrap();
    let c = check(&doctor::diagnose(&path, &args).await);
    assert_eq!(c.status, Status::Info, "{c:?}");
    assert!(
        c.detail.contains("okta.principalRateLimits.read"),
        "{}",
        c.detail
    );
}
