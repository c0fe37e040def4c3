//! Manual retries (`okta-provwatch retry`): select failures by id, app, user or all, and retry
//! each through the same claim, pacer, Okta client and recording as the worker, so a person
//! and a running daemon never push the same user at once (the store arbitrates).
//!
//! A person asked, so backoff and `retry_exhausted` are ignored, and an open circuit too (a
//! manual retry that succeeds closes it); history names the person as `cli:<$USER>`.
//! Deactivation failures are refused with what to do instead.

use super::attempt::{self, Outcome, Trigger};
use super::policy::{self, NotRetryable};
use crate::cli::RetryArgs;
use crate::context::Context;
use crate::domain::{Failure, State};
use crate::pacer::Pacer;
use crate::store::claims::{self, NotClaimed};
use crate::store::{failures, StoreError, Tx};
use std::time::Duration;

/// What a person asked to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Failure(i64),
    App(String),
    /// A user id or login, optionally within one app (id or label).
    User {
        user: String,
        app: Option<String>,
    },
    All,
}

impl Selector {
    pub fn from_args(a: &RetryArgs) -> anyhow::Result<Selector> {
        Ok(match (a.failure, &a.app, &a.user, a.all) {
            (Some(id), None, None, false) => Selector::Failure(id),
            (None, _, Some(u), false) => Selector::User {
                user: u.clone(),
                app: a.app.clone(),
            },
            (None, Some(app), None, false) => Selector::App(app.clone()),
            (None, None, None, true) => Selector::All,
            (None, None, None, false) => {
                anyhow::bail!("say what to retry: --failure ID, --app APP, --user USER (with or without --app), or --all")
            }
            _ => anyhow::bail!("--failure and --all cannot be combined with other selectors"),
        })
    }

    fn explicit(&self) -> bool {
        matches!(self, Selector::Failure(_))
    }
}

/// The failures a selector names, most urgent first. `--all` names only what can be retried.
pub fn select(tx: &Tx<'_>, sel: &Selector) -> Result<Vec<Failure>, SelectError> {
    let found = match sel {
        Selector::Failure(id) => {
            vec![failures::get(tx, *id)?.ok_or(SelectError::NoSuchFailure(*id))?]
        }
        Selector::App(app) => claims::find_for_app(tx, app)?,
        Selector::User { user, app } => claims::find_for_user(tx, user, app.as_deref())?,
        Selector::All => failures::list_unresolved(tx)?
            .into_iter()
            .filter(|f| policy::retryable(f).is_ok())
            .collect(),
    };
    Ok(found)
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no failure with id {0} (see `okta-provwatch status --all`)")]
    NoSuchFailure(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to one selected failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retried {
    /// `--dry-run`: this would be retried.
    WouldRetry,
    Succeeded(String),
    Failed(String),
    /// Okta could not be asked (rate limit, 5xx, our credentials): nothing was learnt.
    Deferred(String),
    /// Someone else (the daemon, another person) holds the failure right now.
    Busy(String),
    /// A deactivation: refused, with what to do instead.
    Refused(String),
    /// Not a per-user push (integration, group push, import).
    NotRetryable(String),
    AlreadyResolved,
}

/// One line of the command's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub failure: Failure,
    pub result: Retried,
}

impl Line {
    pub fn render(&self) -> String {
        let f = &self.failure;
        let what = format!(
            "#{} {} / {} {}",
            f.id,
            f.app_name(),
            if f.user_id.is_empty() {
                "(app-wide)"
            } else {
                f.user_name()
            },
            f.operation.as_str()
        );
        let result = match &self.result {
            Retried::WouldRetry => format!(
                "would retry (attempts so far {}{})",
                f.attempts,
                if f.retry_exhausted { ", exhausted" } else { "" }
            ),
            Retried::Succeeded(d) => format!("succeeded: {d}"),
            Retried::Failed(d) => format!("FAILED: {d}"),
            Retried::Deferred(d) => format!("FAILED (nothing learnt, try again later): {d}"),
            Retried::Busy(d) => format!("busy, skipped: {d}"),
            Retried::Refused(d) => format!("refused: {d}"),
            Retried::NotRetryable(d) => format!("not retried: {d}"),
            Retried::AlreadyResolved => "already resolved, nothing to retry".to_string(),
        };
        format!("{what}: {result}")
    }
}

/// Options of one manual run.
#[derive(Clone, Debug)]
pub struct Options {
    /// History actor, `cli:<user>`.
    pub actor: String,
    /// Claimer id of this run.
    pub owner: String,
    pub dry_run: bool,
    pub settle: Duration,
    pub lease: Duration,
}

impl Options {
    pub fn new(actor: String, dry_run: bool) -> Self {
        Self {
            actor,
            owner: super::claimer_id("cli-"),
            dry_run,
            settle: attempt::SETTLE,
            lease: Duration::from_secs(10 * 60),
        }
    }
}

/// `cli:<$USER>` (or `$LOGNAME`), for history rows.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// The outcome of a manual run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub lines: Vec<Line>,
    /// Whether the command should exit non-zero: a retry failed, or an explicitly named
    /// failure was refused.
    pub any_failed: bool,
}

/// Selects and retries. `on_line` sees each line as soon as it is known.
pub async fn run_manual(
    ctx: &Context,
    sel: &Selector,
    opts: &Options,
    mut on_line: impl FnMut(&Line),
) -> Result<Summary, SelectError> {
    let sel2 = sel.clone();
    let chosen = ctx
        .store
        .read(move |tx| match select(tx, &sel2) {
            Ok(v) => Ok(Ok(v)),
            Err(SelectError::NoSuchFailure(id)) => Ok(Err(id)),
            Err(SelectError::Store(e)) => Err(e),
        })
        .await?
        .map_err(SelectError::NoSuchFailure)?;
    let pacer = Pacer::per_minute(ctx.config.retry.per_minute);
    let mut summary = Summary::default();
    for f in chosen {
        let result = one(ctx, &f, opts, &pacer).await?;
        let failed = match &result {
            Retried::Failed(_) | Retried::Deferred(_) => true,
            Retried::Refused(_) | Retried::NotRetryable(_) => sel.explicit(),
            _ => false,
        };
        summary.any_failed |= failed;
        let line = Line { failure: f, result };
        on_line(&line);
        summary.lines.push(line);
    }
    Ok(summary)
}

async fn one(
    ctx: &Context,
    f: &Failure,
    opts: &Options,
    pacer: &Pacer,
) -> Result<Retried, StoreError> {
    if f.state == State::Resolved {
        return Ok(Retried::AlreadyResolved);
    }
    match policy::retryable(f) {
        Err(NotRetryable::Deactivate) => {
            return Ok(Retried::Refused(NotRetryable::Deactivate.explain()))
        }
        Err(other) => return Ok(Retried::NotRetryable(other.explain())),
        Ok(()) => {}
    }
    if opts.dry_run {
        return Ok(Retried::WouldRetry);
    }
    pacer.take().await;
    let (id, owner, actor, lease, clock) = (
        f.id,
        opts.owner.clone(),
        opts.actor.clone(),
        opts.lease,
        ctx.clock,
    );
    let detail = format!("manual retry by {actor} (attempt {})", f.attempts + 1);
    let claimed = ctx
        .store
        .write(move |tx| {
            let now = clock.now_ms();
            let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
            claims::claim(tx, id, &owner, now, until, &actor, &detail)
        })
        .await?;
    let claim = match claimed {
        Ok(c) => c,
        Err(NotClaimed::Busy { by, until }) => {
            ctx.metrics
                .inc("provwatch_retries_total", &[("result", "skipped")]);
            let until = chrono::DateTime::from_timestamp_millis(until)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default();
            return Ok(Retried::Busy(format!(
                "being retried by {by} (claim until {until})"
            )));
        }
        Err(NotClaimed::Resolved) => return Ok(Retried::AlreadyResolved),
        Err(NotClaimed::NotFound) => return Ok(Retried::AlreadyResolved),
    };
    let report = attempt::run(ctx, &claim, Trigger::Manual, &opts.actor, opts.settle).await?;
    Ok(match report.outcome {
        Outcome::Succeeded(d) | Outcome::Gone(d) => Retried::Succeeded(d),
        Outcome::Failed(d) => Retried::Failed(d),
        Outcome::Deferred { detail, .. } => Retried::Deferred(detail),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RetryArgs {
        RetryArgs {
            failure: None,
            app: None,
            user: None,
            all: false,
            dry_run: false,
        }
    }

    #[test]
    fn selectors_from_args() {
        let mut a = args();
        assert!(Selector::from_args(&a).is_err());
        a.failure = Some(3);
        assert_eq!(Selector::from_args(&a).unwrap(), Selector::Failure(3));
        let mut a = args();
        a.user = Some("alice".into());
        a.app = Some("Sales".into());
        assert_eq!(
            Selector::from_args(&a).unwrap(),
            Selector::User {
                user: "alice".into(),
                app: Some("Sales".into())
            }
        );
        a.user = None;
        assert_eq!(
            Selector::from_args(&a).unwrap(),
            Selector::App("Sales".into())
        );
        let mut a = args();
        a.all = true;
        assert_eq!(Selector::from_args(&a).unwrap(), Selector::All);
    }
}
