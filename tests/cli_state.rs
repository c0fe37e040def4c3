//! Commands that only look at existing state (`status`, `silence --list`/`--remove`) against
//! a `[state] path` with no state file behind it: an error naming the path, never a created
//! directory and an empty store read as "all clear".

mod common;

use common::*;
use okta_sim::OktaSim;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_okta-provwatch");

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("OKTA_PROVWATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .expect("run okta-provwatch")
}

#[tokio::test]
async fn read_only_commands_refuse_a_missing_state_file() {
    let sim = OktaSim::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A mistyped state directory: the config is fine, the state file is not there.
    let typo = dir.path().join("stat");
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config_toml(&sim, &typo)).unwrap();
    let state = typo.join("state.db");

    for args in [
        &["status"][..],
        &["status", "--json"],
        &["silence", "--list"],
        &["silence", "--remove", "1"],
    ] {
        let out = run(&cfg, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout} {stderr}");
        assert!(
            stderr.contains(&format!("no state file at {}", state.display()))
                && stderr.contains("[state] path"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stdout.contains("No open provisioning failures") && !stdout.contains("no active"),
            "{args:?}: {stdout}"
        );
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }

    // Once the daemon's store exists, the same commands answer.
    okta_provwatch::store::Store::open(&state).unwrap();
    let out = run(&cfg, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("No open provisioning failures"));
    let out = run(&cfg, &["silence", "--list"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no active silences\n");
}
