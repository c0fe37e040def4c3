//! The command line as an operator meets it, over the real binary: exact messages and exit
//! statuses of `retry` (unknown names, busy failures, refused credentials, dry runs without a
//! token, plain-word results), `check-config`'s Admin Console hint, and the help texts
//! (exit statuses listed, `--config` hidden where it is ignored).
//!
//! The tests that start the simulator run on a multi-threaded runtime: the binary is awaited
//! with a blocking `Command::output`, and the simulator must keep answering meanwhile.

mod common;

use common::*;
use okta_provwatch::domain::{Observation, Operation, Source};
use okta_provwatch::store::{apps, claims, failures, Store};
use okta_sim::{Downstream, OktaSim};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_okta-provwatch");

/// Runs the binary with `--config config`, the token variable set to `token` (or unset).
fn run(config: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .args(args)
        .env_remove("OKTA_PROVWATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove(TOKEN_ENV)
        .env("USER", "tester");
    if let Some(t) = token {
        c.env(TOKEN_ENV, t);
    }
    c.output().expect("run okta-provwatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The simulator, a config file aimed at it, and its state with one failing user of "Sales".
struct Setup {
    sim: OktaSim,
    _dir: TempDir,
    config: PathBuf,
    store: Store,
    app: String,
    failure: i64,
}

async fn setup() -> Setup {
    let sim = OktaSim::start().await.unwrap();
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, config_toml(&sim, dir.path())).unwrap();
    let store = Store::open(&state_path(dir.path())).unwrap();
    let app = sim.add_app("Sales");
    sim.set_downstream(&app, Downstream::Down);
    let user = sim.add_user("ann@x.com");
    sim.assign(&app, &user);
    let now = chrono::Utc::now().timestamp_millis();
    let o = Observation {
        app_id: app.clone(),
        app_label: Some("Sales".into()),
        user_id: user.clone(),
        user_login: Some("ann@x.com".into()),
        operation: Operation::Create,
        failed: true,
        reason: Some("Unable to connect to the remote server.".into()),
        event_uuid: None,
        published_ms: Some(now - 60_000),
        source: Source::Log,
    };
    let failure = store
        .write_blocking(|tx| {
            apps::upsert(tx, &o.app_id, Some("Sales"), None, now)?;
            match failures::apply(tx, &o, now, "test")? {
                failures::Applied::Opened(id) => Ok(id),
                other => panic!("{other:?}"),
            }
        })
        .unwrap();
    Setup {
        sim,
        _dir: dir,
        config,
        store,
        app,
        failure,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_names_that_do_not_exist_exits_65_naming_them() {
    let s = setup().await;
    let token = s.sim.api_token();
    for (args, message) in [
        (
            &["retry", "--app", "Salez"][..],
            "okta-provwatch: no app named Salez: no app with that id or label has been seen by \
             okta-provwatch (labels match in any case; see `okta-provwatch status --all`)\n",
        ),
        (
            &["retry", "--user", "bob@x.com"],
            "okta-provwatch: no user bob@x.com in any recorded failure: give the Okta user id \
             or the login as `okta-provwatch status --all` shows it\n",
        ),
        (
            &["retry", "--user", "ann@x.com", "--app", "Support"],
            "okta-provwatch: no app named Support: no app with that id or label has been seen \
             by okta-provwatch (labels match in any case; see `okta-provwatch status --all`)\n",
        ),
        (
            &["retry", "--failure", "999"],
            "okta-provwatch: no failure with id 999 (see `okta-provwatch status --all` for the \
             ids)\n",
        ),
    ] {
        let out = run(&s.config, Some(&token), args);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {out:?}");
        assert_eq!(text(&out.stderr), message, "{args:?}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
    // An app that exists but has nothing open is not an error.
    s.store
        .write_blocking(|tx| {
            failures::resolve(
                tx,
                s.failure,
                chrono::Utc::now().timestamp_millis(),
                None,
                "t",
                "x",
            )
        })
        .unwrap();
    let out = run(&s.config, Some(&token), &["retry", "--app", "sales"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "nothing to retry: app sales has no open failures\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_failure_held_elsewhere_exits_75() {
    let s = setup().await;
    let now = chrono::Utc::now().timestamp_millis();
    s.store
        .write_blocking(|tx| {
            claims::claim(
                tx,
                s.failure,
                "daemon-host-42",
                now,
                now + 600_000,
                "t",
                "x",
            )?
            .expect("claimable");
            Ok(())
        })
        .unwrap();
    let out = run(
        &s.config,
        Some(&s.sim.api_token()),
        &["retry", "--failure", &s.failure.to_string()],
    );
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    let until = okta_provwatch::clock::second(okta_provwatch::clock::from_ms(now + 600_000));
    assert_eq!(
        text(&out.stdout),
        format!(
            "#{} Sales / ann@x.com create: busy, skipped: being retried by daemon-host-42 (its \
             claim ends {until}); try again after that\n",
            s.failure
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_credentials_okta_refuses_exits_78_naming_the_scope() {
    let s = setup().await;
    let out = run(
        &s.config,
        Some("not-the-token"),
        &["retry", "--failure", &s.failure.to_string()],
    );
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "#{} Sales / ann@x.com create: not retried: Okta refused okta-provwatch's \
             credentials (",
            s.failure
        )),
        "{stdout}"
    );
    assert!(
        stdout.ends_with(
            "The API token or the OAuth service app lacks the right to push app users: grant \
             the service app the okta.apps.manage scope, or use the token of an admin who may \
             manage this app; `okta-provwatch doctor` checks it\n"
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("not-the-token"),
        "the token leaked: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_dry_run_needs_no_token_and_calls_nothing() {
    let s = setup().await;
    let before = s.sim.requests().len();
    let out = run(&s.config, None, &["retry", "--all", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "#{} Sales / ann@x.com create: would retry (0 attempts so far)\n",
            s.failure
        )
    );
    assert_eq!(s.sim.requests().len(), before);
    // Without --dry-run the missing token is a config error (78), named.
    let out = run(&s.config, None, &["retry", "--all"]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(text(&out.stderr).contains(TOKEN_ENV), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_retry_says_so_in_plain_words() {
    let s = setup().await;
    s.sim.set_downstream(&s.app, Downstream::Healthy);
    let out = run(
        &s.config,
        Some(&s.sim.api_token()),
        &["retry", "--user", "ANN@x.com", "--app", "sales"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "#{} Sales / ann@x.com create: fixed: Okta pushed the user again and the app \
             accepted it (the app user is SYNCHRONIZED)\n",
            s.failure
        )
    );
}

#[test]
fn usage_errors_of_retry_exit_2() {
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, minimal_toml(UNREACHABLE_ORG, dir.path(), "", "")).unwrap();
    let out = run(&config, None, &["retry"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        "okta-provwatch: say what to retry: --failure ID, --app APP, --user USER (with or \
         without --app), or --all\n"
    );
}

#[test]
fn check_config_hints_at_admin_url_for_a_custom_domain() {
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    let custom = minimal_toml("https://login.acme.com", dir.path(), "", "");
    std::fs::write(&config, &custom).unwrap();
    let out = run(&config, Some("t0ken"), &["check-config"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "hint: okta.org_url (login.acme.com) is a custom domain, from which the Okta Admin \
             Console's host cannot be derived: alerts will carry no links to apps and users. Set \
             okta.admin_url to the console's address as your admins open it, e.g. \
             \"https://acme-admin.okta.com\"\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("  okta.admin_url = (none: alerts carry no Admin Console links)\n"));

    let with = minimal_toml(
        "https://login.acme.com",
        dir.path(),
        "admin_url = \"https://acme-admin.okta.com\"",
        "",
    );
    std::fs::write(&config, with).unwrap();
    let out = run(&config, Some("t0ken"), &["check-config"]);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("hint:"), "{stdout}");
    assert!(
        stdout.contains("  okta.admin_url = https://acme-admin.okta.com/\n"),
        "{stdout}"
    );

    let okta = minimal_toml("https://acme.okta.com", dir.path(), "", "");
    std::fs::write(&config, okta).unwrap();
    let stdout = text(&run(&config, Some("t0ken"), &["check-config"]).stdout);
    assert!(
        stdout.contains(
            "  okta.admin_url = https://acme-admin.okta.com (derived from okta.org_url)\n"
        ),
        "{stdout}"
    );

    let bad = minimal_toml(
        "https://login.acme.com",
        dir.path(),
        "admin_url = \"https://acme-admin.okta.com/admin\"",
        "",
    );
    std::fs::write(&config, bad).unwrap();
    let out = run(&config, Some("t0ken"), &["check-config"]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(text(&out.stderr).contains("okta.admin_url"), "{out:?}");
}

#[test]
fn help_lists_exit_statuses_and_hides_config_where_ignored() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("OKTA_PROVWATCH_CONFIG")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        text(&out.stdout)
    };
    let top = help(&["--help"]);
    for line in [
        "Exit status:\n",
        "    0  success\n",
        "   65  bad input data: a failure id, app or user that does not exist\n",
        "   75  temporary failure (busy, rate limited); try again later\n",
    ] {
        assert!(top.contains(line), "{line:?} missing from:\n{top}");
    }
    assert!(help(&["retry", "--help"]).contains("65 no failure, app or user by that name"));
    for sub in ["man", "completions", "demo"] {
        let h = help(&[sub, "--help"]);
        assert!(!h.contains("--config"), "{sub}: {h}");
    }
    assert!(help(&["status", "--help"]).contains("--config"));
    // Hidden, still accepted: scripts pass --config to every command.
    let dir = temp_dir();
    let out = Command::new(BIN)
        .args(["man", "--config", "/nonexistent.toml", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_config_that_cannot_be_read_exits_78() {
    let dir = temp_dir();
    let out = run(&dir.path().join("missing.toml"), None, &["status"]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(text(&out.stderr).contains("missing.toml"), "{out:?}");
}

#[test]
fn a_state_path_the_file_system_refuses_is_named_once_and_exits_78() {
    let dir = temp_dir();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "not a directory").unwrap();
    let config = dir.path().join("config.toml");
    let toml = minimal_toml(UNREACHABLE_ORG, dir.path(), "", "").replace(
        &state_path(dir.path()).display().to_string(),
        &plain.join("sub").join("state.db").display().to_string(),
    );
    std::fs::write(&config, toml).unwrap();
    let out = run(&config, Some("t0ken"), &["retry", "--all"]);
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert_eq!(
        text(&out.stderr),
        format!(
            "okta-provwatch: state store {}: {} is not a directory; point [state] path into a \
             directory\n",
            plain.join("sub").join("state.db").display(),
            plain.display()
        )
    );
}
