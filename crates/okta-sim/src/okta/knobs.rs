//! The programmatic API tests drive the org with for the deprovisioning, event hook, Tasks-page
//! and budget work (issues 11, 13, 14): lifecycle changes that log Okta's events, per-app SCIM
//! servers, deprovisioning blind spots, group push / connection / agent / sync-job failures,
//! principal rate limits and event hook delivery knobs. Unknown ids panic with the id named: a
//! test that drives the sim with a wrong id is a broken test, not a runtime condition.

use serde_json::Value;

use super::hooks::{HookDelivery, HookDeliveryKnobs};
use super::org::Caps;
use super::scim::ScimServer;
use super::tasks::{AgentPoolState, AgentState};
use super::{DeprovisionMode, OktaSim};

/// USER_PROVISIONING capabilities ("Create Users", "Update User Attributes", "Deactivate
/// Users").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisioningSettings {
    pub create: bool,
    pub update: bool,
    pub deactivate: bool,
}

/// An agent's `operationalStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Operational,
    Degraded,
    Disrupted,
    Inactive,
}

impl AgentStatus {
    fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Operational => "OPERATIONAL",
            AgentStatus::Degraded => "DEGRADED",
            AgentStatus::Disrupted => "DISRUPTED",
            AgentStatus::Inactive => "INACTIVE",
        }
    }
}

impl OktaSim {
    // ---- SCIM servers and deprovisioning ---------------------------------------------------

    /// Starts a SCIM 2.0 server for the app on its own loopback port. From now on Okta's
    /// successful pushes to the app mirror into it (create, profile, deactivate). Users already
    /// assigned are not copied: start the server before assigning.
    pub async fn add_scim_server(&self, app_id: &str) -> std::io::Result<ScimServer> {
        let server = ScimServer::start().await?;
        self.with_org(|org, _| {
            org.apps
                .get_mut(app_id)
                .unwrap_or_else(|| panic!("okta-sim: unknown app {app_id}"))
                .scim = Some(server.shared.clone());
        });
        Ok(server)
    }

    /// The app's SCIM server, if one was started.
    pub fn scim_server(&self, app_id: &str) -> Option<ScimServer> {
        let st = self.inner.lock();
        let shared = st.org.apps.get(app_id)?.scim.clone()?;
        Some(ScimServer { shared })
    }

    pub fn set_deprovision_mode(&self, app_id: &str, mode: DeprovisionMode) {
        self.with_org(|org, _| {
            org.apps
                .get_mut(app_id)
                .unwrap_or_else(|| panic!("okta-sim: unknown app {app_id}"))
                .deprovision = mode;
        })
    }

    // ---- users, groups, assignments --------------------------------------------------------

    /// Deactivates the Okta user as `admin` (`user.lifecycle.deactivate`), then deprovisions
    /// every app user it has (per app: the push and its event, or what the app's
    /// [`DeprovisionMode`] says).
    pub fn deactivate_user(&self, user_id: &str, admin: &str) {
        self.with_org(|org, now| org.deactivate_user(user_id, admin, now))
    }

    /// Suspends the Okta user as `admin` (`user.lifecycle.suspend`); nothing is pushed.
    pub fn suspend_user(&self, user_id: &str, admin: &str) {
        self.with_org(|org, now| org.suspend_user(user_id, admin, now))
    }

    /// Unassigns the user from the app as `admin`: `application.user_membership.remove`, then
    /// the deactivation push (see [`Self::deactivate`] for the push alone).
    pub fn unassign(&self, app_id: &str, user_id: &str, admin: &str) {
        self.with_org(|org, now| {
            let actor = org.admin_actor(admin, now);
            org.unassign_as(app_id, user_id, Some(actor), now)
        })
    }

    /// Adds an Okta group. Returns its `00g…` id.
    pub fn add_group(&self, name: &str) -> String {
        self.with_org(|org, _| org.add_group(name))
    }

    /// Assigns the group to the app: members get app users (create pushes).
    pub fn assign_group(&self, app_id: &str, group_id: &str) {
        self.with_org(|org, now| org.assign_group(app_id, group_id, now))
    }

    /// Adds the user to the group; the group's apps assign the user.
    pub fn add_to_group(&self, group_id: &str, user_id: &str) {
        self.with_org(|org, now| org.add_to_group(group_id, user_id, now))
    }

    /// Removes the user from the group as `admin` (`group.user_membership.remove`); apps the
    /// user had only through this group are unassigned (`application.user_membership.remove`
    /// by Okta System, then the deactivation push).
    pub fn remove_from_group(&self, group_id: &str, user_id: &str, admin: &str) {
        self.with_org(|org, now| org.remove_from_group(group_id, user_id, admin, now))
    }

    // ---- provisioning settings ---------------------------------------------------------------

    /// Changes USER_PROVISIONING as `admin`, logging `application.lifecycle.update` with the
    /// from/to settings in the AppInstance target's `changeDetails` (nothing when unchanged).
    pub fn set_provisioning_as(&self, app_id: &str, admin: &str, s: ProvisioningSettings) {
        self.with_org(|org, now| {
            let actor = org.admin_actor(admin, now);
            let caps = Caps {
                create: s.create,
                update: s.update,
                deactivate: s.deactivate,
            };
            assert!(
                org.set_caps_as(app_id, Some(caps), actor, now),
                "okta-sim: unknown app {app_id}"
            );
        })
    }

    /// Ticks or unticks "Deactivate Users" (`lifecycleDeactivate`) as `admin`, keeping the
    /// other capabilities.
    pub fn set_lifecycle_deactivate(&self, app_id: &str, enabled: bool, admin: &str) {
        self.with_org(|org, now| {
            let actor = org.admin_actor(admin, now);
            let app = org
                .apps
                .get(app_id)
                .unwrap_or_else(|| panic!("okta-sim: unknown app {app_id}"));
            let mut caps = app.provisioning.unwrap_or(Caps {
                create: false,
                update: false,
                deactivate: false,
            });
            caps.deactivate = enabled;
            org.set_caps_as(app_id, Some(caps), actor, now);
        })
    }

    /// Turns provisioning off as a whole as `admin` (the feature disappears), logging
    /// `application.lifecycle.update`.
    pub fn disable_provisioning_as(&self, app_id: &str, admin: &str) {
        self.with_org(|org, now| {
            let actor = org.admin_actor(admin, now);
            org.set_caps_as(app_id, None, actor, now);
        })
    }

    /// The admin login API-made changes (`PUT .../features/USER_PROVISIONING`) are attributed
    /// to.
    pub fn set_api_token_owner(&self, login: &str) {
        self.inner.lock().api_token_owner = login.to_string();
    }

    /// Also log `app.user_management.push_new_user_success` after each successful create push
    /// (a success signal the filter may otherwise miss).
    pub fn emit_legacy_success_events(&self, on: bool) {
        self.with_org(|org, _| org.legacy_success_events = on)
    }

    // ---- Tasks-page failures ---------------------------------------------------------------

    /// Creates an ACTIVE group push mapping of `group_id` to the app. Returns the mapping id.
    pub fn add_group_push(&self, app_id: &str, group_id: &str) -> String {
        self.with_org(|org, now| org.ensure_mapping(app_id, group_id, now))
            .unwrap_or_else(|| panic!("okta-sim: unknown app {app_id} or group {group_id}"))
    }

    /// Puts the group's push mapping in `ERROR` with `error_summary` and logs
    /// `application.provision.group_push.mapping.update.or.delete.failed.with.error`.
    /// Returns the mapping id.
    pub fn fail_group_push(&self, app_id: &str, group_id: &str, error_summary: &str) -> String {
        self.with_org(|org, now| org.group_push_failed(app_id, group_id, error_summary, now))
            .unwrap_or_else(|| panic!("okta-sim: unknown app {app_id} or group {group_id}"))
    }

    /// A successful push of the mapping: back to ACTIVE, error cleared.
    pub fn clear_group_push_error(&self, app_id: &str, mapping_id: &str) {
        self.with_org(|org, now| {
            let m = org
                .apps
                .get_mut(app_id)
                .and_then(|a| a.group_push.get_mut(mapping_id))
                .unwrap_or_else(|| panic!("okta-sim: unknown mapping {mapping_id}"));
            m.status = "ACTIVE";
            m.error_summary = None;
            m.last_updated = now;
            m.last_push = Some(now);
        })
    }

    /// Breaks (`DISABLED`) or repairs (`ENABLED`) the app's default provisioning connection.
    pub fn set_connection_broken(&self, app_id: &str, broken: bool) {
        self.with_org(|org, _| {
            org.apps
                .get_mut(app_id)
                .unwrap_or_else(|| panic!("okta-sim: unknown app {app_id}"))
                .connection = if broken { "DISABLED" } else { "ENABLED" };
        })
    }

    /// Logs `application.configuration.update` FAILURE ("Okta couldn't verify api
    /// credentials") with `reason`.
    pub fn fail_app_credentials(&self, app_id: &str, reason: &str) {
        self.with_org(|org, now| org.credentials_failed(app_id, reason, now))
    }

    /// Logs `app.app_instance.provision_sync_job.failed` with `reason`.
    pub fn fail_sync_job(&self, app_id: &str, reason: &str) {
        self.with_org(|org, now| org.sync_job_failed(app_id, reason, now))
    }

    /// Adds an agent pool of `kind` (an `AgentType`: `AD`, `LDAP`, `OPP`…) with one
    /// OPERATIONAL agent. Returns the pool id.
    pub fn add_agent_pool(&self, name: &str, kind: &'static str) -> String {
        let now = self.now();
        let mut st = self.inner.lock();
        let n = st.agent_pools.len() + 1;
        let id = super::ids::okta_id("0oa", 900_000 + n as u64);
        st.agent_pools.push(AgentPoolState {
            id: id.clone(),
            name: name.to_string(),
            kind,
            agents: vec![AgentState {
                id: super::ids::okta_id("a53", n as u64),
                name: format!("{name}-agent-1"),
                status: "OPERATIONAL",
                last_connection: now,
            }],
        });
        id
    }

    /// Sets the status of every agent in the pool (the pool's `operationalStatus` follows).
    pub fn set_agent_status(&self, pool_id: &str, status: AgentStatus) {
        let mut st = self.inner.lock();
        let pool = st
            .agent_pools
            .iter_mut()
            .find(|p| p.id == pool_id)
            .unwrap_or_else(|| panic!("okta-sim: unknown agent pool {pool_id}"));
        for a in &mut pool.agents {
            a.status = status.as_str();
        }
    }

    /// The principal rate limit granted to the API token and every OAuth client
    /// (`defaultPercentage`, `defaultConcurrencyPercentage`; 50/50 at start).
    pub fn set_principal_rate_limit(&self, default_percentage: u8, concurrency_percentage: u8) {
        let mut st = self.inner.lock();
        st.principal_limits.default_percentage = default_percentage.min(100);
        st.principal_limits.default_concurrency_percentage = concurrency_percentage.min(100);
    }

    // ---- event hooks ---------------------------------------------------------------------

    /// Event hooks as `GET /api/v1/eventHooks` lists them.
    pub fn event_hooks(&self) -> Vec<Value> {
        let st = self.inner.lock();
        st.org
            .hooks
            .values()
            .map(|h| h.json(&self.inner.base))
            .collect()
    }

    pub fn set_hook_delivery(&self, knobs: HookDeliveryKnobs) {
        self.inner.lock().org.hook_queue.knobs = knobs;
        self.inner.hook_wake.notify_one();
    }

    /// Ends `hold`: queued events are delivered (reordered if asked).
    pub fn release_hook_deliveries(&self) {
        self.inner.lock().org.hook_queue.knobs.hold = false;
        self.inner.hook_wake.notify_one();
    }

    /// Events queued for delivery and not yet taken by the deliverer.
    pub fn pending_hook_events(&self) -> usize {
        self.inner.lock().org.hook_queue.pending.len()
    }

    /// Whether every queued event has been delivered or given up (nothing pending, nothing in
    /// flight). While `hold` is on, held events count as pending.
    pub fn hook_deliveries_idle(&self) -> bool {
        let st = self.inner.lock();
        st.org.hook_queue.pending.is_empty() && st.org.hook_queue.in_flight == 0
    }

    /// Every delivery attempt so far, in order.
    pub fn hook_deliveries(&self) -> Vec<HookDelivery> {
        self.inner.lock().org.hook_queue.deliveries.clone()
    }
}
