//! Delivery of lifecycle events to Portarium: a bounded queue per sink, drained in order by
//! one worker that retries the event at its head under the shared [`st2_basics::Retry`].
//!
//! One worker per sink keeps delivery ordered (so each execution's events arrive in the
//! order they happened). When the queue is full the producer waits — back-pressure up to
//! the st2 stream consumer — and nothing is dropped for lack of room. An event is dropped
//! only when the sink refuses it for good (a 4xx other than 408/425/429) or stays down
//! longer than `give_up_after`; both are logged and counted in [`SinkCounts::dropped`].

pub mod http;
pub mod nats;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use st2_basics::GiveUp;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::cloudevent::CloudEvent;
use super::config::DeliveryConfig;

/// What one delivery attempt came to, when it did not succeed.
#[derive(Debug)]
pub enum Attempt {
    /// Worth trying again: transport error, timeout, 429, 5xx, no publish ack.
    Retry {
        /// What went wrong, for the log.
        reason: String,
        /// How long the sink asked us to wait (`Retry-After`).
        after: Option<Duration>,
    },
    /// The sink refuses this event for good.
    Reject(String),
}

/// Held with an event until its sink is done with it (delivered or given up on), then
/// dropped: how the checkpoint learns what was delivered.
pub type Receipt = Arc<dyn std::any::Any + Send + Sync>;

/// An event in a sink's queue.
type Queued = (Arc<CloudEvent>, Option<Receipt>);

/// Counters of one sink.
#[derive(Debug, Default)]
struct Stats {
    queued: AtomicU64,
    delivered: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
    waited_for_room: AtomicU64,
}

/// A copy of a sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    /// Events waiting in the queue or being delivered.
    pub queued: u64,
    /// Events the sink accepted.
    pub delivered: u64,
    /// Attempts repeated after a failure.
    pub retries: u64,
    /// Events given up on (refused for good, or undeliverable past the give-up time).
    pub dropped: u64,
    /// Times a producer found the queue full and waited.
    pub waited_for_room: u64,
}

/// The sink has stopped (its worker ended); the event was not queued.
#[derive(Debug, thiserror::Error)]
#[error("the {0} event sink has stopped; restart the adapter to deliver events again")]
pub struct SinkClosed(pub &'static str);

/// Where producers hand events to one sink; cheap to clone.
#[derive(Clone)]
pub struct SinkHandle {
    name: &'static str,
    tx: mpsc::Sender<Queued>,
    stats: Arc<Stats>,
}

impl SinkHandle {
    /// Queues `event`, waiting for room when the queue is full.
    pub async fn send(&self, event: Arc<CloudEvent>) -> Result<(), SinkClosed> {
        self.send_with(event, None).await
    }

    /// Queues `event` with `receipt`, dropped once this sink is done with the event.
    pub async fn send_with(
        &self,
        event: Arc<CloudEvent>,
        receipt: Option<Receipt>,
    ) -> Result<(), SinkClosed> {
        // Counted before it can be taken, so `queued` never dips below what is in the queue.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let sent = match self.tx.try_send((event, receipt)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(item)) => {
                self.stats.waited_for_room.fetch_add(1, Ordering::Relaxed);
                self.tx.send(item).await.map_err(|_| SinkClosed(self.name))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SinkClosed(self.name)),
        };
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// The sink's counters now.
    pub fn counts(&self) -> SinkCounts {
        let s = &self.stats;
        SinkCounts {
            queued: s.queued.load(Ordering::Relaxed),
            delivered: s.delivered.load(Ordering::Relaxed),
            retries: s.retries.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            waited_for_room: s.waited_for_room.load(Ordering::Relaxed),
        }
    }

    /// Sink name (`http` or `nats`).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Starts the worker of sink `name`; it ends once every handle is dropped and the queue is
/// drained (await the returned task to flush on shutdown).
pub(crate) fn spawn<D, Fut>(
    name: &'static str,
    delivery: &DeliveryConfig,
    mut deliver: D,
) -> (SinkHandle, JoinHandle<()>)
where
    D: FnMut(Arc<CloudEvent>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Attempt>> + Send,
{
    let (tx, mut rx) = mpsc::channel::<Queued>(delivery.queue_size);
    let stats = Arc::new(Stats::default());
    let handle = SinkHandle {
        name,
        tx,
        stats: stats.clone(),
    };
    let policy = delivery.retry();
    let worker = tokio::spawn(async move {
        while let Some((event, receipt)) = rx.recv().await {
            let mut retry = policy.start();
            loop {
                match deliver(event.clone()).await {
                    Ok(()) => {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(Attempt::Reject(why)) => {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(sink = name, id = %event.id, %why, "event refused by the sink; dropped");
                        break;
                    }
                    Err(Attempt::Retry { reason, after }) => {
                        let wait = match retry.after_failure(after) {
                            Ok(wait) => wait,
                            // Dropping an event of an ordered queue for a long `Retry-After`
                            // would lose it for good; come back at the ceiling instead.
                            Err(GiveUp::WaitTooLong(_)) => retry.max_wait(),
                            Err(_) => {
                                stats.dropped.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(sink = name, id = %event.id, %reason, "sink unreachable past events.*.delivery.give_up_after; event dropped");
                                break;
                            }
                        };
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(sink = name, id = %event.id, %reason, wait_ms = wait.as_millis() as u64, "event delivery failed; retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            drop(receipt);
            stats.queued.fetch_sub(1, Ordering::Relaxed);
        }
    });
    (handle, worker)
}

/// Every configured sink; an event goes to each of them.
#[derive(Clone, Default)]
pub struct Sinks {
    sinks: Vec<SinkHandle>,
}

impl Sinks {
    /// Fans out to `sinks`.
    pub fn new(sinks: Vec<SinkHandle>) -> Self {
        Self { sinks }
    }

    /// Queues `event` on every sink (waiting for room in each); a stopped sink is logged
    /// and skipped so the others still get it.
    pub async fn send(&self, event: CloudEvent) {
        self.send_with(event, None).await;
    }

    /// [`Sinks::send`] with a receipt each sink holds until it is done with the event.
    pub async fn send_with(&self, event: CloudEvent, receipt: Option<Receipt>) {
        let event = Arc::new(event);
        for sink in &self.sinks {
            if let Err(e) = sink.send_with(event.clone(), receipt.clone()).await {
                tracing::error!(id = %event.id, "{e}");
            }
        }
    }

    /// Events queued in every sink, read without holding a sender open (so the sinks can
    /// still end once the [`Sinks`] are dropped).
    pub fn meter(&self) -> QueueMeter {
        QueueMeter(self.sinks.iter().map(|s| s.stats.clone()).collect())
    }

    /// The sinks, for their counters.
    pub fn handles(&self) -> &[SinkHandle] {
        &self.sinks
    }
}

/// Reads how many events the sinks still hold.
#[derive(Clone, Default)]
pub struct QueueMeter(Vec<Arc<Stats>>);

impl QueueMeter {
    /// Events queued or being delivered, over every sink.
    pub fn queued(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.queued.load(Ordering::Relaxed))
            .sum()
    }
}
