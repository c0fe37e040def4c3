//! Detection against the Okta simulator over real HTTP: the System Log poller, the assignment
//! scanner, backlogs, restarts (cancelled and killed) and malformed pages.

mod common;

use common::*;
use okta_provwatch::context::Context;
use okta_provwatch::detect::{poller, scanner};
use okta_provwatch::store::failures::{self, Operation, State};
use okta_provwatch::store::logcursor;
use okta_sim::{Bucket, Downstream, Fault, FaultKind, OktaSim};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn open_failures(ctx: &Context) -> Vec<failures::Failure> {
    ctx.store.read_blocking(failures::list_unresolved).unwrap()
}

fn logs_requests(sim: &OktaSim) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.bucket == Bucket::Logs)
        .count()
}

/// A provisioning failure event for a distinct user, as Okta logs it.
fn bulk_event(sim: &OktaSim, app_id: &str, i: usize) -> Value {
    let published = sim
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (event_type, op) = if i % 2 == 0 {
        ("application.provision.user.push", "creating")
    } else {
        (
            "application.provision.user.push_profile",
            "pushing profile of",
        )
    };
    json!({
        "uuid": format!("bulk-{i:07}"),
        "published": published,
        "eventType": event_type,
        "version": "0",
        "severity": "ERROR",
        "displayMessage": "Push new user to external application",
        "outcome": {"result": "FAILURE", "reason": format!("Error while {op} user{i}: Unable to connect to the remote server.")},
        "actor": {"id": "0oa000000000000000", "type": "PublicClientApp", "alternateId": "Okta", "displayName": "Okta"},
        "target": [
            {"id": format!("00u{i:017}"), "type": "User", "alternateId": format!("user{i}@acme.example"), "displayName": format!("User {i}")},
            {"id": app_id, "type": "AppInstance", "alternateId": "Bulk", "displayName": "Bulk"}
        ]
    })
}

/// Fills the simulator's System Log with `n` failure events of distinct users.
fn fill_backlog(sim: &OktaSim, n: usize) -> String {
    let app = sim.add_app("Bulk");
    for i in 0..n {
        sim.push_log_event(bulk_event(sim, &app, i));
    }
    app
}

/// Every failure was detected once: one row and one "detected" history entry per event.
fn assert_exactly_once(ctx: &Context, n: usize) {
    let (rows, detected, seen): (i64, i64, i64) = ctx
        .store
        .blocking(|c| {
            Ok((
                c.query_row("SELECT COUNT(*) FROM failures", [], |r| r.get(0))?,
                c.query_row(
                    "SELECT COUNT(*) FROM failure_history WHERE kind = 'detected'",
                    [],
                    |r| r.get(0),
                )?,
                logcursor::seen_count(&okta_provwatch::store::Tx::over(c))?,
            ))
        })
        .unwrap();
    assert_eq!(rows, n as i64, "failure rows");
    assert_eq!(detected, n as i64, "detected history entries");
    assert_eq!(seen, n as i64, "seen event uuids");
    let dup: i64 = ctx
        .store
        .blocking(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM (SELECT failure_id FROM failure_history WHERE kind IN ('detected', 'reopened') GROUP BY failure_id HAVING COUNT(*) > 1)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(dup, 0, "a failure was detected more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poller_finds_a_failure_within_one_interval_and_a_success_resolves_it() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let mut cfg = config(&sim, dir.path());
    let interval = Duration::from_secs(1);
    cfg.detect.poll_interval = interval;
    let ctx = context(cfg);
    let app = sim.add_app("Salesforce");
    let ann = sim.add_user("ann@acme.example");

    // The whole daemon: poller, scanner, retry worker and alerting.
    let running = okta_provwatch::daemon::start(ctx.clone(), CancellationToken::new());
    assert!(eventually(Duration::from_secs(5), || logs_requests(&sim) >= 1).await);

    sim.set_downstream(&app, Downstream::Down);
    sim.assign(&app, &ann);
    let t0 = tokio::time::Instant::now();
    let polls_before = logs_requests(&sim);
    assert!(
        eventually(interval * 5, || !open_failures(&ctx).is_empty()).await,
        "failure not detected"
    );
    let took = t0.elapsed();
    // Found by the poll in flight at injection or the next one, which starts one
    // poll_interval after the previous ended: the structural form of "within one interval",
    // immune to a loaded CI machine slowing the processing.
    let polls = logs_requests(&sim) - polls_before;
    assert!(polls <= 2, "took {polls} polls");
    // And in wall time, with slack for a busy 2-core machine.
    assert!(took <= interval + Duration::from_secs(2), "took {took:?}");
    let f = &open_failures(&ctx)[0];
    assert_eq!(f.operation, Operation::Create);
    assert_eq!(f.user_id, ann);
    assert_eq!(f.user_login.as_deref(), Some("ann@acme.example"));
    assert_eq!(f.app_label.as_deref(), Some("Salesforce"));
    assert!(f.reason.as_deref().unwrap().contains("Unable to connect"));
    assert_eq!(f.source, "log");

    // The app recovers and the user is pushed again: Okta logs a SUCCESS that resolves it.
    sim.set_downstream(&app, Downstream::Healthy);
    let au = ctx.okta.get_app_user(&app, &ann).await.unwrap();
    let body = json!({"credentials": au.credentials, "profile": au.profile});
    ctx.okta.update_app_user(&app, &ann, &body).await.unwrap();
    assert!(
        eventually(interval * 3, || open_failures(&ctx).is_empty()).await,
        "success did not resolve the failure"
    );
    let all = ctx.store.read_blocking(failures::list_all).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, State::Resolved);

    assert!(
        running.stop(Duration::from_secs(10)).await,
        "daemon did not stop in time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_finds_errors_with_no_log_event_and_resolves_fixed_ones() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = context(config(&sim, dir.path()));
    let app = sim.add_app("Zendesk");
    let quiet = sim.add_app("Quiet");
    let bob = sim.add_user("bob@acme.example");
    let cy = sim.add_user("cy@acme.example");
    let ok = sim.add_user("ok@acme.example");
    sim.assign(&quiet, &ok);
    sim.set_downstream(&app, Downstream::Down);
    sim.assign(&app, &bob);
    sim.assign(&app, &cy);
    sim.set_downstream(&app, Downstream::Healthy);
    sim.assign(&app, &ok);

    // No poller: only the scan can see these.
    let stop = CancellationToken::new();
    let out = scanner::scan_once(&ctx, &stop).await.unwrap();
    assert_eq!(out.apps, 2);
    assert_eq!(out.errors_seen, 2);
    assert_eq!(out.opened, 2);
    let open = open_failures(&ctx);
    assert_eq!(open.len(), 2);
    assert!(open
        .iter()
        .all(|f| f.source == "scan" && f.operation == Operation::Create));
    let logins: Vec<_> = open.iter().map(|f| f.user_name().to_owned()).collect();
    assert!(
        logins.contains(&"bob@acme.example".to_owned()),
        "{logins:?}"
    );

    // A second scan opens nothing new.
    let out = scanner::scan_once(&ctx, &stop).await.unwrap();
    assert_eq!(out.opened, 0);

    // bob is re-pushed successfully; cy is unassigned.
    let au = ctx.okta.get_app_user(&app, &bob).await.unwrap();
    ctx.okta
        .update_app_user(&app, &bob, &json!({"profile": au.profile}))
        .await
        .unwrap();
    sim.deactivate(&app, &cy);
    assert!(sim.app_user(&app, &cy).is_none());
    let out = scanner::scan_once(&ctx, &stop).await.unwrap();
    assert_eq!(out.resolved, 2, "{out:?}");
    assert!(open_failures(&ctx).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50000_event_backlog_is_applied_exactly_once_in_50_pages() {
    let sim = start_okta().await;
    // A generous bucket so the test measures paging, not waiting; the budget still applies.
    sim.set_rate_limit(Bucket::Logs, 6000);
    let dir = temp_dir();
    let ctx = context(config(&sim, dir.path()));
    let n = 50_000;
    fill_backlog(&sim, n);

    let mut polls = 0;
    loop {
        let out = poller::poll_once(&ctx).await.unwrap();
        polls += 1;
        if !out.backlog {
            break;
        }
        assert!(polls <= 60, "too many polls");
    }
    // 50 full pages, then one empty page that says we are caught up.
    assert_eq!(polls, 51);
    assert_eq!(logs_requests(&sim), 51);
    assert_exactly_once(&ctx, n);
    assert_eq!(sim.stats().rate_limited, 0);

    // Polling again from the stored cursor applies nothing twice.
    let out = poller::poll_once(&ctx).await.unwrap();
    assert_eq!(out.events, 0);
    assert_exactly_once(&ctx, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_between_pages_lose_nothing_and_count_nothing_twice() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Logs, 6000);
    let dir = temp_dir();
    let n = 7_500;
    fill_backlog(&sim, n);
    // Stop after 1, 2 and 3 pages, each time with a fresh process state (new store handle,
    // new client), as a restart would.
    for pages in [1, 2, 3] {
        let ctx = context(config(&sim, dir.path()));
        for _ in 0..pages {
            poller::poll_once(&ctx).await.unwrap();
        }
    }
    // A restart whose poll is cancelled mid-flight, then one that runs to the end.
    {
        let ctx = context(config(&sim, dir.path()));
        let _ = tokio::time::timeout(Duration::from_millis(5), poller::poll_once(&ctx)).await;
    }
    let ctx = context(config(&sim, dir.path()));
    while poller::poll_once(&ctx).await.unwrap().backlog {}
    assert_exactly_once(&ctx, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_nothing() {
    use rand::RngExt;
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Logs, 6000);
    let dir = temp_dir();
    let n = 12_000;
    fill_backlog(&sim, n);
    let cfg_path = dir.path().join("config.toml");
    std::fs::write(&cfg_path, config_toml(&sim, dir.path())).unwrap();
    let bin = env!("CARGO_BIN_EXE_okta-provwatch");
    let spawn = || {
        std::process::Command::new(bin)
            .args(["--config", cfg_path.to_str().unwrap(), "run"])
            .env(TOKEN_ENV, sim.api_token())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn daemon")
    };
    let seen = || -> i64 {
        okta_provwatch::store::Store::open(&dir.path().join("state.db"))
            .unwrap()
            .read_blocking(logcursor::seen_count)
            .unwrap()
    };
    let mut kills = 0;
    for _ in 0..12 {
        let mut child = spawn();
        let ms = rand::rng().random_range(150..900);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        if seen() == n as i64 {
            break;
        }
    }
    // Let a last run finish the backlog, then stop it.
    let mut child = spawn();
    assert!(eventually(Duration::from_secs(60), || seen() == n as i64).await);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(kills >= 2, "the test should kill the daemon at least twice");
    let ctx = context(config(&sim, dir.path()));
    assert_exactly_once(&ctx, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pages_are_logged_and_leave_the_cursor_unharmed() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let mut cfg = config(&sim, dir.path());
    cfg.detect.poll_interval = Duration::from_millis(500);
    let ctx = context(cfg);
    let app = sim.add_app("Box");
    let u1 = sim.add_user("one@acme.example");
    sim.set_downstream(&app, Downstream::Down);
    sim.assign(&app, &u1);
    poller::poll_once(&ctx).await.unwrap();
    let cursor = || {
        ctx.store
            .read_blocking(logcursor::get)
            .unwrap()
            .unwrap()
            .next_url
    };
    let before = cursor();

    // Bad JSON: an error, the cursor stays.
    sim.inject_fault(Fault {
        bucket: Some(Bucket::Logs),
        kind: FaultKind::MalformedJson,
        times: 1,
    });
    let u2 = sim.add_user("two@acme.example");
    sim.assign(&app, &u2);
    let e = poller::poll_once(&ctx).await.unwrap_err();
    assert!(e.to_string().contains("malformed"), "{e}");
    assert_eq!(cursor(), before);

    // A next link pointing back at itself: the page is applied, the cursor is not moved onto a loop.
    sim.inject_fault(Fault {
        bucket: Some(Bucket::Logs),
        kind: FaultKind::LogNextLoop,
        times: 1,
    });
    let out = poller::poll_once(&ctx).await.unwrap();
    assert!(out.bad_next);
    assert_eq!(out.opened, 1);
    assert_eq!(cursor(), before);
    // Okta moves on: the same events come again and are skipped by uuid.
    let out = poller::poll_once(&ctx).await.unwrap();
    assert_eq!(out.opened, 0);
    assert_eq!(out.duplicates, out.events);
    assert_ne!(cursor(), before);

    // Events missing required fields are skipped and counted; the page still moves the cursor.
    let u3 = sim.add_user("three@acme.example");
    sim.assign(&app, &u3);
    sim.inject_fault(Fault {
        bucket: Some(Bucket::Logs),
        kind: FaultKind::MissingFields,
        times: 1,
    });
    let mid = cursor();
    let out = poller::poll_once(&ctx).await.unwrap();
    assert_eq!(out.malformed, 1, "{out:?}");
    assert_ne!(cursor(), mid);

    // Through all of it the daemon's poller keeps running and still finds new failures.
    sim.inject_fault(Fault {
        bucket: Some(Bucket::Logs),
        kind: FaultKind::MalformedJson,
        times: 2,
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(poller::run(ctx.clone(), stop.clone()));
    let u4 = sim.add_user("four@acme.example");
    sim.assign(&app, &u4);
    assert!(
        eventually(Duration::from_secs(10), || open_failures(&ctx)
            .iter()
            .any(|f| f.user_id == u4))
        .await
    );
    assert!(ctx.health.snapshot().last_poll_ok_ms.is_some());
    stop.cancel();
    task.await.unwrap();
}

/// Alerts link to the app's own admin console page with the app's internal `name`, which only
/// the apps list carries: the scanner must record it, and the poller (whose events name only
/// the label) must not erase it.
#[tokio::test]
async fn both_detectors_record_the_app_and_the_scan_records_its_name() {
    use okta_provwatch::store::apps;
    let sim = OktaSim::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(config(&sim, dir.path()));
    let app = sim.add_app("Zendesk");
    let bob = sim.add_user("bob@acme.example");
    sim.set_downstream(&app, Downstream::Down);
    sim.assign(&app, &bob);
    let expected = ctx
        .okta
        .list_apps()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == app)
        .and_then(|a| a.name)
        .expect("the simulator names its apps");
    let row = |ctx: &Context| {
        let app = app.clone();
        ctx.store
            .read_blocking(move |tx| Ok((apps::label(tx, &app)?, apps::name(tx, &app)?)))
            .unwrap()
    };

    // The log event names the label only.
    poller::poll_once(&ctx).await.unwrap();
    assert_eq!(open_failures(&ctx).len(), 1);
    assert_eq!(row(&ctx), (Some("Zendesk".into()), None));

    // The scan reads the apps list, which carries the name.
    scanner::scan_once(&ctx, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(row(&ctx), (Some("Zendesk".into()), Some(expected.clone())));

    // Another event for the app keeps the name.
    sim.assign(&app, &sim.add_user("cy@acme.example"));
    poller::poll_once(&ctx).await.unwrap();
    assert_eq!(open_failures(&ctx).len(), 2);
    assert_eq!(row(&ctx), (Some("Zendesk".into()), Some(expected)));
}
