//! The optional TLS listener, with mutual TLS when a client CA is configured (`server.tls`).
//!
//! Client certificates authenticate the calling Portarium deployment at the transport; the
//! bearer token still names the tenant on every request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// `server` in the config: the adapter's own listener and its request limits
/// (`super::limits`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Serve HTTPS instead of HTTP.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Deadline of a non-streaming request; default `dispatch.max_wait_ms` + 30 s.
    #[serde(default, with = "st2_basics::duration::option")]
    pub request_timeout: Option<Duration>,
    /// Streaming responses open at once; one more gets 503.
    #[serde(default = "super::limits::default_max_streams")]
    pub max_streams: usize,
    /// A request's head must arrive within this, from the connection's start or the end of
    /// the previous answer (so it also ends idle HTTP/1 keep-alive connections).
    #[serde(
        default = "super::conn::default_header_read_timeout",
        with = "st2_basics::duration"
    )]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    #[serde(
        default = "super::conn::default_idle_timeout",
        with = "st2_basics::duration"
    )]
    pub idle_timeout: Duration,
    /// Connections open at once, streams included; the next waits in the listen backlog.
    #[serde(default = "super::conn::default_max_connections")]
    pub max_connections: usize,
    /// How long requests in flight at SIGTERM get to finish before the listener closes.
    #[serde(default = "default_shutdown_grace", with = "st2_basics::duration")]
    pub shutdown_grace: Duration,
    /// The base URL callers reach the adapter at (`statusUrl`); default: the address each
    /// connection was accepted on.
    #[serde(default)]
    pub public_base_url: Option<url::Url>,
    /// Build `statusUrl` from the request's `Host` and `X-Forwarded-Proto`: only behind a
    /// proxy that sets them, since otherwise the caller writes them.
    #[serde(default)]
    pub trust_forwarded_headers: bool,
}

/// Inside Kubernetes' default 30 s termination grace, with room for a preStop pause.
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            tls: None,
            request_timeout: None,
            max_streams: super::limits::default_max_streams(),
            header_read_timeout: super::conn::default_header_read_timeout(),
            idle_timeout: super::conn::default_idle_timeout(),
            max_connections: super::conn::default_max_connections(),
            shutdown_grace: default_shutdown_grace(),
            public_base_url: None,
            trust_forwarded_headers: false,
        }
    }
}

/// Certificate and key of the listener, and the CA client certificates must chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf.
    pub key_file: PathBuf,
    /// PEM CA(s); when set, every client must present a certificate they signed (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// Why the TLS listener cannot be set up.
#[derive(Debug, thiserror::Error)]
#[error("server.tls.{field}: {reason}")]
pub struct ListenerTlsError {
    /// The config field at fault.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

impl ListenerTls {
    /// The acceptor for these files; every problem names its field.
    pub fn acceptor(&self) -> Result<TlsAcceptor, ListenerTlsError> {
        let certs = read_certs(&self.cert_file, "cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| ListenerTlsError {
            field: "key_file",
            reason: format!("{}: {e}; give a PEM private key", self.key_file.display()),
        })?;
        let builder = ServerConfig::builder();
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(path, "client_ca_file")? {
                    roots.add(cert).map_err(|e| ListenerTlsError {
                        field: "client_ca_file",
                        reason: format!("{}: {e}", path.display()),
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| ListenerTlsError {
                        field: "client_ca_file",
                        reason: e.to_string(),
                    })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| ListenerTlsError {
                field: "key_file",
                reason: format!("does not match cert_file: {e}"),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn read_certs(
    path: &Path,
    field: &'static str,
) -> Result<Vec<CertificateDer<'static>>, ListenerTlsError> {
    let bad = |reason: String| ListenerTlsError {
        field,
        reason: format!("{}: {reason}", path.display()),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves, under the default
/// connection limits (`super::conn::serve_connections` takes configured ones).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = super::conn::ConnectionLimits::default();
    super::conn::serve_connections(listener, router, Some(acceptor), limits, shutdown).await
}
