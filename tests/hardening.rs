//! Hostile and broken input never stops the daemon (issue 10), over real sockets against the
//! simulator: poison System Log events are quarantined and the cursor moves on, a page that
//! cannot be split keeps the cursor and is alerted, a `next` link cycle is stopped, the
//! `/healthz` listener survives a slowloris, start-up waits out a busy store, and a restarted
//! daemon releases its dead predecessor's retry claims at once.

mod common;

use common::*;
use okta_provwatch::alert::group::Settings;
use okta_provwatch::alert::health_alerts;
use okta_provwatch::context::Context;
use okta_provwatch::detect::page::poison_kinds;
use okta_provwatch::detect::{poller, DetectError};
use okta_provwatch::store::{cursor, failures, outbox, quarantine};
use okta_sim::{Bucket, OktaSim};
use serde_json::{json, Value};

/// A provisioning failure event for user `i` of `app_id`, as Okta logs it.
fn failure_event(sim: &OktaSim, app_id: &str, i: usize) -> Value {
    json!({
        "uuid": format!("hard-{i:07}"),
        "published": sim.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventType": "application.provision.user.push",
        "version": "0",
        "severity": "ERROR",
        "displayMessage": "Push new user to external application",
        "outcome": {"result": "FAILURE", "reason": "Error while creating user: Unable to connect to the remote server."},
        "actor": {"id": "0oa000000000000000", "type": "PublicClientApp", "alternateId": "Okta", "displayName": "Okta"},
        "target": [
            {"id": format!("00u{i:017}"), "type": "User", "alternateId": format!("user{i}@acme.example"), "displayName": format!("User {i}")},
            {"id": app_id, "type": "AppInstance", "alternateId": "Hard", "displayName": "Hard"}
        ]
    })
}

fn stored_cursor(ctx: &Context) -> Option<String> {
    ctx.store
        .read_blocking(cursor::get)
        .unwrap()
        .map(|c| c.next_url)
}

fn open_count(ctx: &Context) -> usize {
    ctx.store
        .read_blocking(failures::list_unresolved)
        .unwrap()
        .len()
}

/// Each of the 16 poison kinds, served by the simulator between two good events on a real
/// System Log page: the good events are applied, the poison is quarantined with its raw bytes
/// and the page's cursor, counted, alerted once, and the cursor moves past the page. Before
/// the fix every one of these pages failed whole and was re-read forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_poison_kind_is_quarantined_and_the_cursor_moves_on() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = context(config(&sim, dir.path()));
    let app = sim.add_app("Hard");
    // Start from a caught-up cursor.
    poller::poll_once(&ctx).await.unwrap();
    let kinds = poison_kinds();
    assert_eq!(kinds.len(), 16);
    for (k, (name, poison)) in kinds.iter().enumerate() {
        let (a, b) = (
            failure_event(&sim, &app, 2 * k),
            failure_event(&sim, &app, 2 * k + 1),
        );
        // The real log holds the good events, so the page's next link moves past them.
        sim.push_log_event(a.clone());
        sim.push_log_event(b.clone());
        let mut body = b"[".to_vec();
        body.extend_from_slice(&serde_json::to_vec(&a).unwrap());
        body.extend_from_slice(b",\n  ");
        body.extend_from_slice(poison);
        body.extend_from_slice(b" ,");
        body.extend_from_slice(&serde_json::to_vec(&b).unwrap());
        body.extend_from_slice(b"]");
        sim.serve_raw_log_page(body);
        let before = stored_cursor(&ctx).unwrap();
        let out = poller::poll_once(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{name}: the page failed whole: {e}"));
        assert_eq!(out.quarantined, 1, "{name}: {out:?}");
        assert_eq!(out.opened, 2, "{name}: {out:?}");
        assert_ne!(stored_cursor(&ctx).unwrap(), before, "{name}: cursor kept");
        let q = ctx
            .store
            .read_blocking(|tx| quarantine::recent(tx, 1))
            .unwrap();
        assert_eq!(&q[0].raw, poison, "{name}");
        assert_eq!(
            q[0].page_url, before,
            "{name}: the page's cursor is recorded"
        );
        assert_eq!(q[0].position, 1, "{name}");
        assert!(!q[0].error.is_empty(), "{name}");
    }
    assert_eq!(open_count(&ctx), 32);
    assert_eq!(ctx.store.read_blocking(quarantine::count).unwrap(), 16);
    let metrics = okta_provwatch::http::render_metrics(&ctx).await;
    assert!(
        metrics.contains("provwatch_quarantined_events_total 16"),
        "{metrics}"
    );

    // The daemon-health alert tells once about the batch, and not again.
    let mut s = Settings::from_config(&ctx.config);
    s.channels = vec!["slack"];
    let h = ctx.health.snapshot();
    let now = ctx.now_ms();
    ctx.store
        .write_blocking(|tx| {
            let mut o = Default::default();
            health_alerts::evaluate_detection(tx, &s, &h, now, &mut o)?;
            health_alerts::evaluate_detection(tx, &s, &h, now + 1, &mut o)?;
            Ok(())
        })
        .unwrap();
    let rows = ctx.store.read_blocking(outbox::list).unwrap();
    let told: Vec<_> = rows
        .iter()
        .filter(|r| r.payload.contains("quarantined"))
        .collect();
    assert_eq!(told.len(), 1, "{rows:?}");
    assert!(
        told[0].payload.contains("16 System Log event"),
        "{}",
        told[0].payload
    );

    // `status` says so in one line, `status --json` in a field.
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_toml(&sim, dir.path())).unwrap();
    let status = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_okta-provwatch"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env_remove("OKTA_PROVWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = status(&["status"]);
    assert_eq!(
        text.lines().filter(|l| l.contains("quarantined")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("16 System Log event(s)"), "{text}");
    let j: Value = serde_json::from_str(&status(&["status", "--json"])).unwrap();
    assert_eq!(j["quarantined"], 16, "{j}");
}

/// A page whose array itself is broken fails as a whole (nothing on it can be trusted to be
/// complete): the cursor stays, the poll counts as failed, the log trouble is raised for the
/// alert; the next good page clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsplittable_page_keeps_the_cursor_and_raises_the_alert() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = context(config(&sim, dir.path()));
    let app = sim.add_app("Hard");
    poller::poll_once(&ctx).await.unwrap();
    let before = stored_cursor(&ctx);
    sim.push_log_event(failure_event(&sim, &app, 1));
    for broken in [
        &br#"[{"uuid":"x","published":"#[..],
        br#"{"errorCode":"E0000009"}"#,
        b"[1,2] trailing",
        b"",
    ] {
        sim.serve_raw_log_page(broken.to_vec());
        let e = poller::poll_once(&ctx).await.unwrap_err();
        assert!(matches!(e, DetectError::Page { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("malformed") && msg.contains("backoff"),
            "{msg}"
        );
        assert!(!msg.contains(&sim.api_token()));
        assert_eq!(stored_cursor(&ctx), before);
        assert!(ctx.health.snapshot().log_trouble.is_some());
    }
    let mut s = Settings::from_config(&ctx.config);
    s.channels = vec!["slack"];
    let h = ctx.health.snapshot();
    let now = ctx.now_ms();
    ctx.store
        .write_blocking(|tx| {
            health_alerts::evaluate_detection(tx, &s, &h, now, &mut Default::default())
        })
        .unwrap();
    let rows = ctx.store.read_blocking(outbox::list).unwrap();
    assert!(
        rows.iter().any(|r| r.payload.contains("cursor is stuck")),
        "{rows:?}"
    );
    let out = poller::poll_once(&ctx).await.unwrap();
    assert_eq!(out.opened, 1);
    assert!(ctx.health.snapshot().log_trouble.is_none());
}

/// A `next` link that goes round three full pages: the poller stops after one lap (it does not
/// follow the cycle at the full budget), keeps the cursor, raises the log trouble; each later
/// catch-up costs one lap at most; once Okta's links are straight the poller catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_page_next_cycle_is_stopped_and_alerted() {
    let sim = start_okta().await;
    sim.set_rate_limit(Bucket::Logs, 6000);
    let dir = temp_dir();
    let ctx = context(config(&sim, dir.path()));
    let app = sim.add_app("Hard");
    let n = 3 * poller::PAGE_LIMIT;
    for i in 0..n {
        sim.push_log_event(failure_event(&sim, &app, i));
    }
    // The third page links back to the first.
    sim.set_log_next_redirect(Some((n, 0)));
    let logs = || {
        sim.requests()
            .iter()
            .filter(|r| r.bucket == Bucket::Logs)
            .count()
    };
    // One catch-up: pages polled back to back while they come back full, as the daemon does.
    // Returns the pages read, the last outcome, and the cursor before and after the last page.
    async fn catch_up(
        ctx: &Context,
        cu: &mut poller::CatchUp,
    ) -> (usize, poller::PollOutcome, Option<String>, Option<String>) {
        let mut pages = 0;
        loop {
            let before = stored_cursor(ctx);
            let out = poller::poll_with(ctx, cu).await.unwrap();
            pages += 1;
            assert!(pages <= 10, "followed the cycle: {pages} pages");
            if !out.backlog {
                return (pages, out, before, stored_cursor(ctx));
            }
        }
    }
    let mut cu = poller::CatchUp::default();
    let (pages, last, before, after) = catch_up(&ctx, &mut cu).await;
    assert!(last.cycle, "{last:?}");
    // The 3 pages, then the first again under its `after` link, whose next is known: the
    // link into the cycle is not taken, the cursor stays where it was.
    assert_eq!(pages, 4);
    assert_eq!(before, after);
    assert_eq!(open_count(&ctx), n);
    let trouble = ctx
        .health
        .snapshot()
        .log_trouble
        .expect("log trouble raised");
    assert!(trouble.contains("cycle"), "{trouble}");
    // The next catch-up (one poll interval later) costs one lap, no more.
    let requests = logs();
    let (pages, last, before, after) = catch_up(&ctx, &mut cu).await;
    assert!(last.cycle);
    assert_eq!((pages, logs() - requests), (4, 4));
    assert_eq!(before, after);
    let kept = after.unwrap();
    // Okta straightens its links: the catch-up ends on the empty last page.
    sim.set_log_next_redirect(None);
    let (_, last, _, _) = catch_up(&ctx, &mut cu).await;
    assert!(!last.cycle);
    assert_eq!(last.events, 0, "caught up on the empty last page");
    assert_ne!(stored_cursor(&ctx).unwrap(), kept);
    assert!(ctx.health.snapshot().log_trouble.is_none());
    assert_eq!(open_count(&ctx), n);
}

/// Defect 12: a daemon that holds the state's exclusive lock releases at start the claims its
/// dead predecessor left (`kill -9` mid-retry) at once, with a history row, instead of leaving
/// those failures `retrying` for the 10-minute lease. A `retry` command's claim is left alone
/// (it may still be running), and so is everything when the lock is not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_releases_its_dead_predecessors_claims_at_once() {
    use okta_provwatch::daemon::lock::StateLock;
    use okta_provwatch::domain::{HistoryKind, Observation, Operation, State};
    use okta_provwatch::retry::worker;
    use okta_provwatch::store::{claims, history};
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    let sim = start_okta().await;
    let dir = temp_dir();
    let ctx = context(config_with(&sim, dir.path(), "[retry]\nenabled = false\n"));
    let now = ctx.now_ms();
    let lease = now + 10 * 60 * 1000;
    let (dead, cli) = ctx
        .store
        .write_blocking(|tx| {
            let mut ids = Vec::new();
            for (user, owner) in [
                ("00u1", "daemon-999999-deadbeef"),
                ("00u2", "cli-999998-cafe0000"),
            ] {
                let obs = Observation::failure("0oa1", user, Operation::Create);
                let id = match failures::apply(tx, &obs, now, "test")? {
                    failures::Applied::Opened(id) => id,
                    a => panic!("{a:?}"),
                };
                claims::claim(tx, id, owner, now, lease, "test", "a retry")?.unwrap();
                ids.push(id);
            }
            Ok((ids[0], ids[1]))
        })
        .unwrap();
    let state = |id: i64| {
        ctx.store
            .read_blocking(move |tx| Ok(failures::get(tx, id)?.unwrap().state))
            .unwrap()
    };
    let run_worker = |ctx: Context| async move {
        let stop = CancellationToken::new();
        let task = tokio::spawn(worker::run(ctx, stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        task.await.unwrap();
    };

    // A worker without the lock (as in tests and short commands) cannot know the claimer is dead.
    run_worker(ctx.clone()).await;
    assert_eq!(state(dead), State::Retrying);

    let locked = ctx
        .clone()
        .with_lock(StateLock::acquire(&state_path(dir.path())).unwrap());
    run_worker(locked).await;
    assert_eq!(
        state(dead),
        State::Open,
        "released at start, not after the lease"
    );
    assert_eq!(
        state(cli),
        State::Retrying,
        "a retry command's claim waits for its lease"
    );
    let rows = ctx
        .store
        .read_blocking(move |tx| history::list(tx, dead))
        .unwrap();
    let released = rows
        .iter()
        .find(|h| h.kind == HistoryKind::RetryInterrupted)
        .expect("a history row for the release");
    let detail = released.detail.as_deref().unwrap();
    assert!(
        detail.contains("daemon-999999-deadbeef") && detail.contains("no longer running"),
        "{detail}"
    );
    // Not counted as an attempt.
    let attempts = ctx
        .store
        .read_blocking(move |tx| Ok(failures::get(tx, dead)?.unwrap().attempts))
        .unwrap();
    assert_eq!(attempts, 0);
}
