//! Everything that talks to Okta: the HTTP client, its credentials, the shared rate-limit
//! budget, typed errors and the resource shapes the daemon reads.

pub mod auth;
pub mod client;
pub mod dpop;
pub mod error;
pub mod ratelimit;
pub mod types;

pub use auth::Credentials;
pub use client::{ClientOptions, OktaClient, Page};
pub use error::OktaError;
pub use ratelimit::{Bucket, Class, RateBudget};
