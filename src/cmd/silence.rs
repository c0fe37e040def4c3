//! `okta-provwatch silence`: mute an app's alerts for a while (maintenance), list the active
//! silences, or remove one. Works on the state store only, so it runs beside the daemon (which
//! picks a new silence up on its next evaluation) and without Okta.
//!
//! `--app` takes an app id or label. A label is resolved to the app id through the `apps`
//! table or the failure rows; an app never seen yet is stored as typed and matches an app with
//! that id or label later.

use crate::cli::SilenceArgs;
use crate::clock::Clock;
use crate::store::{apps, silences, Store};
use anyhow::Context as _;
use std::path::Path;
use std::process::ExitCode;

pub async fn run(config: &Path, args: &SilenceArgs) -> anyhow::Result<ExitCode> {
    // Listing or removing never creates a state file: on a mistyped `[state] path` that
    // would answer "no active silences" about a store the daemon never uses.
    let store = if args.list {
        super::open_existing_store_only(config, false)?
    } else if args.remove.is_some() {
        super::open_existing_store_only(config, true)?
    } else {
        super::open_store_only(config)?
    };
    let out = execute(
        &store,
        Clock::system().now_ms(),
        args,
        created_by().as_deref(),
    )?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn created_by() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

fn fmt_ms(ms: i64) -> String {
    crate::clock::minute(crate::clock::from_ms(ms))
}

/// Does what `args` asks at `now` and returns the text to print.
pub fn execute(
    store: &Store,
    now: i64,
    args: &SilenceArgs,
    created_by: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(id) = args.remove {
        let removed = store.write_blocking(|tx| silences::remove(tx, id))?;
        anyhow::ensure!(removed, "no silence with id {id} (see `silence --list`)");
        return Ok(format!("removed silence {id}\n"));
    }
    if args.list {
        let list = store.read_blocking(|tx| silences::active(tx, now))?;
        if list.is_empty() {
            return Ok("no active silences\n".into());
        }
        let mut out = format!(
            "{:<5} {:<24} {:<22} {:<12} {}\n",
            "ID", "APP", "UNTIL", "BY", "REASON"
        );
        for s in list {
            out.push_str(&format!(
                "{:<5} {:<24} {:<22} {:<12} {}\n",
                s.id,
                s.app,
                fmt_ms(s.until),
                s.created_by.as_deref().unwrap_or("-"),
                s.reason.as_deref().unwrap_or("")
            ));
        }
        return Ok(out);
    }
    let app = args
        .app
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .context("--app is required")?;
    let duration = args.duration.as_deref().context("--for is required")?;
    let d = humantime::parse_duration(duration.trim())
        .with_context(|| format!("--for {duration:?} is not a duration (e.g. \"2h\", \"30m\")"))?;
    anyhow::ensure!(!d.is_zero(), "--for must be longer than zero");
    let until = now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let candidates = store.read_blocking(|tx| apps::resolve(tx, app))?;
    let (target, note) = match candidates.as_slice() {
        [] => (
            app.to_string(),
            " (no app with this id or label seen yet; it will match one later)".to_string(),
        ),
        [(id, label)] => (
            id.clone(),
            label
                .as_deref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default(),
        ),
        many => anyhow::bail!(
            "{app:?} matches several apps: {}; silence one by id",
            many.iter()
                .map(|(id, l)| format!("{id} ({})", l.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let reason = args
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let id =
        store.write_blocking(|tx| silences::add(tx, &target, until, reason, now, created_by))?;
    Ok(format!(
        "silence {id}: alerts for {target}{note} muted until {}\n",
        fmt_ms(until)
    ))
}
