//! Turns st2 execution snapshots into Portarium lifecycle events, each exactly once per
//! execution and transition however the snapshots arrive.
//!
//! st2 sends a snapshot per change, possibly twice (several st2stream replicas, a reconnect
//! followed by a REST reconciliation) and out of order (execution and liveaction exchanges
//! interleave). Every snapshot carries `log`, the full status history so far; a later snapshot's
//! log extends an earlier one's. Transitions are therefore read from the log, not from arrival
//! order, so a late, older snapshot adds nothing and a newer one brings every step it includes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::cloudevent::CloudEvent;
use super::config::LifecycleConfig;
use crate::core::dispatch::{CONTEXT_KEY, secrets_key};
use crate::core::governance::Governance;
use crate::core::governance::redact::{MASKED, RedactionPolicy, scrub_value};
use crate::core::governance::secrets::SecretBook;
use st2_client::models::rfc3339;
use st2_client::{Execution, ExecutionStatus};

/// A lifecycle step Portarium hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// A runner started it (`running`, the first time).
    Started,
    /// It ended with `succeeded`.
    Succeeded,
    /// It ended with `failed` or `abandoned`.
    Failed,
    /// It ended with `timeout`.
    TimedOut,
    /// It ended with `canceled`.
    Canceled,
    /// A workflow reached `paused`.
    Paused,
    /// A paused workflow was resumed (`resuming`).
    Resumed,
}

impl Transition {
    /// Every transition.
    pub const ALL: [Self; 7] = [
        Self::Started,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Canceled,
        Self::Paused,
        Self::Resumed,
    ];

    /// The transition entering `status` means, if any.
    fn of(status: &ExecutionStatus) -> Option<Self> {
        Some(match status {
            ExecutionStatus::Running => Self::Started,
            ExecutionStatus::Succeeded => Self::Succeeded,
            ExecutionStatus::Failed | ExecutionStatus::Abandoned => Self::Failed,
            ExecutionStatus::Timeout => Self::TimedOut,
            ExecutionStatus::Canceled => Self::Canceled,
            ExecutionStatus::Paused => Self::Paused,
            ExecutionStatus::Resuming => Self::Resumed,
            _ => return None,
        })
    }

    /// Name used in event ids and `data.transition`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timedOut",
            Self::Canceled => "canceled",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
        }
    }

    /// The Portarium event type. Portarium's `DomainEventType` has no per-action timeout,
    /// cancel, pause or resume, so an action that ends badly is `ActionFailed` (with
    /// `data.transition` and `data.errorKind` telling which), and a paused or resumed
    /// workflow action pauses or resumes the run waiting on it.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Started => "com.portarium.run.ActionDispatched",
            Self::Succeeded => "com.portarium.run.ActionCompleted",
            Self::Failed | Self::TimedOut | Self::Canceled => "com.portarium.run.ActionFailed",
            Self::Paused => "com.portarium.run.RunPaused",
            Self::Resumed => "com.portarium.run.RunResumed",
        }
    }

    /// Portarium's `ActionDispatchErrorKind` for a bad ending.
    fn error_kind(self) -> Option<&'static str> {
        match self {
            Self::Failed | Self::Canceled => Some("RemoteError"),
            Self::TimedOut => Some("Timeout"),
            _ => None,
        }
    }

    /// Whether the transition can happen more than once (pause/resume cycles).
    fn repeats(self) -> bool {
        matches!(self, Self::Paused | Self::Resumed)
    }
}

/// Results larger than this ride as `resultTruncated: true` instead of inline.
const MAX_INLINE_RESULT: usize = 64 * 1024;

/// Per-execution memory: which steps were sent.
struct Tracked {
    sent: HashSet<(Transition, u32)>,
    /// When it reached a completed status, for eviction.
    completed: Option<Instant>,
    last_seen: Instant,
}

/// Counters of what the tracker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Events produced.
    pub emitted: u64,
    /// Snapshots that produced nothing new (duplicates, stale or uninteresting).
    pub suppressed: u64,
    /// Snapshots of executions out of scope (not ours, not a governed pack).
    pub ignored: u64,
    /// Executions forgotten after the TTL or to stay under the cap.
    pub evicted: u64,
}

/// Ids the events of one execution carry.
struct Ids {
    tenant: String,
    correlation: String,
    run: Option<String>,
    action: Option<String>,
    traceparent: Option<String>,
}

/// What lifecycle events are scrubbed with: the secret values seen per dispatch key, and
/// which parameter names are secret.
#[derive(Debug, Clone, Default)]
pub struct Scrubbing {
    /// The values the dispatches saw, per dispatch key (shared with them).
    pub book: Arc<SecretBook>,
    /// Secret parameter names beyond the credential-looking ones (`governance.redact_keys`).
    pub policy: RedactionPolicy,
}

impl Scrubbing {
    /// What governance holds for it.
    pub fn of(governance: &Governance) -> Self {
        Self {
            book: governance.secrets.clone(),
            policy: governance.redaction.clone(),
        }
    }

    /// The secret values events about `e` must not carry: those booked under its key, and those its own parameters show under secret names (st2 masks schema-secret
    /// ones, which the book holds).
    fn secrets(&self, e: &Execution) -> Vec<String> {
        let mut values = self.book.recall(&secrets_key(e)).0;
        values.extend(
            self.policy
                .secret_values(&e.parameters)
                .into_iter()
                .filter(|v| v != MASKED),
        );
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        values
    }
}

/// Remembers, per execution, which transitions were already turned into events.
pub struct LifecycleTracker {
    config: LifecycleConfig,
    executions: HashMap<String, Tracked>,
    stats: TrackerStats,
    scrubbing: Scrubbing,
    /// When the TTL sweep next runs: it walks every execution remembered, so it runs once
    /// per [`SWEEP_EVERY`] rather than per snapshot (several per execution).
    next_sweep: Option<Instant>,
}

/// How often remembered executions are checked against the TTL; an execution may be
/// remembered this much longer than `completed_ttl_ms`.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl LifecycleTracker {
    /// A tracker with nothing seen yet.
    pub fn new(config: LifecycleConfig) -> Self {
        Self {
            config,
            executions: HashMap::new(),
            stats: TrackerStats::default(),
            scrubbing: Scrubbing::default(),
            next_sweep: None,
        }
    }

    /// This tracker scrubbing every event's data with `scrubbing`.
    pub fn scrubbing(self, scrubbing: Scrubbing) -> Self {
        Self { scrubbing, ..self }
    }

    /// What it did so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }

    /// Executions currently remembered.
    pub fn tracked(&self) -> usize {
        self.executions.len()
    }

    /// The events `snapshot` adds, in the order they happened; empty when it adds nothing.
    pub fn observe(&mut self, snapshot: &Execution) -> Vec<CloudEvent> {
        self.observe_scoped(snapshot).unwrap_or_default()
    }

    /// As [`LifecycleTracker::observe`], but `None` when `snapshot` is not reported at all
    /// (neither ours nor of a governed pack), so a caller needing both does not work out the
    /// scope a second time per snapshot.
    pub fn observe_scoped(&mut self, snapshot: &Execution) -> Option<Vec<CloudEvent>> {
        let now = Instant::now();
        self.evict(now);
        let Some(ids) = self.ids(snapshot) else {
            self.stats.ignored += 1;
            return None;
        };
        let history = history(snapshot);
        let tracked = self
            .executions
            .entry(snapshot.id.clone())
            .or_insert_with(|| Tracked {
                sent: HashSet::new(),
                completed: None,
                last_seen: now,
            });
        tracked.last_seen = now;
        if snapshot.is_terminal() && tracked.completed.is_none() {
            tracked.completed = Some(now);
        }
        let mut counts: HashMap<Transition, u32> = HashMap::new();
        let mut events = Vec::new();
        for (status, at) in history {
            let Some(t) = Transition::of(&status) else {
                continue;
            };
            let n = counts.entry(t).or_default();
            *n += 1;
            // `running` comes back after every resume; only the first one is the start.
            if t == Transition::Started && *n > 1 {
                continue;
            }
            if tracked.sent.insert((t, *n)) {
                events.push(build(
                    &self.config.source,
                    snapshot,
                    &ids,
                    (t, *n),
                    (&status, at),
                    &self.scrubbing,
                ));
            }
        }
        if events.is_empty() {
            self.stats.suppressed += 1;
        }
        self.stats.emitted += events.len() as u64;
        self.enforce_cap();
        Some(events)
    }

    /// Portarium ids for an execution in scope: ours carry them in `context.portarium`;
    /// a governed pack's execution gets the configured tenant and its own id as correlation.
    fn ids(&self, e: &Execution) -> Option<Ids> {
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if let Some(ours) = e.context.get(CONTEXT_KEY)
            && let (Some(tenant), Some(correlation)) =
                (text(ours, "tenant_id"), text(ours, "correlation_id"))
        {
            return Some(Ids {
                tenant,
                correlation,
                run: text(ours, "run_id"),
                action: text(ours, "action_id"),
                traceparent: text(ours, "traceparent"),
            });
        }
        let pack = e.action_ref()?.split('.').next()?;
        let tenant = self.config.governed_tenant.as_ref()?;
        self.config
            .governed_packs
            .iter()
            .any(|p| p == pack)
            .then(|| Ids {
                tenant: tenant.clone(),
                correlation: e
                    .context_at("trace_context.trace_tag")
                    .and_then(Value::as_str)
                    .unwrap_or(&e.id)
                    .to_string(),
                run: None,
                action: None,
                traceparent: None,
            })
    }

    /// Forgets completed executions older than the TTL, and any execution not seen for ten
    /// TTLs (one whose end st2 never reported).
    fn evict(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|at| now < at) {
            return;
        }
        self.next_sweep = Some(now + SWEEP_EVERY);
        let ttl = Duration::from_millis(self.config.completed_ttl_ms);
        let before = self.executions.len();
        self.executions.retain(|_, t| match t.completed {
            Some(at) => now.duration_since(at) < ttl,
            None => now.duration_since(t.last_seen) < ttl * 10,
        });
        self.stats.evicted += (before - self.executions.len()) as u64;
    }

    /// Keeps at most `max_tracked` executions, dropping completed ones first, oldest first.
    /// Once over the cap it drops an eighth of the cap more, so the sort over every execution
    /// runs once per that many new ones instead of for each.
    fn enforce_cap(&mut self) {
        let cap = self.config.max_tracked;
        if self.executions.len() <= cap {
            return;
        }
        let excess = self.executions.len() - (cap - cap / 8);
        let mut order: Vec<(bool, Instant, String)> = self
            .executions
            .iter()
            .map(|(id, t)| (t.completed.is_none(), t.last_seen, id.clone()))
            .collect();
        order.sort();
        for (_, _, id) in order.into_iter().take(excess) {
            self.executions.remove(&id);
            self.stats.evicted += 1;
        }
    }
}

/// Status history of a snapshot: its `log`, or just its current status when st2 left the
/// log out (e.g. `include_attributes` without `log`).
fn history(e: &Execution) -> Vec<(ExecutionStatus, Option<OffsetDateTime>)> {
    if !e.log.is_empty() {
        return e
            .log
            .iter()
            .map(|l| (l.status.clone(), Some(l.timestamp)))
            .collect();
    }
    let at = if e.is_terminal() {
        e.end_timestamp
    } else {
        None
    };
    e.status.clone().map(|s| (s, at)).into_iter().collect()
}

/// The event for transition `t` (its `n`th occurrence) of execution `e`, entering status
/// `entered` at `at`. It uses only what every later snapshot repeats (the log entry, ids, the
/// final result), so a resent event is byte-identical. Its data is scrubbed of the
/// execution's secret values here, so every path that builds an event scrubs it.
fn build(
    source: &str,
    e: &Execution,
    ids: &Ids,
    (t, n): (Transition, u32),
    (entered, at): (&ExecutionStatus, Option<OffsetDateTime>),
    scrubbing: &Scrubbing,
) -> CloudEvent {
    let id = if t.repeats() {
        format!("st2:{}:{}:{n}", e.id, t.as_str())
    } else {
        format!("st2:{}:{}", e.id, t.as_str())
    };
    let mut data = json!({
        "executionId": e.id,
        "transition": t.as_str(),
        "st2Status": entered.as_str(),
    });
    if let Some(r) = e.action_ref() {
        data["actionRef"] = json!(r);
    }
    if let Some(kind) = t.error_kind() {
        data["errorKind"] = json!(kind);
    }
    if matches!(
        t,
        Transition::Succeeded | Transition::Failed | Transition::TimedOut | Transition::Canceled
    ) {
        if let Some(result) = &e.result {
            let size = serde_json::to_vec(result).map(|v| v.len()).unwrap_or(0);
            if size <= MAX_INLINE_RESULT {
                data["result"] = result.clone();
            } else {
                data["resultTruncated"] = json!(true);
            }
        }
    }
    if let Some(url) = &e.web_url {
        data["webUrl"] = json!(url);
    }
    let subject = match &ids.run {
        Some(run) => format!("runs/{run}"),
        None => format!("executions/{}", e.id),
    };
    CloudEvent {
        specversion: "1.0".into(),
        id,
        source: source.to_string(),
        event_type: t.event_type().into(),
        subject: Some(subject),
        time: at.map(rfc3339),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        data: Some(scrub_value(&data, &scrubbing.secrets(e))),
        data_base64: None,
        tenantid: ids.tenant.clone(),
        correlationid: ids.correlation.clone(),
        runid: ids.run.clone(),
        actionid: ids.action.clone(),
        traceparent: ids.traceparent.clone(),
        extensions: Default::default(),
    }
}

/// Feeds every snapshot of `snapshots` through `tracker` and hands each new event, in order,
/// to `deliver` (which may wait: that is the back-pressure from the sinks). Ends when the
/// stream ends; returns the tracker for its stats.
pub async fn run<S, F, Fut>(
    snapshots: S,
    mut tracker: LifecycleTracker,
    mut deliver: F,
) -> LifecycleTracker
where
    S: Stream<Item = Arc<Execution>>,
    F: FnMut(CloudEvent) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut snapshots = std::pin::pin!(snapshots);
    while let Some(snapshot) = snapshots.next().await {
        for event in tracker.observe(&snapshot) {
            deliver(event).await;
        }
    }
    tracker
}

/// A stream over a broadcast receiver (e.g. the stream watcher's `updates()`); snapshots
/// missed because the receiver lagged are logged — the watcher's reconciliation resends
/// current state, and the log-based tracking recovers every step from it.
pub fn from_broadcast(
    rx: tokio::sync::broadcast::Receiver<Arc<Execution>>,
) -> impl Stream<Item = Arc<Execution>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "lifecycle tracker lagged behind the st2 stream");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionStatus::*;
    use st2_client::models::LogEntry;

    /// A snapshot of workflow `id` after the first `steps` entries of `history`.
    fn snapshot(id: &str, history: &[ExecutionStatus], steps: usize) -> Execution {
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let log: Vec<LogEntry> = history[..steps]
            .iter()
            .enumerate()
            .map(|(i, s)| LogEntry {
                timestamp: start + time::Duration::seconds(i as i64),
                status: s.clone(),
            })
            .collect();
        serde_json::from_value(json!({
            "id": id, "status": history[steps - 1],
            "action": {"ref": "examples.wf"},
            "context": {"portarium": {"tenant_id": "t", "correlation_id": "c", "run_id": "r"}},
            "log": log,
        }))
        .expect("snapshot decodes")
    }

    #[test]
    fn pause_resume_cycles_count_and_any_order_gives_the_same_events() {
        let history = [
            Requested, Scheduled, Running, Pausing, Paused, Resuming, Running, Pausing, Paused,
            Resuming, Running, Succeeded,
        ];
        let ids = |events: Vec<CloudEvent>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
        let want = [
            "st2:x:started",
            "st2:x:paused:1",
            "st2:x:resumed:1",
            "st2:x:paused:2",
            "st2:x:resumed:2",
            "st2:x:succeeded",
        ];
        let mut tracker = LifecycleTracker::new(LifecycleConfig::default());
        let mut in_order = Vec::new();
        for steps in 1..=history.len() {
            in_order.extend(tracker.observe(&snapshot("x", &history, steps)));
        }
        assert_eq!(ids(in_order), want);

        // Every snapshot twice, newest first: the first one brings everything, in log order.
        let mut tracker = LifecycleTracker::new(LifecycleConfig::default());
        let mut shuffled = Vec::new();
        for steps in (1..=history.len()).rev() {
            for _ in 0..2 {
                shuffled.extend(tracker.observe(&snapshot("x", &history, steps)));
            }
        }
        assert_eq!(ids(shuffled), want);
        assert_eq!(tracker.stats().emitted, 6);
        assert_eq!(tracker.stats().suppressed, 2 * history.len() as u64 - 1);
    }

    #[test]
    fn memory_is_capped_and_forgetting_is_counted() {
        let config = LifecycleConfig {
            max_tracked: 2,
            ..LifecycleConfig::default()
        };
        let mut tracker = LifecycleTracker::new(config);
        let history = [Requested, Running, Succeeded];
        for id in ["a", "b", "c", "d"] {
            assert_eq!(tracker.observe(&snapshot(id, &history, 3)).len(), 2);
        }
        assert_eq!(tracker.tracked(), 2);
        assert_eq!(tracker.stats().evicted, 2);
    }

    #[test]
    fn a_snapshot_without_log_still_reports_its_status_once() {
        let mut e = snapshot("y", &[Requested, Running, Timeout], 3);
        e.log.clear();
        let mut tracker = LifecycleTracker::new(LifecycleConfig::default());
        let events = tracker.observe(&e);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "st2:y:timedOut");
        assert_eq!(
            events[0].data.as_ref().expect("data")["errorKind"],
            "Timeout"
        );
        assert!(tracker.observe(&e).is_empty());
    }
}
