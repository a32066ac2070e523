//! Translation between Portarium's dispatch contract and st2 executions.
//!
//! One dispatch: check the flowRef and payload before st2 is called, find an execution st2
//! already holds for the same idempotency key (so retries and restarts never start a second
//! one), otherwise create it, then follow it to a completed status within a deadline.

mod follow;
mod schemas;
pub mod validate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::core::config::SchemaCacheConfig;
use crate::core::governance::packs::PackGate;
use crate::core::portarium::{DispatchRequest, ErrorKind, Hint};
use crate::core::{DispatchError, Dispatched};
use schemas::SchemaCache;
use st2_client::models::{ActionParameters, JsonObject};
use st2_client::stream::{ExecutionWatcher, StreamConfig};
use st2_client::{
    CancelOutcome, Execution, ExecutionRequest, ExecutionStatus, ListExecutions, SortOrder,
    St2Client, St2Error,
};
use validate::{ActionRef, check_parameters};

/// Context key under which our ids ride on every st2 execution.
pub const CONTEXT_KEY: &str = "portarium";
/// Creates tried before a dispatch gives up on st2, and the pauses between them.
const CREATE_ATTEMPTS: u32 = 8;
const CREATE_RETRY_FIRST: Duration = Duration::from_millis(100);
const CREATE_RETRY_MAX: Duration = Duration::from_secs(2);
/// How many executions for one key a replica reads when checking for a duplicate.
const CONVERGE_LOOKAHEAD: u32 = 10;
/// How far back the context-filter fallback looks for a key's executions: it scans every
/// execution in the window (st2 does not index the field), so the window bounds its cost.
/// A retry of a dispatch older than this starts a new execution.
pub const FALLBACK_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// How often a dispatcher without a stream watcher reads the executions it follows: the
/// longest pause of the per-dispatch polling it replaces.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Runs Portarium dispatches on one st2 cluster.
#[derive(Clone)]
pub struct Dispatcher {
    st2: St2Client,
    flights: Flights,
    cancel_on_deadline: bool,
    watcher: ExecutionWatcher,
    gate: Option<Arc<PackGate>>,
    schemas: Arc<SchemaCache>,
    /// One schema read per action at a time.
    schema_reads: Flights,
    /// Set once st2 refused the traces API (404/403): from then on keys are looked up with
    /// the context filter, and the warning about it has been logged.
    no_traces: Arc<AtomicBool>,
}

/// A key's executions as st2's lookup gave them.
enum Held {
    /// Execution ids from the trace index, not yet read.
    Traced(Vec<String>),
    /// Executions (without results) from the context-filter fallback, oldest first.
    Listed(Vec<Execution>),
}

/// One lock per key in flight on this replica: per dispatch key, so two concurrent requests
/// with the same key cannot both miss each other's execution and start two; per action, so
/// concurrent dispatches wait for one schema read.
#[derive(Clone, Default)]
struct Flights(Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

/// Above this many keys, locks nobody holds any more are swept from the map.
const FLIGHTS_SWEEP_AT: usize = 1024;

impl Flights {
    async fn enter(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().expect("flight map lock poisoned");
            if map.len() >= FLIGHTS_SWEEP_AT {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

impl Dispatcher {
    /// A dispatcher using `st2` for every call; it follows executions through a watcher
    /// that opens no stream connection and reads them every 500 ms.
    pub fn new(st2: St2Client) -> Self {
        let polling = StreamConfig {
            enabled: false,
            fallback_poll: POLL_EVERY,
            ..StreamConfig::default()
        };
        Self {
            watcher: ExecutionWatcher::start(st2.clone(), polling),
            st2,
            flights: Flights::default(),
            cancel_on_deadline: false,
            gate: None,
            schemas: Arc::new(SchemaCache::new(SchemaCacheConfig::default())),
            schema_reads: Flights::default(),
            no_traces: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Keeps action parameter schemas as `cfg` says (by default 30 s, 1,024 actions, 4 MiB).
    pub fn with_schema_cache(mut self, cfg: SchemaCacheConfig) -> Self {
        self.schemas = Arc::new(SchemaCache::new(cfg));
        self
    }

    /// `action`'s merged parameter schema: the one read less than `dispatch.schema_cache.ttl`
    /// ago, else st2's.
    pub async fn parameters(&self, action: &str) -> Result<Arc<ActionParameters>, St2Error> {
        if let Some(schema) = self.schemas.get(action) {
            return Ok(schema);
        }
        // When an entry expires under load, one dispatch reads it and the others wait for
        // that read rather than each asking st2.
        let _reading = self.schema_reads.enter(action).await;
        if let Some(schema) = self.schemas.get(action) {
            return Ok(schema);
        }
        let schema = Arc::new(self.st2.action_parameters(action).await?);
        self.schemas.put(action, schema.clone());
        Ok(schema)
    }

    /// Cancels an execution whose synchronous wait ran out instead of leaving it running.
    pub fn cancel_on_deadline(mut self, cancel: bool) -> Self {
        self.cancel_on_deadline = cancel;
        self
    }

    /// Follows executions through `watcher` (st2's event stream, or its poll loop).
    pub fn with_watcher(mut self, watcher: ExecutionWatcher) -> Self {
        self.watcher = watcher;
        self
    }

    /// The watcher every execution is followed through, streaming or only polling.
    pub fn watcher(&self) -> &ExecutionWatcher {
        &self.watcher
    }

    /// This dispatcher refusing, before st2 is asked to run anything, actions whose pack the
    /// reviewed-packs `gate` does not approve.
    pub fn with_gate(self, gate: Arc<PackGate>) -> Self {
        Self {
            gate: Some(gate),
            ..self
        }
    }

    /// The flowRef as an action ref, once the pack gate (if any) lets its pack run.
    pub async fn admit(&self, flow_ref: &str) -> Result<ActionRef, DispatchError> {
        let action = ActionRef::parse(flow_ref.trim())
            .map_err(|e| DispatchError::refused(ErrorKind::FlowNotFound, e.to_string()))?;
        if let Some(gate) = &self.gate {
            gate.check(&self.st2, &action.pack)
                .await
                .map_err(|refusal| refusal.to_error())?;
        }
        Ok(action)
    }

    /// The installed version of `pack` the pack gate last read, if there is a gate and it
    /// did; no st2 call.
    pub fn pack_version(&self, pack: &str) -> Option<String> {
        self.gate.as_ref()?.known_version(pack)
    }

    /// The st2 client this dispatcher uses (with its tenant's credentials).
    pub fn st2(&self) -> &St2Client {
        &self.st2
    }

    /// Dispatches `req` and waits up to `wait` for the execution to complete. When the wait
    /// runs out, the execution keeps running (unless configured to cancel) and the answer is
    /// `Timeout` naming it; the same request again attaches to it instead of starting another.
    pub async fn dispatch(
        &self,
        req: &DispatchRequest,
        wait: Duration,
    ) -> Result<Dispatched, DispatchError> {
        let action = self.admit(&req.flow_ref).await?;
        self.dispatch_naming(req, &action, &dispatch_key(req), wait, None)
            .await
            .0
    }

    /// [`Dispatcher::dispatch`] of `action` (`req`'s flowRef, already through
    /// [`Dispatcher::admit`]) under `key` (`req`'s [`dispatch_key`], which the caller has
    /// already made), naming the execution the answer is about when there is one. `schema`:
    /// `action`'s parameter schema when the caller has just read it (see
    /// [`Dispatcher::submit`]).
    pub async fn dispatch_naming(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        key: &str,
        wait: Duration,
        schema: Option<&Arc<ActionParameters>>,
    ) -> (Result<Dispatched, DispatchError>, Option<String>) {
        let deadline = Instant::now() + wait;
        // Boxed: the lookups and the create are most of this future's size, which would
        // otherwise be copied along with it through every caller.
        let submit = Box::pin(self.submit(req, action, key, schema));
        let submitted = tokio::time::timeout_at(deadline, submit).await;
        let execution = match submitted {
            Ok(Ok(found)) => found,
            Ok(Err(refusal)) => return (Err(refusal), None),
            Err(_) => {
                return (
                    Err(DispatchError::new(
                        ErrorKind::Timeout,
                        format!(
                            "st2 did not accept the execution within {} ms; retry with the same idempotency key — it attaches to the execution if st2 created it",
                            wait.as_millis()
                        ),
                    )),
                    None,
                );
            }
        };
        let id = execution.id.clone();
        let result = match self.follow(execution, action, deadline).await {
            Err(timed_out) if self.cancel_on_deadline && timed_out.kind == ErrorKind::Timeout => {
                Err(self.cancel_after_deadline(&id, timed_out).await)
            }
            result => result,
        };
        (result, Some(id))
    }

    /// Starts `req`'s execution of `action` (admitted) under `key` (its [`dispatch_key`]), or
    /// finds the one st2 already holds for it, without waiting for it to complete. `schema`:
    /// `action`'s parameter schema when the caller has just read it, so the payload is checked
    /// against it rather than a second read (which the cache would not spare with `ttl: 0s`).
    pub async fn submit(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        key: &str,
        schema: Option<&Arc<ActionParameters>>,
    ) -> Result<Execution, DispatchError> {
        let _flight = self.flights.enter(key).await;
        // Both are reads, so they go out together: one round trip less per dispatch.
        let (found, checked) = tokio::join!(
            self.existing(Some(action), key, &req.tenant_id),
            self.checked_parameters(req, action, schema)
        );
        let execution = match found {
            // A retry attaches to what st2 holds, whatever its payload says now.
            Ok(Some(found)) => found,
            Ok(None) => {
                checked?;
                let created = self.start(req, action, key).await?;
                self.converge(created, action, key, &req.tenant_id).await
            }
            Err(e) => return Err(from_st2(&e, action)),
        };
        Ok(execution)
    }

    /// Checks `req` (for `action`, admitted) exactly as [`Dispatcher::dispatch`] would — that
    /// st2 has the action, the payload against its schema — and starts nothing. `schema` as
    /// for [`Dispatcher::submit`].
    pub async fn dry_run(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        schema: Option<&Arc<ActionParameters>>,
    ) -> Result<Dispatched, DispatchError> {
        // A real run of a disabled action is refused by st2; a dry run must say so too.
        match self.st2.actions().get(&action.to_string()).await {
            Ok(found) if found.enabled == Some(false) => return Err(disabled(action)),
            Ok(_) => {}
            Err(e) => return Err(from_st2(&e, action)),
        }
        self.checked_parameters(req, action, schema).await?;
        Ok(Dispatched {
            output: json!({"dryRun": true, "actionRef": action.to_string(), "valid": true}),
            execution: None,
        })
    }

    /// Checks the payload against the action's schema: `known`, else the cached one, else
    /// st2's.
    async fn checked_parameters(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        known: Option<&Arc<ActionParameters>>,
    ) -> Result<(), DispatchError> {
        let schema = match known {
            Some(schema) => schema.clone(),
            None => self
                .parameters(&action.to_string())
                .await
                .map_err(|e| from_st2(&e, action))?,
        };
        let problems = check_parameters(&schema, &req.payload);
        if problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(unfit(format!(
            "payload does not fit {action}'s parameters: {}",
            list.join("; ")
        )))
    }

    /// st2 refused the parameters of a create (a 400 other than a missing action), so the
    /// schema they were checked against may be stale: it is dropped and read again, and the
    /// answer names what the fresh schema finds wrong, else st2's own words. Either way the
    /// request must change, and st2 ran nothing: 422.
    async fn refused_parameters(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        err: &St2Error,
    ) -> DispatchError {
        self.schemas.drop_action(&action.to_string());
        match self.checked_parameters(req, action, None).await {
            Err(refusal) => refusal,
            Ok(()) => unfit(format!(
                "st2 refused {action}'s parameters: {}; change the payload to fit the action",
                err.faultstring().unwrap_or_default()
            )),
        }
    }

    /// What st2 holds for this key: ids from its trace index, or (without the traces API)
    /// up to `limit` executions from the fallback filter.
    async fn held(
        &self,
        action: Option<&ActionRef>,
        key: &str,
        limit: u32,
    ) -> Result<Held, St2Error> {
        if !self.no_traces.load(Ordering::Relaxed) {
            match self.traced(action, key).await {
                Ok(ids) => return Ok(Held::Traced(ids)),
                Err(St2Error::NotFound { .. } | St2Error::Forbidden { .. }) => {
                    if !self.no_traces.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            window_hours = FALLBACK_WINDOW.as_secs() / 3600,
                            "st2 refused the traces API (older st2, or RBAC without trace access); \
                             idempotency keys are looked up with an unindexed context filter over \
                             the last 24 h of executions, which costs st2 a scan per dispatch"
                        );
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.filtered(action, key, limit).await.map(Held::Listed)
    }

    /// Ids of the executions of `action` st2 traced under `key`, through st2's index on
    /// `trace_tag`. Every create that brings the tag starts a new trace, so a key that was
    /// raced lists several; executions a workflow started inside one are left out.
    async fn traced(&self, action: Option<&ActionRef>, key: &str) -> Result<Vec<String>, St2Error> {
        let traces = self.st2.traces().list().trace_tag(key).send().await?;
        let action = action.map(ToString::to_string);
        Ok(traces
            .items
            .iter()
            .flat_map(|t| &t.action_executions)
            .filter(|c| match (&action, &c.r#ref) {
                (Some(want), Some(r)) => r == want,
                _ => true,
            })
            .filter(|c| c.extra.get("caused_by").and_then(|b| b.get("id")).is_none())
            .map(|c| c.object_id.clone())
            .collect())
    }

    /// The executions `ids` names, oldest first, without their results.
    async fn read_minimal(
        &self,
        action: Option<&ActionRef>,
        ids: &[String],
        limit: u32,
    ) -> Result<Vec<Execution>, St2Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).take(100).collect();
        let page = self.oldest_first(action, limit).ids(&ids).send().await?;
        Ok(page.items)
    }

    /// A list of executions (of `action`, if given), oldest first, without their results.
    fn oldest_first(&self, action: Option<&ActionRef>, limit: u32) -> ListExecutions<'_> {
        let list = self.st2.executions().list();
        let list = match action {
            Some(action) => list.action(&action.to_string()),
            None => list,
        };
        list.exclude(&["result"])
            .sort(SortOrder::OldestFirst)
            .limit(limit)
    }

    /// The fallback without the traces API: st2 scans every execution in the window.
    async fn filtered(
        &self,
        action: Option<&ActionRef>,
        key: &str,
        limit: u32,
    ) -> Result<Vec<Execution>, St2Error> {
        let since = time::OffsetDateTime::now_utc() - FALLBACK_WINDOW;
        let page = self
            .oldest_first(action, limit)
            .filter(&format!("context.{CONTEXT_KEY}.dispatch_key"), key)
            .started_after(since)
            .send()
            .await?;
        Ok(page.items)
    }

    /// The execution st2 already holds for this key, if any, read whole: the oldest of
    /// `tenant`'s, which is the one [`Dispatcher::converge`] keeps when replicas raced. One of
    /// another tenant's is never attached to: it is logged and passed over.
    async fn existing(
        &self,
        action: Option<&ActionRef>,
        key: &str,
        tenant: &str,
    ) -> Result<Option<Execution>, St2Error> {
        // The usual answer is one traced id, read whole at once. Otherwise the oldest is
        // picked from a list without results (they can be large), then read in full.
        let held = match self.held(action, key, CONVERGE_LOOKAHEAD).await? {
            Held::Traced(ids) if ids.len() <= 1 => {
                let Some(id) = ids.into_iter().next() else {
                    return Ok(None);
                };
                let found = self.st2.executions().get(&id).send().await?;
                if belongs_to(&found, tenant) {
                    return Ok(Some(found));
                }
                foreign_execution(&found, tenant);
                return Ok(None);
            }
            Held::Traced(ids) => self.read_minimal(action, &ids, CONVERGE_LOOKAHEAD).await?,
            Held::Listed(listed) => listed,
        };
        match own_oldest(held, tenant) {
            Some(oldest) => self.st2.executions().get(&oldest.id).send().await.map(Some),
            None => Ok(None),
        }
    }

    /// The execution `tenant` started under `key` (see [`invocation_key`]), of whatever action,
    /// read whole; `None` when it has none. Found through st2's trace index like a dispatch's
    /// retry, so neither another tenant's executions nor a dispatch of the same tenant whose
    /// ids happen to match can stand in for it.
    pub async fn find(&self, key: &str, tenant: &str) -> Result<Option<Execution>, St2Error> {
        self.existing(None, key, tenant).await
    }

    async fn start(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        key: &str,
    ) -> Result<Execution, DispatchError> {
        let mut request = ExecutionRequest::new(action.to_string());
        request.parameters = req.payload.clone();
        request
            .context
            .insert(CONTEXT_KEY.into(), context(req, key));
        request.trace_tag = Some(key.to_string());
        let mut pause = CREATE_RETRY_FIRST;
        for attempt in 1..=CREATE_ATTEMPTS {
            let err = match self.st2.executions().create_brief(&request).await {
                Ok(created) => return Ok(created),
                Err(e) => e,
            };
            if matches!(err, St2Error::BadRequest { .. })
                && kind_of(&err) != ErrorKind::FlowNotFound
            {
                return Err(self.refused_parameters(req, action, &err).await);
            }
            // A dropped connection, a timeout or a 5xx leaves it unknown whether st2 created
            // the execution; only st2 can tell, so look before trying again.
            // A 429 is st2 declining before doing anything: the caller's retry policy owns it.
            let ambiguous = matches!(
                err,
                St2Error::Connect { .. } | St2Error::Timeout { .. } | St2Error::Server { .. }
            );
            if !ambiguous || attempt == CREATE_ATTEMPTS {
                return Err(from_st2(&err, action));
            }
            tracing::warn!(%err, attempt, "creating the st2 execution failed; checking whether it exists");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(CREATE_RETRY_MAX);
            match self.existing(Some(action), key, &req.tenant_id).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) => return Err(from_st2(&e, action)),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Closes the race between replicas: two that missed each other's execution both created
    /// one. Each looks again after creating; the oldest of `tenant`'s executions for the key
    /// (by st2's `start_timestamp`, then id) wins everywhere, and a replica holding a younger
    /// one cancels it — normally before st2 has scheduled it — and follows the winner instead.
    async fn converge(
        &self,
        created: Execution,
        action: &ActionRef,
        key: &str,
        tenant: &str,
    ) -> Execution {
        // Without the list the created execution is the only one known: keep it.
        let held = match self.held(Some(action), key, CONVERGE_LOOKAHEAD).await {
            // Nobody raced: the trace index names only ours, so there is nothing to read.
            Ok(Held::Traced(ids)) if ids.iter().all(|id| *id == created.id) => return created,
            Ok(Held::Traced(ids)) => {
                self.read_minimal(Some(action), &ids, CONVERGE_LOOKAHEAD)
                    .await
            }
            Ok(Held::Listed(listed)) => Ok(listed),
            Err(e) => Err(e),
        };
        let Ok(held) = held else {
            return created;
        };
        let Some(winner) = own_oldest(held, tenant).filter(|w| w.id != created.id) else {
            return created;
        };
        tracing::warn!(
            duplicate = %created.id,
            kept = %winner.id,
            "another replica started the same dispatch; canceling the younger execution"
        );
        let _ = self.st2.executions().cancel(&created.id).await;
        match self.st2.executions().get(&winner.id).send().await {
            Ok(full) => full,
            Err(_) => winner,
        }
    }

    /// Cancels the execution a wait gave up on, and says so in the `Timeout` answer.
    async fn cancel_after_deadline(&self, id: &str, timed_out: DispatchError) -> DispatchError {
        let message = &timed_out.message;
        let note = match self.st2.executions().cancel(id).await {
            Ok(CancelOutcome::Canceled(_)) => format!(
                "st2 execution {id} did not complete in time and was canceled (dispatch.cancel_on_deadline)"
            ),
            // It completed meanwhile (or st2 itself timed it out): the first answer stands.
            Ok(CancelOutcome::AlreadyCompleted { .. }) => return timed_out,
            Err(e) => format!("{message}; canceling it failed: {e}"),
        };
        DispatchError::new(ErrorKind::Timeout, note)
    }
}

/// The oldest of `held` that `tenant` started (by st2's `start_timestamp`, then id); the
/// others' are logged as security events and passed over.
fn own_oldest(held: Vec<Execution>, tenant: &str) -> Option<Execution> {
    held.into_iter()
        .filter(|e| {
            let own = belongs_to(e, tenant);
            if !own {
                foreign_execution(e, tenant);
            }
            own
        })
        .min_by(|a, b| (a.start_timestamp, &a.id).cmp(&(b.start_timestamp, &b.id)))
}

/// Marks keys of this format, so a later format can tell them apart.
const KEY_VERSION: &str = "pst2v2";

/// The key st2 is searched by (trace tag and `context.portarium.dispatch_key`): SHA-256 over
/// the length-prefixed parts of (tenant, idempotency key), or of (tenant, run, action) without
/// one. Length prefixes make the tuple unambiguous — `acme` + `prod:k1` and `acme:prod` + `k1`
/// hash different bytes — and the tenant inside it binds the key to its tenant. The hex digest
/// keeps the tag at 71 ASCII characters whatever the ids' lengths, far under what st2's
/// indexed `trace_tag` takes, and needs no escaping in st2's `filter=`.
pub fn dispatch_key(req: &DispatchRequest) -> String {
    let parts: Vec<&str> = match (&req.invocation_id, &req.idempotency_key) {
        (Some(invocation), _) => return invocation_key(&req.tenant_id, invocation),
        (None, Some(k)) if !k.trim().is_empty() => vec!["idem", &req.tenant_id, k],
        _ => vec!["run", &req.tenant_id, &req.run_id, &req.action_id],
    };
    hashed_key(&parts)
}

/// The key of `tenant`'s machine invocation `invocation_id`: what `/v1/invoke` starts it
/// under and its status and stream routes look it up by.
pub fn invocation_key(tenant: &str, invocation_id: &str) -> String {
    hashed_key(&["invocation", tenant, invocation_id])
}

/// The key the secrets of `tenant`'s re-runs of execution `original` are booked under: a
/// re-run carries no dispatch key (it is no retry of the original's dispatch).
pub fn rerun_key(tenant: &str, original: &str) -> String {
    hashed_key(&["rerun", tenant, original])
}

/// The key `e`'s secret values are booked under: its dispatch key, a re-run's
/// [`rerun_key`], or else its own id.
pub fn secrets_key(e: &Execution) -> String {
    let ours = |k: &str| {
        e.context
            .get(CONTEXT_KEY)
            .and_then(|c| c.get(k))
            .and_then(Value::as_str)
    };
    match (ours("dispatch_key"), ours("tenant_id"), ours("rerun_of")) {
        (Some(key), _, _) => key.to_string(),
        (None, Some(tenant), Some(original)) => rerun_key(tenant, original),
        _ => e.id.clone(),
    }
}

/// SHA-256 over each part's length (8 bytes, big-endian) followed by its bytes.
fn hashed_key(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts.iter() {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{KEY_VERSION}-{digest}")
}

/// Whether `execution` was started for `tenant` (its `context.portarium.tenant_id`).
pub fn belongs_to(execution: &Execution, tenant: &str) -> bool {
    execution
        .context
        .get(CONTEXT_KEY)
        .and_then(|c| c.get("tenant_id"))
        .and_then(Value::as_str)
        == Some(tenant)
}

/// Logs, as a security event, an execution found under a tenant's key that another tenant
/// (or someone writing to st2 directly) started; the caller is answered as if none existed.
pub fn foreign_execution(execution: &Execution, tenant: &str) {
    tracing::warn!(
        security = true,
        tenant,
        execution = %execution.id,
        "an st2 execution found for this tenant's key belongs to another tenant; ignored"
    );
}

fn context(req: &DispatchRequest, key: &str) -> Value {
    let mut c = json!({
        "tenant_id": req.tenant_id,
        "run_id": req.run_id,
        "action_id": req.action_id,
        "correlation_id": req.correlation_id,
        "dispatch_key": key,
    });
    if let Some(k) = &req.idempotency_key {
        c["idempotency_key"] = json!(k);
    }
    if let Some(id) = &req.invocation_id {
        c["invocation_id"] = json!(id);
    }
    if let Some(t) = &req.trace {
        c["traceparent"] = json!(t.traceparent);
        if let Some(state) = &t.tracestate {
            c["tracestate"] = json!(state);
        }
    }
    c
}

/// The Portarium result of a completed execution.
pub(crate) fn outcome(
    execution: &Execution,
    status: &ExecutionStatus,
) -> Result<Dispatched, DispatchError> {
    // The dispatch span (opened by whoever observes dispatches) names the execution it ended with.
    let span = tracing::Span::current();
    span.record("st2.execution.id", execution.id.as_str());
    span.record("st2.execution.status", status.as_str());
    let result = execution
        .result
        .clone()
        .unwrap_or(Value::Object(JsonObject::new()));
    if *status == ExecutionStatus::Succeeded {
        return Ok(Dispatched {
            output: json!({"executionId": execution.id, "status": status, "result": result}),
            execution: None,
        });
    }
    let kind = match status {
        ExecutionStatus::Timeout => ErrorKind::Timeout,
        _ => ErrorKind::RemoteError,
    };
    Err(DispatchError::new(
        kind,
        format!(
            "st2 execution {} {status}: {}",
            execution.id,
            failure_text(&result)
        ),
    ))
}

/// Lines of stdout a failure quotes when the action wrote nothing to stderr: the end is
/// where a script says why it gave up.
const STDOUT_TAIL_LINES: usize = 5;

/// st2's own words for a failure: the exit code when the runner reports one, then stderr, an
/// error or a message, whichever the runner gave, else the last lines of stdout.
fn failure_text(result: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::String(_) | Value::Null => None,
        other => Some(other.to_string()),
    };
    let said = ["stderr", "error", "message"]
        .iter()
        .filter_map(|k| result.get(*k))
        .find_map(text)
        .or_else(|| {
            let out = text(result.get("stdout")?)?;
            let lines: Vec<&str> = out.lines().collect();
            let tail = lines[lines.len().saturating_sub(STDOUT_TAIL_LINES)..].join("\n");
            Some(format!("stdout ends: {tail}"))
        });
    let exit = result
        .get("return_code")
        .and_then(Value::as_i64)
        .map(|code| format!("exit code {code}"));
    match (exit, said) {
        (Some(exit), Some(said)) => format!("{exit}; {said}"),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => "no error text from st2".into(),
    }
}

/// A payload the action cannot take: 422 with Portarium's `RemoteError`, since a 502 would
/// say st2 failed and invite the same request again.
fn unfit(message: String) -> DispatchError {
    DispatchError::new(ErrorKind::RemoteError, message).with_hint(Hint {
        unprocessable: true,
        ..Hint::default()
    })
}

/// The one place st2 failures become Portarium error kinds.
pub fn kind_of(err: &St2Error) -> ErrorKind {
    match err {
        St2Error::Unauthorized { .. } | St2Error::Forbidden { .. } => ErrorKind::Unauthorized,
        St2Error::RateLimited { .. } => ErrorKind::RateLimited,
        St2Error::NotFound { .. } => ErrorKind::FlowNotFound,
        St2Error::BadRequest { faultstring, .. } if faultstring.ends_with("cannot be found.") => {
            ErrorKind::FlowNotFound
        }
        St2Error::Timeout { .. } => ErrorKind::Timeout,
        _ => ErrorKind::RemoteError,
    }
}

/// A dispatch failure for `err` met while handling `action`.
pub fn from_st2(err: &St2Error, action: &ActionRef) -> DispatchError {
    let message = match kind_of(err) {
        ErrorKind::FlowNotFound => format!("st2 has no action {action}: {err}"),
        _ => err.to_string(),
    };
    failure_of(err, message)
}

/// The refusal of a disabled action: the request cannot succeed until an operator enables it,
/// so 422 rather than a 502 that would invite the same request again.
fn disabled(action: &ActionRef) -> DispatchError {
    DispatchError::new(
        ErrorKind::RemoteError,
        format!(
            "st2 action {action} is disabled; enable it (st2 action enable {action}) or dispatch another action"
        ),
    )
    .with_hint(Hint {
        unprocessable: true,
        ..Hint::default()
    })
}

/// `err` as a failure saying `message`, with st2's `Retry-After` passed on; st2's refusal to
/// run a disabled action is the caller's to fix (422), like [`disabled`].
pub(crate) fn failure_of(err: &St2Error, message: String) -> DispatchError {
    let retry_after = match err {
        St2Error::RateLimited { retry_after, .. } => *retry_after,
        _ => None,
    };
    let unprocessable = matches!(err, St2Error::BadRequest { faultstring, .. } if faultstring.ends_with("is disabled."));
    DispatchError::new(kind_of(err), message).with_hint(Hint {
        retry_after,
        unprocessable,
    })
}
