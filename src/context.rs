//! The cloneable handle every component of the daemon and every command shares: validated
//! config, the state store, the Okta client, metrics, health, the clock and (for a daemon) the
//! exclusive lock on the state. One constructor, [`Context::build`], serves start-up
//! ([`Context::new`]) and SIGHUP reload ([`Context::reload`]) alike.

use crate::clock::Clock;
use crate::config::{Config, OktaAuth};
use crate::daemon::lock::StateLock;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::okta::{ClientOptions, Credentials, OktaClient};
use crate::store::Store;
use anyhow::Context as _;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Context {
    pub config: Arc<Config>,
    pub store: Store,
    pub okta: OktaClient,
    pub metrics: Metrics,
    pub health: Health,
    pub clock: Clock,
    /// Held by `run` and the demo's daemon, never by short commands; shared by every
    /// generation of a reloaded daemon so the lock is never let go in between.
    pub state_lock: Option<Arc<StateLock>>,
}

/// Client options from the `[okta]` section.
pub fn client_options(config: &Config, clock: Clock, metrics: Metrics) -> ClientOptions {
    let credentials = match &config.okta.auth {
        OktaAuth::ApiToken(t) => Credentials::ApiToken(t.clone()),
        OktaAuth::OAuth(o) => Credentials::OAuth {
            client_id: o.client_id.clone(),
            private_key_pem: o.private_key_pem.clone(),
            key_id: o.key_id.clone(),
            scopes: o.scopes.clone(),
        },
    };
    let mut opts = ClientOptions::new(config.okta.org_url.clone(), credentials);
    opts.rate_limit_share = config.okta.rate_limit_share;
    opts.background_share = config.detect.scan_share;
    opts.max_in_flight = config.okta.max_in_flight;
    opts.request_timeout = config.okta.request_timeout;
    opts.keep_alive = !clock.is_virtual();
    opts.clock = clock;
    opts.metrics = metrics;
    opts
}

impl Context {
    /// Opens the store and builds the Okta client with fresh metrics and health; makes no
    /// network call.
    pub fn new(config: Config, clock: Clock) -> anyhow::Result<Context> {
        let metrics = Metrics::new();
        Self::build(config, clock, metrics, Health::new(clock), None)
    }

    /// The one constructor: opens the store named by `config` and builds its Okta client,
    /// reusing the given metrics, health record and lock.
    fn build(
        config: Config,
        clock: Clock,
        metrics: Metrics,
        health: Health,
        state_lock: Option<Arc<StateLock>>,
    ) -> anyhow::Result<Context> {
        let store = crate::cmd::open_store(&config.state.path)?;
        let okta = OktaClient::new(client_options(&config, clock, metrics.clone()))
            .context("building the Okta client")?;
        Ok(Context {
            config: Arc::new(config),
            store,
            okta,
            metrics,
            health,
            clock,
            state_lock,
        })
    }

    /// A context for a reloaded `config` that keeps this one's metrics registry, health record
    /// and state lock, so counters do not reset and `/healthz` keeps its history. A new
    /// `[state] path` needs its own lock, taken here: a reload that cannot get it is refused.
    pub fn reload(&self, config: Config) -> anyhow::Result<Context> {
        let lock = match &self.state_lock {
            Some(l) if config.state.path != self.config.state.path => {
                let new = StateLock::acquire(&config.state.path)?;
                tracing::info!(old = %l.path().display(), new = %new.path().display(), "state lock moved");
                Some(Arc::new(new))
            }
            other => other.clone(),
        };
        Self::build(
            config,
            self.clock,
            self.metrics.clone(),
            self.health.clone(),
            lock,
        )
    }

    /// Attaches the exclusive state lock (taken by the caller before the store was opened, so
    /// that a refused second daemon never touches the database).
    pub fn with_lock(mut self, lock: StateLock) -> Context {
        self.state_lock = Some(Arc::new(lock));
        self
    }

    /// Whether this process holds the state's exclusive lock: then no other daemon is running
    /// on this store, and anything a previous holder left claimed is safe to release.
    pub fn holds_exclusive_lock(&self) -> bool {
        self.state_lock.is_some()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
