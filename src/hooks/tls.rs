//! TLS for the hook receiver (rustls with the ring provider, through tokio-rustls), as an
//! `axum::serve::Listener`: a background task accepts TCP connections and runs each handshake
//! in its own task with a deadline, so one slow or hostile client never holds up the others;
//! only finished handshakes reach axum.

use anyhow::Context as _;
use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A handshake that takes longer than this is dropped (Okta's whole request has 3 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the certificate chain and key (PEM) into a server configuration.
pub fn server_config(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .with_context(|| format!("reading hooks.tls_cert_file {}", cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "hooks.tls_cert_file {} is not a PEM certificate chain",
                cert_file.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "hooks.tls_cert_file {} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
            cert_file.display()
        );
    }
    // The error of a key file never shows its content.
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        anyhow::anyhow!(
            "hooks.tls_key_file {} holds no usable PEM private key ({})",
            key_file.display(),
            match e {
                rustls::pki_types::pem::Error::Io(io) => io.to_string(),
                _ => "expected a PKCS#8, PKCS#1 or SEC1 key".to_string(),
            }
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("configuring TLS for the hook receiver")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the hook receiver's certificate and key do not match or are unsupported")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepted, handshaken TLS connections.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` until `shutdown`.
    pub fn new(
        tcp: TcpListener,
        cfg: rustls::ServerConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(cfg));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: pause instead of spinning.
                            tracing::warn!(error = %e, "hook receiver accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake with the hook receiver failed")
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake with the hook receiver timed out")
                        }
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The acceptor stopped (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
