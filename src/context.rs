//! The cloneable handle every component of the daemon and every command shares: validated
//! config, the state store, the Okta client, metrics, health and the clock.

use crate::clock::Clock;
use crate::config::{Config, OktaAuth};
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
    opts.max_in_flight = config.okta.max_in_flight;
    opts.request_timeout = config.okta.request_timeout;
    opts.keep_alive = !clock.is_virtual();
    opts.clock = clock;
    opts.metrics = metrics;
    opts
}

impl Context {
    /// Opens the store and builds the Okta client; makes no network call.
    pub fn new(config: Config, clock: Clock) -> anyhow::Result<Context> {
        let metrics = Metrics::new();
        crate::telemetry::describe_metrics(&metrics);
        let store = Store::open(&config.state.path)
            .with_context(|| format!("opening the state store {}", config.state.path.display()))?;
        let okta = OktaClient::new(client_options(&config, clock, metrics.clone()))
            .context("building the Okta client")?;
        Ok(Context {
            config: Arc::new(config),
            store,
            okta,
            health: Health::new(clock),
            metrics,
            clock,
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
