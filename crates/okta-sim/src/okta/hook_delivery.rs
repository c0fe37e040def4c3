//! Event hook delivery as Okta does it: the one-time verification `GET` with
//! `X-Okta-Verification-Challenge`, then `POST`s of queued events to ACTIVE, VERIFIED hooks
//! with the configured headers, a 3 s timeout, one retry (none after a 4xx), and an
//! `event_hook.delivery` FAILURE in the System Log when a delivery is given up. The knobs in
//! [`super::HookDeliveryKnobs`] duplicate, reorder (seeded) or hold deliveries.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use super::clock::okta_time;
use super::errors::{self, Reply};
use super::hooks::{EventHook, HookDelivery, HOOK_TIMEOUT};
use super::ids::random_alnum;
use super::org::Txn;
use super::Inner;

fn client() -> reqwest::Client {
    crate::ensure_crypto_provider();
    reqwest::Client::builder()
        .timeout(HOOK_TIMEOUT)
        .build()
        .unwrap_or_default()
}

fn with_headers(mut rb: reqwest::RequestBuilder, h: &EventHook) -> reqwest::RequestBuilder {
    for (k, v) in &h.headers {
        rb = rb.header(k, v);
    }
    if let Some((k, v)) = &h.auth {
        rb = rb.header(k, v);
    }
    rb
}

/// `POST /api/v1/eventHooks/{id}/lifecycle/verify`: the one-time `GET` to the hook's URI.
pub(crate) async fn verify(inner: &Inner, id: &str) -> Reply {
    let Some(hook) = inner.lock().org.hooks.get(id).cloned() else {
        return errors::not_found(id, "EventHook");
    };
    let challenge = random_alnum(40);
    let rb = with_headers(client().get(&hook.uri), &hook)
        .header("X-Okta-Verification-Challenge", &challenge);
    let outcome = match rb.send().await {
        Err(e) => Err(format!(
            "the endpoint did not answer: {}",
            if e.is_timeout() {
                "timed out after 3 s".into()
            } else {
                e.without_url().to_string()
            }
        )),
        Ok(r) if !r.status().is_success() => Err(format!(
            "the endpoint answered HTTP {}",
            r.status().as_u16()
        )),
        Ok(r) => match r.json::<Value>().await {
            Ok(v) if v["verification"].as_str() == Some(challenge.as_str()) => Ok(()),
            _ => {
                Err("the endpoint did not echo the challenge as {\"verification\": \"...\"}".into())
            }
        },
    };
    let now = inner.clock.now();
    let mut st = inner.lock();
    let Some(h) = st.org.hooks.get_mut(id) else {
        return errors::not_found(id, "EventHook");
    };
    match outcome {
        Ok(()) => {
            h.verified = true;
            h.last_updated = now;
            Reply::ok(h.json(&inner.base))
        }
        Err(cause) => errors::okta_error_causes(
            400,
            "E0000001",
            "Api validation failed: eventHook",
            &[format!("Event hook verification failed: {cause}")],
        ),
    }
}

/// The deliverer: woken by `Inner::hook_wake` after org changes; delivers queued events one
/// request at a time (so reordering is the knob's doing, not a race).
pub(crate) async fn deliver_loop(inner: Arc<Inner>) {
    let http = client();
    let mut stop = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = inner.hook_wake.notified() => {}
            _ = stop.changed() => return,
        }
        loop {
            let (batch, knobs) = {
                let mut st = inner.lock();
                let q = &mut st.org.hook_queue;
                if q.knobs.hold || q.pending.is_empty() {
                    break;
                }
                let mut batch = std::mem::take(&mut q.pending);
                if q.knobs.reorder {
                    q.rng_round += 1;
                    let mut rng =
                        rand::rngs::StdRng::seed_from_u64(q.knobs.seed.wrapping_add(q.rng_round));
                    batch.shuffle(&mut rng);
                }
                q.in_flight = batch.len();
                (batch, q.knobs.clone())
            };
            let size = knobs.batch_size.max(1);
            let mut i = 0;
            while i < batch.len() {
                let hook_id = batch[i].0.clone();
                let mut events = Vec::new();
                while i < batch.len() && batch[i].0 == hook_id && events.len() < size {
                    events.push(batch[i].1.clone());
                    i += 1;
                }
                let copies = if knobs.duplicate { 2 } else { 1 };
                for _ in 0..copies {
                    deliver(&inner, &http, &hook_id, &events).await;
                }
                let mut st = inner.lock();
                st.org.hook_queue.in_flight = batch.len() - i;
            }
        }
    }
}

async fn deliver(inner: &Inner, http: &reqwest::Client, hook_id: &str, events: &[Value]) {
    let Some(hook) = inner.lock().org.hooks.get(hook_id).cloned() else {
        return;
    };
    if !hook.active {
        return;
    }
    let uuids: Vec<String> = events
        .iter()
        .filter_map(|e| e["uuid"].as_str().map(str::to_string))
        .collect();
    let body = json!({
        "eventType": "com.okta.event_hook",
        "eventTypeVersion": "1.0",
        "cloudEventsVersion": "0.1",
        "source": format!("{}/api/v1/eventHooks/{hook_id}", inner.base),
        "eventId": uuid::Uuid::new_v4().to_string(),
        "eventTime": okta_time(inner.clock.now()),
        "contentType": "application/json",
        "data": {"events": events},
    });
    let mut last_err = String::new();
    for attempt in 1..=2u8 {
        let rb = with_headers(http.post(&hook.uri), &hook).json(&body);
        let (status, error) = match rb.send().await {
            Ok(r) => (Some(r.status().as_u16()), None),
            Err(e) => (
                None,
                Some(if e.is_timeout() {
                    "timed out after 3 s".to_string()
                } else {
                    e.without_url().to_string()
                }),
            ),
        };
        inner.lock().org.hook_queue.deliveries.push(HookDelivery {
            hook_id: hook_id.to_string(),
            attempt,
            status,
            error: error.clone(),
            event_uuids: uuids.clone(),
            at: inner.clock.now(),
        });
        match status {
            Some(s) if (200..300).contains(&s) => return,
            // Okta does not retry a 4xx: the receiver refused the request.
            Some(s) if (400..500).contains(&s) => {
                last_err = format!("HTTP {s}");
                break;
            }
            Some(s) => last_err = format!("HTTP {s}"),
            None => last_err = error.unwrap_or_default(),
        }
    }
    let now = inner.clock.now();
    let mut st = inner.lock();
    let target = json!({"id": hook.id, "type": "EventHook", "alternateId": hook.uri, "displayName": hook.name});
    let debug = json!({"requestUri": hook.uri, "eventUuids": uuids.join(",")});
    st.org.log_as(
        None,
        "event_hook.delivery",
        "Event hook delivery",
        "",
        "WARN",
        Some(format!("Event hook delivery failed: {last_err}")),
        vec![target],
        Txn::Job,
        random_alnum(27),
        debug,
        now,
    );
}
