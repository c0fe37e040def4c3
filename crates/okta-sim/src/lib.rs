//! okta-sim: fakes of the services okta-provwatch talks to, served over real HTTP/SMTP on
//! loopback, for integration tests, the demo and benchmarks. The Okta org lives in [`okta`]
//! (re-exported at the crate root).
pub mod okta;
pub use okta::*;
pub mod slack;
pub mod smtp;

/// Installs ring as the process's rustls crypto provider if none is installed yet.
///
/// reqwest in this workspace is built without a provider of its own (the daemon picks ring,
/// never aws-lc), and a client built before any provider is installed panics. Starting the
/// simulator installs it, so the simulator's own hook deliverer and every test client that
/// talks to it work whichever is built first.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
