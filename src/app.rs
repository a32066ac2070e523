//! The whole adapter for one configuration: the st2 client, tenants with governance, the
//! lifecycle-event pipeline, inbound events, and the router serving all of it. `serve`, the
//! demo and the tests build it the same way.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::governance::Governance;
use crate::events::inbound::{TriggerTypeError, register_trigger_types};
use crate::events::lifecycle::from_broadcast;
use crate::events::{EventsError, Sinks, spawn_lifecycle, start_sinks};
use crate::server::{DispatchState, Drain, Readiness, events};
use st2_client::{St2Client, St2Error};

/// What keeps the adapter from starting, by the part of the configuration at fault.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The st2 section cannot make a client.
    #[error("st2: {0}")]
    St2(#[from] St2Error),
    /// The governance section (packs policy, audit log) cannot be applied.
    #[error("governance: {0}")]
    Governance(String),
    /// An event sink cannot start.
    #[error("events: {0}")]
    Events(#[from] EventsError),
    /// A trigger type an inbound event class fires is missing and could not be created.
    #[error("events.inbound: {0}")]
    TriggerType(#[from] TriggerTypeError),
}

/// The adapter, built and running its background work; serve [`App::router`].
pub struct App {
    /// Every route the adapter serves.
    pub router: Router,
    /// The st2 client with the shared credentials.
    pub client: St2Client,
    /// Tenants and their dispatchers.
    pub dispatch: DispatchState,
    /// Shutdown state shared with `/readyz`.
    pub drain: Drain,
    sinks: Option<Sinks>,
    sink_workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl App {
    /// Builds everything `config` asks for; `readiness_cache` is how long a `/readyz` answer
    /// is reused. Needs a Tokio runtime (the stream watchers and sinks start here).
    pub async fn build(config: &Config, readiness_cache: Duration) -> Result<Self, AppError> {
        let client = St2Client::from_config(&config.st2)?;
        let readiness = Readiness::of_st2(&client, config.st2.request_timeout, readiness_cache);
        let governance = Governance::from_config(&config.governance)
            .map_err(|e| AppError::Governance(e.to_string()))?;
        register_trigger_types(&client, &config.events.inbound.classes).await?;
        let dispatch = DispatchState::new(&config.st2, &config.tenants, &config.dispatch, &client)?
            .with_governance(&governance);
        let (sinks, sink_workers) = start_sinks(&config.events).await?;
        let mut background = Vec::new();
        // Every watcher sees every execution its credential may see, so two watchers can
        // report one execution: a single tracker over all of them dedupes per transition.
        // Without a sink nobody would receive its events, so it does not run.
        let watchers = dispatch.watchers();
        crate::telemetry::watch_streams(&watchers);
        if !watchers.is_empty() && !sinks.handles().is_empty() {
            let snapshots = futures_util::stream::select_all(
                watchers
                    .iter()
                    .map(|w| Box::pin(from_broadcast(w.updates()))),
            );
            let tracker = spawn_lifecycle(snapshots, &config.events, sinks.clone());
            background.push(tokio::spawn(async move {
                let _ = tracker.await;
            }));
        }
        let (events_state, consumer) = events::EventsState::start(&config.events, dispatch.clone());
        background.extend(consumer);
        let drain = readiness.drain().clone();
        let router = crate::server::router(
            readiness,
            dispatch.clone(),
            crate::server::Limits::new(&config.server, config.dispatch.max_body_bytes),
        )
        .merge(events::router(events_state));
        Ok(Self {
            router,
            client,
            dispatch,
            drain,
            sinks: Some(sinks),
            sink_workers,
            background,
        })
    }

    /// Serves the router on `listen` in a background task until the runtime ends (tests,
    /// the demo, benchmarks); answers the base URL, `http://ADDR`.
    pub async fn serve_in_background(&self, listen: SocketAddr) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(crate::server::serve(
            listener,
            self.router.clone(),
            std::future::pending(),
        ));
        Ok(base)
    }

    /// Stops background work and lets the sinks deliver what they still hold (up to `flush`).
    pub async fn shutdown(mut self, flush: Duration) {
        for task in &self.background {
            task.abort();
        }
        for w in self.dispatch.watchers() {
            w.shutdown();
        }
        drop(self.sinks.take());
        let workers = futures_util::future::join_all(self.sink_workers.drain(..));
        if tokio::time::timeout(flush, workers).await.is_err() {
            tracing::warn!(
                "event sinks did not deliver everything within {} ms; the rest is lost (docs/events.md)",
                flush.as_millis()
            );
        }
    }
}
