//! The SCIM server's HTTP side (RFC 7644): rate limit, bearer auth and faults in front of the
//! `/Users` routes, SCIM `Error` and `ListResponse` bodies, and the filter subset apps are
//! asked for (`attr eq value`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::clock::okta_time;
use super::org::User;
use super::scim::{
    ScimFaultKind, ScimRequest, ScimShared, ScimUser, ERROR_SCHEMA, LIST_SCHEMA, PATCH_SCHEMA,
    SCIM_MAX_COUNT, USER_SCHEMA,
};

struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body,
        headers: Vec::new(),
    }
}

/// RFC 7644 3.12 error body (`status` is a string there).
fn scim_error(status: u16, scim_type: Option<&str>, detail: &str) -> Answer {
    let mut b = json!({"schemas": [ERROR_SCHEMA], "status": status.to_string(), "detail": detail});
    if let Some(t) = scim_type {
        b["scimType"] = json!(t);
    }
    answer(status, b)
}

fn user_json(base: &str, u: &ScimUser) -> Value {
    let mut v = json!({
        "schemas": [USER_SCHEMA],
        "id": u.id,
        "userName": u.user_name,
        "name": {"givenName": u.given_name, "familyName": u.family_name,
                 "formatted": format!("{} {}", u.given_name, u.family_name)},
        "displayName": format!("{} {}", u.given_name, u.family_name),
        "emails": [{"value": u.email, "type": "work", "primary": true}],
        "active": u.active,
        "meta": {
            "resourceType": "User",
            "created": okta_time(u.created),
            "lastModified": okta_time(u.last_modified),
            "location": format!("{base}/Users/{}", u.id),
            "version": format!("W/\"{}\"", u.last_modified.timestamp_millis()),
        }
    });
    if let Some(x) = &u.external_id {
        v["externalId"] = json!(x);
    }
    v
}

pub(super) async fn handle(AxState(shared): AxState<Arc<ScimShared>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path_q = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let rest = uri
        .path()
        .strip_prefix("/scim/v2")
        .unwrap_or("")
        .trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').skip(1).collect();
    let route_name = match (method.as_str(), segs.as_slice()) {
        ("GET", ["Users"]) => "GET /Users",
        ("POST", ["Users"]) => "POST /Users",
        ("GET", ["Users", _]) => "GET /Users/{id}",
        ("PATCH", ["Users", _]) => "PATCH /Users/{id}",
        _ => "other",
    };

    let mut slow = None;
    let early = {
        let now_i = tokio::time::Instant::now();
        let mut st = shared.lock();
        st.stats.total += 1;
        *st.stats.by_route.entry(route_name.to_string()).or_insert(0) += 1;
        let mut early = None;
        if let Some(limit) = st.limit_per_minute {
            let w = match st.window {
                Some((start, n)) if now_i.duration_since(start) < Duration::from_secs(60) => {
                    (start, n)
                }
                _ => (now_i, 0),
            };
            if w.1 >= limit {
                st.stats.rate_limited += 1;
                let left = Duration::from_secs(60).saturating_sub(now_i.duration_since(w.0));
                let mut a = scim_error(
                    429,
                    None,
                    "Too many requests: retry after the indicated delay.",
                );
                a.headers
                    .push(("Retry-After", left.as_secs().max(1).to_string()));
                early = Some(a);
            }
            st.window = Some((w.0, w.1 + 1));
        }
        let token_ok = auth
            .as_deref()
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == st.token);
        if early.is_none() && !token_ok {
            st.stats.unauthorized += 1;
            let mut a = scim_error(
                401,
                None,
                "Authentication failed: a valid bearer token is required.",
            );
            a.headers
                .push(("WWW-Authenticate", "Bearer realm=\"okta-sim-scim\"".into()));
            early = Some(a);
        }
        if early.is_none() {
            if let Some(f) = st.faults.front_mut() {
                let kind = f.kind;
                f.times -= 1;
                if f.times == 0 {
                    st.faults.pop_front();
                }
                match kind {
                    ScimFaultKind::ServerError(code) => {
                        st.stats.server_errors += 1;
                        early = Some(scim_error(
                            code,
                            None,
                            "The service is temporarily unavailable.",
                        ));
                    }
                    ScimFaultKind::RateLimited { retry_after_secs } => {
                        st.stats.rate_limited += 1;
                        let mut a = scim_error(
                            429,
                            None,
                            "Too many requests: retry after the indicated delay.",
                        );
                        a.headers
                            .push(("Retry-After", retry_after_secs.to_string()));
                        early = Some(a);
                    }
                    ScimFaultKind::Unauthorized => {
                        st.stats.unauthorized += 1;
                        early = Some(scim_error(
                            401,
                            None,
                            "Authentication failed: the token was revoked.",
                        ));
                    }
                    ScimFaultKind::Slow(d) => slow = Some(d),
                }
            }
        }
        early
    };
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    let a = match early {
        Some(a) => a,
        None => route(
            &shared,
            &method,
            segs.as_slice(),
            uri.query().unwrap_or(""),
            body.as_ref(),
        ),
    };
    let mut st = shared.lock();
    st.requests.push(ScimRequest {
        method: method.to_string(),
        path: path_q,
        status: a.status,
        body: if method == Method::GET { None } else { body },
    });
    drop(st);
    let mut resp = Response::new(Body::from(serde_json::to_vec(&a.body).unwrap_or_default()));
    *resp.status_mut() =
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    for (k, v) in a.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// A parsed `attr eq "value"` / `active eq true` filter (the subset apps are asked for).
#[derive(Debug, PartialEq)]
enum Filter {
    Eq { attr: String, value: Value },
}

fn parse_filter(f: &str) -> Result<Filter, String> {
    let f = f.trim();
    let (attr, rest) = f
        .split_once(char::is_whitespace)
        .ok_or("expected: attribute eq value")?;
    let (op, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or("expected: attribute eq value")?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(format!("operator {op} is not supported (only eq)"));
    }
    let attr = attr.to_ascii_lowercase();
    if !matches!(attr.as_str(), "username" | "externalid" | "id" | "active") {
        return Err(format!("attribute {attr} is not filterable"));
    }
    let value: Value = serde_json::from_str(value.trim())
        .map_err(|_| "the value must be a JSON string or boolean".to_string())?;
    Ok(Filter::Eq { attr, value })
}

fn matches(f: &Filter, u: &ScimUser, case_exact: bool) -> bool {
    let Filter::Eq { attr, value } = f;
    match (attr.as_str(), value) {
        ("username", Value::String(s)) => {
            if case_exact {
                &u.user_name == s
            } else {
                u.user_name.eq_ignore_ascii_case(s)
            }
        }
        ("externalid", Value::String(s)) => u.external_id.as_deref() == Some(s.as_str()),
        ("id", Value::String(s)) => &u.id == s,
        ("active", Value::Bool(b)) => u.active == *b,
        _ => false,
    }
}

fn route(
    shared: &ScimShared,
    method: &Method,
    segs: &[&str],
    query: &str,
    body: Option<&Value>,
) -> Answer {
    let now = shared.clock.now();
    let base = &shared.base;
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let p = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let mut st = shared.lock();
    match (method.as_str(), segs) {
        ("GET", ["Users"]) => {
            let filter = match p("filter").map(parse_filter) {
                None => None,
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => {
                    return scim_error(400, Some("invalidFilter"), &format!("Invalid filter: {e}"))
                }
            };
            // RFC 7644 3.4.2.4: startIndex < 1 is read as 1, a negative count as 0.
            let start = p("startIndex")
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(1)
                .max(1) as usize;
            let count = p("count")
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(100)
                .max(0) as usize;
            let count = count.min(SCIM_MAX_COUNT);
            let exact = st.case_exact_filter;
            let all: Vec<&ScimUser> = st
                .users
                .values()
                .filter(|u| filter.as_ref().is_none_or(|f| matches(f, u, exact)))
                .collect();
            let page: Vec<Value> = all
                .iter()
                .skip(start - 1)
                .take(count)
                .map(|u| user_json(base, u))
                .collect();
            answer(
                200,
                json!({
                    "schemas": [LIST_SCHEMA],
                    "totalResults": all.len(),
                    "startIndex": start,
                    "itemsPerPage": page.len(),
                    "Resources": page,
                }),
            )
        }
        ("GET", ["Users", id]) => match st.users.get(*id) {
            Some(u) => answer(200, user_json(base, u)),
            None => scim_error(404, None, &format!("Resource {id} not found")),
        },
        ("PATCH", ["Users", id]) => {
            let Some(b) = body else {
                return scim_error(400, Some("invalidSyntax"), "The request body is not JSON.");
            };
            let is_patch = b["schemas"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == PATCH_SCHEMA));
            let Some(ops) = b["Operations"].as_array().filter(|_| is_patch) else {
                return scim_error(400, Some("invalidSyntax"), "Expected a PatchOp with schemas [\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"] and Operations.");
            };
            let Some(mut u) = st.users.get(*id).cloned() else {
                return scim_error(404, None, &format!("Resource {id} not found"));
            };
            for op in ops {
                let kind = op["op"].as_str().unwrap_or("").to_ascii_lowercase();
                if kind != "replace" && kind != "add" {
                    return scim_error(
                        400,
                        Some("invalidValue"),
                        &format!(
                            "Operation op {:?} is not supported (replace, add).",
                            op["op"]
                        ),
                    );
                }
                let pairs: Vec<(String, Value)> = match op["path"].as_str() {
                    Some(path) => vec![(path.to_string(), op["value"].clone())],
                    None => match op["value"].as_object() {
                        Some(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                        None => {
                            return scim_error(
                                400,
                                Some("invalidValue"),
                                "An operation without a path needs an object value.",
                            )
                        }
                    },
                };
                for (path, v) in pairs {
                    match (path.to_ascii_lowercase().as_str(), v) {
                        ("active", Value::Bool(a)) => u.active = a,
                        ("username", Value::String(s)) if !s.is_empty() => u.user_name = s,
                        ("externalid", Value::String(s)) => u.external_id = Some(s),
                        ("name.givenname", Value::String(s)) => u.given_name = s,
                        ("name.familyname", Value::String(s)) => u.family_name = s,
                        (other, _) => {
                            return scim_error(
                                400,
                                Some("invalidPath"),
                                &format!("Attribute {other} cannot be set to that value."),
                            );
                        }
                    }
                }
            }
            u.last_modified = now;
            let out = user_json(base, &u);
            st.users.insert(u.id.clone(), u);
            answer(200, out)
        }
        ("POST", ["Users"]) => {
            let Some(b) = body else {
                return scim_error(400, Some("invalidSyntax"), "The request body is not JSON.");
            };
            let Some(name) = b["userName"].as_str().filter(|s| !s.is_empty()) else {
                return scim_error(400, Some("invalidValue"), "userName is required.");
            };
            if st
                .users
                .values()
                .any(|u| u.user_name.eq_ignore_ascii_case(name))
            {
                return scim_error(
                    409,
                    Some("uniqueness"),
                    &format!("A user with userName {name} already exists."),
                );
            }
            let s = |p: &str| {
                b.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let u = User {
                id: String::new(),
                login: name.to_string(),
                first: s("/name/givenName"),
                last: s("/name/familyName"),
                email: b
                    .pointer("/emails/0/value")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .to_string(),
                created: now,
                status: "ACTIVE",
                status_changed: now,
            };
            let ext = b["externalId"].as_str().map(str::to_string);
            let id = st.insert(name.to_string(), ext, &u, now);
            if let Some(false) = b["active"].as_bool() {
                if let Some(x) = st.users.get_mut(&id) {
                    x.active = false;
                }
            }
            let mut a = answer(201, user_json(base, &st.users[&id]));
            a.headers.push(("Location", format!("{base}/Users/{id}")));
            a
        }
        (_, ["Users"]) | (_, ["Users", _]) => scim_error(405, None, "Method not allowed."),
        _ => scim_error(404, None, "Unknown endpoint."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn filters_follow_rfc_7644_examples() {
        // RFC 7644 3.4.2.2: `filter=userName eq "bjensen"`; attribute names are case-insensitive.
        assert_eq!(
            parse_filter("userName eq \"bjensen\"").unwrap(),
            Filter::Eq {
                attr: "username".into(),
                value: json!("bjensen")
            }
        );
        assert!(parse_filter("UserName Eq \"x\"").is_ok());
        assert!(parse_filter("active eq true").is_ok());
        assert!(parse_filter("userName sw \"b\"")
            .unwrap_err()
            .contains("sw"));
        assert!(parse_filter("title eq \"x\"").is_err());
        assert!(parse_filter("userName eq bjensen").is_err());
        let now = Utc::now();
        let u = ScimUser {
            id: "1".into(),
            user_name: "BJensen@Example.com".into(),
            external_id: None,
            given_name: "B".into(),
            family_name: "J".into(),
            email: "b@e".into(),
            active: true,
            created: now,
            last_modified: now,
        };
        let f = parse_filter("userName eq \"bjensen@example.com\"").unwrap();
        assert!(
            matches(&f, &u, false),
            "userName is caseExact=false (RFC 7643 4.1.1)"
        );
        assert!(!matches(&f, &u, true));
    }

    #[test]
    fn errors_use_the_scim_error_schema_with_a_string_status() {
        let a = scim_error(404, None, "Resource 2819c223 not found");
        assert_eq!(a.body["schemas"][0], ERROR_SCHEMA);
        assert_eq!(a.body["status"], "404");
        let a = scim_error(400, Some("invalidFilter"), "bad");
        assert_eq!(a.body["scimType"], "invalidFilter");
    }
}
