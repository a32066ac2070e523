//! The listener: accepts connections on one port, runs every request through the fault switches,
//! the request log, CORS and `X-Request-Id` decoration, and the st2 or control router. A restart
//! closes the listener and every open connection and binds the same port again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{HeaderName, HeaderValue, ORIGIN, RETRY_AFTER};
use axum::http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::RequestRecord;
use crate::api::{self, Control, fault_response};
use crate::faults::Verdict;
use crate::state::Shared;
use crate::util::uuid4;

/// The connection was dropped on purpose by a fault switch.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the emulator's drop fault switch")]
pub(crate) struct Dropped;

struct Routers {
    st2: Router,
    control: Router,
}

/// One emulator's network side.
pub(crate) struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    routers: Mutex<Option<Arc<Routers>>>,
    /// Bumped to close the listener and every connection of the previous generation.
    generation: watch::Sender<u64>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Bind `listen` and start serving.
    pub async fn start(shared: Arc<Shared>, listen: SocketAddr) -> std::io::Result<Arc<Server>> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let server = Arc::new(Server {
            shared: shared.clone(),
            addr,
            routers: Mutex::new(None),
            generation: watch::channel(0).0,
            accept: Mutex::new(None),
        });
        let weak = Arc::downgrade(&server);
        let restart: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            if let Some(server) = weak.upgrade() {
                tokio::spawn(async move {
                    // Let the control route's 204 leave before its connection is closed.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if let Err(e) = server.restart().await {
                        tracing::error!(error = %e, "emulator restart failed to re-bind its port");
                    }
                });
            }
        });
        *lock(&server.routers) = Some(Arc::new(Routers {
            st2: api::st2_router(shared.clone()),
            control: api::control_router(shared, Control { restart }),
        }));
        server.serve(listener);
        Ok(server)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(self: &Arc<Self>, listener: TcpListener) {
        let routers = lock(&self.routers)
            .clone()
            .expect("routers set before serving");
        let shared = self.shared.clone();
        let mut kill = self.generation.subscribe();
        let generation = *kill.borrow();
        let handle = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = kill.changed() => return,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let routers = routers.clone();
                let shared = shared.clone();
                let mut conn_kill = kill.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(shared.clone(), routers.clone(), req)
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    // st2 (webob behind nginx) writes `Content-Type`, `X-Total-Count`...; match it.
                    builder.http1().title_case_headers(true);
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_kill.wait_for(|g| *g != generation) => {}
                    }
                });
            }
        });
        *lock(&self.accept) = Some(handle);
    }

    fn close(&self) -> Option<JoinHandle<()>> {
        self.generation.send_modify(|g| *g += 1);
        lock(&self.accept).take()
    }

    /// Close the listener and all connections, then bind the same address again.
    pub async fn restart(self: &Arc<Self>) -> std::io::Result<()> {
        if let Some(old) = self.close() {
            let _ = old.await;
        }
        let mut backoff = Duration::from_millis(10);
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if attempts < 20 => {
                    attempts += 1;
                    tracing::debug!(error = %e, attempts, "re-bind failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        };
        self.serve(listener);
        Ok(())
    }

    /// Stop serving and stop every background task, waiting for the listener to close.
    pub async fn shutdown(&self) {
        if let Some(old) = self.stop() {
            let _ = old.await;
        }
    }

    /// Stop serving and every background task without waiting (also used on drop).
    pub fn stop(&self) -> Option<JoinHandle<()>> {
        self.shared.stop();
        // Drop the routers so the control route's restart closure cannot revive the server.
        lock(&self.routers).take();
        self.close()
    }
}

fn decorate(resp: &mut Response<Body>, request_id: &str, origin: Option<&str>) {
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("access-control-allow-origin", origin.unwrap_or("*"));
    set(
        "access-control-allow-methods",
        "GET,POST,PUT,DELETE,OPTIONS",
    );
    set(
        "access-control-allow-headers",
        "Content-Type,Authorization,X-Auth-Token,St2-Api-Key,X-Request-ID",
    );
    set("access-control-allow-credentials", "true");
    set(
        "access-control-expose-headers",
        "Content-Type,X-Limit,X-Total-Count,X-Request-ID",
    );
    set("x-request-id", request_id);
}

/// nginx/st2 path handling: trailing slashes dropped, legacy stream paths rewritten.
fn normalize(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let mut new = path.trim_end_matches('/').to_string();
    if new.is_empty() {
        new.push('/');
    }
    if new == "/api/stream" || new == "/api/v1/stream" {
        new = "/stream/v1/stream".into();
    }
    if new == path {
        return None;
    }
    let pq = match uri.query() {
        Some(q) => format!("{new}?{q}"),
        None => new,
    };
    pq.parse().ok()
}

async fn handle(
    shared: Arc<Shared>,
    routers: Arc<Routers>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Dropped> {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(uuid4);
    let origin = req
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (mut parts, body) = req.into_parts();
    let req_body = Body::new(body);
    if parts.uri.path() == "/metrics" {
        return Ok(crate::metrics::response(&shared));
    }
    if parts.uri.path().starts_with("/_emulator") {
        let resp = routers
            .control
            .clone()
            .oneshot(Request::from_parts(parts, req_body))
            .await;
        let mut resp = resp.unwrap_or_else(|e: Infallible| match e {});
        decorate(&mut resp, &request_id, origin.as_deref());
        return Ok(resp);
    }
    let index = shared.log_request(RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        status: 0,
    });
    let (delay, verdict) = shared.faults.decide(
        parts.method.as_str(),
        parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str()),
    );
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = match verdict {
        Verdict::Drop => return Err(Dropped),
        Verdict::Fail(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = fault_response(status, status.canonical_reason().unwrap_or("Error"));
            if code == 429 {
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            r
        }
        Verdict::Pass | Verdict::LoseAnswer if parts.method == Method::OPTIONS => {
            Response::new(Body::empty())
        }
        Verdict::Pass | Verdict::LoseAnswer => {
            if let Some(uri) = normalize(&parts.uri) {
                parts.uri = uri;
            }
            let resp = routers
                .st2
                .clone()
                .oneshot(Request::from_parts(parts, req_body))
                .await;
            resp.unwrap_or_else(|e: Infallible| match e {})
        }
    };
    if verdict == Verdict::LoseAnswer {
        // Served and logged as dropped (status 0): the effect happened, the answer is lost.
        return Err(Dropped);
    }
    shared.finish_request(index, resp.status().as_u16());
    decorate(&mut resp, &request_id, origin.as_deref());
    Ok(resp)
}
