//! The lifecycle reporter: st2 snapshots through the tracker to the sinks, made durable and
//! single-reporter across replicas.
//!
//! It reports in terms. A term starts when this replica holds the lease (always, with the
//! lease off): it reads the checkpoint, reconciles from it over REST while the stream's
//! snapshots keep coming, and from then on writes the checkpoint every
//! `checkpoint.interval` when it changed. A term ends when the lease is lost; the next one
//! starts again from the checkpoint, so what another replica reported meanwhile may be sent
//! again, under the same ids. At shutdown the sinks get `events.shutdown_grace` to deliver
//! what is queued, then the last checkpoint is written and the lease released.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::checkpoint::{self, Ledger, Loaded};
use super::config::EventsConfig;
use super::lease::{self, Look};
use super::lifecycle::{LifecycleTracker, Scrubbing};
use super::sink::{QueueMeter, Receipt, Sinks};
use crate::telemetry::own;
use st2_basics::{Backoff, BackoffConfig, RetryPolicy};
use st2_client::{Execution, St2Client};

/// Snapshots read by a reconciliation waiting to be tracked.
const RECONCILE_QUEUE: usize = 256;
/// Times a failed reconciliation is started over before the term goes on without one.
const RECONCILE_ATTEMPTS: u32 = 10;

/// What the reporter needs besides its snapshots.
#[derive(Clone)]
struct Ctx {
    config: EventsConfig,
    /// `None` when nothing is kept in st2 (no sink, or the checkpoint switched off).
    durable: Option<St2Client>,
    replica: String,
    /// What every event's data is scrubbed with, reconciled ones included.
    scrubbing: Scrubbing,
}

/// The running reporter; [`Reporter::shutdown`] ends it.
pub struct Reporter {
    stop: watch::Sender<bool>,
    task: JoinHandle<Option<Arc<Ledger>>>,
    lease: Option<JoinHandle<bool>>,
    ctx: Ctx,
}

/// Starts reporting `snapshots` (every execution the watchers see) to `sinks`. With a sink
/// and the checkpoint on, progress is kept in st2 through `client`; with the lease on too,
/// only the replica holding it reports.
pub fn spawn<S>(
    snapshots: S,
    config: &EventsConfig,
    sinks: Sinks,
    client: &St2Client,
    scrubbing: Scrubbing,
) -> Reporter
where
    S: Stream<Item = Arc<Execution>> + Send + 'static,
{
    let lifecycle = &config.lifecycle;
    let durable =
        (!sinks.handles().is_empty() && lifecycle.checkpoint.enabled).then(|| client.clone());
    let ctx = Ctx {
        config: config.clone(),
        durable,
        replica: lease::replica_name(&lifecycle.lease),
        scrubbing,
    };
    let (stop, stop_rx) = watch::channel(false);
    let (held_tx, held) = watch::channel(true);
    let (lease, keep_open) = match &ctx.durable {
        Some(client) if lifecycle.lease.enabled => {
            let (client, key, me, ttl) = (
                client.clone(),
                lifecycle.lease_key(),
                ctx.replica.clone(),
                lifecycle.lease.ttl,
            );
            held_tx.send_replace(false);
            tracing::info!(replica = %me, key = %key, "lifecycle events are reported by the replica holding the lease");
            let look = move || {
                let (client, key, me) = (client.clone(), key.clone(), me.clone());
                async move {
                    let look = lease::look(&client, &key, &me, ttl).await;
                    own::lease_held(matches!(look, Ok(Look::Held)));
                    look.map_err(|e| match e.status() {
                        // Without the lease nobody reports: say what to grant.
                        Some(401 | 403) => format!(
                            "{e}; grant this st2 credential key_value_pair_view, \
                             key_value_pair_set and key_value_pair_delete on {key} (docs/events.md)"
                        ),
                        _ => e.to_string(),
                    })
                }
            };
            let task = tokio::spawn(lease::keep(ttl, look, held_tx, stop_rx.clone()));
            (Some(task), None)
        }
        // Nobody else decides: this replica always reports.
        _ => (None, Some(held_tx)),
    };
    let task = tokio::spawn(run(snapshots, ctx.clone(), sinks, stop_rx, held, keep_open));
    Reporter {
        stop,
        task,
        lease,
        ctx,
    }
}

impl Reporter {
    /// Stops reporting; lets `workers` (the sink workers, once every other [`Sinks`] is
    /// dropped) deliver what is queued within `grace`, returning as soon as nothing is;
    /// then writes the last checkpoint and releases the lease.
    pub async fn shutdown(self, workers: Vec<JoinHandle<()>>, meter: QueueMeter, grace: Duration) {
        let Self {
            stop,
            mut task,
            lease,
            ctx,
        } = self;
        let _ = stop.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        let ledger = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(ledger) => ledger.ok().flatten(),
            Err(_) => {
                task.abort();
                None
            }
        };
        drain(workers, meter, deadline).await;
        // The last writes get a budget of their own: with st2 down or hanging at SIGTERM, the
        // client's timeout and retries would otherwise hold the stop for tens of seconds.
        let finals = final_writes(&ctx, lease, ledger);
        if tokio::time::timeout(grace, finals).await.is_err() {
            tracing::warn!(
                "st2 did not take the last lifecycle checkpoint and the lease release within events.shutdown_grace; the next start reconciles from the checkpoint before, and a standby takes the lease when it expires"
            );
        }
    }
}

/// Writes the last checkpoint (when there is one to write) and releases the lease.
async fn final_writes(ctx: &Ctx, lease: Option<JoinHandle<bool>>, ledger: Option<Arc<Ledger>>) {
    let lifecycle = &ctx.config.lifecycle;
    if let (Some(client), Some(ledger)) = (&ctx.durable, ledger) {
        let key = lifecycle.checkpoint_key();
        if let Err(e) = checkpoint::write(client, &key, &ledger, &ctx.replica).await {
            tracing::warn!(key = %key, error = %e, "could not write the last lifecycle checkpoint; the next start reconciles from the one before");
        }
    }
    if let (Some(client), Some(lease)) = (&ctx.durable, lease)
        && lease.await.unwrap_or(false)
    {
        let key = lifecycle.lease_key();
        // Released so that a standby takes over at its next look, not after the TTL.
        if let Err(e) = client.keys().delete(&key).await {
            tracing::warn!(key = %key, error = %e, "could not release the lifecycle lease; another replica takes over when it expires");
        }
        own::lease_held(false);
    }
}

/// Waits for the sink workers until `deadline`; logs what was left only when something was.
pub async fn drain(
    workers: Vec<JoinHandle<()>>,
    meter: QueueMeter,
    deadline: tokio::time::Instant,
) {
    let all = futures_util::future::join_all(workers);
    if tokio::time::timeout_at(deadline, all).await.is_err() {
        let left = meter.queued();
        if left > 0 {
            tracing::warn!(
                queued = left,
                "event sinks still held {left} events at the end of events.shutdown_grace; they are reported again from st2 at the next start (docs/events.md)"
            );
        }
    }
}

/// The reporter's task: standby until the lease is held, then a term, until `stop` or the
/// snapshots end. Answers the ledger of the term it was in at the end, for the final
/// checkpoint; `None` when it ended in standby.
async fn run<S>(
    snapshots: S,
    ctx: Ctx,
    sinks: Sinks,
    mut stop: watch::Receiver<bool>,
    mut held: watch::Receiver<bool>,
    // Keeps `held` open when no lease task owns its sender.
    _keep_open: Option<watch::Sender<bool>>,
) -> Option<Arc<Ledger>>
where
    S: Stream<Item = Arc<Execution>> + Send,
{
    let mut snapshots = std::pin::pin!(snapshots);
    loop {
        // Standby: another replica reports these.
        while !*held.borrow_and_update() {
            tokio::select! {
                s = snapshots.next() => { s?; }
                r = held.changed() => r.ok()?,
                _ = stop.wait_for(|s| *s) => return None,
            }
        }
        let term = Term::start(&ctx, &mut stop).await?;
        let ledger = term.ledger.clone();
        match term
            .run(&ctx, &sinks, &mut snapshots, &mut stop, &mut held)
            .await
        {
            Ended::Stopped { writing: true } => return Some(ledger),
            // Stopped before the reconciliation completed: the ledger lacks what the old
            // checkpoint named, so that one stays.
            Ended::Stopped { writing: false } => return None,
            Ended::LeaseLost => {}
        }
        // The lease was lost: its new holder writes the checkpoint from now on, so this
        // term's ledger must not overwrite it at stop.
    }
}

/// How a term ended.
enum Ended {
    /// Stopped, or out of snapshots; `writing` when its checkpoint was being written.
    Stopped { writing: bool },
    /// Another replica holds the lease now.
    LeaseLost,
}

/// One stretch of reporting by this replica.
struct Term {
    ledger: Arc<Ledger>,
    tracker: LifecycleTracker,
    /// Snapshots of the reconciliation, and its task; `None` once it is over.
    reconciling: Option<(mpsc::Receiver<Arc<Execution>>, JoinHandle<bool>)>,
    writer: Option<JoinHandle<()>>,
}

impl Term {
    /// Reads the checkpoint (retrying while st2 cannot be asked) and starts reconciling
    /// from it; `None` when stopped meanwhile.
    async fn start(ctx: &Ctx, stop: &mut watch::Receiver<bool>) -> Option<Term> {
        let lifecycle = &ctx.config.lifecycle;
        let cp = &lifecycle.checkpoint;
        let tracker = LifecycleTracker::new(lifecycle.clone()).scrubbing(ctx.scrubbing.clone());
        let Some(client) = &ctx.durable else {
            return Some(Term {
                ledger: Ledger::new(OffsetDateTime::now_utc(), cp.max_in_flight),
                tracker,
                reconciling: None,
                writer: None,
            });
        };
        let key = lifecycle.checkpoint_key();
        let mut retry = checkpoint::read_retry().start();
        let loaded = loop {
            // A stop does not wait for st2's answer (slow under load): nothing depends on it.
            let load = tokio::select! {
                loaded = checkpoint::load(client, &key, cp.max_in_flight) => loaded,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match load {
                Loaded::Unavailable(why) => {
                    let failed = retry.attempts();
                    // No budget, so nothing stops the retry but the stop below.
                    let wait = retry
                        .after_failure(None)
                        .unwrap_or_else(|_| retry.max_wait());
                    tracing::warn!(key = %key, error = %why, attempt = failed, retry_in_ms = wait.as_millis() as u64, "cannot read the lifecycle checkpoint from st2; retrying before reporting");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return None,
                    }
                }
                other => break other,
            }
        };
        if let Some(reason) = loaded.reset_reason() {
            let why = match &loaded {
                Loaded::Unreadable(why) => why.as_str(),
                _ => "no such key (first start, or deleted)",
            };
            tracing::warn!(key = %key, reason, detail = %why, "no usable lifecycle checkpoint in st2; reporting starts from now, and transitions before it are not reported");
            own::checkpoint_reset(reason);
        }
        let now = OffsetDateTime::now_utc();
        let mut term = Term {
            ledger: Ledger::new(now, cp.max_in_flight),
            tracker,
            reconciling: None,
            writer: None,
        };
        match loaded {
            Loaded::Found(found) => {
                // The watermark written never passes the old one before the reconciliation
                // has brought what lies between.
                term.ledger = Ledger::new(found.watermark, cp.max_in_flight);
                let (tx, rx) = mpsc::channel(RECONCILE_QUEUE);
                let task = tokio::spawn(reconcile(client.clone(), found, cp.clone(), tx));
                term.reconciling = Some((rx, task));
            }
            _ => term.start_writing(ctx),
        }
        Some(term)
    }

    /// From now on the checkpoint is written every interval when it changed. Only after the
    /// reconciliation: before, the ledger lacks the executions the old checkpoint named.
    fn start_writing(&mut self, ctx: &Ctx) {
        let Some(client) = ctx.durable.clone() else {
            return;
        };
        let (ledger, replica) = (self.ledger.clone(), ctx.replica.clone());
        let key = ctx.config.lifecycle.checkpoint_key();
        let interval = ctx.config.lifecycle.checkpoint.interval;
        self.writer = Some(tokio::spawn(async move {
            let mut backoff = Backoff::new(BackoffConfig::new(interval, interval * 12));
            loop {
                let wait = match checkpoint::write(&client, &key, &ledger, &replica).await {
                    Ok(()) => {
                        backoff.healthy();
                        interval
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(key = %key, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot write the lifecycle checkpoint to st2; events keep flowing, a restart now would re-report more");
                        wait
                    }
                };
                tokio::time::sleep(wait).await;
            }
        }));
    }

    /// Reports until the lease is lost, or until stopped or out of snapshots.
    async fn run<S>(
        mut self,
        ctx: &Ctx,
        sinks: &Sinks,
        snapshots: &mut std::pin::Pin<&mut S>,
        stop: &mut watch::Receiver<bool>,
        held: &mut watch::Receiver<bool>,
    ) -> Ended
    where
        S: Stream<Item = Arc<Execution>> + Send,
    {
        /// What woke the term.
        enum Wake {
            Stop,
            Lease,
            Reconciled(Option<Arc<Execution>>),
            Streamed(Option<Arc<Execution>>),
        }
        let ended = loop {
            let reconciled = async {
                match &mut self.reconciling {
                    Some((rx, _)) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let wake = tokio::select! {
                _ = stop.wait_for(|s| *s) => Wake::Stop,
                r = held.changed() => match r {
                    Ok(()) => Wake::Lease,
                    Err(_) => Wake::Stop,
                },
                s = reconciled => Wake::Reconciled(s),
                s = snapshots.next() => Wake::Streamed(s),
            };
            // At a stop the lease task lets go too: that is the stop, not a lost lease, so
            // the last checkpoint is still written.
            let wake = match wake {
                Wake::Lease if *stop.borrow() => Wake::Stop,
                other => other,
            };
            let snapshot = match wake {
                Wake::Stop | Wake::Streamed(None) => {
                    break Ended::Stopped {
                        writing: self.writer.is_some(),
                    };
                }
                Wake::Lease if !*held.borrow_and_update() => break Ended::LeaseLost,
                Wake::Lease => continue,
                Wake::Reconciled(None) => {
                    if let Some((_, task)) = self.reconciling.take()
                        && task.await.unwrap_or(false)
                    {
                        self.start_writing(ctx);
                    }
                    continue;
                }
                Wake::Reconciled(Some(s)) | Wake::Streamed(Some(s)) => s,
            };
            self.report(sinks, &snapshot).await;
        };
        if let Some((_, task)) = self.reconciling.take() {
            task.abort();
        }
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        ended
    }

    /// Tracks one snapshot and queues its new events, each carrying the snapshot's receipt.
    async fn report(&mut self, sinks: &Sinks, snapshot: &Execution) {
        let scoped = self.tracker.observe_scoped(snapshot);
        let in_scope = scoped.is_some();
        let events = scoped.unwrap_or_default();
        let receipt = self
            .ledger
            .note(snapshot, in_scope, !events.is_empty())
            .map(|r| Arc::new(r) as Receipt);
        for event in events {
            sinks.send_with(event, receipt.clone()).await;
        }
    }
}

/// Reconciles from `found`, starting over with backoff when st2 fails; answers whether it
/// completed (only then may the checkpoint move past `found`).
async fn reconcile(
    client: St2Client,
    found: checkpoint::Checkpoint,
    config: super::config::CheckpointConfig,
    into: mpsc::Sender<Arc<Execution>>,
) -> bool {
    let started = tokio::time::Instant::now();
    let mut retry = RetryPolicy::new(BackoffConfig::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
    ))
    .max_attempts(RECONCILE_ATTEMPTS)
    .start();
    loop {
        match checkpoint::reconcile(&client, &found, &config, &into).await {
            Ok(done) => {
                own::reconciled(done.listed + done.reread);
                if done.truncated {
                    tracing::warn!(
                        listed = done.listed,
                        "more executions started since the checkpoint than events.lifecycle.checkpoint.reconcile_max_pages lists; the rest are reported when they next change"
                    );
                }
                tracing::info!(
                    listed = done.listed,
                    reread = done.reread,
                    in_flight = found.in_flight.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "lifecycle reconciled from the checkpoint"
                );
                return true;
            }
            Err(e) => {
                let attempt = retry.attempts();
                let Ok(wait) = retry.after_failure(None) else {
                    tracing::warn!(attempt, error = %e, "lifecycle reconciliation failed");
                    break;
                };
                tracing::warn!(attempt, error = %e, retry_in_ms = wait.as_millis() as u64, "lifecycle reconciliation failed; starting it over");
                tokio::time::sleep(wait).await;
            }
        }
    }
    tracing::error!(
        "lifecycle reconciliation kept failing; the checkpoint is left as it was so the next start tries again"
    );
    false
}
