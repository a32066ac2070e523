//! Portarium events: st2 execution lifecycle out as `PortariumCloudEventV1` (to an HTTP
//! receiver and/or NATS JetStream), and Portarium events in as st2 triggers. See
//! `docs/events.md`.

pub mod checkpoint;
pub mod cloudevent;
pub mod config;
pub mod inbound;
pub mod lease;
pub mod lifecycle;
pub mod reporter;
pub mod schema;
pub mod sink;
pub mod source;

use std::sync::Arc;

use futures_util::Stream;
use tokio::task::JoinHandle;

pub use cloudevent::CloudEvent;
pub use config::EventsConfig;
pub use inbound::Inbound;
pub use lifecycle::{LifecycleTracker, Scrubbing, Transition};
pub use reporter::Reporter;
pub use sink::{SinkHandle, Sinks};

use st2_client::Execution;

/// Why the events machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// A setting is unusable.
    #[error("{field}: {reason}")]
    Config {
        /// Dotted config path.
        field: String,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP sink's client: {0}; check the TLS setup of this host")]
    Client(String),
}

/// Starts every configured sink; await the tasks after dropping the [`Sinks`] to flush.
pub async fn start_sinks(
    config: &EventsConfig,
) -> Result<(Sinks, Vec<JoinHandle<()>>), EventsError> {
    let mut handles = Vec::new();
    let mut workers = Vec::new();
    if let Some(http) = &config.http {
        let (h, w) = sink::http::start(http)?;
        handles.push(h);
        workers.push(w);
    }
    if let Some(nats) = &config.nats {
        let (h, w) = sink::nats::start(nats).await?;
        handles.push(h);
        workers.push(w);
    }
    Ok((Sinks::new(handles), workers))
}

/// Runs the lifecycle pipeline: every snapshot of `snapshots` (e.g.
/// `lifecycle::from_broadcast(watcher.updates())`) through a tracker, every new event to
/// `sinks`. The task ends when the stream does and returns the tracker for its counters.
pub fn spawn_lifecycle<S>(
    snapshots: S,
    config: &EventsConfig,
    sinks: Sinks,
    scrubbing: Scrubbing,
) -> JoinHandle<LifecycleTracker>
where
    S: Stream<Item = Arc<Execution>> + Send + 'static,
{
    let tracker = LifecycleTracker::new(config.lifecycle.clone()).scrubbing(scrubbing);
    tokio::spawn(lifecycle::run(snapshots, tracker, move |event| {
        let sinks = sinks.clone();
        async move { sinks.send(event).await }
    }))
}
