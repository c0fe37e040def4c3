//! Per-bucket budgeting of the org's shared Okta rate limits, and who gets the calls when they
//! are scarce.
//!
//! Okta's buckets are shared by every integration in the org, so this module keeps the
//! daemon's use of any bucket within `rate_limit_share` of the bucket's limit in each window,
//! and never takes the bucket's remaining budget below the share reserved for everyone else.
//! It learns limits from `X-Rate-Limit-*` headers, spreads requests with a [`Pacer`] (on
//! tokio's clock), and after a 429 waits until the window resets (plus jitter) before touching
//! that bucket again.
//!
//! Inside that share, every request declares a [`Class`]. When several requests wait for the
//! same bucket, the next free call goes to the highest class (System Log polls and the
//! read-back of a retry in flight, then urgent retries, other retries, manual commands, and
//! last scans, `doctor` and reconciliations), first come first served within a class. Two
//! rules keep that fair:
//! - **floor**: every class below the top gets at least [`FLOOR_SHARE`] of the daemon's budget
//!   of a window, spread over the window: a class that has fallen behind that pro-rata floor
//!   goes before the classes above it, so nothing waits forever;
//! - **ceiling**: the background classes (scans, `doctor`, reconciliations) together use at
//!   most `background_share` of the budget in any window (`detect.scan_share`), even when
//!   nothing else is waiting, so a retry or a manual command that turns up finds calls left.
//!
//! Every wait is cancellable: [`RateBudget::acquire`] takes a [`CancellationToken`] and returns
//! [`Cancelled`] the moment it fires, having taken nothing.//!
//! By job: `bucket` is Okta's bucket layout, `class` the request classes and their tiers,
//! `headers` what responses say about a bucket, `window` the per-bucket window arithmetic;
//! this module owns the queue of waiting requests and who goes next. About 520 of its lines
//! are unit tests, kept beside the code they pin.

mod bucket;
mod class;
mod headers;
mod window;

pub use bucket::Bucket;
pub use class::{Class, FLOOR_SHARE, TIERS};
pub use headers::{PrincipalRateLimit, RateHeaders, ASSUMED_LIMIT};
pub use window::{budget_for, ceiling_for, floor_for};
use window::{jitter, BucketState, Waiter, ASSUMED_WINDOW, BEHIND_RECHECK};

use crate::pacer::Pacer;
use rand::RngExt;
use reqwest::header::HeaderMap;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A wait on the budget was cancelled by shutdown; nothing was taken and nothing sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stopped while waiting for the Okta rate budget")]
pub struct Cancelled;

/// Snapshot of one bucket, for metrics, `doctor` and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketSnapshot {
    pub bucket: Bucket,
    pub limit: Option<u32>,
    pub remaining: Option<u32>,
    pub used_in_window: u32,
    pub budget: u32,
    /// Requests sent in this window per tier ([`Class::tier`]).
    pub used_by_tier: [u32; TIERS],
    /// Requests waiting for this bucket now.
    pub waiting: usize,
}

/// Why a request may not go now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deny {
    /// No call is free for this class before this much time has passed.
    Wait(Duration),
    /// A call is free but a request of a higher rank is waiting for it.
    Behind,
}

/// Shared, cloneable budget keeper for all Okta buckets.
#[derive(Clone, Debug)]
pub struct RateBudget {
    share: f64,
    /// Ceiling of the background classes, as a fraction of the daemon's budget per window.
    background_share: f64,
    state: Arc<Mutex<HashMap<Bucket, BucketState>>>,
    /// Woken whenever a waiter takes a call or leaves, so the next in rank looks again.
    changed: Arc<Notify>,
    next_id: Arc<AtomicU64>,
}

/// Takes a waiter off its bucket however its wait ends (a call, cancellation, or the future
/// dropped), and wakes the others so the next in rank can go.
struct Registration<'a> {
    budget: &'a RateBudget,
    bucket: Bucket,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(st) = self.budget.lock().get_mut(&self.bucket) {
            st.forget(self.id);
        }
        self.budget.changed.notify_waiters();
    }
}

impl RateBudget {
    /// A budget of `share` of every bucket, with background classes free to use all of it.
    pub fn new(share: f64) -> Self {
        Self::with_background_share(share, 1.0)
    }

    /// A budget of `share` of every bucket whose background classes (scans, `doctor`,
    /// reconciliations) use at most `background_share` of it per window.
    pub fn with_background_share(share: f64, background_share: f64) -> Self {
        let clamp = |x: f64| {
            if x.is_nan() {
                1.0
            } else {
                x.clamp(f64::MIN_POSITIVE, 1.0)
            }
        };
        Self {
            share: clamp(share),
            background_share: clamp(background_share),
            state: Arc::new(Mutex::new(HashMap::new())),
            changed: Arc::new(Notify::new()),
            next_id: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn share(&self) -> f64 {
        self.share
    }

    pub fn background_share(&self) -> f64 {
        self.background_share
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Bucket, BucketState>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until this daemon may send one request of `class` to `bucket`, and counts it.
    /// Returns [`Cancelled`] at once when `cancel` fires (or had fired), having taken nothing.
    pub async fn acquire(
        &self,
        bucket: Bucket,
        class: Class,
        cancel: &CancellationToken,
    ) -> Result<(), Cancelled> {
        if cancel.is_cancelled() {
            return Err(Cancelled);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(bucket)
            .or_insert_with(BucketState::new)
            .waiters
            .push(Waiter { id, class });
        let _reg = Registration {
            budget: self,
            bucket,
            id,
        };
        loop {
            // Registered before looking, so a wake-up between the look and the wait is kept.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let wait = match self.grant(bucket, class, Some(id), Instant::now()) {
                Ok(()) => return Ok(()),
                Err(Deny::Wait(d)) => d,
                Err(Deny::Behind) => {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Err(Cancelled),
                        _ = changed => {}
                        _ = tokio::time::sleep(BEHIND_RECHECK) => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Cancelled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Takes a slot now for an unqueued request of the default class ([`Class::Retry`]), or
    /// says how long to wait before asking again.
    pub fn try_acquire(&self, bucket: Bucket, now: Instant) -> Result<(), Duration> {
        self.try_acquire_as(bucket, Class::Retry, now)
    }

    /// Takes a slot now for an unqueued request of `class`, or says how long to wait. A
    /// queued request of a higher rank makes it wait a short while.
    pub fn try_acquire_as(
        &self,
        bucket: Bucket,
        class: Class,
        now: Instant,
    ) -> Result<(), Duration> {
        match self.grant(bucket, class, None, now) {
            Ok(()) => Ok(()),
            Err(Deny::Wait(d)) => Err(d),
            Err(Deny::Behind) => Err(Duration::from_millis(50)),
        }
    }

    /// The rank of a waiter of `class` in `st` (lower goes first), or `None` when its class
    /// may not have a call in this window at all (the background ceiling).
    fn rank(
        &self,
        st: &BucketState,
        class: Class,
        id: u64,
        budget: u32,
        now: Instant,
    ) -> Option<(u8, usize, u64)> {
        let tier = class.tier();
        if class.is_background()
            && st.used_by_tier[tier] >= ceiling_for(budget, self.background_share)
        {
            return None;
        }
        // The floor, pro rata: by half the window a class is owed half its floor.
        let owed = (floor_for(budget) as f64 * st.window_elapsed(now)).floor() as u32;
        let behind_floor = tier > 0 && st.used_by_tier[tier] < owed;
        let boost = if tier == 0 {
            0
        } else if behind_floor {
            1
        } else {
            2
        };
        Some((boost, tier, id))
    }

    /// The one decision: may a request of `class` (queued as `me`, if it is) go now?
    fn grant(
        &self,
        bucket: Bucket,
        class: Class,
        me: Option<u64>,
        now: Instant,
    ) -> Result<(), Deny> {
        let mut map = self.lock();
        let st = map.entry(bucket).or_insert_with(BucketState::new);
        if let Some(until) = st.blocked_until {
            if now < until {
                return Err(Deny::Wait(until - now));
            }
            st.blocked_until = None;
        }
        if let Some(end) = st.window_ends {
            if now >= end {
                st.window_ends = None;
                st.window_assumed = false;
                st.used = 0;
                st.used_by_tier = [0; TIERS];
                st.remaining = None;
            }
        }
        let Some(limit) = st.limit else {
            // Unknown bucket: one request at a time until a response tells us its limit.
            if st.probing {
                return Err(Deny::Wait(Duration::from_millis(50)));
            }
            st.probing = true;
            st.count_one(now, class);
            if let Some(id) = me {
                st.forget(id);
            }
            return Ok(());
        };
        let budget = budget_for(limit, self.share);
        let reserve = limit.saturating_sub(budget);
        let over_ours = st.used >= budget;
        let over_org = st.remaining.is_some_and(|r| r <= reserve);
        let window_ends = st.window_ends;
        let until_window_end = || match window_ends {
            Some(end) => (end - now) + jitter(250),
            // Without a known end, re-check soon; the next response (or the pacer) tells more.
            None => Duration::from_secs(1),
        };
        if over_ours || over_org {
            return Err(Deny::Wait(until_window_end()));
        }
        if st.sent_in_last_window(now) >= budget as usize {
            // Okta's window may say it reset, but we sent a whole budget less than 60 s ago.
            let oldest = st.recent.front().copied().unwrap_or(now);
            return Err(Deny::Wait(
                (oldest + ASSUMED_WINDOW).saturating_duration_since(now) + Duration::from_millis(1),
            ));
        }
        let my_id = me.unwrap_or(u64::MAX);
        let Some(my_rank) = self.rank(st, class, my_id, budget, now) else {
            // The background ceiling: the rest of this window is kept for the other classes.
            return Err(Deny::Wait(until_window_end()));
        };
        let ahead = st.waiters.iter().any(|w| {
            Some(w.id) != me
                && self
                    .rank(st, w.class, w.id, budget, now)
                    .is_some_and(|r| r < my_rank)
        });
        if ahead {
            return Err(Deny::Behind);
        }
        let pacer = st
            .pacer
            .get_or_insert_with(|| Arc::new(Self::pacer_for(budget)))
            .clone();
        pacer.try_take().map_err(Deny::Wait)?;
        st.count_one(now, class);
        if let Some(r) = st.remaining.as_mut() {
            *r = r.saturating_sub(1);
        }
        if let Some(id) = me {
            st.forget(id);
        }
        Ok(())
    }

    fn pacer_for(budget: u32) -> Pacer {
        // Even spacing over the window with a small burst so a page walk is not needlessly
        // slow; the per-window count above is what enforces the hard ceiling.
        Pacer::new(budget, Duration::from_secs(60), (budget / 6).max(1))
    }

    /// Records what a response said about its bucket.
    pub fn observe(&self, bucket: Bucket, h: Option<RateHeaders>, now: Instant) {
        let mut map = self.lock();
        let st = map.entry(bucket).or_insert_with(BucketState::new);
        st.probing = false;
        let Some(h) = h else {
            if st.limit.is_none() {
                st.limit = Some(ASSUMED_LIMIT);
            }
            return;
        };
        if st.limit != Some(h.limit) {
            st.pacer = Some(Arc::new(Self::pacer_for(budget_for(h.limit, self.share))));
            st.limit = Some(h.limit);
        }
        let ends = now + h.reset_in;
        let new_window = match st.window_ends {
            // Okta's reset moves by a whole window; a difference of a second is rounding.
            Some(old) if !st.window_assumed => ends > old + Duration::from_secs(2),
            _ => true,
        };
        let older_window = match st.window_ends {
            Some(old) if !st.window_assumed => ends + Duration::from_secs(2) < old,
            _ => false,
        };
        if older_window {
            // A late answer from the window before this one: its remaining is not about the
            // current window, and taking it would stall us until this window ends.
            return;
        }
        if new_window {
            st.window_assumed = false;
            // `used` keeps counting: it was reset when our view of the old window ended, and if
            // Okta's window rolled over first, over-counting only makes us more careful.
            st.window_ends = Some(ends);
            st.remaining = Some(h.remaining);
        } else {
            // Responses of one window can arrive out of order: the lowest remaining is the truth.
            st.remaining = Some(st.remaining.map_or(h.remaining, |r| r.min(h.remaining)));
        }
    }

    /// A 429: nothing goes to this bucket until its window resets, plus jitter so that
    /// several clients released by the same reset do not stampede.
    /// A 429 for too many requests in flight carries the concurrency ceiling in its headers,
    /// not the bucket's, so a limit we already know is kept.
    pub fn on_rate_limited(&self, bucket: Bucket, h: Option<RateHeaders>, now: Instant) {
        let known = self
            .lock()
            .get(&bucket)
            .is_some_and(|st| st.limit.is_some());
        if known {
            if let Some(st) = self.lock().get_mut(&bucket) {
                st.probing = false;
            }
        } else {
            // The next successful response corrects a limit learnt from a concurrency 429.
            self.observe(bucket, h, now);
        }
        let mut map = self.lock();
        let st = map.entry(bucket).or_insert_with(BucketState::new);
        let wait = h.map(|h| h.reset_in).unwrap_or(Duration::from_secs(60));
        st.blocked_until = Some(now + wait + Duration::from_millis(200) + jitter(800));
        st.remaining = Some(0);
        if st.window_ends.is_none() {
            // Without an end, `remaining = 0` would outlive the block and stall the bucket
            // for good: no request goes out to tell us otherwise.
            st.window_ends = st.blocked_until;
        }
    }

    /// A request was not sent after all (e.g. the auth token could not be had): give back the probe.
    pub fn release_probe(&self, bucket: Bucket) {
        if let Some(st) = self.lock().get_mut(&bucket) {
            st.probing = false;
        }
    }

    pub fn snapshot(&self) -> Vec<BucketSnapshot> {
        let map = self.lock();
        let mut v: Vec<_> = map
            .iter()
            .map(|(b, st)| BucketSnapshot {
                bucket: *b,
                limit: st.limit,
                remaining: st.remaining,
                used_in_window: st.used,
                budget: budget_for(st.limit.unwrap_or(ASSUMED_LIMIT), self.share),
                used_by_tier: st.used_by_tier,
                waiting: st.waiters.len(),
            })
            .collect();
        v.sort_by_key(|s| s.bucket);
        v
    }

    /// How long the bucket stays blocked by a 429, if it is.
    pub fn blocked_for(&self, bucket: Bucket, now: Instant) -> Option<Duration> {
        self.lock()
            .get(&bucket)
            .and_then(|st| st.blocked_until)
            .filter(|u| *u > now)
            .map(|u| u - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(limit: u32, remaining: u32, reset_in: u64) -> Option<RateHeaders> {
        Some(RateHeaders {
            limit,
            remaining,
            reset_in: Duration::from_secs(reset_in),
        })
    }

    /// A budget whose Apps bucket is known: limit 60 (budget 30 at share 0.5, pacer burst 5,
    /// one call per 2 s after it), window ending in 60 s.
    fn known(share: f64, background: f64) -> RateBudget {
        let rb = RateBudget::with_background_share(share, background);
        let now = Instant::now();
        rb.try_acquire(Bucket::Apps, now).unwrap();
        rb.observe(Bucket::Apps, headers(60, 59, 60), now);
        rb
    }

    /// Spends the pacer's burst so the next call is scarce.
    fn drain(rb: &RateBudget) {
        while rb
            .try_acquire_as(Bucket::Apps, Class::Poll, Instant::now())
            .is_ok()
        {}
    }

    fn spawn_waiter(
        rb: &RateBudget,
        class: Class,
        order: &Arc<Mutex<Vec<Class>>>,
    ) -> tokio::task::JoinHandle<()> {
        let rb = rb.clone();
        let order = order.clone();
        tokio::spawn(async move {
            rb.acquire(Bucket::Apps, class, &CancellationToken::new())
                .await
                .unwrap();
            order.lock().unwrap().push(class);
        })
    }

    /// When calls are scarce the next one goes to the highest class, whatever the order of
    /// arrival; first come first served within a class.
    #[tokio::test(start_paused = true)]
    async fn scarce_calls_go_to_the_highest_class_first() {
        let rb = known(0.5, 1.0);
        drain(&rb);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for class in [
            Class::Scan,
            Class::Manual,
            Class::Retry,
            Class::UrgentRetry,
            Class::ReadBack,
            Class::Doctor,
            Class::Poll,
        ] {
            tasks.push(spawn_waiter(&rb, class, &order));
            // Each registers before the next arrives.
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [
                Class::ReadBack,
                Class::Poll,
                Class::UrgentRetry,
                Class::Retry,
                Class::Manual,
                Class::Scan,
                Class::Doctor,
            ]
        );
    }

    /// Retries that always want the bucket do not starve a scan: it gets its floor (10 % of
    /// the budget per window, spread over the window), and no more.
    #[tokio::test(start_paused = true)]
    async fn a_lower_class_gets_its_floor_under_constant_pressure() {
        let rb = known(0.5, 1.0);
        drain(&rb);
        let start = Instant::now();
        let counts = Arc::new(Mutex::new([0u32; 2]));
        let mut tasks = Vec::new();
        for (i, class) in [(0, Class::Retry), (1, Class::Scan)] {
            // Several waiters per class keep the queue full at every instant.
            for _ in 0..3 {
                let rb = rb.clone();
                let counts = counts.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        rb.acquire(Bucket::Apps, class, &CancellationToken::new())
                            .await
                            .unwrap();
                        if Instant::now() >= start + Duration::from_secs(59) {
                            return;
                        }
                        counts.lock().unwrap()[i] += 1;
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let [retries, scans] = *counts.lock().unwrap();
        let floor = floor_for(30);
        assert_eq!(floor, 3);
        assert!(
            scans >= floor - 1 && scans <= floor,
            "scan got {scans} calls, retries {retries}"
        );
        // The burst was drained: what is left of the window's 30 went to the two classes.
        assert!(retries + scans <= 30 - 6, "{retries} + {scans}");
        assert!(retries >= 15, "{retries}");
    }

    /// Background classes stop at `background_share` of the budget even when nothing else
    /// wants the bucket, so a retry that turns up later in the window still finds calls.
    #[tokio::test(start_paused = true)]
    async fn scans_stop_at_their_ceiling_and_leave_the_rest() {
        let rb = known(0.5, 0.5);
        let start = Instant::now();
        let cancel = CancellationToken::new();
        let mut scans = 0;
        loop {
            rb.acquire(Bucket::Apps, Class::Scan, &cancel)
                .await
                .unwrap();
            if Instant::now() >= start + Duration::from_secs(60) {
                break;
            }
            scans += 1;
        }
        // 15 = half of the budget of 30; the probe that learnt the limit was a Retry.
        assert_eq!(scans, ceiling_for(30, 0.5));
        assert_eq!(scans, 15);

        let rb = known(0.5, 0.5);
        for _ in 0..15 {
            rb.acquire(Bucket::Apps, Class::Scan, &cancel)
                .await
                .unwrap();
        }
        let t = Instant::now();
        rb.acquire(Bucket::Apps, Class::Retry, &cancel)
            .await
            .unwrap();
        assert!(
            t.elapsed() <= Duration::from_secs(3),
            "the retry waited {:?}",
            t.elapsed()
        );
    }

    /// A wait on the budget ends the moment shutdown comes: `Cancelled`, nothing counted, no
    /// waiter left behind; a token cancelled before the call takes nothing either.
    #[tokio::test(start_paused = true)]
    async fn cancelled_waits_end_at_once_and_take_nothing() {
        let rb = known(0.5, 1.0);
        // Spend the whole window.
        while rb.snapshot()[0].used_in_window < 30 {
            rb.acquire(Bucket::Apps, Class::Retry, &CancellationToken::new())
                .await
                .unwrap();
        }
        let used = rb.snapshot()[0].used_in_window;
        let cancel = CancellationToken::new();
        let waiter = {
            let rb = rb.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { rb.acquire(Bucket::Apps, Class::Poll, &cancel).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rb.snapshot()[0].waiting, 1);
        let t = Instant::now();
        cancel.cancel();
        assert_eq!(waiter.await.unwrap(), Err(Cancelled));
        assert_eq!(t.elapsed(), Duration::ZERO);
        let snap = rb.snapshot();
        assert_eq!(snap[0].used_in_window, used);
        assert_eq!(snap[0].waiting, 0);
        assert_eq!(
            rb.acquire(Bucket::Logs, Class::Poll, &cancel).await,
            Err(Cancelled)
        );
        assert!(rb.snapshot().iter().all(|s| s.bucket != Bucket::Logs));
    }

    /// A waiter that is dropped (its caller gave up) does not hold the queue for the others.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_leaves_the_queue() {
        let rb = known(0.5, 1.0);
        drain(&rb);
        let never = CancellationToken::new();
        {
            let f = rb.acquire(Bucket::Apps, Class::Poll, &never);
            tokio::pin!(f);
            // Registered by its first poll, then dropped.
            assert!(futures_poll_once(f.as_mut()).await.is_none());
            assert_eq!(rb.snapshot()[0].waiting, 1);
        }
        assert_eq!(rb.snapshot()[0].waiting, 0);
        let t = Instant::now();
        rb.acquire(Bucket::Apps, Class::Scan, &never).await.unwrap();
        assert!(t.elapsed() <= Duration::from_secs(2), "{:?}", t.elapsed());
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }

    /// Headers that lie (a window that "resets" at every answer, a limit that changes every
    /// time) cannot push us past the budget in any 60 s.
    #[tokio::test(start_paused = true)]
    async fn lying_headers_do_not_lift_the_sliding_cap() {
        let rb = RateBudget::new(0.5);
        let start = Instant::now();
        let mut sent = 0;
        while Instant::now() < start + Duration::from_secs(59) {
            match rb.try_acquire(Bucket::Apps, Instant::now()) {
                Ok(()) => {
                    sent += 1;
                    assert!(sent <= 30, "{sent} sent within 60 s");
                    let limit = if sent % 2 == 0 { 60 } else { 61 };
                    rb.observe(Bucket::Apps, headers(limit, limit, 0), Instant::now());
                }
                Err(w) => tokio::time::sleep(w).await,
            }
        }
        assert_eq!(sent, 30, "{sent}");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// What Okta (or something pretending to be it) answers to one request.
        #[derive(Clone, Debug)]
        enum Answer {
            Headers {
                limit: u32,
                remaining: u32,
                reset_in: u64,
            },
            NoHeaders,
            TooMany {
                reset_in: u64,
            },
        }

        fn answer() -> impl Strategy<Value = Answer> {
            prop_oneof![
                6 => (1u32..5_000, 0u32..5_000, 0u64..200).prop_map(|(limit, remaining, reset_in)| Answer::Headers { limit, remaining, reset_in }),
                1 => Just(Answer::NoHeaders),
                1 => (0u64..120).prop_map(|reset_in| Answer::TooMany { reset_in }),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

            /// Whatever the headers say, at every request we send, the requests sent in the
            /// 60 s up to it are at most the share of the limit in force.
            #[test]
            fn never_more_than_the_share_in_any_window(
                share in 0.01f64..=1.0,
                answers in proptest::collection::vec(answer(), 1..200),
                gaps_ms in proptest::collection::vec(0u64..3_000, 1..200),
            ) {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .start_paused(true)
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let rb = RateBudget::new(share);
                    let mut sent: Vec<Instant> = Vec::new();
                    let mut i = 0usize;
                    let end = Instant::now() + Duration::from_secs(600);
                    while Instant::now() < end && i < answers.len() * 4 {
                        let now = Instant::now();
                        match rb.try_acquire(Bucket::Apps, now) {
                            Ok(()) => {
                                sent.push(now);
                                let limit = rb.snapshot()[0].limit.unwrap_or(ASSUMED_LIMIT);
                                let in_window = sent
                                    .iter()
                                    .filter(|t| **t + Duration::from_secs(60) > now)
                                    .count() as u32;
                                prop_assert!(
                                    in_window <= budget_for(limit, share),
                                    "{in_window} sent in 60 s with limit {limit}, share {share}"
                                );
                                match &answers[i % answers.len()] {
                                    Answer::Headers { limit, remaining, reset_in } => rb.observe(
                                        Bucket::Apps,
                                        headers(*limit, *remaining, *reset_in),
                                        now,
                                    ),
                                    Answer::NoHeaders => rb.observe(Bucket::Apps, None, now),
                                    Answer::TooMany { reset_in } => rb.on_rate_limited(
                                        Bucket::Apps,
                                        headers(60, 0, *reset_in),
                                        now,
                                    ),
                                }
                                i += 1;
                                tokio::time::sleep(Duration::from_millis(gaps_ms[i % gaps_ms.len()])).await;
                            }
                            Err(w) => tokio::time::sleep(w.min(Duration::from_secs(30))).await,
                        }
                    }
                    Ok(())
                })?;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn first_request_probes_alone() {
        let rb = RateBudget::new(0.5);
        let now = Instant::now();
        assert!(rb.try_acquire(Bucket::Logs, now).is_ok());
        assert!(rb.try_acquire(Bucket::Logs, now).is_err());
        rb.observe(Bucket::Logs, headers(60, 59, 60), now);
        assert!(rb.try_acquire(Bucket::Logs, now).is_ok());
    }

    /// The window ceiling: with limit 60 and share 0.5 we take 30 and then wait for the reset,
    /// whatever the pacer would allow.
    #[tokio::test(start_paused = true)]
    async fn never_more_than_share_per_window() {
        let rb = RateBudget::new(0.5);
        let start = Instant::now();
        rb.acquire(Bucket::Apps, Class::Retry, &CancellationToken::new())
            .await
            .unwrap();
        rb.observe(Bucket::Apps, headers(60, 59, 60), Instant::now());
        let mut sent_in_first_window = 1;
        loop {
            rb.acquire(Bucket::Apps, Class::Retry, &CancellationToken::new())
                .await
                .unwrap();
            let now = Instant::now();
            if now >= start + Duration::from_secs(60) {
                break;
            }
            sent_in_first_window += 1;
            // We are the only client: Okta's remaining mirrors our use.
            rb.observe(
                Bucket::Apps,
                headers(60, 60 - sent_in_first_window, 60 - (now - start).as_secs()),
                now,
            );
        }
        assert_eq!(sent_in_first_window, 30);
    }

    /// Other integrations used the bucket: we stop where the reserve for them begins.
    #[tokio::test(start_paused = true)]
    async fn leaves_reserve_for_the_org() {
        let rb = RateBudget::new(0.5);
        let now = Instant::now();
        rb.try_acquire(Bucket::Logs, now).unwrap();
        // Someone else already took 25 of 60: remaining 34 after our first.
        rb.observe(Bucket::Logs, headers(60, 34, 50), now);
        let mut ok = 0;
        let mut t = now;
        for _ in 0..100 {
            match rb.try_acquire(Bucket::Logs, t) {
                Ok(()) => ok += 1,
                Err(w) if w > Duration::from_secs(5) => break,
                Err(w) => t += w,
            }
        }
        // 34 - 30 (the reserve) = 4 more.
        assert_eq!(ok, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_blocks_until_reset() {
        let rb = RateBudget::new(0.5);
        let now = Instant::now();
        rb.try_acquire(Bucket::Logs, now).unwrap();
        rb.on_rate_limited(Bucket::Logs, headers(60, 0, 20), now);
        let wait = rb.try_acquire(Bucket::Logs, now).unwrap_err();
        assert!(
            wait >= Duration::from_secs(20) && wait <= Duration::from_secs(22),
            "{wait:?}"
        );
        let later = now + wait;
        assert!(rb.try_acquire(Bucket::Logs, later).is_ok());
    }

    /// Okta's concurrency 429 reports the in-flight ceiling (e.g. 75) in X-Rate-Limit-Limit:
    /// it must not replace the bucket's per-minute limit.
    #[tokio::test(start_paused = true)]
    async fn concurrency_429_keeps_the_known_limit() {
        let rb = RateBudget::new(0.5);
        let now = Instant::now();
        rb.try_acquire(Bucket::Logs, now).unwrap();
        rb.observe(Bucket::Logs, headers(60, 59, 50), now);
        rb.try_acquire(Bucket::Logs, now).unwrap();
        rb.on_rate_limited(Bucket::Logs, headers(75, 0, 1), now);
        let snap = rb.snapshot();
        assert_eq!(snap[0].limit, Some(60));
        assert_eq!(snap[0].budget, 30);
        let wait = rb.try_acquire(Bucket::Logs, now).unwrap_err();
        assert!(wait <= Duration::from_secs(3), "{wait:?}");
    }

    /// A bucket whose responses never carry `X-Rate-Limit-*` must not stall for good once
    /// the assumed budget is spent: the count has to start over after a window.
    #[tokio::test(start_paused = true)]
    async fn no_rate_limit_headers_does_not_stall_forever() {
        let rb = RateBudget::new(0.5);
        let budget = budget_for(ASSUMED_LIMIT, 0.5);
        let start = Instant::now();
        rb.try_acquire(Bucket::Other, start).unwrap();
        rb.observe(Bucket::Other, None, start);
        let mut ok = 1;
        while Instant::now() < start + Duration::from_secs(180) {
            match rb.try_acquire(Bucket::Other, Instant::now()) {
                Ok(()) => ok += 1,
                Err(w) => tokio::time::sleep(w).await,
            }
        }
        assert!(ok > budget, "stalled after {ok} requests");
        assert!(ok <= 3 * budget, "{ok}");
    }

    /// A 429 that arrives after our view of the window ended (e.g. the last request of a
    /// window): once its block is over, the bucket must be usable again.
    #[tokio::test(start_paused = true)]
    async fn a_429_after_the_window_rolled_over_does_not_stall_forever() {
        let rb = RateBudget::new(0.5);
        let t0 = Instant::now();
        rb.try_acquire(Bucket::Logs, t0).unwrap();
        rb.observe(Bucket::Logs, headers(60, 59, 10), t0);
        // Our window ends at t0 + 10 s; a request goes out just after.
        let t1 = t0 + Duration::from_secs(11);
        rb.try_acquire(Bucket::Logs, t1).unwrap();
        // ...and comes back 429 (other integrations spent the new window), reset in 30 s.
        rb.on_rate_limited(Bucket::Logs, headers(60, 0, 30), t1);
        let mut t = t1;
        let mut waited = Duration::ZERO;
        loop {
            match rb.try_acquire(Bucket::Logs, t) {
                Ok(()) => break,
                Err(w) => {
                    t += w;
                    waited += w;
                    assert!(
                        waited < Duration::from_secs(300),
                        "still blocked after {waited:?}"
                    );
                }
            }
        }
        assert!(waited >= Duration::from_secs(30), "{waited:?}");
    }

    /// Two requests in flight across Okta's reset: the answer from the new window comes first,
    /// the late one from the old window must not make us wait out the whole new window.
    #[tokio::test(start_paused = true)]
    async fn a_late_answer_from_the_previous_window_is_ignored() {
        let rb = RateBudget::new(0.5);
        let t0 = Instant::now();
        rb.try_acquire(Bucket::Logs, t0).unwrap();
        rb.observe(Bucket::Logs, headers(60, 40, 5), t0);
        let t1 = t0 + Duration::from_secs(4);
        rb.try_acquire(Bucket::Logs, t1).unwrap();
        rb.try_acquire(Bucket::Logs, t1).unwrap();
        // Okta resets at t0 + 5 s; one request lands in the new window and answers first.
        let t2 = t0 + Duration::from_secs(6);
        rb.observe(Bucket::Logs, headers(60, 59, 59), t2);
        // The other was counted in the old window, which others had nearly used up.
        rb.observe(Bucket::Logs, headers(60, 30, 0), t2);
        let wait = rb.try_acquire(Bucket::Logs, t2).err();
        assert!(
            wait.is_none_or(|w| w < Duration::from_secs(5)),
            "waits {wait:?} on a stale remaining"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_spreads_requests() {
        let rb = RateBudget::new(1.0);
        let now = Instant::now();
        rb.try_acquire(Bucket::Users, now).unwrap();
        rb.observe(Bucket::Users, headers(60, 59, 60), now);
        // burst of 60/6 = 10, then one per second.
        let mut ok = 0;
        while rb.try_acquire(Bucket::Users, now).is_ok() {
            ok += 1;
        }
        assert_eq!(ok, 10);
        let wait = rb.try_acquire(Bucket::Users, now).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
    }
}
