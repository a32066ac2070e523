//! Shared emulator state: the store of executions, output, traces and tokens; the event bus that
//! feeds the stream; and the state changes st2's services perform (create, status updates,
//! cancel/pause/resume requests), each publishing the events st2 would publish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use crate::RequestRecord;
use crate::api::ApiError;
use crate::catalogue::{Action, Catalogue, Runner};
use crate::faults::Faults;
use crate::model::{Event, Execution, OutputRecord, Status, Token, Trace, TraceComponent};
use crate::params;
use crate::util::{object_id, py_str};

/// Settings the running emulator needs.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The accepted `St2-Api-Key`.
    pub api_key: String,
    /// `(name, password)` pairs for HTTP Basic on `/auth/v1/tokens`.
    pub users: Vec<(String, String)>,
    /// Maximum and default token lifetime.
    pub token_ttl: Duration,
    /// Time between automatic status transitions.
    pub step: Duration,
    /// SSE keep-alive interval.
    pub heartbeat: Duration,
    /// `show_secrets` is ignored (RBAC on, a caller that is no admin).
    pub secrets_hidden: bool,
}

/// Everything the emulator keeps in memory.
#[derive(Default)]
pub(crate) struct Store {
    executions: Vec<Execution>,
    index: HashMap<String, usize>,
    watches: HashMap<String, watch::Sender<Status>>,
    /// Every output chunk, in production order.
    pub outputs: Vec<OutputRecord>,
    /// Every trace, in creation order.
    pub traces: Vec<Trace>,
    /// Positions in `traces` by trace tag: st2 indexes `trace_tag`, so a lookup by tag
    /// costs the same however many traces there are.
    traces_by_tag: HashMap<String, Vec<usize>>,
    /// Executions examined by list scans so far: what an unindexed MongoDB query costs.
    pub scanned: u64,
    /// Issued tokens by value.
    pub tokens: HashMap<String, Token>,
    /// Every trigger instance (`TriggerInstanceAPI` form), in creation order.
    pub trigger_instances: Vec<Value>,
    /// Every trigger type (`TriggerTypeAPI` form): st2's system types, then those created.
    pub trigger_types: Vec<Value>,
    /// The datastore's key-value pairs, in creation order.
    pub keys: Vec<crate::api::KvPair>,
}

impl Store {
    /// Executions in creation order.
    pub fn executions(&self) -> &[Execution] {
        &self.executions
    }

    /// One execution by id.
    pub fn execution(&self, id: &str) -> Option<&Execution> {
        self.index.get(id).map(|&i| &self.executions[i])
    }

    /// Add a trace, keeping the tag index; returns its position.
    pub fn push_trace(&mut self, trace: Trace) -> usize {
        let position = self.traces.len();
        self.traces_by_tag
            .entry(trace.trace_tag.clone())
            .or_default()
            .push(position);
        self.traces.push(trace);
        position
    }

    /// Traces with this tag, in creation order, found through the tag index.
    pub fn traces_tagged(&self, tag: &str) -> impl Iterator<Item = &Trace> {
        self.traces_by_tag
            .get(tag)
            .into_iter()
            .flatten()
            .map(|&i| &self.traces[i])
    }

    /// Store `count` succeeded executions of `action`, one second apart before now, sharing
    /// one action and runner document: history for cost measurements, created without
    /// running anything, publishing events or writing traces.
    pub fn preload(&mut self, action: &Action, runner: &Runner, count: usize) {
        let (action_api, runner_api) = (Arc::new(action.api()), Arc::new(runner.api()));
        let now = crate::util::now();
        self.executions.reserve(count);
        for age in (1..=count).rev() {
            let start = now - time::Duration::seconds(age as i64);
            let end = start + time::Duration::milliseconds(5);
            let mut context = Map::new();
            context.insert("user".into(), json!("st2admin"));
            context.insert("pack".into(), json!(action.pack));
            let mut e = Execution {
                id: object_id(),
                liveaction_id: object_id(),
                action_ref: action.reference(),
                runner_name: runner.name.clone(),
                is_workflow: false,
                action_api: action_api.clone(),
                runner_api: runner_api.clone(),
                status: Status::Succeeded,
                start,
                end: Some(end),
                parameters: Map::new(),
                context,
                result: Value::Null,
                result_size: 0,
                parent: None,
                children: Vec::new(),
                log: vec![(start, Status::Requested), (end, Status::Succeeded)],
                delay: None,
                workflow_execution: None,
                task_execution: None,
                runner_info: Map::new(),
                notify: None,
                secrets: Vec::new(),
                origin: Map::new(),
            };
            e.set_result(json!({"failed": false, "succeeded": true}));
            self.index.insert(e.id.clone(), self.executions.len());
            self.executions.push(e);
        }
    }

    /// The trace holding this execution.
    pub fn trace_of(&self, execution_id: &str) -> Option<&Trace> {
        self.traces.iter().find(|t| {
            t.action_executions
                .iter()
                .any(|c| c.object_id == execution_id)
        })
    }
}

/// What is needed to create an execution.
pub(crate) struct NewExecution<'a> {
    /// The action to run.
    pub action: &'a Action,
    /// Validated, cast parameters.
    pub parameters: Map<String, Value>,
    /// Full context (user, pack, caller's keys, parent links).
    pub context: Map<String, Value>,
    /// Delay before scheduling, in milliseconds.
    pub delay: Option<u64>,
    /// Notify settings.
    pub notify: Option<Value>,
    /// Parent execution id (workflow tasks).
    pub parent: Option<String>,
    /// Orquesta workflow execution id (workflow tasks).
    pub workflow_execution: Option<String>,
    /// Orquesta task execution id (workflow tasks).
    pub task_execution: Option<String>,
    /// What started it, when a rule did (see `Execution::origin`).
    pub origin: Map<String, Value>,
}

/// The emulator's shared core (one per `Emulator`, survives restarts).
pub(crate) struct Shared {
    /// Packs, runners, actions.
    pub catalogue: Catalogue,
    /// Settings.
    pub config: Config,
    /// Fault switches.
    pub faults: Faults,
    store: Mutex<Store>,
    events: broadcast::Sender<Arc<Event>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
    requests: Mutex<Vec<RequestRecord>>,
    /// When this emulator started (its metrics page's `process_start_time_seconds`).
    pub started_at: std::time::SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// A fresh state with no executions.
    pub fn new(catalogue: Catalogue, config: Config, faults: Faults) -> Arc<Shared> {
        Arc::new(Shared {
            catalogue,
            config,
            faults,
            store: Mutex::new(Store {
                trigger_types: crate::api::system_trigger_types(),
                ..Store::default()
            }),
            events: broadcast::channel(4096).0,
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(JoinSet::new()),
            requests: Mutex::new(Vec::new()),
            started_at: std::time::SystemTime::now(),
        })
    }

    /// Lock the store (never held across an await).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// A receiver for every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Turns true once the emulator shuts down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Run a background task that is aborted on shutdown.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        if !*self.shutdown.borrow() {
            tasks.spawn(fut);
        }
    }

    /// Stop every background task.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        lock(&self.tasks).abort_all();
    }

    /// Record an incoming request; returns its index for `finish_request`.
    pub fn log_request(&self, record: RequestRecord) -> usize {
        let mut log = lock(&self.requests);
        log.push(record);
        log.len() - 1
    }

    /// Set the status of a logged request.
    pub fn finish_request(&self, index: usize, status: u16) {
        if let Some(r) = lock(&self.requests).get_mut(index) {
            r.status = status;
        }
    }

    /// Every request received so far.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        lock(&self.requests).clone()
    }

    fn publish(
        &self,
        name: String,
        body: Value,
        e: Option<&Execution>,
        execution_id: Option<String>,
    ) {
        let event = Event {
            name,
            data: body.to_string(),
            action_ref: e
                .map(|e| e.action_ref.clone())
                .or_else(|| body["action_ref"].as_str().map(str::to_string)),
            execution_id,
            body_id: body["id"].as_str().map(str::to_string),
            status: body["status"].as_str().and_then(Status::parse),
            output_type: body["output_type"].as_str().map(str::to_string),
        };
        // No subscriber is not an error: events are lost when nobody listens, as in st2.
        let _ = self.events.send(Arc::new(event));
    }

    fn emit(&self, e: &Execution, kind: &str, liveaction: bool) {
        if liveaction {
            self.publish(
                format!("st2.liveaction__{kind}"),
                e.liveaction_event(true),
                Some(e),
                None,
            );
        }
        self.publish(
            format!("st2.execution__{kind}"),
            e.api(true),
            Some(e),
            Some(e.id.clone()),
        );
    }

    /// Watch an execution's status.
    pub fn status_rx(&self, id: &str) -> Option<watch::Receiver<Status>> {
        self.store().watches.get(id).map(watch::Sender::subscribe)
    }

    /// Create an execution (parameters already validated), link it to its trace and parent,
    /// publish the create events and start running it. Returns the new execution.
    pub fn create_execution(
        self: &Arc<Self>,
        new: NewExecution<'_>,
    ) -> Result<Execution, ApiError> {
        let action = new.action;
        let runner = self.catalogue.runner_of(action);
        let merged = self.catalogue.merged_parameters(action);
        let now = crate::util::now();
        let e = Execution {
            id: object_id(),
            liveaction_id: object_id(),
            action_ref: action.reference(),
            runner_name: runner.name.clone(),
            is_workflow: runner.is_workflow(),
            action_api: Arc::new(action.api()),
            runner_api: Arc::new(runner.api()),
            status: Status::Requested,
            start: now,
            end: None,
            parameters: new.parameters,
            context: new.context,
            result: Value::Null,
            result_size: 0,
            parent: new.parent,
            children: Vec::new(),
            log: vec![(now, Status::Requested)],
            delay: new.delay.filter(|d| *d > 0),
            workflow_execution: new.workflow_execution,
            task_execution: new.task_execution,
            runner_info: Map::new(),
            notify: new.notify,
            secrets: params::secret_names(&merged),
            origin: new.origin,
        };
        {
            let mut store = self.store();
            let trace_index = resolve_trace(&mut store, &e)?;
            let caused_by = match &e.parent {
                Some(p) => json!({"type": "action_execution", "id": p}),
                None => json!({}),
            };
            store.traces[trace_index]
                .action_executions
                .push(TraceComponent {
                    object_id: e.id.clone(),
                    reference: e.action_ref.clone(),
                    updated_at: now,
                    caused_by,
                });
            let position = store.executions.len();
            store.index.insert(e.id.clone(), position);
            store.executions.push(e.clone());
            store
                .watches
                .insert(e.id.clone(), watch::channel(Status::Requested).0);
            self.publish(
                "st2.liveaction__create".into(),
                e.liveaction_event(true),
                Some(&e),
                None,
            );
            self.publish(
                "st2.execution__create".into(),
                e.api(true),
                Some(&e),
                Some(e.id.clone()),
            );
            if let Some(parent_id) = &e.parent
                && let Some(&pi) = store.index.get(parent_id)
            {
                store.executions[pi].children.push(e.id.clone());
                let parent = store.executions[pi].clone();
                self.emit(&parent, "update", false);
            }
        }
        crate::engine::start(self, e.id.clone());
        Ok(e)
    }

    /// Change an execution atomically: `change` runs under the store lock and returns whether it
    /// changed anything (or an error, having changed nothing). A change records a new status in
    /// `log` (setting `end_timestamp` on completion), wakes watchers and publishes the update
    /// events. Returns the execution after the call and whether it changed; None if unknown.
    fn modify(
        &self,
        id: &str,
        liveaction_event: bool,
        change: impl FnOnce(&mut Execution) -> Result<bool, ApiError>,
    ) -> Result<Option<(Execution, bool)>, ApiError> {
        let mut store = self.store();
        let Some(&i) = store.index.get(id) else {
            return Ok(None);
        };
        let e = &mut store.executions[i];
        let before = e.status;
        if !change(e)? {
            return Ok(Some((e.clone(), false)));
        }
        if e.status != before {
            let now = crate::util::now();
            e.log.push((now, e.status));
            if e.status.is_completed() && e.end.is_none() {
                e.end = Some(now);
            }
        }
        let e = e.clone();
        if let Some(w) = store.watches.get(id) {
            w.send_replace(e.status);
        }
        self.emit(&e, "update", liveaction_event);
        Ok(Some((e, true)))
    }

    /// Apply `change` unconditionally (see `modify`); returns the updated copy.
    pub fn update(
        &self,
        id: &str,
        liveaction_event: bool,
        change: impl FnOnce(&mut Execution),
    ) -> Option<Execution> {
        let changed = self.modify(id, liveaction_event, |e| {
            change(e);
            Ok(true)
        });
        changed.ok().flatten().map(|(e, _)| e)
    }

    /// The runner's status update: move from one of `from` to `to` (optionally with a new
    /// result, recording the result size); false when the status was not in `from`.
    pub fn transition(&self, id: &str, from: &[Status], to: Status, result: Option<Value>) -> bool {
        let changed = self.modify(id, true, |e| {
            if !from.contains(&e.status) {
                return Ok(false);
            }
            e.status = to;
            // The runner writes the result back, which is when st2 records its size.
            let r = result.unwrap_or_else(|| e.result.clone());
            e.set_result(r);
            if to == Status::Running && e.runner_info.is_empty() {
                e.runner_info
                    .insert("hostname".into(), json!("st2-emulator"));
                e.runner_info
                    .insert("pid".into(), json!(std::process::id()));
            }
            Ok(true)
        });
        matches!(changed, Ok(Some((_, true))))
    }

    /// Current status of an execution.
    pub fn status(&self, id: &str) -> Option<Status> {
        self.store().execution(id).map(|e| e.status)
    }

    fn request(
        &self,
        id: &str,
        change: impl FnOnce(&mut Execution) -> Result<bool, ApiError>,
    ) -> Result<Execution, ApiError> {
        self.modify(id, true, change)?
            .map(|(e, _)| e)
            .ok_or_else(|| not_found(id))
    }

    /// st2's `request_cancellation`.
    pub fn request_cancel(&self, id: &str, requester: &str) -> Result<Execution, ApiError> {
        self.request(id, |e| {
            if e.status == Status::Canceling {
                return Ok(false);
            }
            if !e.status.is_cancelable() {
                return Err(ApiError::internal(format!(
                    "Unable to cancel liveaction \"{}\" because it is already in a completed state.",
                    e.liveaction_id
                )));
            }
            e.status = if e.context.contains_key("parent") || e.status == Status::Running {
                Status::Canceling
            } else {
                Status::Canceled
            };
            e.result = json!({"message": "Action canceled by user.", "user": requester});
            e.context.insert("cancelled_by".into(), json!(requester));
            Ok(true)
        })
    }

    /// st2's `request_pause`.
    pub fn request_pause(&self, id: &str, requester: &str) -> Result<Execution, ApiError> {
        self.request(id, |e| {
            if !e.is_workflow {
                return Err(ApiError::bad_request(format!(
                    "Failed updating execution. Unable to pause liveaction \"{}\" because it is not supported by the \"{}\" runner.",
                    e.liveaction_id, e.runner_name
                )));
            }
            if matches!(e.status, Status::Pausing | Status::Paused) {
                return Ok(false);
            }
            if e.status != Status::Running {
                return Err(ApiError::bad_request(format!(
                    "Failed updating execution. Unable to pause liveaction \"{}\" because it is not in a running state.",
                    e.liveaction_id
                )));
            }
            e.status = Status::Pausing;
            e.context.insert("paused_by".into(), json!(requester));
            Ok(true)
        })
    }

    /// st2's `request_resume`.
    pub fn request_resume(&self, id: &str, requester: &str) -> Result<Execution, ApiError> {
        self.request(id, |e| {
            if !e.is_workflow {
                return Err(ApiError::bad_request(format!(
                    "Failed updating execution. Unable to resume liveaction \"{}\" because it is not supported by the \"{}\" runner.",
                    e.liveaction_id, e.runner_name
                )));
            }
            if matches!(e.status, Status::Running | Status::Resuming) {
                return Ok(false);
            }
            if e.status != Status::Paused {
                return Err(ApiError::bad_request(format!(
                    "Failed updating execution. Unable to resume liveaction \"{}\" because it is in \"{}\" state and not in \"paused\" state.",
                    e.liveaction_id,
                    e.status.as_str()
                )));
            }
            e.status = Status::Resuming;
            e.context.insert("resumed_by".into(), json!(requester));
            Ok(true)
        })
    }

    /// Store one output chunk and publish it.
    pub fn add_output(&self, execution_id: &str, output_type: &str, data: String) {
        let mut store = self.store();
        let Some(e) = store.execution(execution_id) else {
            return;
        };
        let record = OutputRecord {
            id: object_id(),
            execution_id: execution_id.to_string(),
            action_ref: e.action_ref.clone(),
            runner_ref: e.runner_name.clone(),
            timestamp: crate::util::now(),
            output_type: output_type.to_string(),
            data,
        };
        self.publish(
            "st2.execution.output__create".into(),
            record.api(),
            None,
            Some(execution_id.to_string()),
        );
        store.outputs.push(record);
    }

    /// Record a trigger instance in a new trace tagged `trace_tag`, then enforce the rules
    /// `selects` picks, as st2rulesengine does; returns the instance id.
    pub fn dispatch_trigger(
        self: &Arc<Self>,
        trigger: &str,
        payload: &Value,
        trace_tag: String,
        selects: impl Fn(&crate::rules::Rule) -> bool,
    ) -> String {
        let now = crate::util::now();
        let instance_id = object_id();
        let trace_id = object_id();
        let instance = json!({
            "id": instance_id,
            "trigger": trigger,
            "payload": payload,
            "occurrence_time": crate::util::iso(now),
            "status": "processed",
        });
        {
            let mut store = self.store();
            store.push_trace(Trace {
                id: trace_id.clone(),
                trace_tag,
                action_executions: Vec::new(),
                trigger_instances: vec![TraceComponent {
                    object_id: instance_id.clone(),
                    reference: trigger.to_string(),
                    updated_at: now,
                    caused_by: json!({}),
                }],
                start: now,
            });
            store.trigger_instances.push(instance.clone());
        }
        tracing::debug!(trigger, payload = %payload, "trigger instance dispatched");
        crate::rules::enforce(self, &instance, &trace_id, payload, selects);
        instance_id
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Unable to identify resource with id \"{id}\"."))
}

/// Find or create the trace for a new execution, as st2's `get_trace_db_by_live_action`.
fn resolve_trace(store: &mut Store, e: &Execution) -> Result<usize, ApiError> {
    let now = e.start;
    let new_trace = |store: &mut Store, tag: String| {
        store.push_trace(Trace {
            id: object_id(),
            trace_tag: tag,
            action_executions: Vec::new(),
            trigger_instances: Vec::new(),
            start: now,
        })
    };
    if let Some(tc) = e.context.get("trace_context") {
        let Value::Object(tc) = tc else {
            return Err(ApiError::internal(format!(
                "The trace context has a value that is not a dictionary (was <class '{}'>).",
                crate::util::py_type_name(tc)
            )));
        };
        if let Some(id) = tc.get("id_").filter(|v| !v.is_null()) {
            let id = py_str(id);
            return store.traces.iter().position(|t| t.id == id).ok_or_else(|| {
                ApiError::bad_request(format!("Unable to find Trace with id=\"{id}\""))
            });
        }
        return match tc.get("trace_tag").filter(|v| !v.is_null()) {
            Some(tag) => Ok(new_trace(store, py_str(tag))),
            None => Err(ApiError::bad_request(
                "Atleast one of id_ or trace_tag should be specified.",
            )),
        };
    }
    if let Some(parent) = &e.parent
        && let Some(i) = store
            .traces
            .iter()
            .position(|t| t.action_executions.iter().any(|c| &c.object_id == parent))
    {
        return Ok(i);
    }
    Ok(new_trace(store, format!("execution-{}", e.liveaction_id)))
}
