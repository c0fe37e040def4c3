//! The apps and app users routes: lists paged by id cursor (`after`, `limit`, `q`, `filter`),
//! and the app user update that Okta re-pushes on (the retry route).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::clock::okta_time;
use super::errors::{self, Reply};
use super::filter;
use super::logs::{encode, link};
use super::org::{Op, Org, Txn};
use super::server::{param, Params};

// ---- apps and app users -----------------------------------------------------------------------

fn limit_param(p: &Params, default: usize, max: usize) -> usize {
    param(p, "limit")
        .and_then(|l| l.parse::<i64>().ok())
        .map(|n| {
            if n <= 0 {
                default
            } else {
                (n as usize).min(max)
            }
        })
        .unwrap_or(default)
}

fn page_links(base_url: &str, p: &Params, next_after: Option<&str>) -> Vec<(String, String)> {
    let self_q: Vec<String> = p
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    let self_url = if self_q.is_empty() {
        base_url.to_string()
    } else {
        format!("{base_url}?{}", self_q.join("&"))
    };
    let mut out = vec![link(&self_url, "self")];
    if let Some(after) = next_after {
        let mut q: Vec<String> = p
            .iter()
            .filter(|(k, _)| k != "after")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        q.push(format!("after={}", encode(after)));
        out.push(link(&format!("{base_url}?{}", q.join("&")), "next"));
    }
    out
}

fn with_links(mut r: Reply, links: Vec<(String, String)>) -> Reply {
    r.headers.extend(links);
    r
}

pub(crate) fn list_apps(org: &Org, p: &Params) -> Reply {
    let limit = limit_param(p, 20, 200);
    let filter = match param(p, "filter") {
        None => None,
        Some(f) => match filter::parse(f, &|a: &str| {
            matches!(a, "status" | "name" | "label" | "id" | "signOnMode")
        }) {
            Ok(f) => Some(f),
            Err(_) => return errors::invalid_search(),
        },
    };
    let q = param(p, "q").map(str::to_lowercase);
    let after = param(p, "after");
    let mut items = Vec::new();
    let mut more = false;
    for app in org.apps.values() {
        if after.is_some_and(|a| app.id.as_str() <= a) {
            continue;
        }
        if let Some(q) = &q {
            if !(app.label.to_lowercase().starts_with(q) || app.name.to_lowercase().starts_with(q))
            {
                continue;
            }
        }
        let v = org.app_json(app);
        if filter.as_ref().is_some_and(|f| !f.matches(&v)) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(v);
    }
    id_cursor_page(&format!("{}/api/v1/apps", org.base), p, items, more)
}

pub(crate) fn list_app_users(org: &Org, app_id: &str, p: &Params) -> Reply {
    let Some(app) = org.apps.get(app_id) else {
        return errors::not_found(app_id, "AppInstance");
    };
    let limit = limit_param(p, 50, 500);
    let expand = param(p, "expand") == Some("user");
    let q = param(p, "q").map(str::to_lowercase);
    let after = param(p, "after");
    let mut items = Vec::new();
    let mut more = false;
    for au in app.users.values() {
        if after.is_some_and(|a| au.id.as_str() <= a) {
            continue;
        }
        if let Some(q) = &q {
            let user = org.users.get(&au.id);
            let fields = [
                Some(au.user_name.as_str()),
                user.map(|u| u.first.as_str()),
                user.map(|u| u.last.as_str()),
                user.map(|u| u.email.as_str()),
            ];
            if !fields
                .iter()
                .flatten()
                .any(|f| f.to_lowercase().starts_with(q))
            {
                continue;
            }
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(org.app_user_json(app, au, expand));
    }
    id_cursor_page(
        &format!("{}/api/v1/apps/{app_id}/users", org.base),
        p,
        items,
        more,
    )
}

/// A page of a list whose `after` cursor is the last item's id, as Okta's apps and app users
/// lists page: a `next` link only while `more` items remain.
fn id_cursor_page(base: &str, p: &Params, items: Vec<Value>, more: bool) -> Reply {
    let last = items
        .last()
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let links = page_links(base, p, if more { last.as_deref() } else { None });
    with_links(Reply::ok(Value::Array(items)), links)
}

/// The retry route: merges credentials/profile, then Okta pushes the user again.
pub(crate) fn update_app_user(
    org: &mut Org,
    app_id: &str,
    user_id: &str,
    body: &[u8],
    now: DateTime<Utc>,
) -> Reply {
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return errors::okta_error(400, "E0000003", "The request body was not well-formed.");
    };
    let Some(app) = org.apps.get_mut(app_id) else {
        return errors::not_found(app_id, "AppInstance");
    };
    let Some(au) = app.users.get_mut(user_id) else {
        return errors::not_found(user_id, "AppUser");
    };
    if let Some(name) = req
        .get("credentials")
        .and_then(|c| c.get("userName"))
        .and_then(Value::as_str)
    {
        if name.is_empty() || name.chars().count() > 100 {
            return errors::validation("credentials.userName: length must be between 1 and 100");
        }
        au.user_name = name.to_string();
    }
    if let Some(profile) = req.get("profile").and_then(Value::as_object) {
        for (k, v) in profile {
            if v.is_null() {
                au.profile.remove(k);
            } else {
                au.profile.insert(k.clone(), v.clone());
            }
        }
    }
    au.last_updated = now;
    let op = Org::retry_op(au);
    let before = org.app_user_json(&org.apps[app_id], &org.apps[app_id].users[user_id], false);
    org.push(app_id, user_id, op, now, Txn::Web);
    match org.apps[app_id].users.get(user_id) {
        Some(au) => Reply::ok(org.app_user_json(&org.apps[app_id], au, false)),
        None => {
            // The retried deactivation went through: answer with the final state once.
            let mut v = before;
            if op == Op::Deactivate {
                v["status"] = json!("DEPROVISIONED");
                v["syncState"] = json!("SYNCHRONIZED");
                v["statusChanged"] = json!(okta_time(now));
                v["lastSync"] = json!(okta_time(now));
                if let Some(o) = v.as_object_mut() {
                    o.remove("externalId");
                }
            }
            Reply::ok(v)
        }
    }
}
