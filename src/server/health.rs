//! `/healthz` (the process answers) and `/readyz` (the adapter can serve: ready unless it is
//! shutting down; st2's own health is reported in the body and as `portarium.st2.up`, since a
//! replica taken out for an st2 outage would take every replica out at once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::drain::Drain;

/// A readiness check: `Ok` when the dependency is usable, `Err(reason)` otherwise.
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The last probe's answer and when it was taken.
type Cached = Option<(Instant, Result<(), String>)>;

/// Readiness with a short cache, so load-balancer polling cannot turn into load on st2.
#[derive(Clone)]
pub struct Readiness {
    probe: Probe,
    timeout: Duration,
    cache_for: Duration,
    last: Arc<Mutex<Cached>>,
    drain: Drain,
}

impl Readiness {
    /// Wraps `probe`; each check is bounded by `timeout` and reused for `cache_for`.
    pub fn new(probe: Probe, timeout: Duration, cache_for: Duration) -> Self {
        Self {
            probe,
            timeout,
            cache_for,
            last: Arc::new(Mutex::new(None)),
            drain: Drain::default(),
        }
    }

    /// The shutdown state `/readyz` reports; `serve` begins it at the signal.
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// Readiness of `client`'s st2: reachable and accepting its credentials.
    pub fn of_st2(client: &st2_client::St2Client, timeout: Duration, cache_for: Duration) -> Self {
        let client = client.clone();
        let probe: Probe = Arc::new(move || {
            let client = client.clone();
            Box::pin(async move { client.ping().await.map_err(|e| e.to_string()) })
        });
        Self::new(probe, timeout, cache_for)
    }

    /// Runs the probe unless a recent answer is cached; concurrent callers share one run.
    pub async fn check(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < self.cache_for
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(self.timeout, (self.probe)()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "st2 did not answer within {} ms",
                self.timeout.as_millis()
            )),
        };
        crate::telemetry::own::st2_up(result.is_ok());
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// Always 200 while the process can answer.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 503 "draining" once shutdown has begun, else 200 with st2's health beside: with st2 down
/// the adapter still answers every dispatch, with the errorKind that says so.
pub async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<Value>) {
    if readiness.drain.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    let st2 = match readiness.check().await {
        Ok(()) => json!({"reachable": true}),
        Err(error) => json!({"reachable": false, "error": error}),
    };
    (StatusCode::OK, Json(json!({"status": "ready", "st2": st2})))
}
