//! How far lifecycle reporting got, kept in st2's own datastore so that a restart (or another
//! replica taking over) reports what happened meanwhile.
//!
//! The checkpoint is one key per deployment ([`LifecycleConfig::checkpoint_key`]) holding
//! JSON: st2's watermark (the newest start time seen) and the executions in flight — every
//! execution in scope whose final event has not yet been delivered by every sink. At start,
//! [`reconcile`] lists the executions started after the watermark (less a margin) and reads
//! each one still in flight again; their snapshots go through the same tracker as the
//! stream's, so a missed transition is reported with its usual id, `st2:<execution>:<step>`.
//!
//! The [`Ledger`] decides what is in flight: a snapshot's events carry a [`Receipt`] through
//! the sink queues, and an execution leaves the ledger only when the receipt of its final
//! events is dropped by the last sink (delivered, or given up on and logged). So an event
//! still queued at a crash belongs to an execution the checkpoint names, and is derived again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::config::CheckpointConfig;
use st2_basics::{BackoffConfig, RetryPolicy};
use st2_client::{Execution, St2Client, St2Error};

/// Layout version of the key's JSON.
const VERSION: u32 = 1;
/// Executions listed per page; st2's maximum for non-admins.
const PAGE: u32 = 100;
/// Executions re-read at once.
const PARALLEL: usize = 8;
/// Attempts at one st2 call of a reconciliation before it gives up.
const ATTEMPTS: u32 = 6;
/// Longest accepted execution id (st2's are 24 hex digits).
const MAX_ID: usize = 64;

/// What the checkpoint key holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Layout version; 1.
    pub version: u32,
    /// st2 time: every execution started before it is either reported or in `in_flight`.
    #[serde(with = "time::serde::rfc3339")]
    pub watermark: OffsetDateTime,
    /// Executions in scope whose final event was not yet delivered.
    pub in_flight: Vec<String>,
    /// The replica that wrote it, for people reading the key.
    pub replica: String,
}

impl Checkpoint {
    /// Reads the key's value; the reason when it is no checkpoint of this version.
    pub fn parse(text: &str, max_in_flight: usize) -> Result<Self, String> {
        let c: Checkpoint = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if c.version != VERSION {
            return Err(format!(
                "version {} (this adapter reads {VERSION})",
                c.version
            ));
        }
        if c.in_flight.len() > max_in_flight {
            return Err(format!(
                "{} executions in flight, more than max_in_flight {max_in_flight}",
                c.in_flight.len()
            ));
        }
        if let Some(bad) = c.in_flight.iter().find(|id| !is_execution_id(id)) {
            return Err(format!("{bad:?} is no execution id"));
        }
        Ok(c)
    }
}

/// 1 to 64 ASCII letters and digits: st2's ObjectIds and nothing that could build a path.
fn is_execution_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What was found at start.
#[derive(Debug)]
pub enum Loaded {
    /// A checkpoint to reconcile from.
    Found(Checkpoint),
    /// No key (first start, or deleted by hand).
    Missing,
    /// A key that is no checkpoint; why.
    Unreadable(String),
    /// st2 could not be asked (it is retried, see [`read_retry`]); why.
    Unavailable(String),
}

impl Loaded {
    /// The metric label of a start without a checkpoint.
    pub fn reset_reason(&self) -> Option<&'static str> {
        match self {
            Self::Found(_) => None,
            Self::Missing => Some("missing"),
            Self::Unreadable(_) => Some("unreadable"),
            Self::Unavailable(_) => None,
        }
    }
}

/// The one retry of the checkpoint read at start: each pass is one call, which the st2 client
/// already repeats after a blip (`st2.retry`, honouring st2's `Retry-After`); between passes
/// this policy pauses, doubling up to 30 s. It sets no budget: giving up would start reporting
/// from now and lose the transitions the checkpoint covers, so the read is bounded by the
/// reporter's stop instead, which does not wait for it.
pub fn read_retry() -> RetryPolicy {
    RetryPolicy::new(BackoffConfig::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
    ))
}

/// Reads the checkpoint key in one call (the st2 client's own retries included).
pub async fn load(client: &St2Client, key: &str, max_in_flight: usize) -> Loaded {
    match client.keys().get(key).await {
        Ok(None) => Loaded::Missing,
        Ok(Some(pair)) => match Checkpoint::parse(&pair.value, max_in_flight) {
            Ok(c) => Loaded::Found(c),
            Err(why) => Loaded::Unreadable(format!("the value is no checkpoint: {why}")),
        },
        Err(e) => Loaded::Unavailable(e.to_string()),
    }
}

/// Runs `call` up to [`ATTEMPTS`] times with a capped backoff between failures.
async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, St2Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, St2Error>>,
{
    let mut retry = RetryPolicy::new(BackoffConfig::new(
        Duration::from_millis(200),
        Duration::from_secs(5),
    ))
    .max_attempts(ATTEMPTS)
    .start();
    loop {
        match call().await {
            // st2's `Retry-After` is not asked for here: the client's own retries honour it.
            Err(e) if e.is_transient() => match retry.after_failure(None) {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(_) => return Err(e),
            },
            other => return other,
        }
    }
}

/// What a reconciliation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Executions listed as started after the watermark.
    pub listed: u64,
    /// In-flight executions read again.
    pub reread: u64,
    /// Whether `reconcile_max_pages` cut the listing short.
    pub truncated: bool,
}

/// Sends to `into` a snapshot of every execution the checkpoint covers: those started after
/// its watermark (less the margin), oldest first, page by page, then each in-flight one the
/// list did not hold. An execution st2 no longer has is skipped.
pub async fn reconcile(
    client: &St2Client,
    checkpoint: &Checkpoint,
    config: &CheckpointConfig,
    into: &mpsc::Sender<std::sync::Arc<Execution>>,
) -> Result<Reconciled, St2Error> {
    let margin = time::Duration::try_from(config.reconcile_margin).unwrap_or(time::Duration::ZERO);
    let from = checkpoint.watermark - margin;
    let mut done = Reconciled::default();
    let mut listed = HashSet::new();
    let mut offset = 0u64;
    for page in 0.. {
        if page == config.reconcile_max_pages {
            done.truncated = true;
            break;
        }
        let items = with_retries(|| async {
            client
                .executions()
                .list()
                .started_after(from)
                .limit(PAGE)
                .offset(offset)
                .send()
                .await
        })
        .await?
        .items;
        let got = items.len();
        offset += got as u64;
        done.listed += got as u64;
        for e in items {
            listed.insert(e.id.clone());
            if into.send(Arc::new(e)).await.is_err() {
                return Ok(done);
            }
        }
        if got < PAGE as usize {
            break;
        }
    }
    let again: Vec<String> = checkpoint
        .in_flight
        .iter()
        .filter(|id| !listed.contains(*id))
        .cloned()
        .collect();
    let mut reads = futures_util::stream::iter(again)
        .map(|id| async move {
            with_retries(|| async { client.executions().get(&id).send().await }).await
        })
        .buffer_unordered(PARALLEL);
    while let Some(read) = reads.next().await {
        match read {
            Ok(e) => {
                done.reread += 1;
                if into.send(Arc::new(e)).await.is_err() {
                    return Ok(done);
                }
            }
            Err(St2Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// One execution not yet fully delivered.
#[derive(Debug)]
struct Open {
    started: OffsetDateTime,
    /// Receipts still held by sink queues.
    outstanding: u32,
    /// Its final status was seen.
    terminal: bool,
}

#[derive(Debug)]
struct State {
    open: HashMap<String, Open>,
    watermark: OffsetDateTime,
    /// Oldest start of an execution left out because the ledger was full: the watermark
    /// written never passes it, so a reconciliation lists that execution.
    floor: Option<OffsetDateTime>,
    /// Bumped on every change, to skip writing an unchanged checkpoint.
    version: u64,
    /// The change number st2 last acknowledged: the stop skips a write st2 already holds.
    written: Option<u64>,
}

/// The executions in flight and the watermark of one reporting term.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<State>,
    max_in_flight: usize,
}

/// Held, through the sink queues, by the events of one snapshot; dropped by the last sink
/// done with them.
#[derive(Debug)]
pub struct Receipt {
    ledger: Arc<Ledger>,
    id: String,
}

impl Drop for Receipt {
    fn drop(&mut self) {
        let mut st = self.ledger.lock();
        if let Some(open) = st.open.get_mut(&self.id) {
            open.outstanding = open.outstanding.saturating_sub(1);
            if open.terminal && open.outstanding == 0 {
                st.open.remove(&self.id);
                st.version += 1;
            }
        }
    }
}

impl Ledger {
    /// An empty ledger whose watermark starts at `watermark`.
    pub fn new(watermark: OffsetDateTime, max_in_flight: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                open: HashMap::new(),
                watermark,
                floor: None,
                version: 0,
                written: None,
            }),
            max_in_flight,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in one snapshot: the watermark moves to its start; an execution in scope stays
    /// open until its final events are delivered. With `events`, answers the receipt they
    /// carry.
    pub fn note(self: &Arc<Self>, e: &Execution, in_scope: bool, events: bool) -> Option<Receipt> {
        let mut st = self.lock();
        let started = e.start_timestamp;
        if let Some(t) = started
            && t > st.watermark
        {
            st.watermark = t;
            st.version += 1;
        }
        if !in_scope {
            return None;
        }
        let started = started.unwrap_or(st.watermark);
        if !st.open.contains_key(&e.id) {
            if e.is_terminal() && !events {
                return None;
            }
            if st.open.len() >= self.max_in_flight {
                st.floor = Some(st.floor.map_or(started, |f| f.min(started)));
                st.version += 1;
                return None;
            }
            st.open.insert(
                e.id.clone(),
                Open {
                    started,
                    outstanding: 0,
                    terminal: false,
                },
            );
            st.version += 1;
        }
        let open = st.open.get_mut(&e.id)?;
        open.terminal |= e.is_terminal();
        if events {
            open.outstanding += 1;
        } else if open.terminal && open.outstanding == 0 {
            st.open.remove(&e.id);
            st.version += 1;
            return None;
        }
        events.then(|| Receipt {
            ledger: self.clone(),
            id: e.id.clone(),
        })
    }

    /// Executions open now.
    pub fn in_flight(&self) -> usize {
        self.lock().open.len()
    }

    /// The checkpoint to write now and its change number.
    pub fn checkpoint(&self, replica: &str) -> (Checkpoint, u64) {
        let st = self.lock();
        let mut open: Vec<(&String, &Open)> = st.open.iter().collect();
        open.sort_by_key(|(_, o)| o.started);
        let watermark = st.floor.map_or(st.watermark, |f| f.min(st.watermark));
        (
            Checkpoint {
                version: VERSION,
                watermark,
                in_flight: open.into_iter().map(|(id, _)| id.clone()).collect(),
                replica: replica.to_string(),
            },
            st.version,
        )
    }
}

/// Writes `ledger`'s checkpoint to `key` unless st2 already holds this very one (written
/// through this ledger since its last change).
pub async fn write(
    client: &St2Client,
    key: &str,
    ledger: &Ledger,
    replica: &str,
) -> Result<(), St2Error> {
    // Asked before the checkpoint is built: the writer looks every interval, mostly at an
    // unchanged ledger, and building sorts and copies every execution in flight.
    let unchanged = {
        let st = ledger.lock();
        st.written == Some(st.version)
    };
    if unchanged {
        return Ok(());
    }
    let (checkpoint, version) = ledger.checkpoint(replica);
    let text = serde_json::to_string(&checkpoint).unwrap_or_default();
    client.keys().put(key, &text, None).await?;
    ledger.lock().written = Some(version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn execution(id: &str, status: &str, started_s: i64) -> Execution {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + started_s);
        serde_json::from_value(json!({
            "id": id, "status": status,
            "start_timestamp": st2_client::models::rfc3339(t),
        }))
        .unwrap()
    }

    #[test]
    fn an_execution_stays_in_flight_until_its_final_events_are_delivered() {
        let ledger = Ledger::new(OffsetDateTime::UNIX_EPOCH, 10);
        let started = ledger.note(&execution("a", "running", 1), true, true);
        let ended = ledger.note(&execution("a", "succeeded", 1), true, true);
        assert!(started.is_some() && ended.is_some());
        assert_eq!(ledger.checkpoint("r").0.in_flight, ["a"]);
        drop(started);
        assert_eq!(ledger.in_flight(), 1, "the final event is still queued");
        drop(ended);
        assert_eq!(ledger.in_flight(), 0);
        // A late duplicate of the end, with nothing new to send, opens nothing again.
        assert!(
            ledger
                .note(&execution("a", "succeeded", 1), true, false)
                .is_none()
        );
        assert_eq!(ledger.in_flight(), 0);
        // A requested execution without events yet is in flight all the same.
        assert!(
            ledger
                .note(&execution("b", "requested", 2), true, false)
                .is_none()
        );
        assert_eq!(ledger.checkpoint("r").0.in_flight, ["b"]);
        // Out of scope: only the watermark moves.
        ledger.note(&execution("c", "running", 9), false, false);
        let (cp, _) = ledger.checkpoint("r");
        assert_eq!(cp.in_flight, ["b"]);
        assert_eq!(
            cp.watermark,
            execution("c", "running", 9).start_timestamp.unwrap()
        );
    }

    #[test]
    fn a_full_ledger_holds_the_watermark_back_instead_of_forgetting() {
        let ledger = Ledger::new(OffsetDateTime::UNIX_EPOCH, 1);
        let _a = ledger.note(&execution("a", "running", 5), true, true);
        assert!(
            ledger
                .note(&execution("b", "running", 3), true, true)
                .is_none()
        );
        ledger.note(&execution("c", "running", 50), false, false);
        let (cp, _) = ledger.checkpoint("r");
        assert_eq!(cp.in_flight, ["a"]);
        assert_eq!(
            cp.watermark,
            execution("b", "running", 3).start_timestamp.unwrap()
        );
    }

    #[test]
    fn only_a_well_formed_checkpoint_is_taken() {
        let ok = r#"{"version":1,"watermark":"2026-12-06T02:00:00Z","in_flight":["6b064ba10b87881fc7ec3bb8"],"replica":"a"}"#;
        assert!(Checkpoint::parse(ok, 10).is_ok());
        assert!(Checkpoint::parse(ok, 0).is_err(), "more than the cap");
        for bad in [
            "garbage",
            r#"{"version":2,"watermark":"2026-12-06T02:00:00Z","in_flight":[],"replica":"a"}"#,
            r#"{"version":1,"watermark":"yesterday","in_flight":[],"replica":"a"}"#,
            r#"{"version":1,"watermark":"2026-12-06T02:00:00Z","in_flight":["../x"],"replica":"a"}"#,
        ] {
            assert!(Checkpoint::parse(bad, 10).is_err(), "{bad}");
        }
    }
}
