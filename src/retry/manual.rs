//! Manual retries (`okta-provwatch retry`): select failures by id, app, user or all, and retry
//! each through the same claim, pacer, Okta client and recording as the worker, so a person
//! and a running daemon never push the same user at once (the store arbitrates).
//!
//! A person asked, so backoff and `retry_exhausted` are ignored, and an open circuit too (a
//! manual retry that succeeds closes it); history names the person as `cli:<$USER>`.
//! Deactivation failures are refused with what to do instead.
//!
//! This module also owns what the command says and which exit status it ends with
//! ([`Summary::exit_code`]): every outcome a person can act on differently has its own code
//! from [`crate::exit`], so a script can tell "someone else is on it, try later" (75) from
//! "you named something that does not exist" (65) from "our credentials lack a scope" (78).

use super::attempt::{self, Outcome, Trigger};
use super::policy::{self, NotRetryable};
use crate::cli::RetryArgs;
use crate::context::Context;
use crate::domain::{Failure, State};
use crate::exit;
use crate::pacer::Pacer;
use crate::store::claims::{self, NotClaimed};
use crate::store::{apps, failures, Store, StoreError, Tx};
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

    /// The words for "this selector matched nothing open", once it is known to name
    /// something that exists.
    fn nothing_open(&self) -> String {
        match self {
            Selector::Failure(id) => format!("failure #{id} is not open"),
            Selector::App(app) => format!("app {app} has no open failures"),
            Selector::User { user, app: None } => format!("{user} has no open failures"),
            Selector::User {
                user,
                app: Some(app),
            } => format!("{user} has no open failures in {app}"),
            Selector::All => "no open failure can be retried".to_string(),
        }
    }
}

/// The failures a selector names, most urgent first. `--all` names only what can be retried.
///
/// A selector that names no app, user or failure the store has ever seen is an error
/// ([`SelectError::NoSuchApp`] and friends), not an empty list: "nothing to retry" for a
/// mistyped app label would read as "all clear".
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
    if found.is_empty() {
        check_exists(tx, sel)?;
    }
    Ok(found)
}

/// Whether `app` (an id, or a label in any case) is an app the store knows.
fn app_known(tx: &Tx<'_>, app: &str) -> Result<bool, StoreError> {
    Ok(!apps::resolve(tx, app)?.is_empty())
}

fn matches_user(f: &Failure, user: &str) -> bool {
    f.user_id == user
        || f.user_login
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(user))
}

fn matches_app(f: &Failure, app: &str) -> bool {
    f.app_id == app
        || f.app_label
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(app))
}

/// Tells "names nothing that exists" from "exists, nothing open" for an empty selection.
/// Runs only when the selection came back empty, so the full scan of failures is rare.
fn check_exists(tx: &Tx<'_>, sel: &Selector) -> Result<(), SelectError> {
    match sel {
        Selector::App(app) if !app_known(tx, app)? => Err(SelectError::NoSuchApp(app.clone())),
        Selector::User { user, app } => {
            if let Some(a) = app {
                if !app_known(tx, a)? {
                    return Err(SelectError::NoSuchApp(a.clone()));
                }
            }
            let seen = failures::list_all(tx)?
                .iter()
                .any(|f| matches_user(f, user) && app.as_deref().is_none_or(|a| matches_app(f, a)));
            if seen {
                Ok(())
            } else {
                Err(SelectError::NoSuchUser {
                    user: user.clone(),
                    app: app.clone(),
                })
            }
        }
        _ => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("no failure with id {0} (see `okta-provwatch status --all` for the ids)")]
    NoSuchFailure(i64),
    #[error(
        "no app named {0}: no app with that id or label has been seen by okta-provwatch \
         (labels match in any case; see `okta-provwatch status --all`)"
    )]
    NoSuchApp(String),
    #[error(
        "no user {user} in any recorded failure{}: give the Okta user id or the login as \
         `okta-provwatch status --all` shows it",
        app.as_deref().map(|a| format!(" of {a}")).unwrap_or_default()
    )]
    NoSuchUser { user: String, app: Option<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SelectError {
    /// The exit status for this error: 65 (`EX_DATAERR`) for a name that matches nothing.
    pub fn exit_code(&self) -> u8 {
        match self {
            SelectError::Store(_) => exit::GENERIC,
            _ => exit::DATA,
        }
    }
}

/// What happened to one selected failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retried {
    /// `--dry-run`: this would be retried.
    WouldRetry,
    /// Okta pushed the user again and the app accepted it (or it was already in sync).
    Succeeded(String),
    /// The app user no longer exists: nothing is left to provision, the failure is closed.
    Gone(String),
    Failed(String),
    /// Okta could not be asked (rate limit, 5xx, timeout): nothing was learnt.
    Deferred(String),
    /// Okta refused our own credentials (401/403): the token or service app lacks rights.
    Denied(String),
    /// Someone else (the daemon, another person) holds the failure right now.
    Busy(String),
    /// A deactivation: refused, with what to do instead.
    Refused(String),
    /// Not a per-user push (integration, group push, import).
    NotRetryable(String),
    AlreadyResolved,
}

/// The scope an OAuth service app needs to push app users again.
pub const MANAGE_SCOPE: &str = "okta.apps.manage";

/// One line of the command's output.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub failure: Failure,
    pub result: Retried,
}

impl Line {
    pub fn render(&self) -> String {
        let f = &self.failure;
        let what = f.heading();
        let result = match &self.result {
            Retried::WouldRetry => format!(
                "would retry ({} so far{})",
                plural(f.attempts, "attempt", "attempts"),
                if f.retry_exhausted {
                    ", automatic retries gave up"
                } else {
                    ""
                }
            ),
            // The attempt's detail is written for history rows ("retry succeeded: ..."); a
            // person reading the command's output gets what happened in plain words.
            Retried::Succeeded(d) => match d.strip_prefix("retry succeeded: ") {
                Some(rest) => {
                    format!("fixed: Okta pushed the user again and the app accepted it ({rest})")
                }
                None => format!("fixed: {d}"),
            },
            Retried::Gone(d) => format!("closed: {d}"),
            Retried::Failed(d) => {
                format!("FAILED: {d}; fix what the app reports, then retry again")
            }
            Retried::Deferred(d) => {
                format!("not retried, Okta could not be asked (try again later): {d}")
            }
            Retried::Denied(d) => format!(
                "not retried: Okta refused okta-provwatch's credentials ({d}). The API token or \
                 the OAuth service app lacks the right to push app users: grant the service app \
                 the {MANAGE_SCOPE} scope, or use the token of an admin who may manage this app; \
                 `okta-provwatch doctor` checks it"
            ),
            Retried::Busy(d) => format!("busy, skipped: {d}; try again after that"),
            Retried::Refused(d) => format!("refused: {d}"),
            Retried::NotRetryable(d) => format!("not retried: {d}"),
            Retried::AlreadyResolved => "already resolved, nothing to retry".to_string(),
        };
        format!("{what}: {result}")
    }

    /// The exit status this line alone would give the command.
    fn exit_code(&self, explicit: bool) -> u8 {
        match &self.result {
            Retried::Denied(_) => exit::CONFIG,
            Retried::Failed(_) => exit::GENERIC,
            Retried::Refused(_) | Retried::NotRetryable(_) if explicit => exit::GENERIC,
            Retried::Deferred(_) | Retried::Busy(_) => exit::TEMPFAIL,
            _ => exit::OK,
        }
    }
}

fn plural(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Which of two exit statuses wins when a run has lines of both: the one a person must act
/// on first. Credentials (78) before a failed push (1) before "try later" (75) before success.
fn worse(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        exit::CONFIG => 4,
        exit::GENERIC => 3,
        exit::TEMPFAIL => 2,
        exit::OK => 0,
        _ => 1,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
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
    /// Whether the command should exit non-zero: a retry failed, Okta could not be asked,
    /// someone else holds a failure, or an explicitly named failure was refused.
    pub any_failed: bool,
    /// The exit status (see [`Summary::exit_code`]).
    exit: u8,
    /// What to print when nothing matched (the selector named something that exists).
    pub nothing: Option<String>,
}

impl Summary {
    fn push(&mut self, line: Line, explicit: bool) {
        let code = line.exit_code(explicit);
        self.any_failed |= code != exit::OK;
        self.exit = worse(self.exit, code);
        self.lines.push(line);
    }

    /// The command's exit status: 0 when every selected failure was fixed (or would be, in a
    /// dry run), 78 when Okta refused our credentials, 1 when a push failed again or a named
    /// failure cannot be retried, 75 when a failure was busy elsewhere or Okta could not be
    /// asked. With several, the first in that order wins.
    pub fn exit_code(&self) -> u8 {
        self.exit
    }
}

/// Reads the failures `sel` names, mapping a selector that names nothing to its error.
async fn chosen(store: &Store, sel: &Selector) -> Result<Vec<Failure>, SelectError> {
    let sel2 = sel.clone();
    store
        .read(move |tx| match select(tx, &sel2) {
            Ok(v) => Ok(Ok(v)),
            Err(SelectError::Store(e)) => Err(e),
            Err(other) => Ok(Err(other)),
        })
        .await?
}

/// What a retry of `f` would do without asking Okta: `None` when it would push the user.
fn without_okta(f: &Failure) -> Option<Retried> {
    if f.state == State::Resolved {
        return Some(Retried::AlreadyResolved);
    }
    match policy::retryable(f) {
        Err(NotRetryable::Deactivate) => Some(Retried::Refused(NotRetryable::Deactivate.explain())),
        Err(other) => Some(Retried::NotRetryable(other.explain())),
        Ok(()) => None,
    }
}

/// `--dry-run`: what would be retried, from the store alone. Needs no Okta credentials, so
/// an operator can look before the daemon's token is at hand.
pub async fn plan(store: &Store, sel: &Selector) -> Result<Summary, SelectError> {
    let mut summary = Summary::default();
    for f in chosen(store, sel).await? {
        let result = without_okta(&f).unwrap_or(Retried::WouldRetry);
        summary.push(Line { failure: f, result }, sel.explicit());
    }
    if summary.lines.is_empty() {
        summary.nothing = Some(sel.nothing_open());
    }
    Ok(summary)
}

/// Selects and retries. `on_line` sees each line as soon as it is known.
pub async fn run_manual(
    ctx: &Context,
    sel: &Selector,
    opts: &Options,
    mut on_line: impl FnMut(&Line),
) -> Result<Summary, SelectError> {
    if opts.dry_run {
        let summary = plan(&ctx.store, sel).await?;
        summary.lines.iter().for_each(&mut on_line);
        return Ok(summary);
    }
    let chosen = chosen(&ctx.store, sel).await?;
    let pacer = Pacer::per_minute(ctx.config.retry.per_minute);
    let mut summary = Summary::default();
    for f in chosen {
        let result = one(ctx, &f, opts, &pacer).await?;
        let line = Line { failure: f, result };
        on_line(&line);
        summary.push(line, sel.explicit());
    }
    if summary.lines.is_empty() {
        summary.nothing = Some(sel.nothing_open());
    }
    Ok(summary)
}

async fn one(
    ctx: &Context,
    f: &Failure,
    opts: &Options,
    pacer: &Pacer,
) -> Result<Retried, StoreError> {
    if let Some(r) = without_okta(f) {
        return Ok(r);
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
            let until = now.saturating_add(crate::clock::ms(lease));
            claims::claim(tx, id, &owner, now, until, &actor, &detail)
        })
        .await?;
    let claim = match claimed {
        Ok(c) => c,
        Err(NotClaimed::Busy { by, until }) => {
            ctx.metrics
                .inc("provwatch_retries_total", &[("result", "skipped")]);
            let until = crate::clock::second(crate::clock::from_ms(until));
            return Ok(Retried::Busy(format!(
                "being retried by {by} (its claim ends {until})"
            )));
        }
        Err(NotClaimed::Resolved) => return Ok(Retried::AlreadyResolved),
        Err(NotClaimed::NotFound) => return Ok(Retried::AlreadyResolved),
    };
    let report = attempt::run(ctx, &claim, Trigger::Manual, &opts.actor, opts.settle).await?;
    Ok(match report.outcome {
        Outcome::Succeeded(d) => Retried::Succeeded(d),
        Outcome::Gone(d) => Retried::Gone(d),
        Outcome::Failed(d) => Retried::Failed(d),
        Outcome::Deferred { detail, auth: true } => Retried::Denied(detail),
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
