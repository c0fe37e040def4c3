//! Operating the daemon as systemd would: the real binary as a child process against the Okta
//! simulator started here, configured through a temp config file with the token passed in the
//! environment. Covers clean shutdown on SIGTERM with the state intact, start-up refusing a
//! bad token, `/metrics` as valid Prometheus text that follows the store, `/healthz` turning
//! 503 while Okta refuses us, and `doctor` catching disabled provisioning settings without
//! ever printing the token.

mod common;

use common::*;
use okta_provwatch::store::{failures, Store};
use okta_sim::{Downstream, Fault, FaultKind, OktaSim};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_okta-provwatch");

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
}

impl Setup {
    /// The harness's minimal config aimed at `sim`, written to a file, with retries off, a
    /// nightly scan and the HTTP endpoint on a port the daemon binds; `extra` is appended.
    fn new(sim: &OktaSim, extra: &str) -> Setup {
        let dir = temp_dir();
        let port = free_port();
        let config = dir.path().join("config.toml");
        let sections = format!(
            r#"
[detect]
poll_interval = "5s"
initial_lookback = "1h"
scan_schedule = "0 0 3 * * *"

[retry]
enabled = false

[http]
listen = "127.0.0.1:{port}"
{extra}
"#
        );
        std::fs::write(
            &config,
            minimal_toml(&sim.base_url(), dir.path(), "", &sections),
        )
        .unwrap();
        Setup { dir, config, port }
    }

    fn state(&self) -> PathBuf {
        state_path(self.dir.path())
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn command(&self, token: &str) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config")
            .arg(&self.config)
            .env(TOKEN_ENV, token)
            .env_remove("OKTA_PROVWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("RUST_LOG", "info")
            .kill_on_drop(true);
        c
    }

    /// Starts `run`; stderr goes to a file so a chatty daemon can never block on a full pipe.
    fn spawn(&self, token: &str) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        self.command(token)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap()
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str) -> Option<(u16, String, String)> {
        let resp = http_client()
            .get(self.url(path))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Some((status, ct, resp.text().await.ok()?))
    }

    /// Waits for the HTTP endpoint, which is only served after start-up succeeded.
    async fn wait_up(&self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                panic!("daemon exited early ({st}):\n{}", self.daemon_log());
            }
            if self.get("/healthz").await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("daemon did not come up:\n{}", self.daemon_log());
    }

    /// Scrapes until `pred` holds for the parsed metrics, or panics with the last scrape.
    async fn wait_metrics(&self, what: &str, pred: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some((200, _, body)) = self.get("/metrics").await {
                let parsed = parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
                if pred(&parsed) {
                    return parsed;
                }
                last = body;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "timed out waiting for {what}; last scrape:\n{last}\nlog:\n{}",
            self.daemon_log()
        );
    }

    async fn wait_health(&self, want: u16, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some((status, _, body)) = self.get("/healthz").await {
                if status == want {
                    return body;
                }
                last = Some((status, body));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!(
            "/healthz never answered {want}; last: {last:?}\nlog:\n{}",
            self.daemon_log()
        );
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("child still running");
    let st = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -TERM failed");
}

async fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    tokio::time::timeout(timeout, child.wait())
        .await
        .expect("daemon did not exit in time")
        .unwrap()
}

// ---------------------------------------------------------------------------
// A small Prometheus text-format parser: enough to prove the exposition is well formed.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
    /// The scrape as received, for assertion messages.
    text: String,
}

impl Exposition {
    fn family(&self, name: &str) -> impl Iterator<Item = &Sample> {
        let name = name.to_string();
        self.samples.iter().filter(move |s| s.name == name)
    }
    fn sum(&self, name: &str) -> f64 {
        self.family(name).map(|s| s.value).sum()
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to, by the suffix rules of its family's type.
fn family_of(sample: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(sample) {
        return Some(sample.to_string());
    }
    let allowed: &[(&str, &[&str])] = &[
        ("counter", &["_total", "_created"]),
        ("histogram", &["_bucket", "_sum", "_count", "_created"]),
    ];
    allowed.iter().find_map(|(kind, suffixes)| {
        suffixes.iter().find_map(|sfx| {
            let base = sample.strip_suffix(sfx)?;
            (types.get(base).map(String::as_str) == Some(kind)).then(|| base.to_string())
        })
    })
}

fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition {
        text: text.to_string(),
        ..Exposition::default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut helps = std::collections::HashSet::new();
    // Families whose lines are over: a family's HELP, TYPE and samples must be contiguous.
    let mut closed = std::collections::HashSet::new();
    let mut current: Option<String> = None;
    let mut eof = false;
    let mut enter = |name: &str, n: usize| -> Result<(), String> {
        if current.as_deref() != Some(name) {
            if closed.contains(name) {
                return Err(format!("line {n}: {name} split into several groups"));
            }
            if let Some(prev) = current.replace(name.to_string()) {
                closed.insert(prev);
            }
        }
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ").filter(|_| line != "# EOF") {
            let mut parts = rest.splitn(3, ' ');
            match parts.next() {
                Some("HELP") => {
                    let name = parts
                        .next()
                        .ok_or(format!("line {n}: HELP without a name"))?;
                    if !valid_name(name) {
                        return Err(format!("line {n}: bad metric name {name:?}"));
                    }
                    if !helps.insert(name.to_string()) {
                        return Err(format!("line {n}: second HELP for {name}"));
                    }
                    enter(name, n)?;
                }
                Some("TYPE") => {
                    let name = parts
                        .next()
                        .ok_or(format!("line {n}: TYPE without a name"))?;
                    let kind = parts
                        .next()
                        .ok_or(format!("line {n}: TYPE without a type"))?;
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(format!("line {n}: unknown type {kind:?}"));
                    }
                    enter(name, n)?;
                    if out
                        .types
                        .insert(name.to_string(), kind.to_string())
                        .is_some()
                    {
                        return Err(format!("line {n}: second TYPE for {name}"));
                    }
                }
                _ => {}
            }
            continue;
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if eof {
            return Err(format!("line {n}: after # EOF"));
        }
        if line.starts_with('#') {
            continue;
        }
        let (name_end, rest) = match line.find(['{', ' ']) {
            Some(p) => (p, &line[p..]),
            None => return Err(format!("line {n}: no value: {line:?}")),
        };
        let name = &line[..name_end];
        if !valid_name(name) {
            return Err(format!("line {n}: bad metric name {name:?}"));
        }
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                while matches!(chars.peek(), Some((_, ',')) | Some((_, ' '))) {
                    chars.next();
                }
                if let Some((p, '}')) = chars.peek().copied() {
                    end = p;
                    break;
                }
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if !valid_name(&key) || key.contains(':') {
                    return Err(format!("line {n}: bad label name {key:?}"));
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(format!("line {n}: label value not quoted"));
                }
                let mut val = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => val.push('\n'),
                            Some((_, '\\')) => val.push('\\'),
                            Some((_, '"')) => val.push('"'),
                            other => return Err(format!("line {n}: bad escape {other:?}")),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => val.push(c),
                        None => return Err(format!("line {n}: unterminated label value")),
                    }
                }
                if labels.insert(key.clone(), val).is_some() {
                    return Err(format!("line {n}: duplicate label {key}"));
                }
            }
            &body[end + 1..]
        } else {
            rest
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or(format!("line {n}: no value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .map_err(|_| format!("line {n}: bad value {v:?}"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("line {n}: bad timestamp {ts:?}"))?;
        }
        if fields.next().is_some() {
            return Err(format!("line {n}: trailing garbage"));
        }
        // OpenMetrics names a counter's family without `_total` and a histogram's samples
        // with `_bucket`, `_sum` and `_count` (and `_created` for both).
        let family = family_of(name, &out.types)
            .ok_or(format!("line {n}: sample of {name} before its # TYPE"))?;
        enter(&family, n)?;
        if !seen.insert((name.to_string(), labels.clone())) {
            return Err(format!("line {n}: duplicate series {name}{labels:?}"));
        }
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[test]
fn the_parser_rejects_what_prometheus_rejects() {
    let good = "# HELP a Things.\n# TYPE a counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n# TYPE g gauge\ng 1.5\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n# EOF\n";
    let e = parse_exposition(good).unwrap();
    assert_eq!(e.sum("a_total"), 3.0);
    assert_eq!(e.samples[0].labels["y"], "q\"");
    for bad in [
        "a 1\n",                                                             // no TYPE
        "# TYPE a gauge\na{x=1} 1\n",                                        // unquoted label
        "# TYPE a gauge\na one\n",                                           // bad value
        "# TYPE a gauge\na 1\na 2\n",                                        // duplicate series
        "# TYPE a wibble\na 1\n",                                            // unknown type
        "# TYPE 1a gauge\n# TYPE a gauge\n1a 1\n",                           // bad name
        "# HELP a A.\n# HELP a A.\n# TYPE a gauge\na 1\n",                   // second HELP
        "# TYPE a gauge\na{x=\"1\"} 1\n# TYPE b gauge\nb 1\na{x=\"2\"} 1\n", // split family
        "# TYPE a gauge\na_total 1\n",       // suffix of the wrong type
        "# TYPE a gauge\na 1\n# EOF\nb 1\n", // after EOF
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------

/// A sim whose "Sales" app rejects every push, with `n` users failing to be created.
fn failing_sim_users(sim: &OktaSim, app: &str, prefix: &str, n: usize) {
    for i in 0..n {
        let u = sim.add_user(&format!("{prefix}{i}@acme.example"));
        sim.assign(app, &u);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_work_exits_0_and_keeps_the_state() {
    let sim = start_okta().await;
    let app = sim.add_app("Sales");
    sim.set_downstream(&app, Downstream::Down);
    failing_sim_users(&sim, &app, "before", 3);
    let s = Setup::new(&sim, "");

    let mut child = s.spawn(&sim.api_token());
    s.wait_up(&mut child).await;
    s.wait_metrics("3 open failures", |m| {
        m.sum("provwatch_open_failures") >= 3.0
    })
    .await;

    // More work arriving, and Okta slow to answer, so a poll is in flight at the signal.
    failing_sim_users(&sim, &app, "during", 2);
    sim.inject_fault(Fault {
        bucket: None,
        kind: FaultKind::Slow(Duration::from_secs(2)),
        times: 10,
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert_eq!(st.code(), Some(0), "exit status {st}\n{}", s.daemon_log());

    let store = Store::open(&s.state()).unwrap();
    let check: String = store
        .blocking(|c| Ok(c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(check, "ok");
    let open = store.read_blocking(failures::list_unresolved).unwrap();
    assert!(open.len() >= 3, "failures lost on shutdown: {open:?}");
    let before: Vec<_> = open.iter().map(|f| f.user_id.clone()).collect();
    drop(store);

    // The next generation starts from the same file and still knows them.
    let mut child = s.spawn(&sim.api_token());
    s.wait_up(&mut child).await;
    // All five: the ones known before the signal, and the ones logged around it, which the
    // saved cursor must not have skipped.
    s.wait_metrics("5 failures after restart", |m| {
        m.sum("provwatch_open_failures") >= 5.0
    })
    .await;
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert_eq!(st.code(), Some(0), "exit status {st}\n{}", s.daemon_log());
    let store = Store::open(&s.state()).unwrap();
    let after = store.read_blocking(failures::list_unresolved).unwrap();
    for u in &before {
        assert!(
            after.iter().any(|f| &f.user_id == u),
            "{u} forgotten after restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_fails_start_up_without_restart() {
    let sim = start_okta().await;
    let s = Setup::new(&sim, "");
    let mut child = s.spawn("00-not-the-token");
    let st = wait_exit(&mut child, Duration::from_secs(30)).await;
    // 78 is in the unit's RestartPreventExitStatus=: retrying a revoked token is pointless.
    assert_eq!(st.code(), Some(78), "{st}\n{}", s.daemon_log());
    // Nothing ran past the start-up probe: no poller, no scanner, no retries.
    let paths: Vec<String> = sim.requests().into_iter().map(|r| r.path).collect();
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p == "/api/v1/logs?limit=1"),
        "requests beyond the start-up probe: {paths:?}"
    );
    let log = s.daemon_log();
    assert!(log.contains("401"), "{log}");
    assert!(
        !log.contains("00-not-the-token"),
        "token in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_follow_failures() {
    let sim = start_okta().await;
    let app = sim.add_app("Sales");
    let s = Setup::new(&sim, "");
    let mut child = s.spawn(&sim.api_token());
    s.wait_up(&mut child).await;

    let (status, ct, body) = s.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        ct.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ct}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let m = parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    // Every family is described before its first sample, histograms included.
    for (family, kind) in [
        ("provwatch_alerts", "counter"),
        ("provwatch_org_rate_limit_events", "counter"),
        ("provwatch_time_to_heal_seconds", "histogram"),
        ("okta_requests", "counter"),
    ] {
        assert_eq!(
            m.types.get(family).map(String::as_str),
            Some(kind),
            "{body}"
        );
        assert!(body.contains(&format!("# HELP {family} ")), "{body}");
    }
    assert_eq!(
        m.types.get("provwatch_open_failures").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(m.sum("provwatch_open_failures"), 0.0, "{body}");
    s.wait_metrics("a successful poll", |m| {
        m.family("provwatch_last_poll_success_timestamp_seconds")
            .any(|x| x.value > 1.0e9)
    })
    .await;

    sim.set_downstream(
        &app,
        Downstream::Reject {
            logins: vec!["x0@acme.example".into(), "x1@acme.example".into()],
            reason: "Bad Request. Errors reported by remote server: department is required".into(),
        },
    );
    failing_sim_users(&sim, &app, "x", 2);
    let m = s
        .wait_metrics("2 open create failures for Sales", |m| {
            m.family("provwatch_open_failures").any(|x| {
                x.labels.get("app").map(String::as_str) == Some("Sales")
                    && x.labels.get("operation").map(String::as_str) == Some("create")
                    && x.value == 2.0
            })
        })
        .await;
    assert!(
        m.family("okta_rate_limit_remaining")
            .any(|x| x.labels.get("bucket").map(String::as_str) == Some("logs")),
        "{}",
        m.text
    );
    // Lag needs an applied event; the failures may have been counted a moment before.
    s.wait_metrics("poll lag", |m| {
        m.family("provwatch_poll_lag_seconds")
            .any(|x| (0.0..600.0).contains(&x.value))
    })
    .await;

    sim.set_downstream(&app, Downstream::Down);
    failing_sim_users(&sim, &app, "y", 1);
    s.wait_metrics("a third failure", |m| {
        m.sum("provwatch_open_failures") == 3.0
    })
    .await;

    sigterm(&child);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_turns_503_while_okta_refuses_and_recovers() {
    let sim = start_okta().await;
    sim.add_app("Sales");
    let token = sim.api_token();
    let s = Setup::new(&sim, "");
    let mut child = s.spawn(&token);
    s.wait_up(&mut child).await;
    let body = s.wait_health(200, Duration::from_secs(20)).await;
    assert_eq!(body.trim(), "ok");

    // Okta starts refusing the token (rotated or revoked): 401 on every poll.
    sim.set_api_token("00SomeOtherTokenEntirely");
    let body = s.wait_health(503, Duration::from_secs(45)).await;
    assert!(body.contains("unhealthy"), "{body}");
    assert!(!body.contains(&token), "token in /healthz");

    sim.set_api_token(&token);
    s.wait_health(200, Duration::from_secs(30)).await;

    // Okta's own outage: every call answers 500 for a while.
    sim.inject_fault(Fault {
        bucket: None,
        kind: FaultKind::ServerError(500),
        times: 10_000,
    });
    let body = s.wait_health(503, Duration::from_secs(60)).await;
    assert!(body.contains("poll"), "{body}");

    sigterm(&child);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(40)).await.code(),
        Some(0)
    );
}

async fn doctor(s: &Setup, token: &str, json: bool) -> (Option<i32>, String, String) {
    let mut c = s.command(token);
    c.arg("doctor");
    if json {
        c.arg("--json");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), c.output())
        .await
        .expect("doctor hung")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_on_disabled_create_or_deactivate_and_hides_the_token() {
    let sim = start_okta().await;
    let payroll = sim.add_app("Payroll");
    sim.set_provisioning(&payroll, false, true, true);
    let badge = sim.add_app("Badge");
    sim.set_provisioning(&badge, true, true, false);
    let fine = sim.add_app("Fine");
    let token = sim.api_token();
    let s = Setup::new(&sim, "");

    let (code, out, err) = doctor(&s, &token, false).await;
    assert_ne!(code, Some(0), "doctor passed:\n{out}");
    let fail_lines: Vec<&str> = out.lines().filter(|l| l.starts_with("[FAIL]")).collect();
    assert!(
        fail_lines.iter().any(|l| l.contains("Payroll")),
        "Payroll not failed:\n{out}"
    );
    assert!(fail_lines.iter().any(|l| l.contains("Badge")), "{out}");
    assert!(!fail_lines.iter().any(|l| l.contains("Fine")), "{out}");
    assert!(out.contains("Create Users is disabled"), "{out}");
    assert!(out.contains("Deactivate Users is disabled"), "{out}");
    assert!(
        out.contains("okta.api_token = <from env"),
        "no redacted summary:\n{out}"
    );
    for text in [&out, &err] {
        assert!(!text.contains(&token), "token printed:\n{text}");
    }

    let (code, out, err) = doctor(&s, &token, true).await;
    assert_ne!(code, Some(0));
    assert!(
        !out.contains(&token) && !err.contains(&token),
        "token printed"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let status_of = |needle: &str| -> Vec<String> {
        checks
            .iter()
            .filter(|c| c["name"].as_str().unwrap().contains(needle))
            .map(|c| c["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(status_of("Payroll"), ["fail"]);
    assert_eq!(status_of("Badge"), ["fail"]);
    assert_eq!(status_of("Fine"), ["pass"]);
    assert_eq!(status_of("okta logs read"), ["pass"]);
    assert!(checks.iter().all(|c| c["detail"].is_string()));

    // Watching only the healthy app, the same org passes. Labels match in any case, as the
    // scanner matches them, and an app listed by label and by id is checked once.
    let healthy = Setup::new(&sim, "");
    let text = std::fs::read_to_string(&healthy.config).unwrap().replace(
        "scan_schedule = \"0 0 3 * * *\"",
        &format!("scan_schedule = \"0 0 3 * * *\"\napps = [\"fine\", \"{fine}\"]"),
    );
    std::fs::write(&healthy.config, text).unwrap();
    let (code, out, _) = doctor(&healthy, &token, false).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("\"Fine\"")).count(),
        1,
        "{out}"
    );

    // A wrong token is a failure that says so, without echoing either token.
    let (code, out, err) = doctor(&s, "00WrongTokenWrongToken", false).await;
    assert_ne!(code, Some(0));
    assert!(out.contains("[FAIL] okta logs read"), "{out}");
    assert!(!out.contains("00WrongTokenWrongToken") && !err.contains("00WrongTokenWrongToken"));
}

/// Collects sd_notify datagrams the way systemd's notify socket would.
struct NotifySocket {
    sock: tokio::net::UnixDatagram,
    path: PathBuf,
    got: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &std::path::Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = tokio::net::UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            sock,
            path,
            got: Vec::new(),
        }
    }

    /// Waits until a received message contains `line` (e.g. "READY=1").
    async fn wait_for(&mut self, line: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if self.got.iter().any(|m| m.lines().any(|l| l == line)) {
            return true;
        }
        let mut buf = vec![0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, self.sock.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let hit = msg.lines().any(|l| l == line);
                    self.got.push(msg);
                    if hit {
                        return true;
                    }
                }
                _ => return false,
            }
        }
        false
    }
}

/// `run` under a `sh` that execs it, so WATCHDOG_PID can name the daemon's own pid as
/// systemd would set it.
fn spawn_notified(s: &Setup, token: &str, notify: &NotifySocket) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.log())
        .unwrap();
    Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\" run")
        .arg(BIN)
        .arg(&s.config)
        .env(TOKEN_ENV, token)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "2000000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_sd_notify_and_reloads_on_sighup() {
    let sim = start_okta().await;
    sim.add_app("Sales");
    let s = Setup::new(&sim, "");

    // A rejected token never reports READY.
    let mut notify = NotifySocket::bind(s.dir.path());
    let mut child = spawn_notified(&s, "00-not-the-token", &notify);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)).await.code(),
        Some(78)
    );
    assert!(
        !notify.wait_for("READY=1", Duration::from_millis(200)).await,
        "READY=1 with a rejected token: {:?}",
        notify.got
    );

    let mut child = spawn_notified(&s, &sim.api_token(), &notify);
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(30)).await,
        "no READY=1: {:?}\n{}",
        notify.got,
        s.daemon_log()
    );
    // READY=1 comes after the endpoint is bound, so it answers at once.
    assert!(s.get("/healthz").await.is_some());
    // WatchdogSec=2s means a ping every second.
    notify.got.clear();
    assert!(
        notify.wait_for("WATCHDOG=1", Duration::from_secs(5)).await,
        "no watchdog ping: {:?}",
        notify.got
    );

    // A broken config on SIGHUP is refused and the daemon carries on.
    let good = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        good.replace("poll_interval = \"5s\"", "poll_interval = \"1s\""),
    )
    .unwrap();
    let hup = |child: &Child| {
        let pid = child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    notify.got.clear();
    hup(&child);
    assert!(
        notify
            .wait_for("RELOADING=1", Duration::from_secs(10))
            .await,
        "{:?}",
        notify.got
    );
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(30)).await,
        "{:?}",
        notify.got
    );
    assert!(
        s.daemon_log().contains("reload rejected"),
        "{}",
        s.daemon_log()
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "daemon died on a bad reload"
    );
    assert_eq!(
        s.wait_health(200, Duration::from_secs(20)).await.trim(),
        "ok"
    );

    // A valid one is applied.
    std::fs::write(
        &s.config,
        good.replace("poll_interval = \"5s\"", "poll_interval = \"6s\""),
    )
    .unwrap();
    notify.got.clear();
    hup(&child);
    assert!(
        notify.wait_for("READY=1", Duration::from_secs(40)).await,
        "{:?}",
        notify.got
    );
    assert!(
        s.daemon_log().contains("configuration reloaded"),
        "{}",
        s.daemon_log()
    );

    notify.got.clear();
    sigterm(&child);
    assert!(
        notify.wait_for("STOPPING=1", Duration::from_secs(10)).await,
        "{:?}",
        notify.got
    );
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

#[cfg(not(feature = "demo"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_demo_feature_demo_says_how_to_get_it() {
    let out = Command::new(BIN)
        .args(["demo", "--seconds", "10"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cargo run --release --features demo -- demo"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Two daemons on one state would alert twice and spend the org's budget twice: the second
/// `run` exits at once with 75, naming the holder; `status` keeps working beside the first;
/// after the holder is `kill -9`ed the kernel has released the lock and a new `run` starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_state_is_refused_until_the_holder_dies() {
    let sim = OktaSim::start().await.unwrap();
    sim.add_app("Sales");
    let s = Setup::new(&sim, "");
    let mut first = s.spawn(&sim.api_token());
    s.wait_up(&mut first).await;
    let holder = first.id().unwrap();

    let t = Instant::now();
    let second = s
        .command(&sim.api_token())
        .arg("run")
        .stdout(Stdio::null())
        .output();
    let second = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the second run kept running beside the first")
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let refusal: Vec<_> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(refusal.len(), 1, "{stderr}");
    assert!(
        refusal[0].contains(&format!("pid {holder} on host ")),
        "{stderr}"
    );
    assert!(
        s.get("/healthz").await.is_some(),
        "the first daemon kept running"
    );
    // One start-up line says what is watched, in the units the config used, without Rust's
    // Debug forms.
    let log = s.daemon_log();
    let watching: Vec<_> = log.lines().filter(|l| l.contains(" watching ")).collect();
    assert_eq!(watching.len(), 1, "{log}");
    for field in ["apps=all", "poll_interval=5s", "channels=none", "retry=off"] {
        assert!(
            watching[0].contains(field),
            "{field} missing: {}",
            watching[0]
        );
    }
    assert!(!log.contains("Some("), "{log}");

    let status = s.command("").arg("status").output().await.unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );

    first.start_kill().unwrap(); // SIGKILL: no chance to clean anything up
    first.wait().await.unwrap();
    let mut third = s.spawn(&sim.api_token());
    s.wait_up(&mut third).await;
    sigterm(&third);
    assert_eq!(
        wait_exit(&mut third, Duration::from_secs(30)).await.code(),
        Some(0)
    );
}

/// `demo --keep`: after the story everything stays up, the printed commands work as printed,
/// and Ctrl-C stops it all and removes the demo's files.
#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_keep_stays_up_with_commands_that_work_until_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--seconds", "10", "--keep"])
        .env("TMPDIR", tmp.path())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let read = async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let done = l.starts_with("Ctrl-C here");
            printed.push(l);
            if done {
                return;
            }
        }
        panic!("stdout ended");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("no commands printed within a minute");
    let status_line = printed
        .iter()
        .find(|l| l.trim_end().ends_with(" status"))
        .unwrap_or_else(|| panic!("{printed:#?}"));
    let argv: Vec<&str> = status_line.split_whitespace().collect();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Workday"), "{stdout}");
    let curl = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("curl -s "))
        .unwrap_or_else(|| panic!("{printed:#?}"));
    let body = reqwest::get(curl).await.unwrap().text().await.unwrap();
    assert!(body.contains("provwatch_open_failures{"), "{body}");

    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let st = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(st.success(), "{st}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}

#[cfg(feature = "demo")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_finishes_in_time_and_cleans_up() {
    let tmp = temp_dir();
    let run = Command::new(BIN)
        .args(["demo", "--seconds", "10"])
        .env("TMPDIR", tmp.path())
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    // 10 s of scenario plus start-up and a stop; a minute is the promise even when loaded.
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the demo did not finish within a minute")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Stopped"), "{stdout}");
    // Plain words for people: no component names, history kinds or Okta ids.
    for internal in [
        "alerter",
        "retry-worker",
        "retry_started",
        "(whole app)",
        "0oa",
    ] {
        assert!(!stdout.contains(internal), "{internal:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("Workday: creating the account of dana@acme.example failed"),
        "{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}
