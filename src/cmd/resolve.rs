//! `okta-provwatch resolve`: a way out for every failure, URGENT ones included. A person who
//! removed the account by hand (or knows the failure no longer matters) closes it with a note;
//! the note and who wrote it go into the failure's history (`resolved_by_hand`), any
//! deprovisioning expectation tied to it is closed, and the alert pipeline sends the resolved
//! notice like for any other fix. Works without the daemon's secrets (store only).

use crate::domain::{Failure, HistoryKind, State};
use crate::store::expectations::{self as exp, ExpState};
use crate::store::{claims, failures, Tx};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// A failure id (from `status`).
    #[arg(long, conflicts_with_all = ["app", "user"])]
    pub failure: Option<i64>,
    /// Every unresolved failure of this app (id or label), or with --user of that user there.
    #[arg(long)]
    pub app: Option<String>,
    /// A user id or login (with or without --app).
    #[arg(long)]
    pub user: Option<String>,
    /// What was done, kept in the failure's history (e.g. "removed by hand in the app").
    #[arg(long)]
    pub note: String,
}

/// Resolves the selected failures by hand; returns the ones it closed.
pub fn resolve_by_hand(
    tx: &Tx<'_>,
    selected: &[Failure],
    note: &str,
    actor: &str,
    now: i64,
) -> Result<Vec<i64>, crate::store::StoreError> {
    let mut done = Vec::new();
    for f in selected {
        if f.state == State::Resolved {
            continue;
        }
        let detail = format!("resolved by hand: {note}");
        if failures::resolve_as(
            tx,
            f.id,
            now,
            None,
            HistoryKind::ResolvedByHand,
            actor,
            &detail,
        )? {
            done.push(f.id);
        }
        // The ledger must not re-open it from the same expectation.
        if let Some(e) = exp::for_failure(tx, f.id)? {
            if e.state != ExpState::Closed {
                exp::set_state(tx, e.id, ExpState::Closed, now, Some(&detail))?;
            }
        }
        if !f.user_id.is_empty() {
            if let Some(e) = exp::live_for(tx, &f.app_id, &f.user_id)? {
                if f.operation.is_deprovisioning() {
                    exp::set_state(tx, e.id, ExpState::Closed, now, Some(&detail))?;
                }
            }
        }
    }
    Ok(done)
}

pub async fn run(config_path: &Path, args: &ResolveArgs) -> anyhow::Result<ExitCode> {
    let note = args.note.trim().to_owned();
    if note.is_empty() {
        anyhow::bail!("--note must say what was done (e.g. --note \"removed by hand in the app\"); it is kept in the failure's history");
    }
    if args.failure.is_none() && args.app.is_none() && args.user.is_none() {
        anyhow::bail!(
            "say what to resolve: --failure ID, --app APP, or --user USER (with or without --app)"
        );
    }
    let store = super::open_existing_store_only(config_path, true)?;
    let actor = crate::retry::manual::cli_actor();
    let now = chrono::Utc::now().timestamp_millis();
    let (failure, app, user) = (args.failure, args.app.clone(), args.user.clone());
    let result = store
        .write(move |tx| {
            let selected: Vec<Failure> = match (failure, &app, &user) {
                (Some(id), _, _) => match failures::get(tx, id)? {
                    Some(f) => vec![f],
                    None => {
                        return Ok(Err(format!(
                            "no failure with id {id} (see `okta-provwatch status --all`)"
                        )))
                    }
                },
                (None, _, Some(u)) => claims::find_for_user(tx, u, app.as_deref())?,
                (None, Some(a), None) => claims::find_for_app(tx, a)?,
                _ => Vec::new(),
            };
            let already: Vec<i64> = selected
                .iter()
                .filter(|f| f.state == State::Resolved)
                .map(|f| f.id)
                .collect();
            let done = resolve_by_hand(tx, &selected, &note, &actor, now)?;
            let shown: Vec<String> = selected
                .iter()
                .filter(|f| done.contains(&f.id))
                .map(|f| format!("{}: resolved by hand ({note})", f.heading()))
                .collect();
            Ok(Ok((shown, already)))
        })
        .await?;
    match result {
        Err(msg) => {
            eprintln!("okta-provwatch: {msg}");
            Ok(ExitCode::from(crate::exit::DATA))
        }
        Ok((shown, already)) => {
            for l in &shown {
                println!("{l}");
            }
            for id in &already {
                println!("#{id}: already resolved; nothing to do");
            }
            if shown.is_empty() && already.is_empty() {
                println!("nothing to resolve: no unresolved failure matches");
                return Ok(ExitCode::from(crate::exit::DATA));
            }
            if !shown.is_empty() {
                println!("the daemon sends the resolved notice for alerts already sent");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
