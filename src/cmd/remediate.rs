//! `okta-provwatch remediate --failure ID [--dry-run | --yes]`: deactivates, through the app's
//! own SCIM API (`[[verify]]`), the account of a failed or missing deprovisioning. Dry run by
//! default: it prints the exact PATCH and sends nothing. With `--yes` it sends that one PATCH
//! (`replace active false`; never DELETE), records who/what/when in the failure's history,
//! checks the account again and resolves the failure when the app confirms. A PATCH that fails
//! is reported and never retried by this command.

use crate::deprovision::verify::{self, Check, Plan};
use crate::domain::Operation;
use crate::scim::ScimClient;
use crate::store::{expectations as exp, failures};
use anyhow::Context as _;
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct RemediateArgs {
    /// The failure id (from `status`): a `deactivate` failure of an app with a [[verify]] table.
    #[arg(long)]
    pub failure: i64,
    /// Print the PATCH that would be sent and send nothing (the default).
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// Send the PATCH.
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(config_path: &Path, args: &RemediateArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = crate::store::Store::open(&config.state.path)
        .with_context(|| format!("opening the state store {}", config.state.path.display()))?;
    let id = args.failure;
    let (f, e, known) = store
        .read(move |tx| {
            let f = failures::get(tx, id)?;
            let e = exp::for_failure(tx, id)?;
            let known = match &f {
                Some(f) => exp::known_app_user(tx, &f.app_id, &f.user_id)?,
                None => None,
            };
            Ok((f, e, known))
        })
        .await?;
    let Some(f) = f else {
        anyhow::bail!("no failure with id {id} (see `okta-provwatch status --all`)");
    };
    if f.operation != Operation::Deactivate || f.user_id.is_empty() {
        anyhow::bail!(
            "failure #{id} is a {} failure; remediate only deactivates the account of a failed or missing deprovisioning",
            f.operation.as_str()
        );
    }
    let Some(cfg) = config
        .verify
        .iter()
        .find(|v| v.matches(&f.app_id, f.app_label.as_deref()))
    else {
        anyhow::bail!(
            "{} has no [[verify]] table, so okta-provwatch cannot reach its SCIM API; remove the account in the app by hand, then `okta-provwatch resolve --failure {id} --note ...`",
            f.app_name()
        );
    };
    let client = ScimClient::new(cfg, config.okta.request_timeout)?;
    let user_name = e
        .as_ref()
        .and_then(|e| e.app_user_name.clone())
        .or_else(|| known.as_ref().and_then(|k| k.app_user_name.clone()))
        .or_else(|| f.user_login.clone());
    let scim_id = e
        .as_ref()
        .and_then(|e| e.scim_id.clone())
        .or_else(|| known.as_ref().and_then(|k| k.scim_id.clone()));
    let found = verify::check(&client, user_name.as_deref(), scim_id.as_deref())
        .await
        .with_context(|| format!("looking the account up in {}'s SCIM API", f.app_name()))?;
    let target = match &found {
        Check::Active { scim_id, user_name } => {
            println!(
                "{} has an active account for {}: {user_name:?} (SCIM id {scim_id})",
                f.app_name(),
                f.user_name()
            );
            scim_id.clone()
        }
        Check::Inactive { .. } | Check::Gone => {
            println!("{} already shows the account inactive or gone; nothing to send. The daemon's next check resolves the failure.", f.app_name());
            return Ok(ExitCode::SUCCESS);
        }
        Check::Inconclusive(why) => {
            anyhow::bail!("cannot tell which account to deactivate: {why}");
        }
    };
    let plan = Plan::new(&client, &target);
    if !args.yes {
        println!(
            "dry run: this would be sent (add --yes to send it):\n\n{}",
            plan.render()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let actor = crate::retry::manual::cli_actor();
    let now = chrono::Utc::now().timestamp_millis();
    match verify::remediate(&store, &client, &plan, id, &actor, now).await? {
        Ok(()) => println!(
            "sent: PATCH {} (active=false); recorded in failure #{id}'s history",
            plan.url
        ),
        Err(err) => {
            eprintln!("okta-provwatch: the PATCH failed: {err}. It is not retried; check the app, then try again or remove the account by hand and `okta-provwatch resolve --failure {id} --note ...`");
            return Ok(ExitCode::FAILURE);
        }
    }
    // Check again at once: the app's own word resolves the failure.
    let again = verify::check(&client, user_name.as_deref(), Some(&target)).await;
    if let Some(e) = e {
        let now = chrono::Utc::now().timestamp_millis();
        store
            .write(move |tx| verify::record(tx, &e, &again, now))
            .await?;
    } else if matches!(again, Ok(Check::Inactive { .. }) | Ok(Check::Gone)) {
        let now = chrono::Utc::now().timestamp_millis();
        store
            .write(move |tx| {
                failures::resolve_as(
                    tx,
                    id,
                    now,
                    None,
                    crate::domain::HistoryKind::Verified,
                    "remediate",
                    "the app's SCIM API shows the account inactive after remediation",
                )
            })
            .await?;
    }
    let state = store
        .read(move |tx| failures::get(tx, id))
        .await?
        .map(|f| f.state);
    println!(
        "failure #{id} is now {}",
        state.map_or("unknown", |s| s.as_str())
    );
    Ok(ExitCode::SUCCESS)
}
