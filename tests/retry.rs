//! Retries end to end against the Okta simulator over real HTTP: the worker's automatic
//! retries and backoff, the circuit breaker, what is never retried, the manual command's
//! selection, exclusive claims across store handles, and the retry rate under a storm.
//!
//! Time is tokio's paused clock ([`Clock::tokio`]), which the simulator follows too, so hours
//! of backoff run in moments. Timers may fire while a test waits on a socket, so spacing is
//! asserted as lower bounds of the gaps recorded in history.

mod common;

use common::*;
use okta_provwatch::clock::Clock;
use okta_provwatch::config::Config;
use okta_provwatch::context::Context;
use okta_provwatch::retry::manual::{self, Options, Retried, Selector};
use okta_provwatch::retry::worker::{self, Tuning};
use okta_provwatch::store::failures::{self, Applied, Observation, Operation, Source, State};
use okta_provwatch::store::retry as store_retry;
use okta_sim::{Bucket, Downstream, Fault, FaultKind, OktaSim};
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const DOWN: &str = "Unable to connect to the remote server.";
/// A reason the failure-type table classes as transient (backoff, no circuit at once).
const TRANSIENT: &str = "Errors reported by remote server: 503 Service Temporarily Unavailable";

struct Harness {
    sim: OktaSim,
    ctx: Context,
    dir: TempDir,
}

/// The simulator, a temp state dir and a paused-clock context with retries on and short
/// backoff; `tweak` adjusts the config before the context is built.
async fn harness(tweak: impl FnOnce(&mut Config)) -> Harness {
    let sim = start_okta().await;
    let dir = temp_dir();
    let mut config = config_with(&sim, dir.path(), "[retry]\nenabled = true\n");
    config.retry.max_attempts = 5;
    config.retry.initial_backoff = Duration::from_secs(20);
    config.retry.max_backoff = Duration::from_secs(120);
    config.retry.per_minute = 60;
    tweak(&mut config);
    let ctx = context_on(config, Clock::tokio());
    Harness { sim, ctx, dir }
}

fn tuning(owner: &str) -> Tuning {
    Tuning {
        lease: Duration::from_secs(300),
        idle_poll: Duration::from_secs(60),
        concurrency: Some(8),
        auth_pause: Duration::from_secs(60),
        drain_grace: Duration::from_secs(5),
        confirm_within: Some(Duration::from_secs(5)),
        owner: owner.to_string(),
    }
}

fn spawn_worker(ctx: &Context, owner: &str) -> (CancellationToken, JoinHandle<()>) {
    let token = CancellationToken::new();
    let h = tokio::spawn(worker::run_with(ctx.clone(), token.clone(), tuning(owner)));
    (token, h)
}

async fn stop(w: (CancellationToken, JoinHandle<()>)) {
    w.0.cancel();
    w.1.await.expect("worker task does not panic");
}

/// Opens a failure the way the detector would.
fn observe(ctx: &Context, app: &str, user: &str, login: &str, op: Operation, reason: &str) -> i64 {
    let o = Observation {
        app_id: app.into(),
        app_label: None,
        user_id: user.into(),
        user_login: Some(login.into()),
        operation: op,
        failed: true,
        reason: Some(reason.into()),
        event_uuid: None,
        published_ms: None,
        source: Source::Scan,
    };
    let now = ctx.now_ms();
    ctx.store
        .write_blocking(|c| match failures::apply(c, &o, now, "test")? {
            Applied::Opened(id) => Ok(id),
            other => panic!("{other:?}"),
        })
        .unwrap()
}

fn failure(ctx: &Context, id: i64) -> failures::Failure {
    ctx.store
        .write_blocking(|c| failures::get(c, id))
        .unwrap()
        .unwrap()
}

/// The failure recorded for (app, user, operation), if any.
fn found(ctx: &Context, app: &str, user: &str, op: Operation) -> Option<failures::Failure> {
    ctx.store
        .write_blocking(|c| failures::find(c, app, user, op))
        .unwrap()
}

/// The id of the failure recorded for (app, user, operation), which the test expects to exist.
fn found_id(ctx: &Context, app: &str, user: &str, op: Operation) -> i64 {
    found(ctx, app, user, op)
        .unwrap_or_else(|| panic!("a {op:?} failure of {user} on {app}"))
        .id
}

fn history(ctx: &Context, id: i64) -> Vec<failures::HistoryEntry> {
    ctx.store
        .write_blocking(|c| failures::history(c, id))
        .unwrap()
}

fn starts(ctx: &Context, id: i64) -> Vec<i64> {
    history(ctx, id)
        .into_iter()
        .filter(|h| h.kind == "retry_started")
        .map(|h| h.at)
        .collect()
}

fn posts(sim: &OktaSim, app: &str, user: &str) -> usize {
    let path = format!("/api/v1/apps/{app}/users/{user}");
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.split('?').next() == Some(path.as_str()))
        .count()
}

/// An app whose downstream is down, with `logins` assigned (their creates fail).
fn failing_app(sim: &OktaSim, label: &str, logins: &[&str]) -> (String, Vec<String>) {
    let app = sim.add_app(label);
    sim.set_downstream(&app, Downstream::Down);
    let users = logins
        .iter()
        .map(|l| {
            let u = sim.add_user(l);
            sim.assign(&app, &u);
            u
        })
        .collect();
    (app, users)
}

fn sync_state(sim: &OktaSim, app: &str, user: &str) -> Option<String> {
    sim.app_user(app, user).and_then(|v| {
        v.get("syncState")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
    })
}

#[tokio::test(start_paused = true)]
async fn a_transient_outage_heals_through_automatic_retries() {
    let h = harness(|_| {}).await;
    let (app, users) = failing_app(&h.sim, "Sales", &["alice@example.com"]);
    assert_eq!(
        sync_state(&h.sim, &app, &users[0]).as_deref(),
        Some("ERROR")
    );
    let id = observe(
        &h.ctx,
        &app,
        &users[0],
        "alice@example.com",
        Operation::Create,
        TRANSIENT,
    );
    let w = spawn_worker(&h.ctx, "w1");

    wait_until("a failed retry", Duration::from_secs(600), || {
        history(&h.ctx, id).iter().any(|e| e.kind == "retry_failed")
    })
    .await;
    assert_eq!(failure(&h.ctx, id).state, State::Open);
    h.sim.set_downstream(&app, Downstream::Healthy);
    wait_until("the failure to resolve", Duration::from_secs(1800), || {
        failure(&h.ctx, id).state == State::Resolved
    })
    .await;
    stop(w).await;

    let f = failure(&h.ctx, id);
    assert!(!f.retry_exhausted);
    assert!(f.attempts >= 2, "{f:?}");
    let hist = history(&h.ctx, id);
    let last = hist.last().unwrap();
    assert_eq!(last.kind, "resolved");
    assert!(
        last.detail.as_deref().unwrap().contains("retry succeeded"),
        "{last:?}"
    );
    assert_eq!(last.actor, "retry-worker");
    assert_eq!(
        sync_state(&h.sim, &app, &users[0]).as_deref(),
        Some("SYNCHRONIZED")
    );
    assert_eq!(
        h.ctx
            .metrics
            .get("provwatch_retries_total", &[("result", "succeeded")]),
        Some(1.0)
    );
    assert!(
        h.ctx
            .metrics
            .get("provwatch_retries_total", &[("result", "failed")])
            .unwrap_or(0.0)
            >= 1.0
    );
    // One user is no app-wide evidence: the circuit stayed closed.
    let circuit = h
        .ctx
        .store
        .write_blocking(|c| store_retry::get_circuit(c, &app))
        .unwrap();
    assert!(circuit.is_none_or(|c| !c.open));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_outage_exhausts_max_attempts_with_backoff() {
    let h = harness(|c| {
        c.retry.max_attempts = 4;
        c.retry.initial_backoff = Duration::from_secs(20);
        c.retry.max_backoff = Duration::from_secs(60);
    })
    .await;
    let (app, users) = failing_app(&h.sim, "Sales", &["bob@example.com"]);
    let id = observe(
        &h.ctx,
        &app,
        &users[0],
        "bob@example.com",
        Operation::Create,
        TRANSIENT,
    );
    let first_seen = failure(&h.ctx, id).first_seen;
    let w = spawn_worker(&h.ctx, "w1");
    wait_until("retries to be exhausted", Duration::from_secs(3600), || {
        failure(&h.ctx, id).retry_exhausted
    })
    .await;
    // Exhausted failures are left alone afterwards.
    tokio::time::sleep(Duration::from_secs(600)).await;
    stop(w).await;

    let f = failure(&h.ctx, id);
    assert_eq!((f.state, f.attempts), (State::Open, 4));
    assert_eq!(f.reason.as_deref(), Some(TRANSIENT));
    let s = starts(&h.ctx, id);
    assert_eq!(s.len(), 4, "{:?}", history(&h.ctx, id));
    assert_eq!(posts(&h.sim, &app, &users[0]), 4);
    // First attempt after initial_backoff, then 20 s, 40 s, 60 s (capped) apart, each -20 %.
    assert!(s[0] >= first_seen + 20_000, "{s:?} first_seen {first_seen}");
    for (i, min_gap) in [16_000, 32_000, 48_000].into_iter().enumerate() {
        let gap = s[i + 1] - s[i];
        assert!(gap >= min_gap, "gap {i} is {gap} ms < {min_gap}: {s:?}");
    }
    let hist = history(&h.ctx, id);
    let last = hist.last().unwrap();
    assert_eq!(last.kind, "retries_exhausted");
    assert!(
        last.detail.as_deref().unwrap().contains(TRANSIENT),
        "{last:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_for_a_down_app_and_closes_when_it_recovers() {
    let h = harness(|c| {
        c.retry.max_attempts = 10;
        c.retry.initial_backoff = Duration::from_secs(20);
        c.retry.max_backoff = Duration::from_secs(60);
    })
    .await;
    let logins = ["u1@x.com", "u2@x.com", "u3@x.com", "u4@x.com", "u5@x.com"];
    let (app, users) = failing_app(&h.sim, "Payroll", &logins);
    let ids: Vec<i64> = users
        .iter()
        .zip(logins)
        .map(|(u, l)| observe(&h.ctx, &app, u, l, Operation::Create, DOWN))
        .collect();
    let circuit = |h: &Harness| {
        h.ctx
            .store
            .write_blocking(|c| store_retry::get_circuit(c, &app))
            .unwrap()
    };
    let w = spawn_worker(&h.ctx, "w1");
    wait_until("the circuit to open", Duration::from_secs(900), || {
        circuit(&h).is_some_and(|c| c.open)
    })
    .await;
    let opened_at = circuit(&h).unwrap().opened_at.unwrap();
    let app_failure =
        found(&h.ctx, &app, "", Operation::Integration).expect("one app-level failure");
    assert!(app_failure.urgent);
    let reason = app_failure.reason.clone().unwrap();
    assert!(reason.starts_with("retries keep failing: "), "{reason}");
    assert!(reason.contains(DOWN), "{reason}");

    // Still down for a while: only probes, one at a time, at backoff intervals.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let mut after_open: Vec<(i64, String)> = ids
        .iter()
        .flat_map(|id| history(&h.ctx, *id))
        .filter(|e| e.kind == "retry_started" && e.at > opened_at)
        .map(|e| (e.at, e.detail.unwrap_or_default()))
        .collect();
    after_open.sort();
    assert!(!after_open.is_empty(), "no probe while open");
    for (_, d) in &after_open {
        assert!(
            d.contains("probe"),
            "a non-probe retry while the circuit was open: {d}"
        );
    }
    for pair in after_open.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 16_000,
            "probes too close: {after_open:?}"
        );
    }
    assert!(circuit(&h).unwrap().open);
    assert!(ids
        .iter()
        .all(|id| failure(&h.ctx, *id).state != State::Resolved));

    h.sim.set_downstream(&app, Downstream::Healthy);
    wait_until("the circuit to close", Duration::from_secs(900), || {
        circuit(&h).is_some_and(|c| !c.open)
    })
    .await;
    assert_eq!(failure(&h.ctx, app_failure.id).state, State::Resolved);
    wait_until("every user to be fixed", Duration::from_secs(900), || {
        ids.iter()
            .all(|id| failure(&h.ctx, *id).state == State::Resolved)
    })
    .await;
    stop(w).await;
    for u in &users {
        assert_eq!(sync_state(&h.sim, &app, u).as_deref(), Some("SYNCHRONIZED"));
    }
}

#[tokio::test(start_paused = true)]
async fn deactivate_failures_are_never_pushed_again() {
    let h = harness(|_| {}).await;
    let app = h.sim.add_app("Sales");
    let bob = h.sim.add_user("bob@example.com");
    h.sim.assign(&app, &bob);
    h.sim.set_downstream(&app, Downstream::Down);
    h.sim.deactivate(&app, &bob);
    assert_eq!(sync_state(&h.sim, &app, &bob).as_deref(), Some("ERROR"));
    let carol = h.sim.add_user("carol@example.com");
    h.sim.assign(&app, &carol);
    let deact = observe(
        &h.ctx,
        &app,
        &bob,
        "bob@example.com",
        Operation::Deactivate,
        DOWN,
    );
    let create = observe(
        &h.ctx,
        &app,
        &carol,
        "carol@example.com",
        Operation::Create,
        DOWN,
    );

    let w = spawn_worker(&h.ctx, "w1");
    tokio::time::sleep(Duration::from_secs(600)).await;
    stop(w).await;
    // The worker was busy (carol was retried), but bob never.
    assert!(posts(&h.sim, &app, &carol) >= 1);
    assert!(!starts(&h.ctx, create).is_empty());
    assert_eq!(posts(&h.sim, &app, &bob), 0);
    assert!(starts(&h.ctx, deact).is_empty());
    let f = failure(&h.ctx, deact);
    assert_eq!(
        (f.state, f.attempts, f.retry_exhausted),
        (State::Open, 0, false)
    );

    // A person asking is refused, with what to do instead.
    let opts = Options {
        settle: Duration::from_secs(1),
        ..Options::new("cli:tester".into(), false)
    };
    let summary = manual::run_manual(&h.ctx, &Selector::Failure(deact), &opts, |_| {})
        .await
        .unwrap();
    assert!(summary.any_failed);
    let Retried::Refused(why) = &summary.lines[0].result else {
        panic!("{:?}", summary.lines)
    };
    assert!(why.contains("in the app itself"), "{why}");
    assert_eq!(posts(&h.sim, &app, &bob), 0);
}

/// Three failed creates whose downstream has since recovered: ann and ben in "Sales", cat in
/// "Support", labelled as the detector records them, with retries off so that only the manual
/// command pushes.
struct Manual {
    h: Harness,
    sales: String,
    support: String,
    s_users: Vec<String>,
    p_users: Vec<String>,
    ann: i64,
    ben: i64,
    cat: i64,
    opts: Options,
}

impl Manual {
    async fn new() -> Manual {
        let h = harness(|c| c.retry.enabled = false).await;
        let (sales, s_users) = failing_app(&h.sim, "Sales", &["ann@x.com", "ben@x.com"]);
        let (support, p_users) = failing_app(&h.sim, "Support", &["cat@x.com"]);
        h.sim.set_downstream(&sales, Downstream::Healthy);
        h.sim.set_downstream(&support, Downstream::Healthy);
        let ann = observe(
            &h.ctx,
            &sales,
            &s_users[0],
            "ann@x.com",
            Operation::Create,
            DOWN,
        );
        let ben = observe(
            &h.ctx,
            &sales,
            &s_users[1],
            "ben@x.com",
            Operation::Create,
            DOWN,
        );
        let cat = observe(
            &h.ctx,
            &support,
            &p_users[0],
            "cat@x.com",
            Operation::Create,
            DOWN,
        );
        // Labels, as the detector records them.
        h.ctx
            .store
            .blocking(|c| {
                c.execute(
                    "UPDATE failures SET app_label = 'Sales' WHERE app_id = ?1",
                    [&sales],
                )?;
                c.execute(
                    "UPDATE failures SET app_label = 'Support' WHERE app_id = ?1",
                    [&support],
                )?;
                Ok(())
            })
            .unwrap();
        let opts = Options {
            settle: Duration::from_secs(1),
            ..Options::new("cli:tester".into(), false)
        };
        Manual {
            h,
            sales,
            support,
            s_users,
            p_users,
            ann,
            ben,
            cat,
            opts,
        }
    }

    /// Pushes Okta received for [ann, ben, cat].
    fn post_counts(&self) -> [usize; 3] {
        [
            posts(&self.h.sim, &self.sales, &self.s_users[0]),
            posts(&self.h.sim, &self.sales, &self.s_users[1]),
            posts(&self.h.sim, &self.support, &self.p_users[0]),
        ]
    }

    async fn run(&self, sel: &Selector, opts: &Options) -> manual::Summary {
        manual::run_manual(&self.h.ctx, sel, opts, |_| {})
            .await
            .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_manual_retry_by_login_and_app_label_pushes_only_that_user() {
    let m = Manual::new().await;
    // A user by login within an app (label, any case).
    let sel = Selector::User {
        user: "ANN@x.com".into(),
        app: Some("sales".into()),
    };
    let s = m.run(&sel, &m.opts).await;
    assert_eq!(s.lines.len(), 1, "{:?}", s.lines);
    assert_eq!(s.lines[0].failure.id, m.ann);
    assert!(
        matches!(s.lines[0].result, Retried::Succeeded(_)),
        "{:?}",
        s.lines
    );
    assert!(!s.any_failed);
    assert_eq!(m.post_counts(), [1, 0, 0]);
    assert_eq!(failure(&m.h.ctx, m.ann).state, State::Resolved);
    let hist = history(&m.h.ctx, m.ann);
    let started = hist.iter().find(|e| e.kind == "retry_started").unwrap();
    assert_eq!(started.actor, "cli:tester");
    assert_eq!(hist.last().unwrap().actor, "cli:tester");
}

#[tokio::test(start_paused = true)]
async fn a_manual_dry_run_lists_and_touches_nothing() {
    let m = Manual::new().await;
    let dry = Options {
        dry_run: true,
        ..m.opts.clone()
    };
    let s = m.run(&Selector::All, &dry).await;
    let mut listed: Vec<i64> = s.lines.iter().map(|l| l.failure.id).collect();
    listed.sort_unstable();
    let mut all = vec![m.ann, m.ben, m.cat];
    all.sort_unstable();
    assert_eq!(listed, all);
    assert!(s.lines.iter().all(|l| l.result == Retried::WouldRetry));
    assert!(s.lines[0].render().contains("would retry"));
    assert!(!s.any_failed);
    assert_eq!(m.post_counts(), [0, 0, 0]);
    assert_eq!(failure(&m.h.ctx, m.ann).state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_manual_retry_by_app_label_pushes_only_that_app() {
    let m = Manual::new().await;
    let s = m.run(&Selector::App("Support".into()), &m.opts).await;
    assert_eq!(
        s.lines.iter().map(|l| l.failure.id).collect::<Vec<_>>(),
        [m.cat]
    );
    assert_eq!(m.post_counts(), [0, 0, 1]);
}

/// Claims `id` for another owner for a minute, as a running daemon would.
fn hold(ctx: &Context, id: i64, owner: &str) -> i64 {
    let now = ctx.now_ms();
    ctx.store
        .write_blocking(|tx| {
            store_retry::claim(tx, id, owner, now, now + 60_000, "t", "x")?.expect("claimable");
            Ok(())
        })
        .unwrap();
    now
}

#[tokio::test(start_paused = true)]
async fn a_manual_retry_of_a_failure_held_elsewhere_is_skipped_as_busy() {
    let m = Manual::new().await;
    hold(&m.h.ctx, m.ben, "daemon-other");
    let s = m.run(&Selector::Failure(m.ben), &m.opts).await;
    let Retried::Busy(d) = &s.lines[0].result else {
        panic!("{:?}", s.lines)
    };
    assert!(d.contains("daemon-other"), "{d}");
    assert!(s.lines[0].render().contains("busy, skipped"));
    assert_eq!(m.post_counts(), [0, 0, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_released_failure_is_retried_manually_despite_backoff_and_exhaustion() {
    let m = Manual::new().await;
    let now = hold(&m.h.ctx, m.ben, "daemon-other");
    m.h.ctx
        .store
        .blocking(|c| {
            store_retry::release_all(
                &okta_provwatch::store::Tx::over(c),
                "daemon-other",
                now,
                "t",
            )?;
            c.execute(
                "UPDATE failures SET retry_exhausted = 1, next_attempt_at = ?2 WHERE id = ?1",
                [m.ben, now + 86_400_000],
            )?;
            Ok(())
        })
        .unwrap();
    let s = m.run(&Selector::Failure(m.ben), &m.opts).await;
    assert!(
        matches!(s.lines[0].result, Retried::Succeeded(_)),
        "{:?}",
        s.lines
    );
    assert_eq!(m.post_counts(), [0, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_manual_retry_fails_the_command_and_an_unknown_id_is_an_error() {
    let m = Manual::new().await;
    let (down, d_users) = failing_app(&m.h.sim, "Down", &["dan@x.com"]);
    let dan = observe(
        &m.h.ctx,
        &down,
        &d_users[0],
        "dan@x.com",
        Operation::Create,
        DOWN,
    );
    let s = m.run(&Selector::Failure(dan), &m.opts).await;
    assert!(s.any_failed);
    assert!(
        matches!(s.lines[0].result, Retried::Failed(_)),
        "{:?}",
        s.lines
    );
    assert!(matches!(
        manual::run_manual(&m.h.ctx, &Selector::Failure(9_999), &m.opts, |_| {}).await,
        Err(manual::SelectError::NoSuchFailure(9_999))
    ));
}

#[test]
fn two_claimers_on_two_connections_never_hold_the_same_failure() {
    use okta_provwatch::store::Store;
    let dir = temp_dir();
    let path = state_path(dir.path());
    let a = Store::open(&path).unwrap();
    let b = Store::open(&path).unwrap();
    let n = 300;
    a.write_blocking(|tx| {
        for i in 0..n {
            let o = Observation {
                app_id: format!("0oa{}", i % 7),
                app_label: None,
                user_id: format!("00u{i}"),
                user_login: None,
                operation: Operation::Update,
                failed: true,
                reason: Some("boom".into()),
                event_uuid: None,
                published_ms: None,
                source: Source::Scan,
            };
            failures::apply(tx, &o, 0, "t")?;
        }
        Ok(())
    })
    .unwrap();
    let cfg = okta_provwatch::config::RetryConfig {
        enabled: true,
        max_attempts: 5,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(60),
        per_minute: 1000,
    };
    let claimer = |s: Store, owner: &'static str, cfg: okta_provwatch::config::RetryConfig| {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            loop {
                let claimed = s
                    .write_blocking(|c| {
                        okta_provwatch::retry::claim_next(
                            c,
                            &cfg,
                            owner,
                            10_000,
                            Duration::from_secs(600),
                        )
                    })
                    .unwrap();
                match claimed {
                    Some(cl) => got.push(cl.failure.id),
                    None => return got,
                }
            }
        })
    };
    let ta = claimer(a.clone(), "proc-a", cfg.clone());
    let tb = claimer(b.clone(), "proc-b", cfg);
    let (ga, gb) = (ta.join().unwrap(), tb.join().unwrap());
    let mut all: Vec<i64> = ga.iter().chain(gb.iter()).copied().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a failure was claimed twice");
    assert_eq!(all.len(), n);
    // The store agrees on who holds what.
    let held: Vec<(i64, String)> = a
        .blocking(|c| {
            let mut st =
                c.prepare("SELECT id, claimed_by FROM failures WHERE state = 'retrying'")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap();
    assert_eq!(held.len(), n);
    for (id, by) in held {
        let expected = if ga.contains(&id) { "proc-a" } else { "proc-b" };
        assert_eq!(by, expected);
    }

    // Racing for the same ids directly (a manual retry against the daemon): the conditional
    // claim lets exactly one of them win each, until the lease expires.
    let ids: Vec<i64> = all.clone();
    let racer = |s: Store, owner: &'static str, ids: Vec<i64>| {
        std::thread::spawn(move || {
            let mut won = Vec::new();
            for id in ids {
                let r = s
                    .write_blocking(|tx| {
                        // Past the first leases (10 s + 600 s), inside the next ones.
                        store_retry::claim(tx, id, owner, 700_000, 1_300_000, "t", "race")
                    })
                    .unwrap();
                if r.is_ok() {
                    won.push(id);
                }
            }
            won
        })
    };
    let ra = racer(a.clone(), "race-a", ids.clone());
    let rb = racer(b.clone(), "race-b", ids.clone());
    let (wa, wb) = (ra.join().unwrap(), rb.join().unwrap());
    assert_eq!(
        wa.len() + wb.len(),
        n,
        "each failure has exactly one winner"
    );
    assert!(wa.iter().all(|id| !wb.contains(id)));
}

#[tokio::test(start_paused = true)]
async fn two_workers_on_two_connections_retry_each_failure_once() {
    let h = harness(|_| {}).await;
    let logins: Vec<String> = (0..12).map(|i| format!("p{i}@x.com")).collect();
    let refs: Vec<&str> = logins.iter().map(String::as_str).collect();
    let (app, users) = failing_app(&h.sim, "Sales", &refs);
    h.sim.set_downstream(&app, Downstream::Healthy);
    let ids: Vec<i64> = users
        .iter()
        .zip(&refs)
        .map(|(u, l)| observe(&h.ctx, &app, u, l, Operation::Create, TRANSIENT))
        .collect();
    // A second "process": its own store connection, Okta client and pacer.
    let other = context_on(
        config_with(&h.sim, h.dir.path(), "[retry]\nenabled = true\n"),
        Clock::tokio(),
    );
    let mut cfg2 = (*other.config).clone();
    cfg2.retry = h.ctx.config.retry.clone();
    let other = Context {
        config: std::sync::Arc::new(cfg2),
        ..other
    };
    let w1 = spawn_worker(&h.ctx, "proc-a");
    let w2 = spawn_worker(&other, "proc-b");
    wait_until("every failure resolved", Duration::from_secs(900), || {
        ids.iter()
            .all(|id| failure(&h.ctx, *id).state == State::Resolved)
    })
    .await;
    stop(w1).await;
    stop(w2).await;
    let mut by_worker = std::collections::HashSet::new();
    for (id, u) in ids.iter().zip(&users) {
        let hist = history(&h.ctx, *id);
        let started: Vec<_> = hist.iter().filter(|e| e.kind == "retry_started").collect();
        assert_eq!(started.len(), 1, "{hist:?}");
        by_worker.insert(started[0].detail.clone().unwrap().contains("proc-a"));
        assert_eq!(posts(&h.sim, &app, u), 1);
    }
    assert_eq!(by_worker.len(), 2, "both workers should have taken a share");
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_ten_thousand_failures_drains_at_the_configured_rate() {
    let h = harness(|c| {
        c.retry.per_minute = 20;
        c.retry.initial_backoff = Duration::from_secs(1);
    })
    .await;
    // Room in Okta's bucket, so that the retry pacer is what limits the rate.
    h.sim.set_rate_limit(Bucket::Apps, 600);
    let app = h.sim.add_app("Big");
    h.sim.set_downstream(&app, Downstream::Down);
    let mut real = Vec::new();
    for i in 0..40 {
        let u = h.sim.add_user(&format!("real{i}@x.com"));
        h.sim.assign(&app, &u);
        real.push(u);
    }
    h.sim.set_downstream(&app, Downstream::Healthy);
    let now = h.ctx.now_ms();
    let app2 = app.clone();
    h.ctx
        .store
        .write_blocking(move |tx| {
            for i in 0..10_000usize {
                // Every 10th of the first 400 is a real app user in ERROR; the rest are
                // gone (404), which resolves them after one read.
                let (user, op) = if i % 10 == 0 && i < 400 {
                    (real[i / 10].clone(), Operation::Create)
                } else {
                    (format!("00ughost{i}"), Operation::Update)
                };
                let o = Observation {
                    app_id: app2.clone(),
                    app_label: Some("Big".into()),
                    user_id: user,
                    user_login: None,
                    operation: op,
                    failed: true,
                    reason: Some(TRANSIENT.into()),
                    event_uuid: None,
                    published_ms: None,
                    source: Source::Scan,
                };
                failures::apply(tx, &o, now, "t")?;
            }
            Ok(())
        })
        .unwrap();

    let w = spawn_worker(&h.ctx, "w1");
    tokio::time::sleep(Duration::from_secs(600)).await;
    stop(w).await;

    let starts: Vec<i64> = h
        .ctx
        .store
        .blocking(|c| {
            let mut st = c.prepare(
                "SELECT at FROM failure_history WHERE kind = 'retry_started' ORDER BY at",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .unwrap();
    // Ten minutes at 20 a minute: about 200, never more than one cell over.
    assert!(starts.len() >= 150, "only {} retries started", starts.len());
    assert!(starts.len() <= 201, "{} retries started", starts.len());
    for (i, t) in starts.iter().enumerate() {
        let in_window = starts[i..].iter().take_while(|u| **u < t + 60_000).count();
        assert!(
            in_window <= 20,
            "{in_window} retries started within 60 s of {t}"
        );
    }
    let stats = h.sim.stats();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    // Real re-pushes happened (not just reads of gone users).
    assert!(real_posts(&h.sim) >= 5, "{}", real_posts(&h.sim));
}

fn real_posts(sim: &OktaSim) -> usize {
    sim.requests().iter().filter(|r| r.method == "POST").count()
}

fn claimed_by(ctx: &Context, id: i64) -> Option<String> {
    ctx.store
        .blocking(|c| {
            Ok(
                c.query_row("SELECT claimed_by FROM failures WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?,
            )
        })
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn claims_of_a_killed_claimer_are_released_when_their_lease_expires() {
    let h = harness(|_| {}).await;
    let (app, users) = failing_app(&h.sim, "Sales", &["ann@x.com", "ben@x.com"]);
    h.sim.set_downstream(&app, Downstream::Healthy);
    let ann = observe(
        &h.ctx,
        &app,
        &users[0],
        "ann@x.com",
        Operation::Create,
        DOWN,
    );
    let ben = observe(
        &h.ctx,
        &app,
        &users[1],
        "ben@x.com",
        Operation::Create,
        DOWN,
    );
    // ann: alerted and exhausted, then a `retry` command claimed her and was killed; ben: a
    // daemon claimed him and was killed. Both leases end in a minute.
    let now = h.ctx.now_ms();
    let lease_end = now + 60_000;
    h.ctx
        .store
        .blocking(|c| {
            c.execute(
                "UPDATE failures SET state = 'alerted', retry_exhausted = 1 WHERE id = ?1",
                [ann],
            )?;
            store_retry::claim(
                &okta_provwatch::store::Tx::over(c),
                ann,
                "cli-killed",
                now,
                lease_end,
                "t",
                "x",
            )?
            .unwrap();
            store_retry::claim(
                &okta_provwatch::store::Tx::over(c),
                ben,
                "daemon-killed",
                now,
                lease_end,
                "t",
                "x",
            )?
            .unwrap();
            Ok(())
        })
        .unwrap();
    let w = spawn_worker(&h.ctx, "w1");
    tokio::time::sleep(Duration::from_secs(30)).await;
    // Not before the lease ends.
    assert_eq!(failure(&h.ctx, ann).state, State::Retrying);
    assert_eq!(failure(&h.ctx, ben).state, State::Retrying);
    wait_until("ben to be retried", Duration::from_secs(300), || {
        failure(&h.ctx, ben).state == State::Resolved
    })
    .await;
    wait_until(
        "ann's claim to be released",
        Duration::from_secs(60),
        || failure(&h.ctx, ann).state != State::Retrying,
    )
    .await;
    stop(w).await;

    // ann is exhausted, so no automatic retry takes her over: only the lease expiry frees
    // her, back to the state she was claimed from, and nothing was pushed.
    let f = failure(&h.ctx, ann);
    assert_eq!((f.state, f.attempts), (State::Alerted, 0));
    assert_eq!(claimed_by(&h.ctx, ann), None);
    let expired = history(&h.ctx, ann)
        .into_iter()
        .find(|e| e.kind == "retry_lease_expired")
        .expect("a lease-expiry history row");
    assert!(expired.at >= lease_end, "{expired:?}");
    assert!(
        expired.detail.as_deref().unwrap().contains("cli-killed"),
        "{expired:?}"
    );
    assert_eq!(posts(&h.sim, &app, &users[0]), 0);
    // ben was retried once, after the lease.
    let s = starts(&h.ctx, ben);
    assert_eq!(s.len(), 2, "{:?}", history(&h.ctx, ben));
    assert!(s[1] >= lease_end, "{s:?}");
    assert_eq!(posts(&h.sim, &app, &users[1]), 1);
}

#[tokio::test(start_paused = true)]
async fn with_retries_disabled_expired_claims_are_still_released() {
    let h = harness(|c| c.retry.enabled = false).await;
    let id = observe(&h.ctx, "0oaX", "00uX", "x@x.com", Operation::Update, DOWN);
    let now = h.ctx.now_ms();
    h.ctx
        .store
        .blocking(|c| {
            store_retry::claim(
                &okta_provwatch::store::Tx::over(c),
                id,
                "cli-killed",
                now,
                now + 60_000,
                "t",
                "x",
            )?
            .unwrap();
            Ok(())
        })
        .unwrap();
    let w = spawn_worker(&h.ctx, "w1");
    wait_until("the claim to be released", Duration::from_secs(120), || {
        failure(&h.ctx, id).state == State::Open
    })
    .await;
    stop(w).await;
    assert_eq!(claimed_by(&h.ctx, id), None);
    assert_eq!(failure(&h.ctx, id).attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_fixed_by_a_retry_is_not_reopened_by_an_older_log_event() {
    let h = harness(|c| c.retry.enabled = false).await;
    let (app, users) = failing_app(&h.sim, "Sales", &["ann@x.com"]);
    h.sim.set_downstream(&app, Downstream::Healthy);
    let id = observe(
        &h.ctx,
        &app,
        &users[0],
        "ann@x.com",
        Operation::Create,
        DOWN,
    );
    let opts = Options {
        settle: Duration::from_secs(1),
        ..Options::new("cli:tester".into(), false)
    };
    let s = manual::run_manual(&h.ctx, &Selector::Failure(id), &opts, |_| {})
        .await
        .unwrap();
    assert!(matches!(s.lines[0].result, Retried::Succeeded(_)), "{s:?}");
    let fixed_at = failure(&h.ctx, id).resolved_at.unwrap();

    // The System Log is read with lag: a failure event published before the retry read the
    // app user SYNCHRONIZED arrives afterwards. It is old news.
    let event = |published: i64| Observation {
        app_id: app.clone(),
        app_label: None,
        user_id: users[0].clone(),
        user_login: Some("ann@x.com".into()),
        operation: Operation::Create,
        failed: true,
        reason: Some(DOWN.into()),
        event_uuid: Some(format!("ev{published}")),
        published_ms: Some(published),
        source: Source::Log,
    };
    let apply = |o: &Observation, now: i64| {
        h.ctx
            .store
            .write_blocking(|c| failures::apply(c, o, now, "poller"))
            .unwrap()
    };
    assert_eq!(
        apply(&event(fixed_at - 1_000), fixed_at + 30_000),
        Applied::Ignored
    );
    assert_eq!(failure(&h.ctx, id).state, State::Resolved);
    // A failure published after the fix is news.
    assert_eq!(
        apply(&event(fixed_at + 1_000), fixed_at + 31_000),
        Applied::Reopened(id)
    );
}

#[tokio::test(start_paused = true)]
async fn a_successful_probe_closes_the_circuit_even_when_its_failure_was_resolved_meanwhile() {
    use okta_provwatch::retry::attempt::{self, Outcome, Trigger};
    use okta_provwatch::retry::circuit::Change;
    use okta_provwatch::store::retry::Finished;

    let h = harness(|_| {}).await;
    // Okta reported the integration failing, so "no user left to probe" keeps it open.
    let app = "0oaC";
    let o = Observation {
        reason: Some("Authentication failed".into()),
        ..Observation::failure(app, "", Operation::Integration)
    };
    let now = h.ctx.now_ms();
    let integration = h
        .ctx
        .store
        .write_blocking(|c| match failures::apply(c, &o, now, "test")? {
            Applied::Opened(id) => Ok(id),
            other => panic!("{other:?}"),
        })
        .unwrap();
    let user = observe(&h.ctx, app, "00uP", "p@x.com", Operation::Update, DOWN);
    let cfg = h.ctx.config.retry.clone();
    let mut claim = h
        .ctx
        .store
        .blocking(|c| {
            okta_provwatch::retry::circuit::open_for_integration_failures(
                &okta_provwatch::store::Tx::over(c),
                &cfg,
                now,
                "t",
            )?;
            Ok(store_retry::claim(
                &okta_provwatch::store::Tx::over(c),
                user,
                "w1",
                now,
                now + 300_000,
                "t",
                "probe",
            )?
            .unwrap())
        })
        .unwrap();
    claim.probe = true;
    // The scanner sees the user synchronized while the probe settles.
    h.ctx
        .store
        .write_blocking(|c| failures::resolve(c, user, now + 1, None, "scanner", "SYNCHRONIZED"))
        .unwrap();
    let report = attempt::record(
        &h.ctx,
        &claim,
        Trigger::Probe,
        "retry-worker",
        Outcome::Succeeded("retry succeeded: the app user is SYNCHRONIZED".into()),
    )
    .await
    .unwrap();
    assert_eq!(report.finished, Finished::NotHeld);
    assert_eq!(report.circuit, Some(Change::Closed));
    let ci = h
        .ctx
        .store
        .write_blocking(|c| store_retry::get_circuit(c, app))
        .unwrap()
        .unwrap();
    assert!(!ci.open);
    assert_eq!(failure(&h.ctx, integration).state, State::Resolved);
}

#[tokio::test(start_paused = true)]
async fn a_retry_never_outlives_its_claim() {
    let h = harness(|_| {}).await;
    let (app, users) = failing_app(&h.sim, "Sales", &["ann@x.com"]);
    let id = observe(
        &h.ctx,
        &app,
        &users[0],
        "ann@x.com",
        Operation::Create,
        DOWN,
    );
    let now = h.ctx.now_ms();
    // A lease too short to push and verify within: the retry gives up instead of running on
    // after another claimer may have taken the failure.
    let claim = h
        .ctx
        .store
        .write_blocking(|c| {
            Ok(store_retry::claim(c, id, "w1", now, now + 3_000, "t", "x")?.unwrap())
        })
        .unwrap();
    let report = okta_provwatch::retry::attempt::run(
        &h.ctx,
        &claim,
        okta_provwatch::retry::attempt::Trigger::Automatic,
        "retry-worker",
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            report.outcome,
            okta_provwatch::retry::attempt::Outcome::Deferred { .. }
        ),
        "{report:?}"
    );
    assert_eq!(posts(&h.sim, &app, &users[0]), 0);
    let f = failure(&h.ctx, id);
    assert_eq!((f.state, f.attempts), (State::Open, 0));
    assert_eq!(claimed_by(&h.ctx, id), None);
}

/// While Okta itself fails (5xx), retries are deferred, never counted as attempts, and each
/// deferral in a row waits twice as long, so a long Okta outage does not keep spending the
/// org's shared rate limit on every failure at `initial_backoff`.
#[tokio::test(start_paused = true)]
async fn deferrals_back_off_further_while_okta_keeps_failing() {
    let h = harness(|c| {
        c.retry.initial_backoff = Duration::from_secs(20);
        c.retry.max_backoff = Duration::from_secs(3600);
    })
    .await;
    let (app, users) = failing_app(&h.sim, "Sales", &["dee@example.com"]);
    let id = observe(
        &h.ctx,
        &app,
        &users[0],
        "dee@example.com",
        Operation::Create,
        TRANSIENT,
    );
    h.sim.inject_fault(Fault {
        bucket: Some(Bucket::Apps),
        kind: FaultKind::ServerError(503),
        times: 100_000,
    });
    let w = spawn_worker(&h.ctx, "w1");
    let deferrals = || {
        history(&h.ctx, id)
            .into_iter()
            .filter(|e| e.kind == "retry_deferred")
            .map(|e| e.at)
            .collect::<Vec<_>>()
    };
    wait_until("four deferrals", Duration::from_secs(3600), || {
        deferrals().len() >= 4
    })
    .await;
    stop(w).await;
    let d = deferrals();
    assert_eq!(
        failure(&h.ctx, id).attempts,
        0,
        "deferrals are not attempts"
    );
    // 20 s, 40 s, 80 s apart (each -20 % jitter at worst), plus the time the client spends on
    // its own backoff between 5xx answers.
    for (i, min_gap) in [32_000, 64_000].into_iter().enumerate() {
        let gap = d[i + 2] - d[i + 1];
        assert!(
            gap >= min_gap,
            "gap {} is {gap} ms < {min_gap}: {d:?}",
            i + 1
        );
    }
}

// ---------------------------------------------------------------------------------------
// Issue 11: failure classes, log-confirmed pushes, wake-ups, prompt stop, urgent alerts.
// ---------------------------------------------------------------------------------------

use okta_provwatch::detect::poller;

/// Requests to one app user's route by method (`GET` reads, `POST` re-pushes).
fn calls(sim: &OktaSim, app: &str, user: &str, method: &str) -> usize {
    let path = format!("/api/v1/apps/{app}/users/{user}");
    sim.requests()
        .iter()
        .filter(|r| r.method == method && r.path.split('?').next() == Some(path.as_str()))
        .count()
}

/// An app whose downstream rejects `logins` with `reason` (their pushes fail with it in the
/// System Log), with them assigned.
fn rejecting_app(
    sim: &OktaSim,
    label: &str,
    logins: &[&str],
    reason: &str,
) -> (String, Vec<String>) {
    let app = sim.add_app(label);
    sim.set_downstream(
        &app,
        Downstream::Reject {
            logins: logins.iter().map(|l| l.to_string()).collect(),
            reason: reason.into(),
        },
    );
    let users = logins
        .iter()
        .map(|l| {
            let u = sim.add_user(l);
            sim.assign(&app, &u);
            u
        })
        .collect();
    (app, users)
}

async fn poll(ctx: &Context) -> poller::PollOutcome {
    poller::poll_once(ctx).await.expect("the poll succeeds")
}

fn kinds(ctx: &Context, id: i64) -> Vec<String> {
    history(ctx, id)
        .into_iter()
        .map(|h| h.kind.to_string())
        .collect()
}

/// The app answered Okta's push with 429: Okta retries it itself, so the worker watches for
/// `max_backoff` without a single re-push, and the failure resolves when Okta's own retry
/// goes through (seen in the System Log).
#[tokio::test(start_paused = true)]
async fn a_push_the_app_throttled_is_watched_not_pushed_again() {
    let h = harness(|c| {
        c.retry.initial_backoff = Duration::from_secs(5);
        c.retry.max_backoff = Duration::from_secs(600);
    })
    .await;
    let reason = "Errors reported by remote server: HTTP 429 Too Many Requests";
    let app = h.sim.add_app("Throttler");
    let user = h.sim.add_user("tom@x.com");
    h.sim.assign(&app, &user);
    let users = [user];
    poll(&h.ctx).await;
    // A profile push the app answers with 429.
    h.sim.set_downstream(
        &app,
        Downstream::Reject {
            logins: vec!["tom@x.com".into()],
            reason: reason.into(),
        },
    );
    h.sim.update_profile(&app, &users[0]);
    let found = poll(&h.ctx).await;
    assert_eq!(found.opened, 1, "{found:?}");
    let id = found_id(&h.ctx, &app, &users[0], Operation::Update);
    let gets_before = calls(&h.sim, &app, &users[0], "GET");
    let w = spawn_worker(&h.ctx, "w1");
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(calls(&h.sim, &app, &users[0], "POST"), 0);
    assert_eq!(calls(&h.sim, &app, &users[0], "GET"), gets_before);
    assert!(kinds(&h.ctx, id).contains(&"retry_held".to_string()));
    let held = history(&h.ctx, id)
        .into_iter()
        .find(|e| e.kind == "retry_held")
        .unwrap();
    assert!(held
        .detail
        .unwrap()
        .contains("Okta retries such pushes itself"));
    // Okta's own retry goes through: the poller resolves the failure, no push of ours needed.
    h.sim.set_downstream(&app, Downstream::Healthy);
    h.sim.update_profile(&app, &users[0]);
    poll(&h.ctx).await;
    stop(w).await;
    assert_eq!(failure(&h.ctx, id).state, State::Resolved);
    assert_eq!(calls(&h.sim, &app, &users[0], "POST"), 0);
}

fn profile_update_event(user: &str, published: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    serde_json::json!({
        "uuid": uuid_like(user, published.timestamp_millis()),
        "published": published.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventType": "user.account.update_profile",
        "legacyEventType": "core.user.config.profile_update.success",
        "displayMessage": "Update user profile for Okta",
        "severity": "INFO",
        "outcome": { "result": "SUCCESS" },
        "actor": { "id": "00uadmin", "type": "User", "alternateId": "admin@x.com" },
        "target": [ { "id": user, "type": "User", "alternateId": "user" } ]
    })
}

fn uuid_like(user: &str, at: i64) -> String {
    format!("profile-{user}-{at}")
}

/// The app rejected the user's data: no blind retry at all; the failure is left for a person
/// (retries exhausted, with what to fix); when the user's Okta profile changes, exactly one
/// retry follows.
#[tokio::test(start_paused = true)]
async fn a_data_error_is_not_retried_until_the_users_profile_changes_then_once() {
    let h = harness(|c| {
        c.retry.initial_backoff = Duration::from_secs(5);
        c.retry.max_backoff = Duration::from_secs(60);
    })
    .await;
    let reason = "Bad Request. Errors reported by remote server: department is required";
    let (app, users) = rejecting_app(&h.sim, "HRIS", &["dana@x.com"], reason);
    assert_eq!(poll(&h.ctx).await.opened, 1);
    let id = found_id(&h.ctx, &app, &users[0], Operation::Create);
    let w = spawn_worker(&h.ctx, "w1");
    wait_until(
        "the failure to be left for a person",
        Duration::from_secs(120),
        || failure(&h.ctx, id).retry_exhausted,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(calls(&h.sim, &app, &users[0], "POST"), 0, "no blind retry");
    let why = history(&h.ctx, id)
        .into_iter()
        .find(|e| e.kind == "retries_exhausted")
        .and_then(|e| e.detail)
        .unwrap();
    assert!(
        why.contains("correct the attribute") && why.contains("department is required"),
        "{why}"
    );

    // The user's profile changes (still without the department): one retry, then held again.
    h.sim.push_log_event(profile_update_event(
        &users[0],
        h.ctx.clock.now() + chrono::Duration::seconds(1),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = poll(&h.ctx).await;
    assert_eq!(found.profile_changes, 1, "{found:?}");
    wait_until(
        "the one retry after the profile change",
        Duration::from_secs(120),
        || calls(&h.sim, &app, &users[0], "POST") == 1 && failure(&h.ctx, id).retry_exhausted,
    )
    .await;
    // The push's failure event reaches the log; nothing more is pushed.
    poll(&h.ctx).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    poll(&h.ctx).await;
    stop(w).await;
    assert_eq!(calls(&h.sim, &app, &users[0], "POST"), 1);
    let f = failure(&h.ctx, id);
    assert!(f.retry_exhausted && f.state != State::Resolved, "{f:?}");
}

/// Credentials or connection errors are app-wide: the first such failure opens the app's
/// circuit before any of its users is pushed (one app-level failure for people), and only
/// probes push until one succeeds.
#[tokio::test(start_paused = true)]
async fn a_connection_error_opens_the_apps_circuit_before_any_push() {
    let h = harness(|c| {
        c.retry.initial_backoff = Duration::from_secs(5);
        c.retry.max_backoff = Duration::from_secs(60);
    })
    .await;
    let logins = ["c1@x.com", "c2@x.com", "c3@x.com", "c4@x.com"];
    let (app, users) = failing_app(&h.sim, "Down CRM", &logins);
    assert_eq!(poll(&h.ctx).await.opened, logins.len());
    let w = spawn_worker(&h.ctx, "w1");
    wait_until("the circuit to open", Duration::from_secs(120), || {
        h.ctx
            .store
            .write_blocking(|c| store_retry::get_circuit(c, &app))
            .unwrap()
            .is_some_and(|c| c.open)
    })
    .await;
    let pushed_before_open: usize = users.iter().map(|u| calls(&h.sim, &app, u, "POST")).sum();
    assert!(
        pushed_before_open <= 1,
        "{pushed_before_open} pushes before the circuit opened"
    );
    let app_failure =
        found(&h.ctx, &app, "", Operation::Integration).expect("one app-level failure");
    assert!(app_failure.reason.unwrap().contains(DOWN));
    // Down for ten minutes: a handful of probes, never the whole queue.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let pushed: usize = users.iter().map(|u| calls(&h.sim, &app, u, "POST")).sum();
    assert!(pushed <= 15, "{pushed} pushes while the app was down");
    h.sim.set_downstream(&app, Downstream::Healthy);
    wait_until("every user fixed", Duration::from_secs(900), || {
        users
            .iter()
            .all(|u| sync_state(&h.sim, &app, u).as_deref() == Some("SYNCHRONIZED"))
    })
    .await;
    stop(w).await;
}

/// A transient failure whose retry fails again learns so from the System Log the poller
/// reads anyway: one read and one `POST` per attempt, no read-back.
#[tokio::test(start_paused = true)]
async fn a_retry_costs_two_calls_when_the_log_reports_its_outcome() {
    let h = harness(|c| {
        c.retry.max_attempts = 3;
        c.retry.initial_backoff = Duration::from_secs(5);
        c.retry.max_backoff = Duration::from_secs(20);
        c.detect.poll_interval = Duration::from_secs(10);
    })
    .await;
    let reason = "Errors reported by remote server: 503 Service Temporarily Unavailable";
    let (app, users) = rejecting_app(&h.sim, "Flaky", &["fay@x.com"], reason);
    assert_eq!(poll(&h.ctx).await.opened, 1);
    let id = found_id(&h.ctx, &app, &users[0], Operation::Create);
    let token = CancellationToken::new();
    let tuning = Tuning {
        // Long: a read-back would only happen if the log said nothing for a minute.
        confirm_within: Some(Duration::from_secs(60)),
        ..tuning("w1")
    };
    let w = tokio::spawn(worker::run_with(h.ctx.clone(), token.clone(), tuning));
    let ctx = h.ctx.clone();
    let poller_stop = CancellationToken::new();
    let p = tokio::spawn(poller::run(ctx, poller_stop.clone()));
    wait_until("retries exhausted", Duration::from_secs(600), || {
        failure(&h.ctx, id).retry_exhausted
    })
    .await;
    poller_stop.cancel();
    p.await.unwrap();
    stop((token, w)).await;
    let f = failure(&h.ctx, id);
    assert_eq!(f.attempts, 3, "{:?}", kinds(&h.ctx, id));
    let (gets, posts) = (
        calls(&h.sim, &app, &users[0], "GET"),
        calls(&h.sim, &app, &users[0], "POST"),
    );
    assert_eq!(posts, 3);
    assert_eq!(
        gets,
        3,
        "one read per attempt, no read-back: {:#?}",
        history(&h.ctx, id)
    );
    let failed: Vec<_> = history(&h.ctx, id)
        .into_iter()
        .filter(|e| e.kind == "retry_failed")
        .collect();
    assert!(
        failed
            .iter()
            .all(|e| e.detail.as_deref().unwrap().contains("System Log")),
        "{failed:?}"
    );
}

/// Opened by a poll, a due failure is retried at once: the worker is woken, it does not wait
/// for its idle poll (a minute in this tuning).
#[tokio::test(start_paused = true)]
async fn a_failure_opened_by_a_poll_is_retried_within_a_second() {
    let h = harness(|c| c.retry.initial_backoff = Duration::ZERO).await;
    let w = spawn_worker(&h.ctx, "w1");
    // The worker is idle, waiting for its minute-long idle poll.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (app, users) = rejecting_app(&h.sim, "Late", &["lee@x.com"], TRANSIENT);
    assert_eq!(poll(&h.ctx).await.opened, 1);
    let polled = h.ctx.now_ms();
    let id = found_id(&h.ctx, &app, &users[0], Operation::Create);
    wait_until("the retry", Duration::from_secs(30), || {
        !starts(&h.ctx, id).is_empty()
    })
    .await;
    stop(w).await;
    let started = starts(&h.ctx, id)[0];
    assert!(
        started - polled <= 1_000,
        "retry started {} ms after the poll",
        started - polled
    );
}

/// SIGTERM with 200 retries waiting for the Okta budget: the worker stops within 2 s and no
/// re-push `POST` reaches Okta after the signal. Real time, real sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_with_two_hundred_retries_waiting_for_budget_is_prompt_and_sends_nothing() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let mut config = config_with(&sim, dir.path(), "[retry]\nenabled = true\n");
    config.retry.initial_backoff = Duration::ZERO;
    config.retry.per_minute = 100_000;
    config.okta.rate_limit_share = 0.5;
    let ctx = context_on(config, Clock::system());
    // A tight apps bucket: 10 a minute, 5 of them ours.
    sim.set_rate_limit(Bucket::Apps, 10);
    let app = sim.add_app("Busy");
    sim.set_downstream(&app, Downstream::Down);
    let mut users = Vec::new();
    for i in 0..200 {
        let u = sim.add_user(&format!("b{i}@x.com"));
        sim.assign(&app, &u);
        users.push(u);
    }
    for (i, u) in users.iter().enumerate() {
        observe(
            &ctx,
            &app,
            u,
            &format!("b{i}@x.com"),
            Operation::Create,
            TRANSIENT,
        );
    }
    let token = CancellationToken::new();
    let tuning = Tuning {
        concurrency: Some(200),
        ..tuning("w-stop")
    };
    let w = tokio::spawn(worker::run_with(ctx.clone(), token.clone(), tuning));
    // Let the worker claim everything and the budget hold the retries back.
    let claimed = eventually(Duration::from_secs(20), || {
        ctx.store
            .write_blocking(store_retry::claimed_count)
            .unwrap_or(0)
            >= 150
    })
    .await;
    assert!(claimed, "the worker claimed the storm");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let signalled = chrono::Utc::now();
    let t0 = std::time::Instant::now();
    token.cancel();
    w.await.unwrap();
    let took = t0.elapsed();
    eprintln!("measured: stop with the storm waiting for budget took {took:?}");
    assert!(took <= Duration::from_secs(2), "stopping took {took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/users/") && r.at > signalled)
        .collect();
    assert!(late.is_empty(), "POSTs after the signal: {late:?}");
    // Every claim was released, none counted as an attempt.
    let left = ctx
        .store
        .write_blocking(store_retry::claimed_count)
        .unwrap();
    assert_eq!(left, 0);
}

/// An urgent failure found by a poll reaches Slack within a second of that poll: the poller
/// wakes the evaluator, which hands the message to the sender at once (no evaluation or
/// sender tick in the path). Real time, real sockets (Okta simulator, fake Slack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_urgent_failure_reaches_slack_within_a_second_of_the_poll() {
    let sim = start_okta().await;
    let slack = start_slack().await;
    let dir = temp_dir();
    let sections = r#"
[alert]
group_wait = "30s"
persist_after = "10m"

[slack]
webhook_url_env = "PROVWATCH_TEST_SLACK_HOOK"
"#;
    let toml = minimal_toml(sim.base_url().as_str(), dir.path(), "", sections);
    let config = parse_config(
        &toml,
        &sim.api_token(),
        &[("PROVWATCH_TEST_SLACK_HOOK", slack.webhook_url().as_str())],
    );
    let ctx = context_on(config, Clock::system());
    let app = sim.add_app("Payroll");
    let u = sim.add_user("quinn@x.com");
    sim.assign(&app, &u);
    // Baseline poll: the cursor is past the assignment.
    poll(&ctx).await;
    let stop_all = CancellationToken::new();
    let eval = tokio::spawn(okta_provwatch::alert::evaluator::run(
        ctx.clone(),
        stop_all.clone(),
    ));
    let send = tokio::spawn(okta_provwatch::alert::sender::run(
        ctx.clone(),
        stop_all.clone(),
    ));
    // Let both settle into waiting for their next tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A failed deprovisioning is urgent.
    sim.set_downstream(&app, Downstream::Down);
    sim.deactivate(&app, &u);
    let found = poll(&ctx).await;
    let polled = std::time::Instant::now();
    assert_eq!(found.opened, 1, "{found:?}");
    let arrived = eventually(Duration::from_secs(10), || !slack.messages().is_empty()).await;
    let took = polled.elapsed();
    stop_all.cancel();
    eval.await.unwrap();
    send.await.unwrap();
    assert!(arrived, "no Slack message");
    eprintln!("measured: poll to Slack {took:?}");
    assert!(
        took <= Duration::from_secs(1),
        "Slack got the urgent alert {took:?} after the poll"
    );
    let text = slack.messages()[0].body.to_string();
    assert!(text.contains("quinn@x.com"), "{text}");
}

/// The write itself: a re-push `POST` waiting for the apps budget is not sent once the stop
/// token is cancelled; the call ends at once with `NotSent` and Okta sees no `POST`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repush_waiting_for_budget_is_not_sent_after_stop() {
    let sim = start_okta().await;
    let dir = temp_dir();
    let mut config = config_with(&sim, dir.path(), "");
    config.okta.rate_limit_share = 0.5;
    let ctx = context_on(config, Clock::system());
    sim.set_rate_limit(Bucket::Apps, 2);
    let app = sim.add_app("Tight");
    let u = sim.add_user("ty@x.com");
    sim.assign(&app, &u);
    // Learn the bucket and spend our one call of the minute.
    let au = ctx.okta.get_app_user(&app, &u).await.unwrap();
    let body = serde_json::json!({ "profile": au.profile });
    let stop = CancellationToken::new();
    let (okta, app2, u2, stop2) = (ctx.okta.clone(), app.clone(), u.clone(), stop.clone());
    let call = tokio::spawn(async move {
        okta.update_app_user_with_unless(
            okta_provwatch::okta::ratelimit::Class::Retry,
            &app2,
            &u2,
            &body,
            Some(&stop2),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!call.is_finished(), "the POST waits for the budget");
    let t0 = std::time::Instant::now();
    stop.cancel();
    let out = call.await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    assert!(
        matches!(out, Err(okta_provwatch::okta::OktaError::NotSent { .. })),
        "{out:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls(&sim, &app, &u, "POST"), 0);
}

/// `check-config` and `doctor` say when `retry.per_minute` exceeds what the apps budget can
/// carry (two apps-bucket calls a retry out of the daemon's share of 100 a minute).
#[test]
fn a_retry_rate_the_apps_budget_cannot_carry_is_reported() {
    use okta_provwatch::retry::pace::budget_warning;
    let dir = temp_dir();
    let cfg = |retry: &str, share: &str| {
        let toml = minimal_toml(
            "https://example.okta.com",
            dir.path(),
            &format!("rate_limit_share = {share}"),
            retry,
        );
        parse_config(&toml, "t", &[])
    };
    let w = budget_warning(&cfg("[retry]\nenabled = true\nper_minute = 600\n", "0.5"))
        .expect("600 a minute does not fit 50 calls");
    assert!(
        w.contains("retry.per_minute = 600") && w.contains("at most 25"),
        "{w}"
    );
    assert!(budget_warning(&cfg("[retry]\nenabled = true\nper_minute = 25\n", "0.5")).is_none());
    assert!(budget_warning(&cfg("[retry]\nenabled = true\nper_minute = 50\n", "1.0")).is_none());
    // Nothing to warn about when retries are off.
    assert!(budget_warning(&cfg("[retry]\nenabled = false\nper_minute = 600\n", "0.5")).is_none());
}

/// Benchmark (not a timed test; run with `--ignored --nocapture`): a storm of failing retries
/// of real app users, ample budget or budget-bound, in real time (a paused clock jumps ahead
/// while requests are on loopback sockets, which would distort a rate). Prints retries
/// started per minute and apps-bucket calls per retry.
async fn storm(per_minute: u32, apps_limit: u32, users: usize, minutes: u64) {
    let h = harness(|c| {
        c.retry.per_minute = per_minute;
        c.retry.initial_backoff = Duration::from_secs(1);
        c.retry.max_backoff = Duration::from_secs(3600);
        c.okta.rate_limit_share = 0.5;
    })
    .await;
    h.sim.set_rate_limit(Bucket::Apps, apps_limit);
    let logins: Vec<String> = (0..users).map(|i| format!("s{i}@x.com")).collect();
    let refs: Vec<&str> = logins.iter().map(String::as_str).collect();
    let (app, ids) = rejecting_app(&h.sim, "Storm", &refs, TRANSIENT);
    let now = h.ctx.now_ms();
    let app2 = app.clone();
    h.ctx
        .store
        .write_blocking(move |tx| {
            for (u, l) in ids.iter().zip(&logins) {
                let o = Observation {
                    app_id: app2.clone(),
                    app_label: Some("Storm".into()),
                    user_id: u.clone(),
                    user_login: Some(l.clone()),
                    operation: Operation::Create,
                    failed: true,
                    reason: Some(TRANSIENT.into()),
                    event_uuid: None,
                    published_ms: None,
                    source: Source::Scan,
                };
                failures::apply(tx, &o, now, "t")?;
            }
            Ok(())
        })
        .unwrap();
    // The app recovered: each retry goes through (a storm of retries that keep failing trips
    // the circuit breaker after three users, by design).
    h.sim.set_downstream(&app, Downstream::Healthy);
    // The poller first catches up with the assignments' events, as a running daemon has.
    let catch_up = std::time::Instant::now();
    while poll(&h.ctx).await.backlog {}
    eprintln!(
        "bench: poller caught up with {users} users' events in {:?}",
        catch_up.elapsed()
    );
    let before = h.sim.requests().len();
    // The daemon's defaults: the log's answer is awaited two poll intervals plus 30 s.
    let t = Tuning {
        concurrency: None,
        confirm_within: None,
        idle_poll: Duration::from_secs(60),
        ..tuning("bench")
    };
    let token = CancellationToken::new();
    let w = tokio::spawn(worker::run_with(h.ctx.clone(), token.clone(), t));
    // The poller reports each push's outcome, as in the daemon.
    let ps = CancellationToken::new();
    let p = if std::env::var_os("BENCH_NO_POLLER").is_none() {
        tokio::spawn(poller::run(h.ctx.clone(), ps.clone()))
    } else {
        tokio::spawn(async {})
    };
    let wall = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(60 * minutes)).await;
    token.cancel();
    w.await.unwrap();
    ps.cancel();
    p.await.unwrap();
    let started: i64 = h
        .ctx
        .store
        .blocking(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM failure_history WHERE kind = 'retry_started'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let bins: Vec<i64> = h
        .ctx
        .store
        .blocking(|c| {
            let mut st = c.prepare(
                "SELECT at FROM failure_history WHERE kind = 'retry_started' ORDER BY at",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
        .unwrap();
    if let Some(first) = bins.first() {
        let mut per10 = std::collections::BTreeMap::new();
        for t in &bins {
            *per10.entry((t - first) / 10_000).or_insert(0) += 1;
        }
        eprintln!("bench: retries started per 10 s: {per10:?}");
    }
    let apps_calls = h.sim.requests()[before..]
        .iter()
        .filter(|r| r.bucket == Bucket::Apps)
        .count();
    let stats = h.sim.stats();
    eprintln!(
        "bench storm per_minute={per_minute} apps_limit={apps_limit}: {started} retries in {minutes} min = {:.1}/min ({:.1} % of per_minute); {apps_calls} apps calls = {:.2} per retry, {:.1} % of the daemon's apps budget spent on retries; 429s {}; wall {:?}",
        started as f64 / minutes as f64,
        100.0 * started as f64 / (minutes as f64 * per_minute as f64),
        apps_calls as f64 / started.max(1) as f64,
        100.0 * apps_calls as f64 / (minutes as f64 * (apps_limit as f64 * 0.5)),
        stats.rate_limited,
        wall.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_storm_ample_budget_600() {
    storm(600, 20_000, 10_000, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_storm_ample_budget_60() {
    storm(60, 20_000, 2_000, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_storm_budget_bound() {
    storm(600, 100, 2_000, 4).await;
}
