//! On-premises agent pools (AD, LDAP, the Okta Provisioning Agent...) from
//! `GET /api/v1/agentPools`, read on the scan schedule. A pool with agents none of which is
//! `OPERATIONAL` stops every import and push that goes through it: an org-wide failure, one
//! per pool, recorded as an app-wide `integration` failure of the pseudo-app
//! `agentpool:<pool id>` (labelled with the pool's name and type) so that it alerts once,
//! urgently, like other app-wide failures. It resolves when the pool is operational again or
//! gone.

use super::DetectError;
use crate::context::Context;
use crate::domain::{Observation, Operation, Source};
use crate::okta::{Class, OktaError};
use crate::store::failures;
use crate::store::{StoreError, Tx};
use serde::Deserialize;

/// The history actor of changes made here.
pub const ACTOR: &str = "scanner:agents";

/// Prefix of the pseudo app id of an agent pool (Okta ids never contain ':').
pub const APP_PREFIX: &str = "agentpool:";

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentPool {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub operational_status: Option<String>,
    #[serde(default)]
    pub agents: Vec<Agent>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    #[serde(default)]
    pub operational_status: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub pools: usize,
    pub down: usize,
    pub opened: usize,
    pub resolved: usize,
}

fn label(p: &AgentPool) -> String {
    format!(
        "agent pool {} ({})",
        p.name.as_deref().unwrap_or(&p.id),
        p.kind.as_deref().unwrap_or("agent")
    )
}

/// Applies the org's pools (read at `fetched_at`) in the caller's transaction.
pub fn apply(
    tx: &Tx<'_>,
    pools: &[AgentPool],
    fetched_at: i64,
    out: &mut Outcome,
) -> Result<(), StoreError> {
    out.pools += pools.len();
    let mut down = std::collections::HashSet::new();
    for p in pools {
        let status = p.operational_status.as_deref().unwrap_or("UNKNOWN");
        // A pool without agents is an unused leftover, not an outage.
        if status == "OPERATIONAL" || p.agents.is_empty() {
            continue;
        }
        out.down += 1;
        let app_id = format!("{APP_PREFIX}{}", p.id);
        let working = p
            .agents
            .iter()
            .filter(|a| a.operational_status.as_deref() == Some("OPERATIONAL"))
            .count();
        let obs = Observation {
            app_id: app_id.clone(),
            app_label: Some(label(p)),
            user_id: String::new(),
            user_login: None,
            operation: Operation::Integration,
            failed: true,
            reason: Some(format!(
                "{} is {status}: {working} of {} agents operational; imports and pushes through it stop until an agent reconnects",
                label(p),
                p.agents.len()
            )),
            event_uuid: None,
            published_ms: None,
            source: Source::Scan,
        };
        down.insert(app_id);
        if super::opened(&failures::apply(tx, &obs, fetched_at, ACTOR)?) {
            out.opened += 1;
        }
    }
    out.resolved += super::resolve_gone(
        tx,
        failures::list_unresolved(tx)?,
        |f| f.app_id.starts_with(APP_PREFIX) && !down.contains(&f.app_id),
        fetched_at,
        ACTOR,
        "agent pool is operational again (or gone)",
    )?;
    Ok(())
}

/// Reads and applies the org's agent pools.
pub async fn scan(ctx: &Context) -> Result<Outcome, DetectError> {
    let fetched_at = ctx.now_ms();
    // Bucket Other, class Scan; reason: agent pools are org-wide and have no per-app view; one
    // call per scan. Orgs without on-premises agents answer an empty list.
    let pools: Vec<AgentPool> = match ctx
        .okta
        .get_all_with(Class::Scan, "/api/v1/agentPools")
        .await
    {
        Ok(p) => p,
        Err(e @ OktaError::Unauthorized { .. }) => return Err(e.into()),
        Err(e @ OktaError::Forbidden { .. }) => {
            tracing::debug!(error = %e, "agent pools not readable with these credentials; skipped");
            return Ok(Outcome::default());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(ctx
        .store
        .write(move |tx| {
            let mut o = Outcome::default();
            apply(tx, &pools, fetched_at, &mut o)?;
            Ok(o)
        })
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn pool(status: &str, agents: &[&str]) -> AgentPool {
        serde_json::from_value(serde_json::json!({
            "id": "0oaP", "name": "corp-ad", "type": "AD", "operationalStatus": status,
            "agents": agents.iter().map(|a| serde_json::json!({"operationalStatus": a})).collect::<Vec<_>>()
        }))
        .unwrap()
    }

    #[test]
    fn a_disrupted_pool_is_one_org_wide_failure_until_it_recovers() {
        let s = Store::open_in_memory().unwrap();
        s.write_blocking(|tx| {
            let mut o = Outcome::default();
            apply(
                tx,
                &[pool("DISRUPTED", &["DISRUPTED", "INACTIVE"])],
                1_000,
                &mut o,
            )?;
            apply(tx, &[pool("DISRUPTED", &["DISRUPTED"])], 2_000, &mut o)?;
            assert_eq!((o.opened, o.resolved), (1, 0));
            let f = failures::find(tx, "agentpool:0oaP", "", Operation::Integration)?.unwrap();
            assert!(f.urgent);
            assert!(f.reason.unwrap().contains("0 of 1 agents"));
            apply(tx, &[pool("OPERATIONAL", &["OPERATIONAL"])], 3_000, &mut o)?;
            assert_eq!(o.resolved, 1);
            Ok(())
        })
        .unwrap();
    }
}
