//! The listener's own limits, below the router: how many connections are open at once
//! (`server.max_connections`), how long a connection may take to send a request's head
//! (`server.header_read_timeout`) and how long it may sit with no request in flight
//! (`server.idle_timeout`). Plain HTTP and TLS go through the same accept loop, so both
//! listeners hold to the same limits; a failed `accept` (out of file descriptors) pauses with
//! the shared backoff instead of spinning.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

use super::origin::Accepted;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::tls::ListenerConfig;

/// A TLS handshake that takes longer is dropped, so a silent peer cannot hold a task.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed connection keeps reading (and dropping) what the client still sends.
const LINGER: Duration = Duration::from_secs(2);

/// Default of `server.header_read_timeout`.
pub(crate) fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Default of `server.idle_timeout`.
pub(crate) fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Default of `server.max_connections`: well under the usual 1024 open files, leaving room
/// for st2 connections, the audit log and the sinks.
pub(crate) fn default_max_connections() -> usize {
    512
}

/// Pauses after a failed `accept` (e.g. out of file descriptors): the shared backoff from
/// 10 ms to 1 s, restarted by the next accepted connection.
fn accept_backoff() -> st2_basics::Backoff {
    st2_basics::Backoff::new(st2_basics::BackoffConfig::new(
        Duration::from_millis(10),
        Duration::from_secs(1),
    ))
}

/// What every connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's head must arrive within this, from the connection's start or the end of
    /// the previous answer.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; the next waits in the listen backlog.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The limits `server` configures.
    pub fn new(server: &ListenerConfig) -> Self {
        Self {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            max_connections: server.max_connections,
        }
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::new(&ListenerConfig::default())
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) under `limits` until `shutdown`
/// resolves, then lets open connections finish (the caller bounds that:
/// `super::Drain::bounded`).
pub async fn serve_connections(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = accept_backoff();
    let mut full = false;
    tokio::pin!(shutdown);
    loop {
        // A slot is taken before accepting: at the cap, new connections wait in the kernel's
        // backlog (costing no file descriptor) rather than being accepted and dropped.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !full {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection cap reached (server.max_connections = {}); new connections wait in the listen backlog until one closes",
                        limits.max_connections
                    );
                }
                full = true;
                tokio::select! {
                    _ = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
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
        if full && slots.available_permits() > 0 {
            full = false;
            tracing::info!("below the connection cap again");
        }
        while connections.try_join_next().is_some() {}
        // The concrete address this connection reached, for `statusUrl` (`super::origin`).
        let accepted = tcp.local_addr().ok().map(|local| Accepted {
            local,
            tls: tls.is_some(),
        });
        let router = router.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => serve_one(tcp, router, accepted, limits, stop).await,
                Some(acceptor) => {
                    let handshake = HANDSHAKE_TIMEOUT.min(limits.header_read_timeout);
                    match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => serve_one(tls, router, accepted, limits, stop).await,
                        // A refused client certificate or a failed handshake ends here.
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake refused"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection, until the client closes it, it breaks a limit, or the server stops.
async fn serve_one<I>(
    io: I,
    router: Router,
    accepted: Option<Accepted>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Arc::new(Mutex::new(io));
    let activity = Arc::new(Activity::default());
    {
        let service = TowerToHyperService::new(Tracked {
            router,
            accepted,
            activity: activity.clone(),
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(Lent(io.clone())), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            () = activity.idle(limits) => {
                tracing::debug!("closing a connection with no request in flight (server.header_read_timeout / server.idle_timeout)");
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(LINGER, conn).await;
            }
        }
    }
    // An upgraded connection (WebSocket) still holds its stream and closes it itself.
    if let Ok(io) = Arc::try_unwrap(io) {
        close(io.into_inner().unwrap_or_else(PoisonError::into_inner)).await;
    }
}

/// Requests in flight on one connection, and when the last one ended.
#[derive(Default)]
struct Activity {
    state: Mutex<Busy>,
    changed: Notify,
}

#[derive(Default)]
struct Busy {
    in_flight: usize,
    /// When the last request ended; `None` before the first began.
    last_end: Option<Instant>,
    started: Option<Instant>,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Busy> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request in flight until the guard (held by its answer's body) is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.lock().in_flight += 1;
        self.changed.notify_waiters();
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in flight for too long: the header
    /// timeout before its first request (also the bound on an HTTP/2 preface), the idle
    /// timeout after its last. A request in flight never ends the connection here.
    async fn idle(&self, limits: ConnectionLimits) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let mut busy = self.lock();
                let started = *busy.started.get_or_insert_with(Instant::now);
                match (busy.in_flight, busy.last_end) {
                    (0, None) => Some(started + limits.header_read_timeout),
                    (0, Some(end)) => Some(end + limits.idle_timeout),
                    _ => None,
                }
            };
            match deadline {
                None => notified.await,
                Some(at) => tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(at) => return,
                },
            }
        }
    }
}

/// One request in flight on a connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut busy = self.0.lock();
            busy.in_flight -= 1;
            busy.last_end = Some(Instant::now());
        }
        self.0.changed.notify_waiters();
    }
}

/// The router, counting each request in flight on its connection until its answer's body
/// has been sent (a stream holds the connection busy for as long as it runs).
#[derive(Clone)]
struct Tracked {
    router: Router,
    /// Where the connection was accepted, put on each of its requests.
    accepted: Option<Accepted>,
    activity: Arc<Activity>,
}

impl<B> tower::Service<axum::http::Request<B>> for Tracked
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        use tower::ServiceExt;
        if let Some(accepted) = self.accepted {
            request.extensions_mut().insert(accepted);
        }
        let in_flight = self.activity.begin();
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request.map(Body::new)).await?;
            Ok(response.map(|body| {
                Body::new(Held {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// An answer's body, holding its request in flight until it ends or is dropped.
struct Held {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The stream lent to hyper, so the connection task gets it back to close it well.
struct Lent<I>(Arc<Mutex<I>>);

impl<I: Unpin> Lent<I> {
    fn with<R>(&self, f: impl FnOnce(Pin<&mut I>) -> R) -> R {
        let mut io = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        f(Pin::new(&mut *io))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Lent<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.with(|io| io.poll_read(cx, buf))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Lent<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.with(|io| io.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|io| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.with(|io| io.poll_shutdown(cx))
    }
}

/// Ends a connection so that an answer sent before the request body was read (401, 413)
/// still reaches the client: shutdown (TLS close_notify, TCP FIN), then the body's unread
/// rest is read and dropped for up to [`LINGER`]. Closing a socket with unread data resets
/// the connection, and the reset can overtake the answer in the client's receive buffer.
async fn close<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(LINGER, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 16 * 1024];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 4,
    };

    /// Whether `activity.idle` resolves within `within` of paused time.
    async fn idles_within(activity: &Arc<Activity>, within: Duration) -> bool {
        tokio::time::timeout(within, activity.idle(LIMITS))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_sending_no_request_ends_at_the_header_timeout() {
        let activity = Arc::new(Activity::default());
        let started = Instant::now();
        activity.idle(LIMITS).await;
        assert_eq!(started.elapsed(), LIMITS.header_read_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_holds_the_connection_however_long_it_takes() {
        let activity = Arc::new(Activity::default());
        let request = activity.begin();
        assert!(!idles_within(&activity, Duration::from_secs(3600)).await);
        drop(request);
        let ended = Instant::now();
        activity.idle(LIMITS).await;
        assert_eq!(ended.elapsed(), LIMITS.idle_timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn each_new_request_restarts_the_idle_clock() {
        let activity = Arc::new(Activity::default());
        drop(activity.begin());
        tokio::time::sleep(LIMITS.idle_timeout - Duration::from_secs(1)).await;
        drop(activity.begin());
        assert!(!idles_within(&activity, LIMITS.idle_timeout - Duration::from_secs(1)).await);
        assert!(idles_within(&activity, Duration::from_secs(2)).await);
    }
}
