//! The whole adapter for one configuration: the st2 client, tenants with governance, the
//! lifecycle-event pipeline, inbound events, and the router serving all of it. `serve`, the
//! demo and the tests build it the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::governance::Governance;
use crate::core::governance::audit::AuditLog;
use crate::events::inbound::{TriggerTypeError, register_trigger_types};
use crate::events::lifecycle::{Scrubbing, from_broadcast};
use crate::events::{EventsError, Reporter, Sinks, reporter, start_sinks};
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
    /// The audit log, whose promised outcomes shutdown waits for.
    audit: Option<Arc<AuditLog>>,
    reporter: Option<Reporter>,
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
        let reporter = (!watchers.is_empty() && !sinks.handles().is_empty()).then(|| {
            let snapshots = futures_util::stream::select_all(
                watchers
                    .iter()
                    .map(|w| Box::pin(from_broadcast(w.updates()))),
            );
            reporter::spawn(
                snapshots,
                &config.events,
                sinks.clone(),
                &client,
                Scrubbing::of(&governance),
            )
        });
        if let (Some(log), Some(audit)) = (&governance.audit, &config.governance.audit) {
            background.push(tokio::spawn(
                log.clone().anchor_every(audit.anchor_interval),
            ));
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
            audit: governance.audit.clone(),
            reporter,
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

    /// Lets dispatches whose callers left write their outcome records (for at most `grace`),
    /// stops background work and lets the sinks deliver what they still hold, for at most
    /// `grace` and no longer than that takes; then writes the last lifecycle checkpoint and
    /// releases the lease (see [`Reporter::shutdown`]).
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(audit) = &self.audit {
            let unwritten = audit.settle(grace).await;
            if unwritten > 0 {
                tracing::warn!(
                    unwritten,
                    "dispatches still running at shutdown have an `accepted` audit record and no \
                     outcome record; read their outcome in st2 (docs/governance.md)"
                );
            }
            // The last records get their anchor too.
            if let Err(e) = audit.anchor() {
                tracing::error!("{e}");
            }
        }
        for task in &self.background {
            task.abort();
        }
        for w in self.dispatch.watchers() {
            w.shutdown();
        }
        let meter = self.sinks.as_ref().map(Sinks::meter).unwrap_or_default();
        drop(self.sinks.take());
        let workers = std::mem::take(&mut self.sink_workers);
        match self.reporter.take() {
            Some(r) => r.shutdown(workers, meter, grace).await,
            None => reporter::drain(workers, meter, tokio::time::Instant::now() + grace).await,
        }
    }
}
