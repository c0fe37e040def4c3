//! The System Log route: `GET /api/v1/logs` with Okta's polling semantics (`since`/`until`,
//! `after` cursors, `filter`/`q`, `sortOrder`, `limit`) and the `Link` headers it answers with.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::clock::okta_time;
use super::errors::{self, Reply};
use super::filter;
use super::org::Org;
use super::server::{param, Params};
use super::State;

const LOG_RETENTION_LIMIT_DAYS: i64 = 180;

// ---- System Log ------------------------------------------------------------------------------

fn log_attr_allowed(a: &str) -> bool {
    matches!(
        a,
        "eventType"
            | "uuid"
            | "published"
            | "severity"
            | "displayMessage"
            | "legacyEventType"
            | "version"
            | "outcome.result"
            | "outcome.reason"
            | "actor.id"
            | "actor.type"
            | "actor.alternateId"
            | "actor.displayName"
            | "target.id"
            | "target.type"
            | "target.alternateId"
            | "target.displayName"
            | "transaction.id"
            | "transaction.type"
            | "client.ipAddress"
            | "client.zone"
            | "client.device"
    ) || a.starts_with("debugContext.debugData.")
}

fn cursor(org: &Org, k: usize, fallback: DateTime<Utc>) -> String {
    let ms = k
        .checked_sub(1)
        .and_then(|i| org.events.get(i))
        .map(|e| e.persisted)
        .unwrap_or(fallback)
        .timestamp_millis();
    format!("{ms}_{k}")
}

fn parse_cursor(s: &str) -> Option<usize> {
    let (ms, k) = s.rsplit_once('_')?;
    ms.parse::<i64>().ok()?;
    k.parse().ok()
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

pub(crate) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) fn link(url: &str, rel: &str) -> (String, String) {
    ("Link".to_string(), format!("<{url}>; rel=\"{rel}\""))
}

pub(crate) fn list_logs(st: &State, p: &Params, base: &str, now: DateTime<Utc>) -> Reply {
    let org = &st.org;
    let limit = match param(p, "limit") {
        None => 100usize,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (0..=1000).contains(&n) => n as usize,
            _ => return errors::validation("limit: must be an integer between 0 and 1000"),
        },
    };
    let descending = match param(p, "sortOrder") {
        None | Some("ASCENDING") => false,
        Some("DESCENDING") => true,
        Some(_) => return errors::validation("sortOrder: must be ASCENDING or DESCENDING"),
    };
    let after = param(p, "after");
    let since = match param(p, "since") {
        None => None,
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => return errors::validation("since: must be an ISO 8601 timestamp"),
        },
    };
    if after.is_some() && since.is_some() {
        return errors::validation("since and after cannot be used together");
    }
    if let Some(s) = since {
        if s < now - chrono::Duration::days(LOG_RETENTION_LIMIT_DAYS) {
            return errors::okta_error(
                400,
                "E0000053",
                "Invalid date. 'since' must be later than 180 days ago.",
            );
        }
    }
    let until = match param(p, "until") {
        None => None,
        Some(s) => match parse_time(s) {
            Some(t) => Some(t),
            None => return errors::validation("until: must be an ISO 8601 timestamp"),
        },
    };
    let filter_s = param(p, "filter");
    let filter = match filter_s {
        None => None,
        Some(f) => match filter::parse(f, &log_attr_allowed) {
            Ok(f) => Some(f),
            Err(_) => return errors::invalid_search(),
        },
    };
    let q = param(p, "q");
    let keywords: Vec<String> = q
        .map(|q| q.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default();
    if keywords.len() > 10 || keywords.iter().any(|k| k.chars().count() > 40) {
        return errors::validation("q: at most 10 keywords of at most 40 characters");
    }
    let matches = |ev: &Value| {
        filter.as_ref().is_none_or(|f| f.matches(ev))
            && (keywords.is_empty() || {
                let text = ev.to_string().to_lowercase();
                keywords.iter().all(|k| text.contains(k.as_str()))
            })
    };
    let self_url = {
        let q: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if q.is_empty() {
            format!("{base}/api/v1/logs")
        } else {
            format!("{base}/api/v1/logs?{}", q.join("&"))
        }
    };
    let mut next_q = Vec::new();
    let extra = |next_q: &mut Vec<String>| {
        next_q.push(format!("limit={limit}"));
        if let Some(f) = filter_s {
            next_q.push(format!("filter={}", encode(f)));
        }
        if let Some(q) = q {
            next_q.push(format!("q={}", encode(q)));
        }
    };
    let default_since = now - chrono::Duration::days(7);

    if until.is_some() || descending {
        // Bounded query: a time window over `published`, sorted; next only while more remain.
        let since = since.unwrap_or(default_since);
        let until = until.unwrap_or(now);
        let mut hits: Vec<(DateTime<Utc>, usize)> = org
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let t = e
                    .event
                    .get("published")
                    .and_then(Value::as_str)
                    .and_then(parse_time)?;
                (t >= since && t < until && matches(&e.event)).then_some((t, i))
            })
            .collect();
        hits.sort_by_key(|(t, _)| *t);
        if descending {
            hits.reverse();
        }
        let start = match after {
            None => 0,
            Some(a) => match parse_cursor(a) {
                Some(k) if k <= hits.len() => k,
                _ => return errors::validation("after: invalid cursor"),
            },
        };
        let end = (start + limit).min(hits.len());
        let page: Vec<Value> = hits[start..end]
            .iter()
            .map(|(_, i)| org.events[*i].event.clone())
            .collect();
        let mut r = Reply::ok(Value::Array(page))
            .with_header("Link", format!("<{self_url}>; rel=\"self\""));
        if end < hits.len() {
            next_q.push(format!("since={}", encode(&okta_time(since))));
            next_q.push(format!("until={}", encode(&okta_time(until))));
            if descending {
                next_q.push("sortOrder=DESCENDING".into());
            }
            extra(&mut next_q);
            next_q.push(format!(
                "after={}",
                encode(&format!("{}_{end}", now.timestamp_millis()))
            ));
            let (n, v) = link(&format!("{base}/api/v1/logs?{}", next_q.join("&")), "next");
            r = r.with_header(&n, v);
        }
        return r;
    }

    // Polling: persistence order from a position; the next link always comes back.
    let start = match after {
        Some(a) => match parse_cursor(a) {
            Some(k) if k <= org.events.len() => k,
            _ => return errors::validation("after: invalid cursor"),
        },
        None => {
            let since = since.unwrap_or(default_since);
            org.events
                .iter()
                .position(|e| e.persisted >= since)
                .unwrap_or(org.events.len())
        }
    };
    let mut page = Vec::new();
    let mut next = org.events.len();
    if limit == 0 {
        next = start;
    } else {
        for (i, e) in org.events.iter().enumerate().skip(start) {
            if matches(&e.event) {
                page.push(e.event.clone());
                if page.len() == limit {
                    next = i + 1;
                    break;
                }
            }
        }
    }
    if let Some((from, to)) = st.log_next_redirect {
        if next == from {
            next = to;
        }
    }
    next_q.push(format!("after={}", encode(&cursor(org, next, now))));
    extra(&mut next_q);
    let next_url = format!("{base}/api/v1/logs?{}", next_q.join("&"));
    let (n1, v1) = link(&self_url, "self");
    let (n2, v2) = link(&next_url, "next");
    Reply::ok(Value::Array(page))
        .with_header(&n1, v1)
        .with_header(&n2, v2)
}
