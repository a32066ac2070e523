//! Shutdown in two steps: readiness answers "draining" as soon as the signal arrives, so load
//! balancers stop sending work, then the requests in flight get up to a grace period to finish.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Whether shutdown has begun, and the API requests still being answered.
#[derive(Clone, Default)]
pub struct Drain(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Set once, at the signal: the moment the grace period ends.
    deadline: OnceLock<Instant>,
    in_flight: AtomicUsize,
    changed: Notify,
}

/// One request in flight; dropping it (answered or abandoned) counts it out.
struct Held(Drain);

impl Drop for Held {
    fn drop(&mut self) {
        if self.0.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.changed.notify_waiters();
        }
    }
}

impl Drain {
    /// True from the shutdown signal on.
    pub fn is_draining(&self) -> bool {
        self.0.deadline.get().is_some()
    }

    /// API requests being answered now.
    fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Middleware counting a request in flight until its handler answers.
    pub async fn track(State(drain): State<Drain>, request: Request, next: Next) -> Response {
        drain.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let _held = Held(drain);
        next.run(request).await
    }

    /// Resolves when the listener may stop: `signal` has fired and then either no request is
    /// in flight or `grace` has passed.
    pub async fn after(self, signal: impl Future<Output = ()>, grace: Duration) {
        signal.await;
        let deadline = *self.0.deadline.get_or_init(|| Instant::now() + grace);
        self.0.changed.notify_waiters();
        tracing::info!(
            in_flight = self.in_flight(),
            "draining: /readyz answers 503; open requests get {} ms",
            grace.as_millis()
        );
        let _ = tokio::time::timeout_at(deadline, self.until(|d| d.in_flight() == 0)).await;
    }

    /// Runs `serving` until it ends by itself or the grace period after the signal is over;
    /// connections still open then (a stream, a slow client) are cut.
    pub async fn bounded(
        &self,
        serving: impl Future<Output = std::io::Result<()>>,
    ) -> std::io::Result<()> {
        let expired = async {
            self.until(Drain::is_draining).await;
            if let Some(deadline) = self.0.deadline.get() {
                tokio::time::sleep_until(*deadline).await;
            }
        };
        tokio::select! {
            served = serving => served,
            () = expired => {
                tracing::warn!("shutdown grace period over; closing the connections still open");
                Ok(())
            }
        }
    }

    /// Waits until `holds` is true, re-checking at every change.
    async fn until(&self, holds: impl Fn(&Drain) -> bool) {
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if holds(self) {
                return;
            }
            changed.await;
        }
    }
}
