//! The read APIs behind Okta's Tasks-page failure kinds and the budget checks (issues 11, 14),
//! plus the provisioning settings update: group push mappings (`status` filter), the app's
//! default provisioning connection, agent pools, principal rate limits, and
//! `PUT /api/v1/apps/{id}/features/USER_PROVISIONING`. Bodies follow the spec's
//! `GroupPushMapping`, `ProvisioningConnectionResponse`, `AgentPool`, `PrincipalRateLimitEntity`
//! and `ApplicationFeature` schemas.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::clock::okta_time;
use super::errors::{self, Reply};
use super::org::{Caps, Org};

type Params = [(String, String)];

fn param<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone)]
pub(crate) struct GroupPushMapping {
    pub id: String,
    pub source_group_id: String,
    pub target_group_id: String,
    /// `ACTIVE`, `INACTIVE` or `ERROR`.
    pub status: &'static str,
    pub error_summary: Option<String>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub last_push: Option<DateTime<Utc>>,
}

impl GroupPushMapping {
    pub(crate) fn new(id: String, source: String, target: String, now: DateTime<Utc>) -> Self {
        GroupPushMapping {
            id,
            source_group_id: source,
            target_group_id: target,
            status: "ACTIVE",
            error_summary: None,
            created: now,
            last_updated: now,
            last_push: Some(now),
        }
    }

    fn json(&self, base: &str, app_id: &str) -> Value {
        let mut v = json!({
            "id": self.id,
            "sourceGroupId": self.source_group_id,
            "targetGroupId": self.target_group_id,
            "status": self.status,
            "created": okta_time(self.created),
            "lastUpdated": okta_time(self.last_updated),
            "_links": {
                "app": {"href": format!("{base}/api/v1/apps/{app_id}")},
                "sourceGroup": {"href": format!("{base}/api/v1/groups/{}", self.source_group_id)},
                "targetGroup": {"href": format!("{base}/api/v1/apps/{app_id}/groups/{}", self.target_group_id)}
            }
        });
        if let Some(t) = self.last_push {
            v["lastPush"] = json!(okta_time(t));
        }
        if let Some(e) = &self.error_summary {
            v["errorSummary"] = json!(e);
        }
        v
    }
}

/// An on-premises agent (AD, LDAP, OPP provisioning agent...) in a pool.
#[derive(Debug, Clone)]
pub(crate) struct AgentState {
    pub id: String,
    pub name: String,
    /// `OPERATIONAL`, `DEGRADED`, `DISRUPTED` or `INACTIVE`.
    pub status: &'static str,
    pub last_connection: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub(crate) struct AgentPoolState {
    pub id: String,
    pub name: String,
    /// An `AgentType`: `AD`, `LDAP`, `OPP`...
    pub kind: &'static str,
    pub agents: Vec<AgentState>,
}

impl AgentPoolState {
    /// The pool's status: operational while any agent is, else the best of the rest.
    fn status(&self) -> &'static str {
        for s in ["OPERATIONAL", "DEGRADED", "DISRUPTED"] {
            if self.agents.iter().any(|a| a.status == s) {
                return s;
            }
        }
        "INACTIVE"
    }

    fn json(&self, base: &str) -> Value {
        let agents: Vec<Value> = self
            .agents
            .iter()
            .map(|a| {
                json!({
                    "id": a.id,
                    "name": a.name,
                    "isHidden": false,
                    "isLatestGAedVersion": true,
                    "lastConnection": a.last_connection.timestamp_millis(),
                    "operationalStatus": a.status,
                    "poolId": self.id,
                    "type": self.kind,
                    "version": "3.18.0",
                    "updateStatus": "Success",
                    "_links": {}
                })
            })
            .collect();
        json!({
            "id": self.id,
            "name": self.name,
            "type": self.kind,
            "operationalStatus": self.status(),
            "agents": agents,
            "disruptedAgents": self.agents.iter().filter(|a| a.status == "DISRUPTED").count(),
            "inactiveAgents": self.agents.iter().filter(|a| a.status == "INACTIVE").count(),
            "_links": {"self": {"href": format!("{base}/api/v1/agentPools/{}", self.id)}}
        })
    }
}

/// The principal rate limit the org grants the API token and each OAuth client.
#[derive(Debug, Clone)]
pub(crate) struct PrincipalLimits {
    pub default_percentage: u8,
    pub default_concurrency_percentage: u8,
    pub created: DateTime<Utc>,
}

/// `GET /api/v1/apps/{id}/group-push/mappings` with optional `status`, `sourceGroupId`,
/// `lastUpdated` filters and `after`/`limit` paging by mapping id.
pub(crate) fn list_group_push(org: &Org, app_id: &str, p: &Params) -> Reply {
    let Some(app) = org.apps.get(app_id) else {
        return errors::not_found(app_id, "AppInstance");
    };
    let status = param(p, "status");
    if status.is_some_and(|s| !matches!(s, "ACTIVE" | "INACTIVE" | "ERROR")) {
        return errors::validation("status: must be one of ACTIVE, INACTIVE, ERROR");
    }
    let since = match param(p, "lastUpdated") {
        None => None,
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => return errors::validation("lastUpdated: expected YYYY-MM-DDTHH:mm:ssZ"),
        },
    };
    let limit = param(p, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(100)
        .min(1000);
    let after = param(p, "after");
    let mut items = Vec::new();
    let mut more = false;
    for m in app.group_push.values() {
        if after.is_some_and(|a| m.id.as_str() <= a)
            || status.is_some_and(|s| s != m.status)
            || param(p, "sourceGroupId").is_some_and(|g| g != m.source_group_id)
            || since.is_some_and(|t| m.last_updated < t)
        {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(m.json(&org.base, app_id));
    }
    let mut r = Reply::ok(Value::Array(items.clone()));
    if more {
        if let Some(last) = items.last().and_then(|v| v["id"].as_str()) {
            let mut q: Vec<String> = p
                .iter()
                .filter(|(k, _)| k != "after")
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                    )
                })
                .collect();
            q.push(format!("after={last}"));
            r = r.with_header(
                "Link",
                format!(
                    "<{}/api/v1/apps/{app_id}/group-push/mappings?{}>; rel=\"next\"",
                    org.base,
                    q.join("&")
                ),
            );
        }
    }
    r
}

/// `GET /api/v1/apps/{id}/connections/default`.
pub(crate) fn connection(org: &Org, app_id: &str) -> Reply {
    let Some(app) = org.apps.get(app_id) else {
        return errors::not_found(app_id, "AppInstance");
    };
    let base = format!("{}/api/v1/apps/{app_id}/connections/default", org.base);
    let (status, scheme) = match app.provisioning {
        None => ("UNKNOWN", "UNKNOWN"),
        Some(_) => (app.connection, "TOKEN"),
    };
    let mut v = json!({
        "status": status,
        "profile": {"authScheme": scheme},
        "_links": {
            "self": {"href": base, "hints": {"allow": ["GET", "POST"]}},
            "activate": {"href": format!("{base}/lifecycle/activate"), "hints": {"allow": ["POST"]}},
            "deactivate": {"href": format!("{base}/lifecycle/deactivate"), "hints": {"allow": ["POST"]}}
        }
    });
    if scheme == "TOKEN" {
        v["authScheme"] = json!("TOKEN");
        if let Some(scim) = &app.scim {
            v["baseUrl"] = json!(scim.base_url());
        }
    }
    Reply::ok(v)
}

/// `GET /api/v1/agentPools` with optional `poolType`.
pub(crate) fn list_agent_pools(pools: &[AgentPoolState], base: &str, p: &Params) -> Reply {
    let kind = param(p, "poolType");
    Reply::ok(Value::Array(
        pools
            .iter()
            .filter(|pool| kind.is_none_or(|k| k == pool.kind))
            .map(|pool| pool.json(base))
            .collect(),
    ))
}

/// `GET /api/v1/principal-rate-limits?filter=principalType eq "SSWS_TOKEN"` (the filter is
/// required, as in Okta). One entity for the API token, one per registered OAuth client.
pub(crate) fn list_principal_limits(
    limits: &PrincipalLimits,
    api_token_id: &str,
    clients: &[String],
    org_id: &str,
    p: &Params,
) -> Reply {
    let Some(f) = param(p, "filter") else {
        return errors::validation("filter: a principalType filter is required");
    };
    let kind = match f.replace(' ', "").as_str() {
        "principalTypeeq\"SSWS_TOKEN\"" => "SSWS_TOKEN",
        "principalTypeeq\"OAUTH_CLIENT\"" => "OAUTH_CLIENT",
        _ => return errors::invalid_search(),
    };
    let ids: Vec<&str> = if kind == "SSWS_TOKEN" {
        vec![api_token_id]
    } else {
        clients.iter().map(String::as_str).collect()
    };
    let created = okta_time(limits.created);
    Reply::ok(Value::Array(
        ids.iter()
            .map(|id| {
                json!({
                    "id": format!("0pr{}", &id.chars().rev().take(17).collect::<String>()),
                    "principalId": id,
                    "principalType": kind,
                    "defaultPercentage": limits.default_percentage,
                    "defaultConcurrencyPercentage": limits.default_concurrency_percentage,
                    "orgId": org_id,
                    "createdBy": "00usimorgadmin0000001",
                    "createdDate": created,
                    "lastUpdatedBy": "00usimorgadmin0000001",
                    "lastUpdate": created
                })
            })
            .collect(),
    ))
}

fn status_of(v: &Value, path: &str) -> Result<Option<bool>, String> {
    match v.pointer(path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "ENABLED" => Ok(Some(true)),
        Some(Value::String(s)) if s == "DISABLED" => Ok(Some(false)),
        Some(other) => Err(format!(
            "{}: must be ENABLED or DISABLED, not {other}",
            path.trim_start_matches('/').replace('/', ".")
        )),
    }
}

/// Parses a `CapabilitiesObject` body over the current settings: absent fields keep their value.
pub(crate) fn caps_from_body(current: Option<Caps>, body: &[u8]) -> Result<Caps, Reply> {
    let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(body) else {
        return Err(errors::okta_error(
            400,
            "E0000003",
            "The request body was not well-formed.",
        ));
    };
    let cur = current.unwrap_or(Caps {
        create: false,
        update: false,
        deactivate: false,
    });
    let get = |p: &str, d: bool| status_of(&v, p).map(|s| s.unwrap_or(d));
    let r = (|| {
        Ok::<Caps, String>(Caps {
            create: get("/create/lifecycleCreate/status", cur.create)?,
            update: get("/update/profile/status", cur.update)?,
            deactivate: get("/update/lifecycleDeactivate/status", cur.deactivate)?,
        })
    })();
    r.map_err(|e| errors::validation(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_update_keeps_absent_fields_and_names_bad_ones() {
        let cur = Some(Caps {
            create: true,
            update: true,
            deactivate: true,
        });
        let c = caps_from_body(
            cur,
            br#"{"update":{"lifecycleDeactivate":{"status":"DISABLED"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Caps {
                create: true,
                update: true,
                deactivate: false
            }
        );
        let e =
            caps_from_body(cur, br#"{"create":{"lifecycleCreate":{"status":"ON"}}}"#).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.body.to_string().contains("create.lifecycleCreate.status"));
        assert_eq!(caps_from_body(cur, b"[1]").unwrap_err().status, 400);
        // Re-enabling a removed feature starts from everything off.
        let c = caps_from_body(
            None,
            br#"{"create":{"lifecycleCreate":{"status":"ENABLED"}}}"#,
        )
        .unwrap();
        assert!(c.create && !c.update && !c.deactivate);
    }

    #[test]
    fn a_pool_is_as_operational_as_its_best_agent() {
        let now = Utc::now();
        let agent = |s| AgentState {
            id: "a".into(),
            name: "a".into(),
            status: s,
            last_connection: now,
        };
        let mut p = AgentPoolState {
            id: "p".into(),
            name: "p".into(),
            kind: "AD",
            agents: vec![agent("DISRUPTED"), agent("OPERATIONAL")],
        };
        assert_eq!(p.status(), "OPERATIONAL");
        p.agents = vec![agent("DISRUPTED"), agent("INACTIVE")];
        assert_eq!(p.status(), "DISRUPTED");
        p.agents.clear();
        assert_eq!(p.status(), "INACTIVE");
    }
}
