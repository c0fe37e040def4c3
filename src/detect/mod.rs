//! Detection: the System Log poller and the assignment scanner turn what Okta reports into
//! failure records in the store.

pub mod agents;
pub mod classify;
pub mod connections;
pub mod group_push;
pub mod page;
pub mod poller;
pub mod scanner;
pub mod tasks;

use crate::okta::OktaError;
use crate::store::StoreError;

/// Why a poll or a scan stopped.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Okta(#[from] OktaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The page's array itself is broken (not an array, cut short, data after it): nothing on
    /// it can be trusted to be complete, so the cursor stays and the page is read again later
    /// with backoff.
    #[error("the System Log page at {url} is malformed and cannot be split into events: {source}; keeping the cursor and reading it again with backoff")]
    Page {
        url: String,
        #[source]
        source: page::SplitError,
    },
    #[error("interrupted by shutdown")]
    Cancelled,
}

/// Whether a failure write counts as "opened" in a scan outcome: a new record, or a resolved one
/// that is failing again. (A refresh of an open record is not news.)
pub(crate) fn opened(applied: &crate::store::failures::Applied) -> bool {
    use crate::store::failures::Applied;
    matches!(applied, Applied::Opened(_) | Applied::Reopened(_))
}

/// Resolves, as of `fetched_at`, each of `candidates` that `gone` says the listing no longer
/// shows. A record seen after the listing was fetched is newer news than the listing and stays
/// open. Returns how many were resolved.
pub(crate) fn resolve_gone(
    tx: &crate::store::Tx<'_>,
    candidates: Vec<crate::domain::Failure>,
    gone: impl Fn(&crate::domain::Failure) -> bool,
    fetched_at: i64,
    actor: &str,
    detail: &str,
) -> Result<usize, StoreError> {
    let mut resolved = 0;
    for f in candidates {
        if gone(&f)
            && f.last_seen <= fetched_at
            && crate::store::failures::resolve(
                tx,
                f.id,
                fetched_at,
                Some(fetched_at),
                actor,
                detail,
            )?
        {
            resolved += 1;
        }
    }
    Ok(resolved)
}

/// What an app-by-app scan does with Okta's answer for one app: `Some` to apply it; `None`
/// (counted in `skipped`) when the app has nothing readable there, since one app's trouble
/// must not stop the others; an error when Okta refuses our credentials, which stops the pass.
pub(crate) fn app_answer<T>(
    answer: Result<T, OktaError>,
    app_id: &str,
    what: &'static str,
    skipped: &mut usize,
) -> Result<Option<T>, DetectError> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(e @ OktaError::Unauthorized { .. }) => Err(e.into()),
        Err(e) => {
            *skipped += 1;
            tracing::debug!(app = %app_id, error = %e, "{what}");
            Ok(None)
        }
    }
}

/// Runs `apply` (which holds one app's answer) in a write transaction of its own, so a later
/// app's trouble never undoes what an earlier one recorded, and returns its outcome.
pub(crate) async fn apply_for_app<O>(
    ctx: &crate::context::Context,
    apply: impl FnOnce(&crate::store::Tx<'_>, &mut O) -> Result<(), StoreError> + Send + 'static,
) -> Result<O, DetectError>
where
    O: Default + Send + 'static,
{
    Ok(ctx
        .store
        .write(move |tx| {
            let mut o = O::default();
            apply(tx, &mut o)?;
            Ok(o)
        })
        .await?)
}

/// The watched app the app-by-app detectors' unit tests read (id `0oa1`, label `Sales`).
#[cfg(test)]
pub(crate) fn test_app() -> crate::okta::types::Application {
    serde_json::from_value(serde_json::json!({"id": "0oa1", "label": "Sales"}))
        .expect("a valid application document")
}
