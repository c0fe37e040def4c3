//! Alerting end to end: the evaluator (`alert::evaluator`), the durable outbox and its sender,
//! silences, the digest and daemon-health alerts, delivering to the fake Slack
//! (`okta_sim::slack::FakeSlack`) and a real SMTP server on loopback
//! (`okta_sim::smtp::SmtpSink`).
//!
//! Time is explicit: the tests call the evaluator and the sender with a chosen `now`, so an
//! hour-long outage takes milliseconds and no assertion races a timer. The notifiers still
//! talk to the fakes over real sockets.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

use okta_provwatch::alert::digest;
use okta_provwatch::alert::evaluator::evaluate;
use okta_provwatch::alert::group::{Outcome, Settings};
use okta_provwatch::alert::health_alerts;
use okta_provwatch::alert::message::AlertMessage;
use okta_provwatch::alert::outbox::failed_deliveries;
use okta_provwatch::alert::sender::{Delivered, Sender};
use okta_provwatch::cli::SilenceArgs;
use okta_provwatch::config::Config;
use okta_provwatch::health::HealthState;
use okta_provwatch::metrics::Metrics;
use okta_provwatch::store::failures::{self, Applied, Observation, Operation, Source, State};
use okta_provwatch::store::outbox::list as list_outbox;
use okta_provwatch::store::Store;
use okta_sim::slack::{FakeSlack, SlackMode};
use okta_sim::smtp::SmtpSink;
use tempfile::TempDir;

const WEBHOOK_ENV: &str = "ALERTING_TEST_SLACK_WEBHOOK";
const ONCALL: &str = "oncall@example.com";
/// 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000;

fn secs(s: i64) -> i64 {
    s * 1000
}
fn mins(m: i64) -> i64 {
    m * 60_000
}

/// The harness's minimal config (Okta never called) with the alerting tables: Slack through
/// a webhook, email to [`ONCALL`] through `smtp_url`.
fn config(dir: &Path, webhook: &str, smtp_url: &str) -> Config {
    let sections = format!(
        r#"
[alert]
persist_after = "10m"
repeat_interval = "4h"
group_wait = "30s"
send_resolved = true
digest_schedule = "0 0 9 * * *"

[slack]
webhook_url_env = "{WEBHOOK_ENV}"

[email]
smtp_url = "{smtp_url}"
from = "provwatch@example.com"
to = ["{ONCALL}"]
"#
    );
    parse_config(
        &minimal_toml(UNREACHABLE_ORG, dir, "", &sections),
        "test-token",
        &[(WEBHOOK_ENV, webhook)],
    )
}

/// Everything the alerting pipeline needs, on a temp state file; `restart` drops the store
/// and the sender as a killed daemon would and opens them again from the same file.
struct Harness {
    _dir: TempDir,
    slack: FakeSlack,
    smtp: SmtpSink,
    config: Config,
    settings: Settings,
    store: Store,
    sender: Sender,
    metrics: Metrics,
}

impl Harness {
    async fn new() -> Harness {
        Self::with(|_, _| {}).await
    }

    /// `setup` may change the config and say which webhook URL to use.
    async fn with(setup: impl FnOnce(&mut Config, &FakeSlack)) -> Harness {
        let dir = temp_dir();
        let slack = start_slack().await;
        let smtp = start_smtp().await;
        let mut config = config(dir.path(), &slack.webhook_url(), &smtp.url());
        setup(&mut config, &slack);
        let store = Store::open(&config.state.path).unwrap();
        Harness {
            settings: Settings::from_config(&config),
            sender: Sender::from_config(&config),
            _dir: dir,
            slack,
            smtp,
            config,
            store,
            metrics: Metrics::new(),
        }
    }

    fn restart(&mut self) {
        let path = self.config.state.path.clone();
        // Drop the old connection and notifiers (connection pools, in-memory holds) before
        // reopening, as a killed process would.
        self.sender = Sender::new(Vec::new());
        self.store = Store::open_in_memory().unwrap();
        self.store = Store::open(&path).unwrap();
        self.settings = Settings::from_config(&self.config);
        self.sender = Sender::from_config(&self.config);
    }

    fn fail(&self, app: &str, user: &str, op: Operation, at: i64) -> i64 {
        let o = Observation {
            app_id: format!("0oa{app}"),
            app_label: Some(app.to_string()),
            user_id: if user.is_empty() {
                String::new()
            } else {
                format!("00u{user}")
            },
            user_login: (!user.is_empty()).then(|| format!("{user}@example.com")),
            operation: op,
            failed: true,
            reason: Some("Remote API error".into()),
            event_uuid: None,
            published_ms: None,
            source: Source::Scan,
        };
        match self
            .store
            .write_blocking(|c| failures::apply(c, &o, at, "test"))
            .unwrap()
        {
            Applied::Opened(id) | Applied::Reopened(id) => id,
            other => panic!("{other:?}"),
        }
    }

    fn resolve(&self, id: i64, at: i64) {
        assert!(self
            .store
            .write_blocking(|c| failures::resolve(c, id, at, None, "test", "fixed"))
            .unwrap());
    }

    fn eval(&self, now: i64) -> Outcome {
        self.eval_health(None, now)
    }

    fn eval_health(&self, health: Option<&HealthState>, now: i64) -> Outcome {
        let s = self.settings.clone();
        self.store
            .write_blocking(|tx| evaluate(tx, &s, health, now))
            .unwrap()
    }

    async fn deliver(&self, now: i64) -> Delivered {
        self.sender
            .deliver_due(&self.store, &self.metrics, now)
            .await
            .unwrap()
    }

    async fn tick(&self, now: i64) -> (Outcome, Delivered) {
        let o = self.eval(now);
        (o, self.deliver(now).await)
    }

    /// Slack messages as their JSON text.
    fn slack_texts(&self) -> Vec<String> {
        self.slack
            .messages()
            .into_iter()
            .map(|m| m.body.to_string())
            .collect()
    }

    /// Emails, decoded enough to search their text.
    fn email_texts(&self) -> Vec<String> {
        self.smtp
            .messages()
            .iter()
            .map(|m| decode_mail(&m.data))
            .collect()
    }

    fn failure_state(&self, id: i64) -> State {
        self.store
            .write_blocking(|c| failures::get(c, id))
            .unwrap()
            .unwrap()
            .state
    }
}

/// The raw message with its parts' transfer encodings undone (quoted-printable or base64),
/// good enough for `contains` checks.
fn decode_mail(raw: &str) -> String {
    let mut out = String::new();
    for part in raw.split("\r\n\r\n") {
        out.push_str(&decode_qp(part));
        if let Some(b) = decode_base64(part) {
            out.push_str(&b);
        }
        out.push('\n');
    }
    out
}

fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_base64(s: &str) -> Option<String> {
    let body: String = s
        .split("\r\n--")
        .next()?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if body.len() < 8
        || !body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c))
    {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in body.bytes().take_while(|&c| c != b'=') {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn payloads(store: &Store) -> Vec<AlertMessage> {
    store
        .read_blocking(list_outbox)
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_message_per_app_group_on_every_channel() {
    let h = Harness::new().await;
    let ids: Vec<i64> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| h.fail("Salesforce", u, Operation::Create, T0))
        .collect();
    h.fail("Workday", "dave", Operation::Update, T0);

    // Not persisted long enough yet, then the group wait runs.
    assert!(h.eval(T0 + mins(5)).is_empty());
    assert!(h.eval(T0 + mins(10)).is_empty());
    assert!(h.eval(T0 + mins(10) + secs(29)).is_empty());
    let o = h.eval(T0 + mins(10) + secs(30));
    assert_eq!(o.firing, ["app:0oaSalesforce", "app:0oaWorkday"]);
    assert_eq!(o.rows, 4, "one row per group per channel");
    let d = h.deliver(T0 + mins(10) + secs(30)).await;
    assert_eq!(
        d,
        Delivered {
            sent: 4,
            retry: 0,
            failed: 0
        }
    );

    let slack = h.slack_texts();
    assert_eq!(slack.len(), 2);
    let sf = slack.iter().find(|m| m.contains("Salesforce")).unwrap();
    let wd = slack.iter().find(|m| m.contains("Workday")).unwrap();
    for u in ["alice", "bob", "carol"] {
        assert!(sf.contains(&format!("{u}@example.com")), "{u} in {sf}");
        assert!(!wd.contains(&format!("{u}@example.com")));
    }
    assert!(wd.contains("dave@example.com") && !sf.contains("dave@example.com"));
    assert!(sf.contains("3 users failing"));

    let mails = h.email_texts();
    assert_eq!(mails.len(), 2);
    let sf = mails
        .iter()
        .find(|m| m.contains("alice@example.com"))
        .unwrap();
    assert!(sf.contains("bob@example.com") && sf.contains("carol@example.com"));
    assert!(!sf.contains("dave@example.com"));
    assert!(mails
        .iter()
        .any(|m| m.contains("dave@example.com") && !m.contains("alice@")));
    assert!(h.smtp.messages().iter().all(|m| m.to == [ONCALL]));

    for id in &ids {
        assert_eq!(h.failure_state(*id), State::Alerted);
        let kinds: Vec<String> = h
            .store
            .read_blocking(|c| failures::history(c, *id))
            .unwrap()
            .into_iter()
            .map(|e| e.kind.to_string())
            .collect();
        assert_eq!(kinds, ["detected", "alerted"]);
    }
    // Nothing changed: nothing more to say.
    assert!(h.eval(T0 + mins(30)).is_empty());
    assert_eq!(h.deliver(T0 + mins(30)).await, Delivered::default());
    assert_eq!(
        h.metrics.get(
            "provwatch_alerts_total",
            &[("channel", "slack"), ("result", "sent")]
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn early_fix_never_alerts_and_urgent_alerts_at_once() {
    let h = Harness::new().await;
    let alice = h.fail("Salesforce", "alice", Operation::Create, T0);
    h.fail("Workday", "erin", Operation::Deactivate, T0);

    // Urgent: only the couple of seconds that batch a burst.
    assert!(h.eval(T0).is_empty());
    let (o, d) = h.tick(T0 + secs(2)).await;
    assert_eq!(o.firing, ["app:0oaWorkday"]);
    assert_eq!(d.sent, 2);
    let slack = h.slack_texts();
    assert_eq!(slack.len(), 1);
    assert!(slack[0].contains("erin@example.com") && slack[0].contains("URGENT"));
    assert!(h.email_texts()[0].contains("erin@example.com"));

    // Fixed before persist_after: never alerts, however long we look.
    h.resolve(alice, T0 + mins(5));
    for m in [10, 11, 20, 60, 200] {
        let (o, _) = h.tick(T0 + mins(m)).await;
        assert!(
            !o.firing.contains(&"app:0oaSalesforce".to_string()),
            "at +{m}m"
        );
    }
    assert_eq!(h.slack.messages().len(), 1);
    assert_eq!(h.smtp.messages().len(), 1);
    assert!(h.slack_texts().iter().all(|m| !m.contains("alice@")));
}

#[tokio::test]
async fn resolved_notice_only_for_groups_sent_as_firing() {
    let h = Harness::new().await;
    let alice = h.fail("Salesforce", "alice", Operation::Create, T0);
    let bob = h.fail("Workday", "bob", Operation::Create, T0);
    h.resolve(bob, T0 + mins(5)); // never sent
    h.tick(T0 + mins(10)).await;
    let (o, _) = h.tick(T0 + mins(10) + secs(30)).await;
    assert_eq!(o.firing, ["app:0oaSalesforce"]);

    h.resolve(alice, T0 + mins(20));
    let (o, d) = h.tick(T0 + mins(20) + secs(2)).await;
    assert_eq!(o.resolved, ["app:0oaSalesforce"]);
    assert_eq!(d.sent, 2);
    let slack = h.slack_texts();
    assert_eq!(slack.len(), 2);
    assert!(slack[1].contains("RESOLVED") && slack[1].contains("alice@example.com"));
    assert!(h.email_texts()[1].contains("[RESOLVED]"));
    assert!(slack
        .iter()
        .chain(&h.email_texts())
        .all(|m| !m.contains("bob@")));

    // Once.
    for m in [30, 300] {
        assert!(h.tick(T0 + mins(m)).await.0.is_empty());
    }
    assert_eq!(h.slack.messages().len(), 2);
}

#[tokio::test]
async fn partial_recovery_updates_and_resolved_waits_for_all() {
    let h = Harness::new().await;
    let alice = h.fail("Salesforce", "alice", Operation::Create, T0);
    let bob = h.fail("Salesforce", "bob", Operation::Create, T0);
    h.eval(T0 + mins(10));
    assert_eq!(h.eval(T0 + mins(11)).firing.len(), 1);
    h.resolve(alice, T0 + mins(20));
    // The set changed: an update (after the group wait), not a resolved notice.
    assert!(h.eval(T0 + mins(20) + secs(1)).is_empty());
    let o = h.eval(T0 + mins(21));
    assert_eq!((o.firing.len(), o.resolved.len()), (1, 0));
    let latest = payloads(&h.store).pop().unwrap();
    assert_eq!(latest.lines.len(), 1);
    assert_eq!(latest.lines[0].user_login, "bob@example.com");
    h.resolve(bob, T0 + mins(30));
    assert_eq!(h.eval(T0 + mins(30) + secs(2)).resolved.len(), 1);
}

/// Alertmanager's group_interval: once a group was notified, users fixed (or added) one by one
/// are batched into one update at most every `group_interval`; a new urgent failure is not held.
#[tokio::test]
async fn changes_to_a_notified_group_wait_for_the_group_interval() {
    let h = Harness::new().await;
    assert_eq!(h.config.alert.group_interval, Duration::from_secs(300));
    let ids: Vec<i64> = ["a", "b", "c", "d"]
        .iter()
        .map(|u| h.fail("Box", u, Operation::Create, T0))
        .collect();
    h.eval(T0 + mins(10));
    assert_eq!(h.eval(T0 + mins(11)).firing.len(), 1);
    // Three users are fixed a minute apart: nothing goes out until 5 minutes after the last
    // message, then one update lists the one user left.
    for (i, id) in ids.iter().take(3).enumerate() {
        let at = T0 + mins(12 + i as i64);
        h.resolve(*id, at);
        assert!(h.eval(at + secs(31)).is_empty(), "update {i} not batched");
    }
    assert!(h.eval(T0 + mins(16) - secs(1)).is_empty());
    let o = h.eval(T0 + mins(16));
    assert_eq!(o.firing.len(), 1);
    let latest = payloads(&h.store).pop().unwrap();
    assert_eq!(latest.lines.len(), 1);
    assert_eq!(latest.lines[0].user_login, "d@example.com");
    // A deprovisioning failure joins the group: urgent, so it does not wait.
    h.fail("Box", "e", Operation::Deactivate, T0 + mins(17));
    h.eval(T0 + mins(17) + secs(1));
    assert_eq!(h.eval(T0 + mins(17) + secs(4)).firing.len(), 1);
}

#[tokio::test]
async fn repeats_after_repeat_interval_not_before() {
    let h = Harness::with(|c, _| c.alert.repeat_interval = Duration::from_secs(3600)).await;
    h.fail("Salesforce", "alice", Operation::Create, T0);
    h.eval(T0 + mins(10));
    let sent_at = T0 + mins(10) + secs(30);
    assert_eq!(h.tick(sent_at).await.0.firing.len(), 1);
    for m in [1, 20, 59] {
        assert!(h.tick(sent_at + mins(m)).await.0.is_empty(), "+{m}m");
    }
    assert!(h.tick(sent_at + mins(60) - 1).await.0.is_empty());
    let (o, d) = h.tick(sent_at + mins(60)).await;
    assert_eq!(o.firing.len(), 1);
    assert_eq!(d.sent, 2);
    assert_eq!(h.slack.messages().len(), 2);

    // A change to the set notifies before the interval; the interval restarts from it.
    let changed = sent_at + mins(70);
    h.fail("Salesforce", "frank", Operation::Deactivate, changed);
    assert!(h.tick(changed).await.0.is_empty());
    assert_eq!(h.tick(changed + secs(2)).await.0.firing.len(), 1);
    assert!(h.slack_texts()[2].contains("frank@example.com"));
    assert!(h.tick(changed + mins(59)).await.0.is_empty());
    assert_eq!(h.tick(changed + secs(2) + mins(60)).await.0.firing.len(), 1);
    assert_eq!(h.slack.messages().len(), 4);
}

fn silence_args(app: &str, dur: &str) -> SilenceArgs {
    SilenceArgs {
        app: Some(app.into()),
        duration: Some(dur.into()),
        reason: Some("maintenance".into()),
        list: false,
        remove: None,
    }
}

#[tokio::test]
async fn silences_mute_and_expire() {
    use okta_provwatch::cmd::silence::execute;
    let h = Harness::new().await;
    let _alice = h.fail("Salesforce", "alice", Operation::Create, T0);
    h.fail("Salesforce", "erin", Operation::Deactivate, T0);
    h.fail("Workday", "dave", Operation::Create, T0);

    // By label; resolved to the app id through what the store knows.
    let out = execute(&h.store, T0, &silence_args("salesforce", "1h"), Some("ops")).unwrap();
    assert!(out.contains("0oaSalesforce"), "{out}");
    let list_args = SilenceArgs {
        app: None,
        duration: None,
        reason: None,
        list: true,
        remove: None,
    };
    let listed = execute(&h.store, T0 + mins(1), &list_args, None).unwrap();
    assert!(
        listed.contains("0oaSalesforce") && listed.contains("maintenance"),
        "{listed}"
    );

    for m in [0, 1, 11, 12, 30, 59] {
        let (o, _) = h.tick(T0 + mins(m)).await;
        assert!(
            !o.firing.contains(&"app:0oaSalesforce".to_string()),
            "+{m}m"
        );
    }
    // Other apps are not muted.
    assert!(h.slack_texts().iter().any(|m| m.contains("dave@")));
    assert!(h
        .slack_texts()
        .iter()
        .all(|m| !m.contains("alice@") && !m.contains("erin@")));

    // The silence ends: what still fires notifies as usual.
    assert!(execute(&h.store, T0 + mins(61), &list_args, None)
        .unwrap()
        .contains("no active silences"));
    h.tick(T0 + mins(61)).await;
    h.tick(T0 + mins(61) + secs(2)).await;
    let texts = h.slack_texts();
    assert!(
        texts
            .iter()
            .any(|m| m.contains("alice@") && m.contains("erin@")),
        "{texts:?}"
    );

    // Removal ends a silence early.
    let bob = h.fail("Workday", "bob", Operation::Deactivate, T0 + mins(100));
    let out = execute(
        &h.store,
        T0 + mins(100),
        &silence_args("0oaWorkday", "2h"),
        None,
    )
    .unwrap();
    let id: i64 = out
        .trim_start_matches("silence ")
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(h.tick(T0 + mins(101)).await.0.firing.is_empty());
    let remove = SilenceArgs {
        remove: Some(id),
        ..silence_args("", "")
    };
    execute(&h.store, T0 + mins(102), &remove, None).unwrap();
    h.tick(T0 + mins(102)).await;
    assert_eq!(
        h.tick(T0 + mins(102) + secs(2)).await.0.firing,
        ["app:0oaWorkday"]
    );
    let _ = bob;
}

#[tokio::test]
async fn cleared_during_silence_sends_no_resolved() {
    use okta_provwatch::cmd::silence::execute;
    let h = Harness::new().await;
    let erin = h.fail("Workday", "erin", Operation::Deactivate, T0);
    h.tick(T0).await;
    assert_eq!(h.tick(T0 + secs(2)).await.0.firing.len(), 1);
    execute(&h.store, T0 + mins(1), &silence_args("Workday", "1h"), None).unwrap();
    h.resolve(erin, T0 + mins(2));
    for m in [3, 30, 61, 120] {
        assert!(h.tick(T0 + mins(m)).await.0.resolved.is_empty(), "+{m}m");
    }
    assert_eq!(h.slack.messages().len(), 1);
}

#[tokio::test]
async fn app_wide_failure_folds_in_user_failures() {
    let h = Harness::new().await;
    h.fail("Salesforce", "", Operation::Integration, T0);
    h.fail("Salesforce", "alice", Operation::Create, T0 + secs(1));
    assert!(h.tick(T0 + secs(1)).await.0.is_empty());
    let (o, _) = h.tick(T0 + secs(3)).await;
    assert_eq!(o.firing, ["app:0oaSalesforce"]);
    let msg = payloads(&h.store).pop().unwrap();
    let logins: Vec<&str> = msg.lines.iter().map(|l| l.user_login.as_str()).collect();
    assert_eq!(logins, ["(app-wide)", "alice@example.com"]);
    assert!(msg.title.contains("integration"), "{}", msg.title);
    // alice crossing persist_after is no news: she was already in the message.
    assert!(h.tick(T0 + mins(11)).await.0.is_empty());
    assert_eq!(h.slack.messages().len(), 1);
}

#[tokio::test]
async fn outage_with_restarts_delivers_everything_exactly_once() {
    let mut h = Harness::new().await;
    h.slack.set_mode(SlackMode::RateLimited {
        retry_after_secs: 600,
    });
    h.smtp.set_down(true);
    h.fail("Workday", "erin", Operation::Deactivate, T0);
    h.fail("Salesforce", "alice", Operation::Create, T0);

    h.tick(T0).await;
    let (_, d) = h.tick(T0 + secs(2)).await;
    assert_eq!((d.sent, d.retry), (0, 2));
    // Slack's Retry-After is honoured.
    let slack_row = h
        .store
        .read_blocking(list_outbox)
        .unwrap()
        .into_iter()
        .find(|r| r.channel == "slack")
        .unwrap();
    assert!(
        slack_row.next_attempt_at >= T0 + secs(2) + secs(600),
        "{slack_row:?}"
    );

    let mut t = T0 + secs(2);
    let end = T0 + mins(60);
    let mut restarted = 0;
    while t < end {
        t += secs(20);
        if t >= T0 + mins(30) && restarted == 0 {
            h.slack.set_mode(SlackMode::Down);
            h.restart();
            restarted += 1;
        }
        h.tick(t).await;
    }
    assert!(h.slack.messages().is_empty() && h.smtp.messages().is_empty());
    let rows = h.store.read_blocking(list_outbox).unwrap();
    assert_eq!(rows.len(), 4, "two groups × two channels: {rows:?}");
    assert!(rows.iter().all(|r| r.state == "pending"));
    assert!(rows.iter().any(|r| r.attempts >= 3), "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.next_attempt_at <= t + secs(15 * 60 + 1)));
    assert!(h.slack.request_count() >= 3);
    assert!(h.smtp.connection_count() >= 3);

    // Back up, after one more crash.
    h.restart();
    h.slack.set_mode(SlackMode::Up);
    h.smtp.set_down(false);
    for _ in 0..90 {
        t += secs(20);
        h.tick(t).await;
    }
    let slack = h.slack_texts();
    assert_eq!(slack.len(), 2, "{slack:?}");
    assert_eq!(slack.iter().filter(|m| m.contains("erin@")).count(), 1);
    assert_eq!(slack.iter().filter(|m| m.contains("alice@")).count(), 1);
    let mails = h.email_texts();
    assert_eq!(mails.len(), 2);
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.contains("erin@example.com"))
            .count(),
        1
    );
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.contains("alice@example.com"))
            .count(),
        1
    );
    assert!(h
        .store
        .read_blocking(list_outbox)
        .unwrap()
        .iter()
        .all(|r| r.state == "sent"));
    assert!(h.store.read_blocking(failed_deliveries).unwrap().is_empty());
}

#[tokio::test]
async fn permanent_errors_mark_rows_failed_and_are_reported() {
    let h = Harness::with(|c, slack| {
        *c = config(
            Path::new(c.state.path.parent().unwrap()),
            &slack.removed_webhook_url(),
            c.email.as_ref().unwrap().smtp_url.as_str(),
        );
    })
    .await;
    h.smtp.reject_recipient(ONCALL);
    h.fail("Workday", "erin", Operation::Deactivate, T0);
    h.tick(T0).await;
    let (_, d) = h.tick(T0 + secs(2)).await;
    assert_eq!(
        d,
        Delivered {
            sent: 0,
            retry: 0,
            failed: 2
        }
    );

    let failed = h.store.read_blocking(failed_deliveries).unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    let slack = failed.iter().find(|f| f.channel == "slack").unwrap();
    assert!(slack.error.contains("no_service"), "{}", slack.error);
    assert!(!slack.error.contains(h.slack.webhook_secret()));
    let email = failed.iter().find(|f| f.channel == "email").unwrap();
    assert!(email.error.contains("550"), "{}", email.error);
    assert_eq!(email.group_key.as_deref(), Some("app:0oaWorkday"));
    assert!(email.title.as_deref().unwrap().contains("Workday"));

    // Given up on: not retried.
    let (requests, connections) = (h.slack.request_count(), h.smtp.connection_count());
    for m in [1, 30, 120] {
        h.tick(T0 + mins(m)).await;
    }
    assert_eq!(h.slack.request_count(), requests);
    assert_eq!(h.smtp.connection_count(), connections);
    assert_eq!(
        h.metrics.get(
            "provwatch_alerts_total",
            &[("channel", "email"), ("result", "failed")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn digest_follows_the_schedule_across_restarts() {
    let mut h = Harness::new().await;
    let schedule = h.config.alert.digest_schedule.clone();
    let ch = ["slack", "email"];
    let step = |h: &Harness, now: i64| {
        h.store
            .write_blocking(|tx| digest::step(tx, &schedule, &ch, now))
            .unwrap()
    };
    let nine = chrono::DateTime::parse_from_rfc3339("2023-11-15T09:00:00Z")
        .unwrap()
        .timestamp_millis();
    let (s, next) = step(&h, T0);
    assert_eq!((s, next), (digest::Step::Started, Some(nine)));
    let a = h.fail("Salesforce", "alice", Operation::Create, T0 + mins(1));
    let b = h.fail("Workday", "bob", Operation::Create, T0 + mins(2));
    h.resolve(b, T0 + mins(3));
    assert_eq!(step(&h, nine - 1).0, digest::Step::NotDue);

    // The daemon was down at 09:00; the digest is caught up once after the restart.
    h.restart();
    assert_eq!(step(&h, nine + mins(5)).0, digest::Step::Sent);
    h.restart();
    assert_eq!(step(&h, nine + mins(6)).0, digest::Step::NotDue);
    h.deliver(nine + mins(6)).await;
    let slack = h.slack_texts();
    assert_eq!(slack.len(), 1);
    assert!(slack[0].contains("Digest") && slack[0].contains("alice@example.com"));
    assert!(
        slack[0].contains("2 detected") && slack[0].contains("1 resolved"),
        "{}",
        slack[0]
    );
    assert_eq!(h.smtp.messages().len(), 1);
    let _ = a;
}

#[tokio::test]
async fn daemon_health_alert_fires_after_three_polls_and_resolves() {
    let h = Harness::new().await;
    let poll = h.settings.poll_interval_ms;
    let ok = T0;
    let mut health = HealthState {
        last_poll_ok_ms: Some(ok),
        consecutive_poll_failures: 1,
        last_poll_error: Some("Okta returned 401".into()),
        auth_failing: true,
        ..HealthState::default()
    };
    assert!(h.eval_health(Some(&health), ok + poll).is_empty());
    health.consecutive_poll_failures = 2;
    assert!(h.eval_health(Some(&health), ok + 2 * poll).is_empty());
    health.consecutive_poll_failures = 3;
    let o = h.eval_health(Some(&health), ok + 3 * poll);
    assert_eq!(o.firing, [health_alerts::GROUP_KEY]);
    assert!(h.eval_health(Some(&health), ok + 4 * poll).is_empty());
    h.deliver(ok + 4 * poll).await;
    let slack = h.slack_texts();
    assert!(
        slack[0].contains("credentials") && slack[0].contains("URGENT"),
        "{}",
        slack[0]
    );

    // A restart forgets in-memory health: unknown is not "recovered".
    assert!(h
        .eval_health(Some(&HealthState::default()), ok + 5 * poll)
        .is_empty());
    let good = HealthState {
        last_poll_ok_ms: Some(ok + 6 * poll),
        ..HealthState::default()
    };
    let o = h.eval_health(Some(&good), ok + 6 * poll);
    assert_eq!(o.resolved, [health_alerts::GROUP_KEY]);
    h.deliver(ok + 6 * poll).await;
    assert!(h.slack_texts()[1].contains("RESOLVED"));
    assert!(h.eval_health(Some(&good), ok + 7 * poll).is_empty());
}

#[tokio::test]
async fn without_channels_alerts_go_to_the_log_only() {
    let h = Harness::with(|c, _| {
        c.slack = None;
        c.email = None;
    })
    .await;
    h.fail("Workday", "erin", Operation::Deactivate, T0);
    h.tick(T0).await;
    let (o, d) = h.tick(T0 + secs(2)).await;
    assert_eq!(o.rows, 1);
    assert_eq!(d.sent, 1);
    let rows = h.store.read_blocking(list_outbox).unwrap();
    assert_eq!(rows[0].channel, "console");
    assert!(h.slack.messages().is_empty());
}

#[tokio::test]
async fn daemon_loops_deliver_and_stop_on_shutdown() {
    use okta_provwatch::clock::Clock;
    use okta_provwatch::context::Context;
    use okta_provwatch::store::get_meta;
    use tokio_util::sync::CancellationToken;

    let h = Harness::new().await;
    let ctx = Context::new(h.config.clone(), Clock::system()).unwrap();
    let now = ctx.now_ms();
    let o = Observation {
        app_id: "0oaWorkday".into(),
        app_label: Some("Workday".into()),
        user_id: "00uerin".into(),
        user_login: Some("erin@example.com".into()),
        operation: Operation::Deactivate,
        failed: true,
        reason: None,
        event_uuid: None,
        published_ms: None,
        source: Source::Scan,
    };
    ctx.store
        .write_blocking(|c| failures::apply(c, &o, now, "test"))
        .unwrap();
    let shutdown = CancellationToken::new();
    let tasks = [
        tokio::spawn(okta_provwatch::alert::evaluator::run(
            ctx.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(okta_provwatch::alert::sender::run(
            ctx.clone(),
            shutdown.clone(),
        )),
        tokio::spawn(okta_provwatch::alert::digest::run(
            ctx.clone(),
            shutdown.clone(),
        )),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while (h.slack.messages().is_empty() || h.smtp.messages().is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(h.slack.messages().len(), 1);
    assert_eq!(h.smtp.messages().len(), 1);
    // The digest loop started its clock.
    assert!(ctx
        .store
        .write_blocking(|c| get_meta(c, digest::META_KEY))
        .unwrap()
        .is_some());
    shutdown.cancel();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("stops promptly")
            .unwrap();
    }
    assert_eq!(
        ctx.metrics.get(
            "provwatch_alerts_total",
            &[("channel", "slack"), ("result", "sent")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_stopped_sender_starts_no_further_delivery() {
    let h = Harness::new().await;
    h.fail("Workday", "erin", Operation::Deactivate, T0);
    h.fail("Salesforce", "sam", Operation::Deactivate, T0);
    h.eval(T0);
    assert_eq!(h.eval(T0 + secs(2)).rows, 4);
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let d = h
        .sender
        .deliver_due_until(&h.store, &h.metrics, T0 + secs(2), &stop)
        .await
        .unwrap();
    assert_eq!(d, Delivered::default());
    assert!(h.slack.messages().is_empty() && h.smtp.messages().is_empty());
    let rows = h.store.read_blocking(list_outbox).unwrap();
    assert!(
        rows.iter().all(|r| r.state == "pending" && r.attempts == 0),
        "{rows:?}"
    );
    // The next generation's sender delivers them, once.
    assert_eq!(h.deliver(T0 + secs(3)).await.sent, 4);
    assert_eq!(h.slack.messages().len(), 2);
    assert_eq!(h.smtp.messages().len(), 2);
}

#[tokio::test]
async fn a_failure_alerted_while_being_retried_stays_alerted_after_the_retry() {
    use okta_provwatch::store::retry as store_retry;
    let h = Harness::new().await;
    let alice = h.fail("Salesforce", "alice", Operation::Create, T0);
    let bob = h.fail("Salesforce", "bob", Operation::Create, T0);
    h.store
        .write_blocking(|c| {
            store_retry::claim(c, alice, "w1", T0 + mins(9), T0 + mins(19), "t", "x")?.unwrap();
            Ok(())
        })
        .unwrap();
    h.eval(T0 + mins(10));
    assert_eq!(h.eval(T0 + mins(10) + secs(30)).firing.len(), 1);
    assert_eq!(h.failure_state(alice), State::Retrying);
    assert_eq!(h.failure_state(bob), State::Alerted);
    // The retry fails and is requeued: back to alerted, not open.
    let how = store_retry::Finish::Requeue {
        kind: okta_provwatch::domain::HistoryKind::RetryFailed,
        detail: "ERROR".into(),
        count_attempt: true,
        next_attempt_at: Some(T0 + mins(30)),
        exhausted: None,
    };
    assert_eq!(
        h.store
            .write_blocking(|c| store_retry::finish(c, alice, "w1", T0 + mins(11), "t", &how))
            .unwrap(),
        store_retry::Finished::Requeued
    );
    assert_eq!(h.failure_state(alice), State::Alerted);
    // And the retry's state flips are no news to the group.
    assert!(h.eval(T0 + mins(12)).is_empty());
}

/// Issue 10 defect 4: polls that wait (a 429 storm, a slow Okta) never fail, so a rule that
/// counts failed polls stays silent while nothing is detected. A poller whose polls hang for
/// 3x the interval must turn the shared health verdict unhealthy and fire the health alert.
#[tokio::test]
async fn hanging_polls_turn_health_unhealthy_and_fire_the_health_alert() {
    use okta_provwatch::clock::Clock;
    use okta_provwatch::health::{self, Health, Verdict};
    let h = Harness::new().await;
    tokio::time::pause();
    let clock = Clock::tokio();
    let record = Health::new(clock);
    let interval = h.config.detect.poll_interval;
    let poller = {
        let record = record.clone();
        tokio::spawn(async move {
            loop {
                // Every poll hangs for three intervals before it succeeds: no failure counted.
                tokio::time::sleep(interval * 3).await;
                record.poll_ok(None);
                tokio::time::sleep(interval).await;
            }
        })
    };
    // Let the poller start its first (hanging) poll at time zero.
    tokio::task::yield_now().await;
    let started = record.snapshot().started_ms;
    let judge = |now: i64| health::verdict(&record.snapshot(), interval, started, now);

    tokio::time::advance(interval).await;
    assert_eq!(judge(clock.now_ms()), Verdict::Unknown);
    assert!(h
        .eval_health(Some(&record.snapshot()), clock.now_ms())
        .is_empty());

    // Three intervals into the first hung poll: nothing has succeeded since start.
    tokio::time::advance(interval * 2 + Duration::from_millis(1)).await;
    let snap = record.snapshot();
    assert_eq!(snap.consecutive_poll_failures, 0);
    assert!(judge(clock.now_ms()).is_unhealthy());
    let o = h.eval_health(Some(&snap), clock.now_ms());
    assert_eq!(o.firing, [health_alerts::GROUP_KEY]);

    // The poll returns; the next one hangs again and the verdict flips once it is 3x late.
    tokio::time::advance(Duration::from_millis(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(judge(clock.now_ms()), Verdict::Healthy);
    tokio::time::advance(interval * 3).await;
    tokio::task::yield_now().await;
    match judge(clock.now_ms()) {
        Verdict::Unhealthy { cause, reason, .. } => {
            assert_eq!(cause, health::Cause::Stalled);
            assert!(reason.contains("waiting"), "{reason}");
        }
        v => panic!("expected unhealthy, got {v:?}"),
    }
    poller.abort();
    tokio::time::resume();
    h.deliver(clock.now_ms()).await;
    let slack = h.slack_texts();
    assert!(
        slack.iter().any(|t| t.contains("polling stalled")),
        "{slack:?}"
    );
}

/// Issue 10 defect 5: a 20 MB failure reason once made a 41.6 MB email, and the next, normal
/// alert for the same app was refused by a mail server with a 10 MB limit. Every message is
/// now bounded per line and in total, in the outbox and in every channel's rendering.
#[tokio::test]
async fn a_huge_reason_yields_a_bounded_email_and_the_next_alert_still_delivers() {
    let h = Harness::new().await;
    let huge = format!("SCIM error: {}", "<x&>".repeat(5 * 1024 * 1024));
    assert!(huge.len() >= 20 * 1024 * 1024);
    let o = Observation {
        reason: Some(huge),
        source: Source::Scan,
        ..Observation::failure("0oaWorkday", "00ubig", Operation::Deactivate)
    };
    h.store
        .write_blocking(|tx| failures::apply(tx, &o, T0, "test"))
        .unwrap();
    h.tick(T0).await;
    let (o, d) = h.tick(T0 + secs(2)).await;
    assert_eq!(o.firing.len(), 1, "{o:?}");
    assert_eq!(d.sent, 2, "{d:?}");
    let payloads: usize = h
        .store
        .read_blocking(list_outbox)
        .unwrap()
        .iter()
        .map(|r| r.payload.len())
        .max()
        .unwrap();
    assert!(payloads < 64 * 1024, "outbox payload {payloads} bytes");
    let mails = h.smtp.messages();
    assert_eq!(mails.len(), 1);
    let size = mails[0].data.len();
    assert!(size < 300 * 1024, "email of {size} bytes");
    assert!(decode_mail(&mails[0].data).contains("SCIM error"));
    let slack = h.slack_texts();
    assert!(
        slack[0].len() < 64 * 1024,
        "slack body {} bytes",
        slack[0].len()
    );

    // A normal alert for the same app afterwards goes out on both channels.
    h.fail("Workday", "erin", Operation::Deactivate, T0 + secs(10));
    h.tick(T0 + secs(10)).await;
    let (o, d) = h.tick(T0 + secs(12)).await;
    assert_eq!(o.firing.len(), 1, "{o:?}");
    assert_eq!((d.sent, d.failed), (2, 0), "{d:?}");
    let mails = h.smtp.messages();
    assert_eq!(mails.len(), 2);
    assert!(decode_mail(&mails[1].data).contains("erin@example.com"));
    // Each line says what to do beyond waiting: a failed deprovisioning may leave access.
    assert!(
        decode_mail(&mails[1].data).contains("may still have access to Workday"),
        "{}",
        decode_mail(&mails[1].data)
    );
    assert!(mails[1].data.len() < 300 * 1024);
}
