//! [`ExecutionWatcher`]: what the rest of the adapter uses to follow executions, and the
//! shared state the stream consumer feeds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use super::StreamConfig;
use super::follow::{Follow, Seen, Snapshot, Statuses};
use crate::{Execution, ExecutionStatus, St2Client, St2Error};

/// How many snapshots `updates()` buffers per receiver before a slow one starts losing the
/// oldest (it then sees `RecvError::Lagged`).
const UPDATES_BUFFER: usize = 1024;

/// Why a wait ended without a terminal status.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed; the execution keeps running in st2.
    #[error(
        "st2 execution {id} is still {}; it keeps running — wait again or read it later",
        .last_status.as_ref().map_or("unknown", |s| s.as_str())
    )]
    Deadline {
        /// The execution waited on.
        id: String,
        /// The last status seen, if any was seen.
        last_status: Option<ExecutionStatus>,
    },
    /// st2 answered 404 for it: it never existed or was deleted.
    #[error("st2 has no execution {id}; check the id")]
    Gone {
        /// The execution waited on.
        id: String,
    },
    /// Reading it from st2 failed for a reason that waiting will not cure (credentials, ...).
    #[error("reading st2 execution {id} failed: {source}")]
    St2 {
        /// The execution waited on.
        id: String,
        /// st2's error (shared by every follower of the execution).
        source: Arc<St2Error>,
    },
}

/// Where the stream connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the connection (or reconciling right after it opened).
    Connecting,
    /// Open and reconciled: status changes arrive as events.
    Connected,
    /// Lost; waiting out the backoff before the next attempt. The poll loop reads meanwhile.
    Backoff,
    /// The watcher was shut down.
    Stopped,
    /// `st2.stream.enabled` is false: no connection is opened; the poll loop reads.
    Disabled,
}

impl ConnectionState {
    /// A short lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Backoff => "backoff",
            Self::Stopped => "stopped",
            Self::Disabled => "disabled",
        }
    }
}

/// Counters of one watcher, for telemetry. Every count only grows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    /// Where the connection is now.
    pub state: ConnectionState,
    /// Connections opened (accepted by st2).
    pub connects: u64,
    /// Connections opened after an earlier one was lost (`connects - 1` once it ever ran).
    pub reconnects: u64,
    /// Connection attempts st2 or the network refused.
    pub failed_connects: u64,
    /// Open connections dropped because nothing, not even a keep-alive, arrived in time.
    pub silences: u64,
    /// Execution events taken from the stream.
    pub events: u64,
    /// Events that were not valid st2 JSON (skipped and logged).
    pub undecodable: u64,
    /// Reconciliations run after a connection opened.
    pub reconciliations: u64,
    /// Executions read over REST by reconciliations.
    pub reconciled_executions: u64,
    /// Catch-up lists st2 refused (400, e.g. a datetime outside its format); each is logged
    /// and asked again from a different time, never repeated unchanged.
    pub refused_catchups: u64,
    /// Single-execution reads by the poll loop (while the stream is down or disabled, or to
    /// close the gap at the start of a follow).
    pub wait_reads: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub connects: AtomicU64,
    pub failed_connects: AtomicU64,
    pub silences: AtomicU64,
    pub events: AtomicU64,
    pub undecodable: AtomicU64,
    pub reconciliations: AtomicU64,
    pub reconciled_executions: AtomicU64,
    pub refused_catchups: AtomicU64,
    pub wait_reads: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// A map that forgets its oldest keys beyond `cap` entries or `max_bytes` in total (each
/// entry weighed when inserted).
struct Bounded<V> {
    map: HashMap<String, (V, usize)>,
    order: VecDeque<String>,
    cap: usize,
    bytes: usize,
    max_bytes: usize,
}

impl<V> Bounded<V> {
    fn new(cap: usize, max_bytes: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
            bytes: 0,
            max_bytes,
        }
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
    }

    fn contains_key(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    /// Inserts `value`, weighing `bytes` (its key included by the caller or not: the key's
    /// length is added here).
    fn insert(&mut self, key: &str, value: V, bytes: usize) {
        let bytes = bytes + key.len();
        self.bytes += bytes;
        match self.map.insert(key.to_string(), (value, bytes)) {
            Some((_, old)) => self.bytes -= old,
            None => self.order.push_back(key.to_string()),
        }
        while self.map.len() > self.cap || self.bytes > self.max_bytes {
            match self.order.pop_front() {
                Some(old) => {
                    self.remove(&old);
                }
                None => break,
            }
        }
        // Removed keys leave stale entries in `order`; drop them before it outgrows the map.
        if self.order.len() > 2 * self.cap.min(self.map.len() + 16) {
            let mut kept = HashSet::new();
            let map = &self.map;
            self.order
                .retain(|k| map.contains_key(k) && kept.insert(k.clone()));
        }
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        let (value, bytes) = self.map.remove(key)?;
        self.bytes -= bytes;
        Some(value)
    }
}

/// A finished execution as remembered: whole when small (a stream event's still as its text,
/// decoded when somebody needs it whole), else only its id, status and times (the whole is
/// read from st2 again when a follow needs it).
struct Finished {
    snapshot: Arc<Snapshot>,
    whole: bool,
}

impl Finished {
    /// `snapshot` whole if its JSON is at most `max_whole` bytes, else its summary; with the
    /// bytes it takes.
    /// `size`: the execution's size as JSON when known (the text it was read from).
    fn of(snapshot: Arc<Snapshot>, size: Option<usize>, max_whole: usize) -> (Self, usize) {
        let size = size.unwrap_or_else(|| json_size(&**snapshot.head()));
        if size <= max_whole {
            return (
                Self {
                    snapshot,
                    whole: true,
                },
                size,
            );
        }
        let head = snapshot.head();
        let summary = Execution {
            id: head.id.clone(),
            status: head.status.clone(),
            start_timestamp: head.start_timestamp,
            end_timestamp: head.end_timestamp,
            ..Execution::default()
        };
        let size = json_size(&summary);
        (
            Self {
                snapshot: Arc::new(Snapshot::whole(Arc::new(summary))),
                whole: false,
            },
            size,
        )
    }
}

/// The length of `value`'s JSON, counted without building it.
fn json_size(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The followers of one execution: what they have seen, and how many there are.
struct Entry {
    seen: watch::Sender<Seen>,
    followers: usize,
}

struct State {
    following: HashMap<String, Entry>,
    finished: Bounded<Finished>,
    /// The latest snapshot of every execution seen non-terminal.
    in_flight: Bounded<Arc<Snapshot>>,
    /// Executions the poll loop reads at once, whatever the stream's state: new follows
    /// that the stream cannot be known to cover.
    urgent: HashSet<String>,
    /// Latest st2 time up to which every change is known (event timestamps, connect times).
    known_through: Option<OffsetDateTime>,
    /// st2's clock when the current connection opened (its `Date`), once reconciled.
    connection_opened: Option<OffsetDateTime>,
}

/// Shared by the watcher handles, the consumer task, the poll loop and follows.
pub(super) struct Hub {
    pub client: St2Client,
    pub cfg: StreamConfig,
    pub counters: Counters,
    updates: broadcast::Sender<Arc<Execution>>,
    state: Mutex<State>,
    conn: watch::Sender<ConnectionState>,
    /// Wakes the poll loop for urgent reads.
    wake: Arc<Notify>,
    /// Set once the poll loop runs; it starts with the first follow, inside a runtime.
    poller: std::sync::OnceLock<()>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_state(&self, s: ConnectionState) {
        self.conn
            .send_if_modified(|old| std::mem::replace(old, s) != s);
    }

    pub fn state(&self) -> ConnectionState {
        *self.conn.borrow()
    }

    fn stats(&self) -> StreamStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let connects = get(&c.connects);
        StreamStats {
            state: self.state(),
            connects,
            reconnects: connects.saturating_sub(1),
            failed_connects: get(&c.failed_connects),
            silences: get(&c.silences),
            events: get(&c.events),
            undecodable: get(&c.undecodable),
            reconciliations: get(&c.reconciliations),
            reconciled_executions: get(&c.reconciled_executions),
            refused_catchups: get(&c.refused_catchups),
            wait_reads: get(&c.wait_reads),
        }
    }

    /// Takes in one snapshot from any source: fans it out, remembers it, wakes its followers.
    pub fn observe(&self, execution: Execution) {
        self.take_in(Snapshot::whole(Arc::new(execution)), None);
    }

    /// [`Hub::observe`], with the length of the JSON text the execution was read from standing
    /// in for its size: serialising every stream event again only to count its bytes was a
    /// tenth of the stream's CPU. The two differ only by whitespace and escapes (st2 writes
    /// `", "` separators and `\u` escapes, so its text is the longer), so the caches stay
    /// bounded in bytes. A head-only snapshot holds that text, so it weighs the same.
    fn take_in(&self, snapshot: Snapshot, text_len: Option<usize>) {
        let snapshot = Arc::new(snapshot);
        // Nobody listening is normal (no event sink); the snapshot still feeds follows. Only
        // a listener makes a head-only snapshot worth decoding whole.
        if self.updates.receiver_count() > 0 {
            let _ = self.updates.send(snapshot.execution());
        }
        let mut st = self.lock();
        let id = snapshot.head().id.as_str();
        if snapshot.is_terminal() {
            st.in_flight.remove(id);
            let (finished, bytes) = Finished::of(
                snapshot.clone(),
                text_len,
                self.cfg.cached_execution_max_bytes,
            );
            st.finished.insert(id, finished, bytes);
        } else if st.finished.contains_key(id) {
            // A late non-terminal snapshot never replaces a terminal one: terminal is final.
            return;
        } else {
            let bytes = text_len.unwrap_or_else(|| json_size(&**snapshot.head()));
            st.in_flight.insert(id, snapshot.clone(), bytes);
        }
        if let Some(entry) = st.following.get(id) {
            entry.seen.send_if_modified(|seen| {
                let news = !seen.is_final();
                if news {
                    *seen = Seen::Snapshot(snapshot);
                }
                news
            });
        }
    }

    /// An execution arrived on the open, reconciled stream: every change up to its latest
    /// time is known. Only the stream advances this; a read while it is down says nothing
    /// about the executions not read.
    /// `text_len`: the length of the event's JSON text.
    pub fn streamed(&self, snapshot: Snapshot, text_len: usize) {
        if let Some(t) = latest_time(snapshot.head()) {
            let mut st = self.lock();
            st.known_through = Some(st.known_through.map_or(t, |k| k.max(t)));
        }
        self.take_in(snapshot, Some(text_len));
    }

    /// st2 answered 404 for `id`.
    pub fn gone(&self, id: &str) {
        self.settle(id, Seen::Gone);
    }

    /// Reading `id` failed for a reason reading again will not cure.
    fn failed(&self, id: &str, error: St2Error) {
        self.settle(id, Seen::Failed(Arc::new(error)));
    }

    fn settle(&self, id: &str, seen: Seen) {
        let mut st = self.lock();
        st.in_flight.remove(id);
        if let Some(entry) = st.following.get(id) {
            entry.seen.send_replace(seen);
        }
    }

    /// A connection is opening: the st2 time from which its reconciliation must list, or
    /// `None` when nothing was known yet (the first connection).
    pub fn reconcile_from(&self) -> Option<OffsetDateTime> {
        let mut st = self.lock();
        st.connection_opened = None;
        st.known_through
    }

    /// The connection was lost: nothing is covered by it any more.
    pub fn lost(&self) {
        self.lock().connection_opened = None;
    }

    /// The reconciliation after a connection opened at st2 time `opened` (its `Date`)
    /// succeeded. Without a `Date`, our own clock stands in for the next reconciliation's
    /// start (the margin covers modest skew) but never vouches for a follow.
    pub fn reconciled(&self, opened: Option<OffsetDateTime>) {
        let mut st = self.lock();
        let o = opened.unwrap_or_else(OffsetDateTime::now_utc);
        st.known_through = Some(st.known_through.map_or(o, |k| k.max(o)));
        st.connection_opened = opened;
    }

    /// Every execution a reconciliation must re-read: in flight, or followed and unsettled.
    pub fn unsettled(&self) -> Vec<String> {
        let st = self.lock();
        let mut ids: HashSet<&String> = st.in_flight.keys().collect();
        ids.extend(followed(&st));
        ids.into_iter().cloned().collect()
    }

    /// Every followed execution without a final answer yet: what the poll loop reads.
    pub fn polled(&self) -> Vec<String> {
        followed(&self.lock()).cloned().collect()
    }

    /// The executions new follows asked to be read, emptied.
    pub fn take_urgent(&self) -> Vec<String> {
        self.lock().urgent.drain().collect()
    }

    /// Reads `id` over REST and takes the answer in.
    pub async fn read(&self, id: &str) {
        // A failure waiting will not cure is confirmed by one more read before it ends the
        // follows: a token revoked again between the client's re-login and its repeat is
        // refused once more, and the next read, with a fresh token, goes through.
        for confirming in [false, true] {
            Counters::bump(&self.counters.wait_reads, 1);
            match self.client.executions().get(id).send().await {
                Ok(e) => return self.observe(e),
                Err(St2Error::NotFound { .. }) => return self.gone(id),
                // A transient failure costs one interval; the next read or event settles it.
                Err(e) if e.is_transient() => {
                    tracing::debug!(execution = id, error = %e, "reading a followed execution failed; trying again");
                    return;
                }
                Err(e) if confirming => return self.failed(id, e),
                Err(e) => {
                    tracing::debug!(execution = id, error = %e, "reading a followed execution was refused; reading it once more");
                }
            }
        }
    }

    /// Whether events for `id` are certain to reach this watcher: the open connection is
    /// reconciled and the stream already carried it, or it started after the connection
    /// opened (st2's `Date` has whole seconds, hence the one-second margin).
    fn covered(&self, st: &State, id: &str, known: Option<&Execution>) -> bool {
        let Some(opened) = st.connection_opened else {
            return false;
        };
        if self.state() != ConnectionState::Connected {
            return false;
        }
        st.in_flight.contains_key(id)
            || known
                .and_then(|e| e.start_timestamp)
                .is_some_and(|started| started > opened + Duration::from_secs(1))
    }

    /// Adds a follower of `id`, seeded with the newest snapshot known (the watcher's own, or
    /// `known`). Unless the stream is certain to carry its changes, the poll loop reads it
    /// at once: registered first, then read, so no change falls between the two.
    pub fn register(self: &Arc<Self>, id: &str, known: Option<&Arc<Execution>>) -> Registration {
        self.poller.get_or_init(|| {
            tokio::spawn(super::poll::run(
                Arc::downgrade(self),
                self.wake.clone(),
                self.conn.subscribe(),
            ));
        });
        let mut st = self.lock();
        // A finished execution remembered only as a summary is read from st2 again, whole.
        let summarized = st.finished.get(id).is_some_and(|f| !f.whole);
        let newest = st
            .finished
            .get(id)
            .filter(|f| f.whole)
            .map(|f| f.snapshot.clone())
            .or_else(|| st.in_flight.get(id).cloned())
            .or_else(|| known.map(|e| Arc::new(Snapshot::whole(e.clone()))));
        let covered = self.covered(&st, id, known.map(|e| &**e));
        let entry = st.following.entry(id.to_string()).or_insert_with(|| Entry {
            seen: watch::channel(Seen::Nothing).0,
            followers: 0,
        });
        entry.followers += 1;
        entry.seen.send_if_modified(|seen| match (&*seen, newest) {
            // A failure is not remembered for followers that come later: they try again.
            (Seen::Nothing | Seen::Failed(_), Some(e)) => {
                *seen = Seen::Snapshot(e);
                true
            }
            (Seen::Failed(_), None) => {
                *seen = Seen::Nothing;
                true
            }
            _ => false,
        });
        let mut seen = entry.seen.subscribe();
        // The first poll of the follow looks at what is already there.
        seen.mark_changed();
        let settled = seen.borrow().is_final();
        if !settled && (!covered || summarized) {
            st.urgent.insert(id.to_string());
            self.wake.notify_one();
        }
        Registration {
            hub: self.clone(),
            id: id.to_string(),
            seen,
        }
    }
}

/// The followed executions not settled yet.
fn followed(st: &State) -> impl Iterator<Item = &String> {
    st.following
        .iter()
        .filter(|(_, e)| !e.seen.borrow().is_final())
        .map(|(id, _)| id)
}

/// One follower of one execution; dropping it removes the entry with the last follower.
pub(super) struct Registration {
    hub: Arc<Hub>,
    id: String,
    /// What the follower has seen.
    pub seen: watch::Receiver<Seen>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if let Some(entry) = st.following.get_mut(&self.id) {
            entry.followers -= 1;
            if entry.followers == 0 {
                st.following.remove(&self.id);
                st.urgent.remove(&self.id);
            }
        }
    }
}

/// The latest st2 time an execution carries (its log, start or end).
fn latest_time(e: &Execution) -> Option<OffsetDateTime> {
    e.log
        .iter()
        .map(|l| l.timestamp)
        .chain(e.start_timestamp)
        .chain(e.end_timestamp)
        .max()
}

/// Reads a watcher's counters while it lives; see [`ExecutionWatcher::stats_handle`].
#[derive(Clone)]
pub struct StatsHandle(std::sync::Weak<Hub>);

impl StatsHandle {
    /// The counters, or `None` once every handle on the watcher is gone.
    pub fn stats(&self) -> Option<StreamStats> {
        self.0.upgrade().map(|hub| hub.stats())
    }
}

/// Stops the consumer when the last watcher handle is dropped (the poll loop ends with the
/// last follow).
struct Running {
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Follows st2 executions: through one stream connection when `st2.stream.enabled`, and
/// through one poll loop while that is down or disabled. Cheap to clone; the connection
/// closes when the last clone is dropped or [`ExecutionWatcher::shutdown`] is called.
#[derive(Clone)]
pub struct ExecutionWatcher {
    hub: Arc<Hub>,
    running: Arc<Running>,
}

impl ExecutionWatcher {
    /// Whether `other` is a handle on this same watcher (one stream connection).
    pub fn same_as(&self, other: &ExecutionWatcher) -> bool {
        Arc::ptr_eq(&self.hub, &other.hub)
    }

    /// Spawns the stream consumer for `client`'s credentials (needs a Tokio runtime), or,
    /// with `cfg.enabled` false, a watcher that opens no connection and only polls.
    pub fn start(client: St2Client, cfg: StreamConfig) -> Self {
        let initial = if cfg.enabled {
            ConnectionState::Connecting
        } else {
            ConnectionState::Disabled
        };
        let hub = Arc::new(Hub {
            client,
            counters: Counters::default(),
            updates: broadcast::channel(UPDATES_BUFFER).0,
            state: Mutex::new(State {
                following: HashMap::new(),
                finished: Bounded::new(cfg.capacity, cfg.cache_max_bytes),
                in_flight: Bounded::new(cfg.capacity, cfg.cache_max_bytes),
                urgent: HashSet::new(),
                known_through: None,
                connection_opened: None,
            }),
            conn: watch::channel(initial).0,
            wake: Arc::new(Notify::new()),
            poller: std::sync::OnceLock::new(),
            cfg,
        });
        let (stop, stopped) = watch::channel(false);
        if hub.cfg.enabled {
            tokio::spawn(super::consumer::run(hub.clone(), stopped));
        }
        Self {
            hub,
            running: Arc::new(Running { stop }),
        }
    }

    /// Whether this watcher follows st2's event stream (`st2.stream.enabled`), rather than
    /// only polling.
    pub fn streams(&self) -> bool {
        self.hub.cfg.enabled
    }

    /// Closes the stream connection now (clones stop following it too; follows and waits
    /// are then served by the poll loop, every `fallback_poll`).
    pub fn shutdown(&self) {
        self.running.stop.send_replace(true);
    }

    /// Execution `id` as events in execution order: its statuses, its output, then its
    /// terminal status or `Gone`; see [`Follow`] for the order and the bounds.
    pub fn follow(&self, id: &str) -> Follow {
        Follow::new(self.hub.clone(), id, None, true, Statuses::Whole)
    }

    /// Resolves with the execution as soon as a terminal status is seen for `id` — from the
    /// stream, a reconciliation, or the poll loop — or fails at `deadline`.
    pub async fn wait_terminal(&self, id: &str, deadline: Instant) -> Result<Execution, WaitError> {
        Follow::new(self.hub.clone(), id, None, false, Statuses::TerminalWhole)
            .until_terminal(deadline, |_| {})
            .await
    }

    /// As [`ExecutionWatcher::wait_terminal`] for an execution the caller just read or
    /// created: when it started after the stream connected, no REST read is needed at all.
    pub async fn wait_for(
        &self,
        execution: &Execution,
        deadline: Instant,
    ) -> Result<Execution, WaitError> {
        if execution.is_terminal() {
            return Ok(execution.clone());
        }
        let known = Arc::new(execution.clone());
        Follow::new(
            self.hub.clone(),
            &execution.id,
            Some(known),
            false,
            Statuses::TerminalWhole,
        )
        .until_terminal(deadline, |_| {})
        .await
    }

    /// [`ExecutionWatcher::wait_for`] for a caller that needs only the terminal execution's
    /// id, status, times, log and result, without copies: `execution` seeds the follow as it
    /// is, and the answer is the watcher's own snapshot — whole when it was read over REST or
    /// already decoded, else what st2's event carried of those fields (the rest empty).
    pub async fn wait_head(
        &self,
        execution: Arc<Execution>,
        deadline: Instant,
    ) -> Result<Arc<Execution>, WaitError> {
        if execution.is_terminal() {
            return Ok(execution);
        }
        let id = execution.id.clone();
        Follow::new(
            self.hub.clone(),
            &id,
            Some(execution),
            false,
            Statuses::Heads,
        )
        .until_terminal_shared(deadline, |_| {})
        .await
    }

    /// Every execution snapshot observed (stream events, reconciliation reads, reads by
    /// waits), in arrival order. The same status may arrive more than once and an older
    /// snapshot may follow a newer one (st2 interleaves, reconciliation re-reads): dedupe on
    /// `(id, status)`. A receiver more than 1024 snapshots behind loses the oldest.
    pub fn updates(&self) -> broadcast::Receiver<Arc<Execution>> {
        self.hub.updates.subscribe()
    }

    /// Where the connection is, and the counters since start.
    pub fn stats(&self) -> StreamStats {
        self.hub.stats()
    }

    /// A handle that reads [`ExecutionWatcher::stats`] without keeping the watcher alive, for
    /// a metrics reporter that must not hold the stream connection open.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(Arc::downgrade(&self.hub))
    }

    /// Resolves once the connection is open and reconciled, or at `deadline` (false).
    pub async fn connected(&self, deadline: Instant) -> bool {
        let mut conn = self.hub.conn.subscribe();
        tokio::time::timeout_at(
            deadline,
            conn.wait_for(|s| *s == ConnectionState::Connected),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::{Bounded, Execution, Finished, Snapshot};
    use crate::models::ExecutionHead;
    use std::sync::Arc;

    #[test]
    fn bounded_map_forgets_the_oldest_and_keeps_its_order_list_small() {
        let mut b = Bounded::new(3, usize::MAX);
        for i in 0..10 {
            b.insert(&i.to_string(), i, 0);
            b.remove(&(i - 1).to_string());
            b.insert(&(i - 1).to_string(), i, 0);
        }
        assert!(b.map.len() <= 3);
        assert!(b.order.len() <= 7, "{}", b.order.len());
    }

    #[test]
    fn bounded_map_holds_its_total_bytes_under_the_ceiling() {
        let mut b = Bounded::new(1_000, 1_000);
        for i in 0..100 {
            b.insert(&format!("k{i:02}"), i, 97);
            assert!(b.bytes <= 1_000, "{} bytes", b.bytes);
        }
        assert_eq!(b.map.len(), 10, "ten entries of 100 bytes fit");
        assert!(b.get("k99").is_some() && b.get("k89").is_none());
        b.insert("k99", 0, 1);
        assert_eq!(b.bytes, 9 * 100 + 4, "a replaced entry is weighed anew");
    }

    #[test]
    fn a_large_finished_execution_is_remembered_as_its_summary() {
        let mut e = Execution {
            id: "e1".into(),
            status: Some(crate::ExecutionStatus::Succeeded),
            result: Some(serde_json::json!({"stdout": "x".repeat(500_000)})),
            ..Execution::default()
        };
        let whole = |e: &Execution| Arc::new(Snapshot::whole(Arc::new(e.clone())));
        let (summary, bytes) = Finished::of(whole(&e), None, 16 * 1024);
        assert!(!summary.whole);
        assert!(bytes < 200, "{bytes} bytes");
        assert_eq!(summary.snapshot.head().status, e.status);
        assert!(summary.snapshot.execution().result.is_none());
        e.result = Some(serde_json::json!({"stdout": "small"}));
        let (kept, _) = Finished::of(whole(&e), None, 16 * 1024);
        assert!(kept.whole);
        assert_eq!(*kept.snapshot.execution(), e);
    }

    #[test]
    fn a_streamed_execution_is_weighed_by_its_text_which_is_never_shorter_than_ours() {
        // st2 writes JSON as Python's json.dumps does: ", " and ": " separators, \u escapes.
        let text = r#"{"id": "e1", "status": "succeeded", "result": {"stdout": "caf\u00e9 \u2713\n"}, "parameters": {}, "context": {"user": "st2admin"}}"#;
        let e: Execution = serde_json::from_str(text).unwrap();
        assert!(super::json_size(&e) <= text.len());
        let ExecutionHead(head) = serde_json::from_str(text).unwrap();
        let streamed = Arc::new(Snapshot::head_of(head, text.to_string()));
        let (finished, bytes) = Finished::of(streamed.clone(), Some(text.len()), 16 * 1024);
        assert!(finished.whole);
        assert_eq!(bytes, text.len(), "weighed without writing it out again");
        assert_eq!(*finished.snapshot.execution(), e, "decoded whole on demand");
        let (summary, _) = Finished::of(streamed, Some(20_000), 16 * 1024);
        assert!(!summary.whole, "the text's length decides");
    }
}
