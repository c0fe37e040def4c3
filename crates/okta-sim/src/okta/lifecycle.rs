//! Okta-side lifecycle changes the deprovisioning ledger (issue 13) and the Tasks-page detection
//! (issue 14) watch: user deactivation and suspension, app unassignment (direct or through a
//! group), group membership, provisioning settings changed by an admin, and the app-wide
//! failures (group push, API credentials, provisioning sync jobs). Each change updates the org
//! and logs the System Log events Okta logs for it, with Okta's shapes (actor, targets by type,
//! outcome, `debugContext`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::ids::random_alnum;
use super::org::{AppUser, Caps, Op, Org, Txn};
use super::tasks::GroupPushMapping;

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: String,
    pub name: String,
    pub members: BTreeSet<String>,
}

fn st(b: bool) -> &'static str {
    if b {
        "ENABLED"
    } else {
        "DISABLED"
    }
}

/// The provisioning settings as `changeDetails` render them (the feature's vocabulary).
fn caps_detail(c: Option<Caps>) -> Value {
    match c {
        None => json!({"USER_PROVISIONING": "DISABLED"}),
        Some(c) => json!({
            "USER_PROVISIONING": "ENABLED",
            "lifecycleCreate": st(c.create),
            "profile": st(c.update),
            "lifecycleDeactivate": st(c.deactivate),
        }),
    }
}

impl Org {
    /// The ids of the apps `pick` selects, collected first so that the caller can then change
    /// the org (push, assign, unassign) app by app.
    fn app_ids_where(&self, pick: impl Fn(&super::org::App) -> bool) -> Vec<String> {
        self.apps
            .values()
            .filter(|a| pick(a))
            .map(|a| a.id.clone())
            .collect()
    }

    /// The System Log actor for an admin: the Okta user with that login (created on first use,
    /// as admins are Okta users).
    pub(crate) fn admin_actor(&mut self, login: &str, now: DateTime<Utc>) -> Value {
        let id = match self.users.values().find(|u| u.login == login) {
            Some(u) => u.id.clone(),
            None => self.add_user(login, now),
        };
        let u = &self.users[&id];
        json!({"id": u.id, "type": "User", "alternateId": u.login,
               "displayName": format!("{} {}", u.first, u.last)})
    }

    fn user_target(&self, user_id: &str) -> Option<Value> {
        let u = self.users.get(user_id)?;
        Some(json!({"id": u.id, "type": "User", "alternateId": u.login,
                    "displayName": format!("{} {}", u.first, u.last)}))
    }

    fn app_target(&self, app_id: &str) -> Option<Value> {
        let a = self.apps.get(app_id)?;
        Some(
            json!({"id": a.id, "type": "AppInstance", "alternateId": a.label, "displayName": a.label}),
        )
    }

    fn group_target(&self, group_id: &str) -> Option<Value> {
        let g = self.groups.get(group_id)?;
        Some(json!({"id": g.id, "type": "UserGroup", "alternateId": g.name, "displayName": g.name}))
    }

    fn debug(request_uri: String) -> (String, Value) {
        let txn = random_alnum(27);
        let d = json!({"requestId": txn, "requestUri": request_uri});
        (txn, d)
    }

    pub(crate) fn add_group(&mut self, name: &str) -> String {
        let id = self.next_id("00g");
        self.groups.insert(
            id.clone(),
            Group {
                id: id.clone(),
                name: name.to_string(),
                members: BTreeSet::new(),
            },
        );
        id
    }

    /// Assigns the group to the app: every member not yet assigned gets an app user (create
    /// push), marked as assigned through the group.
    pub(crate) fn assign_group(&mut self, app_id: &str, group_id: &str, now: DateTime<Utc>) {
        let Some(members) = self.groups.get(group_id).map(|g| g.members.clone()) else {
            return;
        };
        let Some(app) = self.apps.get_mut(app_id) else {
            return;
        };
        app.groups.insert(group_id.to_string());
        for u in members {
            self.assign_through_group(app_id, &u, now);
        }
    }

    fn assign_through_group(&mut self, app_id: &str, user_id: &str, now: DateTime<Utc>) {
        if self.apps[app_id].users.contains_key(user_id) {
            return;
        }
        self.assign(app_id, user_id, now);
        if let Some(au) = self
            .apps
            .get_mut(app_id)
            .and_then(|a| a.users.get_mut(user_id))
        {
            au.direct = false;
        }
    }

    /// Adds the user to the group; the group's apps assign the user.
    pub(crate) fn add_to_group(&mut self, group_id: &str, user_id: &str, now: DateTime<Utc>) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        if !g.members.insert(user_id.to_string()) {
            return;
        }
        let apps = self.app_ids_where(|a| a.groups.contains(group_id));
        for app in apps {
            self.assign_through_group(&app, user_id, now);
        }
    }

    /// Whether the user is still assigned to the app once `leaving` no longer counts.
    fn still_assigned(&self, app_id: &str, au: &AppUser, leaving: &str) -> bool {
        au.direct
            || self.apps[app_id].groups.iter().any(|g| {
                g != leaving
                    && self
                        .groups
                        .get(g)
                        .is_some_and(|g| g.members.contains(&au.id))
            })
    }

    /// Removes the user from the group (`group.user_membership.remove`), then unassigns every
    /// app the user had only through that group (`application.user_membership.remove` by Okta
    /// System, then the deactivation push).
    pub(crate) fn remove_from_group(
        &mut self,
        group_id: &str,
        user_id: &str,
        admin: &str,
        now: DateTime<Utc>,
    ) {
        if !self
            .groups
            .get_mut(group_id)
            .is_some_and(|g| g.members.remove(user_id))
        {
            return;
        }
        let actor = self.admin_actor(admin, now);
        let targets: Vec<Value> = [self.user_target(user_id), self.group_target(group_id)]
            .into_iter()
            .flatten()
            .collect();
        let (txn, debug) = Self::debug(format!("/api/v1/groups/{group_id}/users/{user_id}"));
        self.log_as(
            Some(actor),
            "group.user_membership.remove",
            "Remove user from group membership",
            "core.user_group_member.user_remove",
            "INFO",
            None,
            targets,
            Txn::Web,
            txn,
            debug,
            now,
        );
        let apps = self.app_ids_where(|a| {
            a.groups.contains(group_id) && a.users.get(user_id).is_some_and(|au| !au.direct)
        });
        for app in apps {
            let au = self.apps[&app].users[user_id].clone();
            if !self.still_assigned(&app, &au, group_id) {
                self.unassign_as(&app, user_id, None, now);
            }
        }
    }

    /// Unassigns the user from the app: `application.user_membership.remove` (by `actor`, or
    /// Okta System for a group-driven removal), then the deactivation push.
    pub(crate) fn unassign_as(
        &mut self,
        app_id: &str,
        user_id: &str,
        actor: Option<Value>,
        now: DateTime<Utc>,
    ) {
        let Some(au) = self.apps.get(app_id).and_then(|a| a.users.get(user_id)) else {
            return;
        };
        let au_target = json!({"id": au.target_id, "type": "AppUser",
                               "alternateId": au.user_name, "displayName": au.user_name});
        let targets: Vec<Value> = [
            Some(au_target),
            self.app_target(app_id),
            self.user_target(user_id),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (txn, debug) = Self::debug(format!("/api/v1/apps/{app_id}/users/{user_id}"));
        let txn_kind = if actor.is_some() { Txn::Web } else { Txn::Job };
        self.log_as(
            actor,
            "application.user_membership.remove",
            "Remove user's application membership",
            // No legacy name we could confirm: omitted rather than invented.
            "",
            "INFO",
            None,
            targets,
            txn_kind,
            txn,
            debug,
            now,
        );
        self.push(app_id, user_id, Op::Deactivate, now, Txn::Job);
    }

    fn user_status_change(
        &mut self,
        user_id: &str,
        admin: &str,
        status: &'static str,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(u) = self.users.get_mut(user_id) else {
            return false;
        };
        if u.status == status {
            return false;
        }
        u.status = status;
        u.status_changed = now;
        let actor = self.admin_actor(admin, now);
        let (event, message, legacy, verb) = if status == "DEPROVISIONED" {
            (
                "user.lifecycle.deactivate",
                "Deactivate Okta user",
                "core.user.config.user_deactivated",
                "deactivate",
            )
        } else {
            (
                "user.lifecycle.suspend",
                "Suspend Okta user",
                "core.user.config.user_status.suspended",
                "suspend",
            )
        };
        let targets: Vec<Value> = self.user_target(user_id).into_iter().collect();
        let (txn, debug) = Self::debug(format!("/api/v1/users/{user_id}/lifecycle/{verb}"));
        self.log_as(
            Some(actor),
            event,
            message,
            legacy,
            "INFO",
            None,
            targets,
            Txn::Web,
            txn,
            debug,
            now,
        );
        true
    }

    /// Deactivates the Okta user (`user.lifecycle.deactivate` by `admin`); every app where the
    /// user has an app user then deprovisions it (the app's deprovisioning mode decides what is
    /// pushed and logged).
    pub(crate) fn deactivate_user(&mut self, user_id: &str, admin: &str, now: DateTime<Utc>) {
        if !self.user_status_change(user_id, admin, "DEPROVISIONED", now) {
            return;
        }
        let apps = self.app_ids_where(|a| a.users.contains_key(user_id));
        for app in apps {
            self.push(&app, user_id, Op::Deactivate, now, Txn::Job);
        }
    }

    /// Suspends the Okta user (`user.lifecycle.suspend`). Okta pushes nothing to apps for a
    /// suspension, so app users stay as they are.
    pub(crate) fn suspend_user(&mut self, user_id: &str, admin: &str, now: DateTime<Utc>) {
        self.user_status_change(user_id, admin, "SUSPENDED", now);
    }

    /// Changes the app's outbound provisioning settings as `actor` and logs
    /// `application.lifecycle.update` whose AppInstance target carries `changeDetails` (from/to
    /// of `USER_PROVISIONING`, `lifecycleCreate`, `profile`, `lifecycleDeactivate`). No event
    /// when nothing changed.
    pub(crate) fn set_caps_as(
        &mut self,
        app_id: &str,
        caps: Option<Caps>,
        actor: Value,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(app) = self.apps.get_mut(app_id) else {
            return false;
        };
        let before = app.provisioning;
        if before == caps {
            return true;
        }
        app.provisioning = caps;
        app.last_updated = now;
        let mut target = self.app_target(app_id).unwrap_or_default();
        target["changeDetails"] = json!({"from": caps_detail(before), "to": caps_detail(caps)});
        target["detailEntry"] =
            json!({"changeDetailsEntry": "AppOutboundProvisioningSettingsChangeDetailsEntry"});
        let (txn, mut debug) =
            Self::debug(format!("/api/v1/apps/{app_id}/features/USER_PROVISIONING"));
        debug["appname"] = json!(self.apps[app_id].name);
        self.log_as(
            Some(actor),
            "application.lifecycle.update",
            "Update application",
            // No legacy name we could confirm: omitted rather than invented.
            "",
            "INFO",
            None,
            vec![target],
            Txn::Web,
            txn,
            debug,
            now,
        );
        true
    }

    fn app_failure(
        &mut self,
        app_id: &str,
        extra_target: Option<Value>,
        event: &str,
        message: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) {
        let targets: Vec<Value> = [self.app_target(app_id), extra_target]
            .into_iter()
            .flatten()
            .collect();
        let (txn, mut debug) = Self::debug(format!("/api/v1/apps/{app_id}"));
        debug["appname"] = json!(self.apps.get(app_id).map(|a| a.name.clone()));
        self.log_as(
            None,
            event,
            message,
            "",
            "WARN",
            Some(reason.chars().take(255).collect()),
            targets,
            Txn::Job,
            txn,
            debug,
            now,
        );
    }

    /// Puts the group push mapping for `group_id` in `ERROR` with `summary` (creating the mapping
    /// if needed) and logs the non-retryable group push failure. Returns the mapping id.
    pub(crate) fn group_push_failed(
        &mut self,
        app_id: &str,
        group_id: &str,
        summary: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let id = self.ensure_mapping(app_id, group_id, now)?;
        let m = self.apps.get_mut(app_id)?.group_push.get_mut(&id)?;
        m.status = "ERROR";
        m.error_summary = Some(summary.to_string());
        m.last_updated = now;
        m.last_push = Some(now);
        let g = self.group_target(group_id);
        self.app_failure(
            app_id,
            g,
            "application.provision.group_push.mapping.update.or.delete.failed.with.error",
            "Group push mapping change failed and cannot be retried",
            summary,
            now,
        );
        Some(id)
    }

    /// The mapping pushing `group_id` to the app (created `ACTIVE` on first use).
    pub(crate) fn ensure_mapping(
        &mut self,
        app_id: &str,
        group_id: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        if !self.groups.contains_key(group_id) {
            return None;
        }
        if let Some(m) = self
            .apps
            .get(app_id)?
            .group_push
            .values()
            .find(|m| m.source_group_id == group_id)
        {
            return Some(m.id.clone());
        }
        let id = self.next_id("gPm");
        let target = self.next_id("00g");
        let m = GroupPushMapping::new(id.clone(), group_id.to_string(), target, now);
        self.apps.get_mut(app_id)?.group_push.insert(id.clone(), m);
        Some(id)
    }

    /// `application.configuration.update` FAILURE: Okta could not verify the app's API
    /// credentials.
    pub(crate) fn credentials_failed(&mut self, app_id: &str, reason: &str, now: DateTime<Utc>) {
        self.app_failure(
            app_id,
            None,
            "application.configuration.update",
            "Okta couldn't verify api credentials",
            reason,
            now,
        );
    }

    /// `app.app_instance.provision_sync_job.failed` with the job's failure reason.
    pub(crate) fn sync_job_failed(&mut self, app_id: &str, reason: &str, now: DateTime<Utc>) {
        self.app_failure(
            app_id,
            None,
            "app.app_instance.provision_sync_job.failed",
            "Provision sync job failed",
            reason,
            now,
        );
    }
}
