//! The optional TLS listener, with mutual TLS when a client CA is configured (`server.tls`).
//!
//! Client certificates authenticate the calling Portarium deployment at the transport; the
//! bearer token still names the tenant on every request.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A TLS handshake that takes longer is dropped, so a silent peer cannot hold a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed connection keeps reading (and dropping) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);
/// Pauses after a failed `accept` (e.g. out of file descriptors): the shared backoff from
/// 10 ms to 1 s, restarted by the next accepted connection.
fn accept_backoff() -> st2_basics::Backoff {
    st2_basics::Backoff::new(st2_basics::BackoffConfig::new(
        Duration::from_millis(10),
        Duration::from_secs(1),
    ))
}

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
    /// How long requests in flight at SIGTERM get to finish before the listener closes.
    #[serde(default = "default_shutdown_grace", with = "st2_basics::duration")]
    pub shutdown_grace: Duration,
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
            shutdown_grace: default_shutdown_grace(),
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

/// Serves `router` over TLS on `listener` until `shutdown` resolves, then lets open
/// connections finish (the caller bounds that: `super::Drain::bounded`).
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    acceptor: TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = accept_backoff();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => { backoff.reset(); tcp }
                Err(e) => {
                    let pause = backoff.next_delay();
                    tracing::warn!(error = %e, "accept failed; pausing {pause:?}");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                // A refused client certificate or a failed handshake ends here.
                Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake refused"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            };
            let tls = Arc::new(Mutex::new(tls));
            {
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder
                    .serve_connection_with_upgrades(TokioIo::new(Lent(tls.clone())), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
            // An upgraded connection (WebSocket) still holds its stream and closes it itself.
            if let Ok(tls) = Arc::try_unwrap(tls) {
                close(tls.into_inner().unwrap_or_else(PoisonError::into_inner)).await;
            }
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

type Tls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// The TLS stream lent to hyper, so the connection task gets it back to close it well.
struct Lent(Arc<Mutex<Tls>>);

impl Lent {
    fn with<R>(&self, f: impl FnOnce(Pin<&mut Tls>) -> R) -> R {
        let mut tls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(Pin::new(&mut *tls))
    }
}

impl AsyncRead for Lent {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.with(|tls| tls.poll_read(cx, buf))
    }
}

impl AsyncWrite for Lent {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.with(|tls| tls.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|tls| tls.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|tls| tls.poll_shutdown(cx))
    }
}

/// Ends a connection so that an answer sent before the request body was read (401, 413)
/// still reaches the client: TLS close_notify, then the body's unread rest is read and dropped
/// for up to [`LINGER`]. Closing a socket with unread data resets the connection, and the
/// reset can overtake the answer in the client's receive buffer.
async fn close(mut tls: Tls) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(LINGER, async {
        let _ = tls.shutdown().await;
        let mut sink = [0u8; 16 * 1024];
        while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
