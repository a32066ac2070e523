//! The emulator's records (executions, output, traces, tokens, stream events) and their st2 JSON
//! shapes (`ActionExecutionAPI`, `LiveActionAPI`, `ActionExecutionOutputAPI`, `TraceAPI`, `TokenAPI`).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::util::{iso, truthy};

/// st2's 14 execution statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created by the API.
    Requested,
    /// Picked by the scheduler.
    Scheduled,
    /// Waiting for its `delay`.
    Delayed,
    /// Running in a runner.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Killed after its timeout.
    Timeout,
    /// The runner went away.
    Abandoned,
    /// Cancel requested, runner stopping it.
    Canceling,
    /// Canceled.
    Canceled,
    /// Waiting on an inquiry.
    Pending,
    /// Pause requested (workflows).
    Pausing,
    /// Paused (workflows).
    Paused,
    /// Resume requested (workflows).
    Resuming,
}

impl Status {
    /// All statuses, in st2's order.
    pub const ALL: [Status; 14] = [
        Status::Requested,
        Status::Scheduled,
        Status::Delayed,
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::Timeout,
        Status::Abandoned,
        Status::Canceling,
        Status::Canceled,
        Status::Pending,
        Status::Pausing,
        Status::Paused,
        Status::Resuming,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Scheduled => "scheduled",
            Status::Delayed => "delayed",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Abandoned => "abandoned",
            Status::Canceling => "canceling",
            Status::Canceled => "canceled",
            Status::Pending => "pending",
            Status::Pausing => "pausing",
            Status::Paused => "paused",
            Status::Resuming => "resuming",
        }
    }

    /// Parse a wire string.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// st2's LIVEACTION_COMPLETED_STATES.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            Status::Succeeded
                | Status::Failed
                | Status::Timeout
                | Status::Canceled
                | Status::Abandoned
        )
    }

    /// st2's LIVEACTION_CANCELABLE_STATES.
    pub fn is_cancelable(self) -> bool {
        matches!(
            self,
            Status::Requested
                | Status::Scheduled
                | Status::Delayed
                | Status::Running
                | Status::Pausing
                | Status::Paused
                | Status::Resuming
        )
    }
}

/// One execution (st2 keeps a LiveAction and an ActionExecution; both views come from here).
#[derive(Debug, Clone)]
pub struct Execution {
    /// Execution id.
    pub id: String,
    /// LiveAction id (different from the execution id).
    pub liveaction_id: String,
    /// Action ref.
    pub action_ref: String,
    /// Runner name.
    pub runner_name: String,
    /// Whether the runner is a workflow runner.
    pub is_workflow: bool,
    /// The action document as it was at creation (shared: preloaded executions hold one).
    pub action_api: Arc<Value>,
    /// The runner document as it was at creation (shared like `action_api`).
    pub runner_api: Arc<Value>,
    /// Current status.
    pub status: Status,
    /// Creation time.
    pub start: OffsetDateTime,
    /// Completion time.
    pub end: Option<OffsetDateTime>,
    /// Parameters as given (after casting).
    pub parameters: Map<String, Value>,
    /// Context (user, pack, caller's keys, parent/orquesta links...).
    pub context: Map<String, Value>,
    /// Result (object) or null.
    pub result: Value,
    /// Stored size of the result; st2 only recomputes it when a runner (or PUT) writes the
    /// result, not when a cancel request does.
    pub result_size: usize,
    /// Parent execution id.
    pub parent: Option<String>,
    /// Child execution ids.
    pub children: Vec<String>,
    /// Status history.
    pub log: Vec<(OffsetDateTime, Status)>,
    /// Requested delay in milliseconds.
    pub delay: Option<u64>,
    /// Orquesta workflow execution id (children).
    pub workflow_execution: Option<String>,
    /// Orquesta task execution id (children).
    pub task_execution: Option<String>,
    /// Runner host info, set when running.
    pub runner_info: Map<String, Value>,
    /// Notify settings from the request.
    pub notify: Option<Value>,
    /// Names of secret parameters (masked in output).
    pub secrets: Vec<String>,
    /// `rule`, `trigger`, `trigger_type`, `trigger_instance` of an execution a rule started.
    pub origin: Map<String, Value>,
}

/// The mask st2 puts over secret values.
pub const MASKED: &str = "********";

impl Execution {
    fn masked_params(&self, mask: bool) -> Value {
        let mut p = self.parameters.clone();
        if mask {
            for name in &self.secrets {
                if let Some(v) = p.get_mut(name) {
                    *v = json!(MASKED);
                }
            }
        }
        Value::Object(p)
    }

    /// Replace the result and recompute `result_size` (the size of the compact JSON).
    pub fn set_result(&mut self, result: Value) {
        self.result_size = if result.is_null() {
            0
        } else {
            result.to_string().len()
        };
        self.result = result;
    }

    /// The `liveaction` sub-document of an execution.
    fn liveaction_doc(&self, mask: bool) -> Value {
        json!({
            "action": self.action_ref,
            "action_is_workflow": self.is_workflow,
            "parameters": self.masked_params(mask),
            "callback": {},
            "runner_info": self.runner_info,
            "id": self.liveaction_id,
        })
    }

    /// The full st2 document before falsy attributes are dropped (also what `filter=` resolves against).
    pub fn document(&self, mask: bool) -> Map<String, Value> {
        let mut d = Map::new();
        d.insert("action".into(), Value::clone(&self.action_api));
        d.insert("runner".into(), Value::clone(&self.runner_api));
        d.insert("liveaction".into(), self.liveaction_doc(mask));
        if let Some(w) = &self.workflow_execution {
            d.insert("workflow_execution".into(), json!(w));
        }
        if let Some(t) = &self.task_execution {
            d.insert("task_execution".into(), json!(t));
        }
        d.extend(self.origin.clone());
        d.insert("status".into(), json!(self.status.as_str()));
        d.insert("start_timestamp".into(), json!(iso(self.start)));
        if let Some(end) = self.end {
            d.insert("end_timestamp".into(), json!(iso(end)));
            let micros = (end - self.start).whole_microseconds() as f64;
            d.insert("elapsed_seconds".into(), json!(micros / 1_000_000.0));
        }
        d.insert("parameters".into(), self.masked_params(mask));
        d.insert("result_size".into(), json!(self.result_size));
        d.insert("context".into(), Value::Object(self.context.clone()));
        if let Some(p) = &self.parent {
            d.insert("parent".into(), json!(p));
        }
        // st2's recorded answers never carry `children` on a workflow (its children are
        // reached through `/executions/{id}/children` and `?parent=`), so neither do we.
        d.insert(
            "log".into(),
            Value::Array(
                self.log
                    .iter()
                    .map(|(t, s)| json!({"timestamp": iso(*t), "status": s.as_str()}))
                    .collect(),
            ),
        );
        d.insert(
            "web_url".into(),
            json!(format!("https://localhost/#/history/{}/general", self.id)),
        );
        d.insert("id".into(), json!(self.id));
        d.insert("result".into(), self.result.clone());
        if let Some(delay) = self.delay {
            d.insert("delay".into(), json!(delay));
        }
        d
    }

    /// `ActionExecutionAPI.from_model`: the document without falsy attributes.
    pub fn api(&self, mask: bool) -> Value {
        Value::Object(
            self.document(mask)
                .into_iter()
                .filter(|(_, v)| truthy(v))
                .collect(),
        )
    }

    /// `LiveActionAPI.from_model` as the stream carries it (`result` JSON-encoded as a string).
    pub fn liveaction_event(&self, mask: bool) -> Value {
        let mut d = Map::new();
        d.insert("status".into(), json!(self.status.as_str()));
        d.insert("start_timestamp".into(), json!(iso(self.start)));
        if let Some(end) = self.end {
            d.insert("end_timestamp".into(), json!(iso(end)));
        }
        d.insert("action".into(), json!(self.action_ref));
        d.insert("action_is_workflow".into(), json!(self.is_workflow));
        d.insert("parameters".into(), self.masked_params(mask));
        d.insert("context".into(), Value::Object(self.context.clone()));
        d.insert("callback".into(), json!({}));
        d.insert(
            "runner_info".into(),
            Value::Object(self.runner_info.clone()),
        );
        if let Some(n) = &self.notify {
            d.insert("notify".into(), n.clone());
        }
        if let Some(delay) = self.delay {
            d.insert("delay".into(), json!(delay));
        }
        // Workflow tasks name their orquesta records on the liveaction too (stream captures).
        if let Some(w) = &self.workflow_execution {
            d.insert("workflow_execution".into(), json!(w));
        }
        if let Some(t) = &self.task_execution {
            d.insert("task_execution".into(), json!(t));
        }
        d.insert("id".into(), json!(self.liveaction_id));
        let result = if self.result.is_null() {
            json!({})
        } else {
            self.result.clone()
        };
        d.insert("result".into(), json!(result.to_string()));
        Value::Object(d)
    }

    /// The user the execution runs as.
    pub fn user(&self) -> String {
        self.context
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// One chunk of an execution's output.
#[derive(Debug, Clone)]
pub struct OutputRecord {
    /// Record id.
    pub id: String,
    /// Execution id.
    pub execution_id: String,
    /// Action ref.
    pub action_ref: String,
    /// Runner name.
    pub runner_ref: String,
    /// When it was produced.
    pub timestamp: OffsetDateTime,
    /// `stdout` or `stderr`.
    pub output_type: String,
    /// The text.
    pub data: String,
}

impl OutputRecord {
    /// `ActionExecutionOutputAPI`.
    pub fn api(&self) -> Value {
        json!({
            "execution_id": self.execution_id,
            "action_ref": self.action_ref,
            "runner_ref": self.runner_ref,
            "timestamp": iso(self.timestamp),
            "output_type": self.output_type,
            "data": self.data,
            "id": self.id,
        })
    }
}

/// A component of a trace (an execution, rule or trigger instance).
#[derive(Debug, Clone)]
pub struct TraceComponent {
    /// Object id.
    pub object_id: String,
    /// Its ref.
    pub reference: String,
    /// When it joined the trace.
    pub updated_at: OffsetDateTime,
    /// What caused it (`{}`, or `{type, id}`).
    pub caused_by: Value,
}

impl TraceComponent {
    fn api(&self) -> Value {
        json!({
            "object_id": self.object_id,
            "ref": self.reference,
            "updated_at": iso(self.updated_at),
            "caused_by": self.caused_by,
        })
    }
}

/// A trace, linking executions (and later rules / trigger instances) under one tag.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Trace id.
    pub id: String,
    /// The tag (caller's, or `execution-<liveaction id>` / `webhook-...`).
    pub trace_tag: String,
    /// Executions in this trace.
    pub action_executions: Vec<TraceComponent>,
    /// Trigger instances in this trace.
    pub trigger_instances: Vec<TraceComponent>,
    /// Creation time.
    pub start: OffsetDateTime,
}

impl Trace {
    /// `TraceAPI.from_model` (empty component lists are not stored, so not shown).
    pub fn api(&self) -> Value {
        let mut v =
            json!({"id": self.id, "trace_tag": self.trace_tag, "start_timestamp": iso(self.start)});
        if !self.action_executions.is_empty() {
            v["action_executions"] = self
                .action_executions
                .iter()
                .map(TraceComponent::api)
                .collect();
        }
        if !self.trigger_instances.is_empty() {
            v["trigger_instances"] = self
                .trigger_instances
                .iter()
                .map(TraceComponent::api)
                .collect();
        }
        v
    }
}

/// An issued auth token.
#[derive(Debug, Clone)]
pub struct Token {
    /// Token record id.
    pub id: String,
    /// The token value.
    pub token: String,
    /// Owner.
    pub user: String,
    /// Expiry.
    pub expiry: OffsetDateTime,
}

impl Token {
    /// `TokenAPI`.
    pub fn api(&self) -> Value {
        json!({
            "user": self.user,
            "token": self.token,
            "expiry": iso(self.expiry),
            "metadata": {},
            "service": false,
            "id": self.id,
        })
    }
}

/// One message on the emulator's internal bus, already in its stream form.
#[derive(Debug, Clone)]
pub struct Event {
    /// st2 event name (`st2.execution__update`).
    pub name: String,
    /// Compact one-line JSON body.
    pub data: String,
    /// Action ref the event is about (for `action_refs`).
    pub action_ref: Option<String>,
    /// Execution id (None for liveaction events, as in st2).
    pub execution_id: Option<String>,
    /// The body's own `id` (for `end_execution_id`).
    pub body_id: Option<String>,
    /// The body's status, if it has one.
    pub status: Option<Status>,
    /// For output events: `stdout`/`stderr`.
    pub output_type: Option<String>,
}

impl Event {
    /// The SSE frame st2 writes for this event.
    pub fn frame(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.name, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_sets_match_st2() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        let completed: Vec<_> = Status::ALL
            .into_iter()
            .filter(|s| s.is_completed())
            .collect();
        assert_eq!(completed.len(), 5);
        assert!(!Status::Paused.is_completed());
        assert!(Status::Paused.is_cancelable());
        assert!(!Status::Canceling.is_cancelable());
        assert_eq!(Status::parse("timed_out"), None);
    }
}
