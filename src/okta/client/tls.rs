//! TLS for the Okta API: rustls with the ring provider and the host's (or Mozilla's) roots.

use super::*;

/// TLS for the Okta API on rustls with the ring provider (reqwest's own default would be
/// aws-lc, a C build this project avoids): the host's CA store, or Mozilla's bundled roots when
/// the host has none, as the Slack channel does.
pub(crate) fn tls_config() -> Result<rustls::ClientConfig, String> {
    use hyper_rustls::ConfigBuilderExt as _;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("configuring TLS for Okta: {e}"))
    };
    Ok(match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(err) => {
            tracing::warn!(error = %err, "no usable system CA certificates; using bundled Mozilla roots for Okta");
            builder()?.with_webpki_roots().with_no_client_auth()
        }
    })
}
