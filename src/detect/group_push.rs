//! Group push errors, the Tasks page's "Group push" entries, read from
//! `GET /api/v1/apps/{id}/group-push/mappings?status=ERROR` (Okta filters server-side) on the
//! scan schedule. Each mapping in `ERROR` is a failure of operation `group_push` for the app,
//! keyed by the pushed Okta group's id (the same key the group push failure *events* use, so a
//! failure seen both ways is one row) with Okta's `errorSummary` as its reason. A group push
//! failure of the app whose mapping is no longer in `ERROR` is resolved, but only from a
//! complete listing and only if nothing newer than the listing reported it.

use super::DetectError;
use crate::context::Context;
use crate::domain::{Observation, Operation, Source};
use crate::okta::types::Application;
use crate::okta::{Class, OktaError};
use crate::store::failures;
use crate::store::{StoreError, Tx};
use serde::Deserialize;
use std::collections::HashSet;

/// The history actor of changes made here.
pub const ACTOR: &str = "scanner:group_push";

/// The parts of Okta's `GroupPushMapping` read here.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupPushMapping {
    pub id: String,
    pub source_group_id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error_summary: Option<String>,
}

/// What one pass over the watched apps did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub errors_seen: usize,
    pub opened: usize,
    pub resolved: usize,
    /// Apps whose listing Okta refused or that do not support group push.
    pub skipped_apps: usize,
}

/// The ERROR mappings of one app (every page).
async fn errored(ctx: &Context, app_id: &str) -> Result<Vec<GroupPushMapping>, OktaError> {
    // Bucket Apps (everything under /api/v1/apps/{id}/), class Scan; reason: the Tasks page's
    // group push errors have no System Log event when they predate the install or the event
    // was missed. Server-side `status=ERROR` keeps the answer to the few that matter.
    let enc: String = url::form_urlencoded::byte_serialize(app_id.as_bytes()).collect();
    let first = format!("/api/v1/apps/{enc}/group-push/mappings?status=ERROR&limit=1000");
    let mut url = first;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    loop {
        let page = ctx.okta.get_page_with(Class::Scan, &url).await?;
        for raw in page.items {
            match serde_json::from_value::<GroupPushMapping>(raw) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(app = %app_id, error = %e, "skipping a malformed group push mapping")
                }
            }
        }
        match page.next {
            Some(n) if seen.insert(n.clone()) => url = n,
            _ => return Ok(out),
        }
    }
}

/// Applies one app's listing (fetched at `fetched_at`) in the caller's transaction.
pub fn apply(
    tx: &Tx<'_>,
    app: &Application,
    mappings: &[GroupPushMapping],
    fetched_at: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    let mut in_error = HashSet::new();
    for m in mappings
        .iter()
        .filter(|m| m.status.as_deref() == Some("ERROR"))
    {
        out.errors_seen += 1;
        in_error.insert(m.source_group_id.as_str());
        let obs = Observation {
            app_id: app.id.clone(),
            app_label: app.label.clone(),
            user_id: m.source_group_id.clone(),
            user_login: None,
            operation: Operation::GroupPush,
            failed: true,
            reason: Some(format!(
                "group push mapping {} is in ERROR: {}",
                m.id,
                m.error_summary
                    .as_deref()
                    .unwrap_or("Okta gives no errorSummary")
            )),
            event_uuid: None,
            published_ms: None,
            source: Source::Scan,
        };
        if let Some(f) = failures::find(tx, &app.id, &m.source_group_id, Operation::GroupPush)? {
            if f.state != crate::domain::State::Resolved {
                failures::seen_by_scan(tx, f.id, fetched_at)?;
                continue;
            }
            // Resolved after this listing was fetched: the listing is older news.
            if f.resolved_at.is_some_and(|r| r > fetched_at) {
                continue;
            }
        }
        if super::opened(&failures::apply(tx, &obs, fetched_at, ACTOR)?) {
            out.opened += 1;
        }
    }
    out.resolved += super::resolve_gone(
        tx,
        failures::list_unresolved_for_app(tx, &app.id)?,
        |f| {
            f.operation == Operation::GroupPush
                && !f.user_id.is_empty()
                && !in_error.contains(f.user_id.as_str())
        },
        fetched_at,
        ACTOR,
        "group push mapping is no longer in ERROR",
    )?;
    Ok(())
}

/// Reads and applies the group push errors of every watched app. One app's trouble never stops
/// the others; Okta refusing our credentials stops the pass.
pub async fn scan(ctx: &Context, apps: &[Application]) -> Result<Outcome, DetectError> {
    let mut out = Outcome::default();
    for app in apps {
        let fetched_at = ctx.now_ms();
        // Apps without group push answer 404/400: nothing to watch there.
        let Some(mappings) = super::app_answer(
            errored(ctx, &app.id).await,
            &app.id,
            "no group push mappings readable for this app",
            &mut out.skipped_apps,
        )?
        else {
            continue;
        };
        let app = app.clone();
        let r: Outcome =
            super::apply_for_app(ctx, move |tx, o| apply(tx, &app, &mappings, fetched_at, o))
                .await?;
        out.errors_seen += r.errors_seen;
        out.opened += r.opened;
        out.resolved += r.resolved;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::test_app as app;
    use crate::store::Store;

    fn mapping(group: &str, status: &str) -> GroupPushMapping {
        GroupPushMapping {
            id: format!("gPm{group}"),
            source_group_id: group.into(),
            status: Some(status.into()),
            error_summary: Some("Group name already exists in the app".into()),
        }
    }

    #[test]
    fn errors_open_once_and_resolve_when_the_mapping_recovers() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let mut o = Outcome::default();
            apply(tx, &app(), &[mapping("00g1", "ERROR")], 1_000, &mut o)?;
            apply(tx, &app(), &[mapping("00g1", "ERROR")], 2_000, &mut o)?;
            assert_eq!(o.opened, 1);
            let f = failures::find(tx, "0oa1", "00g1", Operation::GroupPush)?.unwrap();
            assert!(f.reason.unwrap().contains("Group name already exists"));
            // A listing fetched before a newer report must not resolve it.
            failures::seen_by_scan(tx, f.id, 5_000)?;
            apply(tx, &app(), &[], 3_000, &mut o)?;
            assert_eq!(o.resolved, 0);
            apply(tx, &app(), &[], 6_000, &mut o)?;
            assert_eq!(o.resolved, 1);
            Ok(())
        })
        .unwrap();
    }
}
