//! How the org's apps, features, users and app users render as Okta's JSON (`Application`,
//! `ApplicationFeature`, `User`, `AppUser` schemas).

use serde_json::{json, Value};

use super::clock::okta_time;
use super::org::{App, AppUser, Org, User};

impl Org {
    pub(crate) fn app_json(&self, app: &App) -> Value {
        let base = &self.base;
        let id = &app.id;
        let mut features = Vec::new();
        if let Some(c) = app.provisioning {
            if c.create {
                features.push("PUSH_NEW_USERS");
            }
            if c.update {
                features.push("PUSH_PROFILE_UPDATES");
            }
            if c.deactivate {
                features.push("PUSH_USER_DEACTIVATION");
            }
            features.push("SCIM_PROVISIONING");
        }
        let mut links = json!({
            "self": {"href": format!("{base}/api/v1/apps/{id}")},
            "users": {"href": format!("{base}/api/v1/apps/{id}/users")},
            "groups": {"href": format!("{base}/api/v1/apps/{id}/groups")},
            "metadata": {"href": format!("{base}/api/v1/apps/{id}/sso/saml/metadata"), "type": "application/xml"},
            "appLinks": [{"name": format!("{}_link", app.name), "href": format!("{base}/home/{}/{id}/aln1", app.name), "type": "text/html"}],
            "logo": [{"name": "medium", "href": format!("{base}/assets/img/logos/default.png"), "type": "image/png"}],
        });
        if app.active {
            links["deactivate"] =
                json!({"href": format!("{base}/api/v1/apps/{id}/lifecycle/deactivate")});
        } else {
            links["activate"] =
                json!({"href": format!("{base}/api/v1/apps/{id}/lifecycle/activate")});
        }
        json!({
            "id": id,
            "orn": format!("orn:okta:idp:{}:apps:{}:{id}", self.org_id, app.name),
            "name": app.name,
            "label": app.label,
            "status": if app.active { "ACTIVE" } else { "INACTIVE" },
            "created": okta_time(app.created),
            "lastUpdated": okta_time(app.last_updated),
            "accessibility": {"selfService": false},
            "visibility": {
                "autoSubmitToolbar": false,
                "autoLaunch": false,
                "hide": {"iOS": false, "web": false},
                "appLinks": {format!("{}_link", app.name): true}
            },
            "features": features,
            "signOnMode": "SAML_2_0",
            "credentials": {
                "userNameTemplate": {"template": "${source.login}", "type": "BUILT_IN"},
                "signing": {"kid": format!("sim-{id}")}
            },
            "settings": {
                "app": {},
                "signOn": {
                    "ssoAcsUrl": format!("https://{}.example.com/sso/saml", app.name),
                    "recipient": format!("https://{}.example.com/sso/saml", app.name),
                    "destination": format!("https://{}.example.com/sso/saml", app.name),
                    "audience": format!("https://{}.example.com", app.name),
                    "subjectNameIdTemplate": "${user.userName}",
                    "subjectNameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                    "signatureAlgorithm": "RSA_SHA256",
                    "digestAlgorithm": "SHA256",
                    "authnContextClassRef": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
                    "allowMultipleAcsEndpoints": false,
                    "assertionSigned": true,
                    "honorForceAuthn": true,
                    "requestCompressed": false,
                    "responseSigned": true,
                    "attributeStatements": []
                }
            },
            "_links": links,
        })
    }

    pub(crate) fn feature_json(&self, app: &App) -> Option<Value> {
        let c = app.provisioning?;
        let st = |b: bool| if b { "ENABLED" } else { "DISABLED" };
        Some(json!({
            "name": "USER_PROVISIONING",
            "status": "ENABLED",
            "description": "User provisioning settings from Okta to a downstream application",
            "capabilities": {
                "create": {"lifecycleCreate": {"status": st(c.create)}},
                "update": {
                    "profile": {"status": st(c.update)},
                    "lifecycleDeactivate": {"status": st(c.deactivate)},
                    "password": {"status": "DISABLED", "seed": "RANDOM", "change": "KEEP_EXISTING"}
                }
            },
            "_links": {
                "self": {
                    "href": format!("{}/api/v1/apps/{}/features/USER_PROVISIONING", self.base, app.id),
                    "hints": {"allow": ["GET", "PUT"]}
                }
            }
        }))
    }

    pub(crate) fn user_json(&self, u: &User) -> Value {
        json!({
            "id": u.id,
            "status": u.status,
            "created": okta_time(u.created),
            "activated": okta_time(u.created),
            "statusChanged": okta_time(u.status_changed),
            "lastLogin": null,
            "lastUpdated": okta_time(u.created),
            "passwordChanged": null,
            "type": {"id": "oty1simdefaulttype00"},
            "profile": {
                "firstName": u.first,
                "lastName": u.last,
                "email": u.email,
                "login": u.login,
            },
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": format!("{}/api/v1/users/{}", self.base, u.id)}}
        })
    }

    pub(crate) fn app_user_json(&self, app: &App, au: &AppUser, expand_user: bool) -> Value {
        let mut v = json!({
            "id": au.id,
            "created": okta_time(au.created),
            "lastUpdated": okta_time(au.last_updated),
            "scope": "USER",
            "status": au.status,
            "statusChanged": okta_time(au.status_changed),
            "passwordChanged": null,
            "syncState": au.sync_state,
            "credentials": {"userName": au.user_name},
            "profile": au.profile,
            "_links": {
                "app": {"href": format!("{}/api/v1/apps/{}", self.base, app.id)},
                "user": {"href": format!("{}/api/v1/users/{}", self.base, au.id)}
            }
        });
        if let Some(x) = &au.external_id {
            v["externalId"] = json!(x);
        }
        if let Some(t) = au.last_sync {
            v["lastSync"] = json!(okta_time(t));
        }
        if expand_user {
            if let Some(u) = self.users.get(&au.id) {
                v["_embedded"] = json!({"user": self.user_json(u)});
            }
        }
        v
    }
}
