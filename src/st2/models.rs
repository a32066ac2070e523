//! Typed st2 API objects.
//!
//! st2 leaves every falsy attribute out of its JSON (`{k: v for k, v in ... if v}` in
//! `ActionExecutionAPI.from_model`), so nearly every field is optional or defaulted. Fields
//! this crate does not model are kept in `extra`, so nothing st2 sends is lost on a round trip.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// A JSON object as st2 sends it.
pub type JsonObject = Map<String, Value>;

/// An execution's status: every value st2 defines (`st2common/constants/action.py`), plus
/// [`ExecutionStatus::Unknown`] so a value added by a future st2 still decodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    /// Created by the API, waiting for the scheduler.
    Requested,
    /// Picked by the scheduler, waiting for a runner.
    Scheduled,
    /// Held back by `delay` or a concurrency policy.
    Delayed,
    /// A runner is executing it.
    Running,
    /// Finished successfully (completed).
    Succeeded,
    /// Finished with an error (completed).
    Failed,
    /// Ran past its timeout (completed); st2 spells it `timeout`.
    Timeout,
    /// Its runner shut down mid-run (completed).
    Abandoned,
    /// Cancellation requested, the runner is stopping it.
    Canceling,
    /// Cancelled (completed).
    Canceled,
    /// Waiting on an inquiry (`core.ask`).
    Pending,
    /// Workflow pause requested.
    Pausing,
    /// Workflow paused; not completed.
    Paused,
    /// Workflow resume requested.
    Resuming,
    /// A status this version does not know, kept verbatim.
    Unknown(String),
}

impl ExecutionStatus {
    /// Every status st2 defines, in st2's own order.
    pub const ALL: [ExecutionStatus; 14] = [
        Self::Requested,
        Self::Scheduled,
        Self::Delayed,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Timeout,
        Self::Abandoned,
        Self::Canceling,
        Self::Canceled,
        Self::Pending,
        Self::Pausing,
        Self::Paused,
        Self::Resuming,
    ];

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Requested => "requested",
            Self::Scheduled => "scheduled",
            Self::Delayed => "delayed",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Abandoned => "abandoned",
            Self::Canceling => "canceling",
            Self::Canceled => "canceled",
            Self::Pending => "pending",
            Self::Pausing => "pausing",
            Self::Paused => "paused",
            Self::Resuming => "resuming",
            Self::Unknown(s) => s,
        }
    }

    /// st2's `LIVEACTION_COMPLETED_STATES`: the execution will not change status again.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Timeout | Self::Canceled | Self::Abandoned
        )
    }

    /// st2's `LIVEACTION_FAILED_STATES`.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Failed | Self::Timeout | Self::Abandoned)
    }

    /// st2's `LIVEACTION_CANCELABLE_STATES`.
    pub fn is_cancelable(&self) -> bool {
        matches!(
            self,
            Self::Requested
                | Self::Scheduled
                | Self::Delayed
                | Self::Running
                | Self::Pausing
                | Self::Paused
                | Self::Resuming
        )
    }
}

impl FromStr for ExecutionStatus {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::ALL
            .iter()
            .find(|known| known.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self::Unknown(s.to_string())))
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExecutionStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExecutionStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(s.parse().expect("infallible"))
    }
}

/// An action execution (`definitions/Execution`); its `id` is the execution id.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Execution {
    /// Execution id (not the liveaction id).
    pub id: String,
    /// Current status; st2 omits it only when asked to exclude it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExecutionStatus>,
    /// The action as it was when the execution was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// The runner type, with its `runner_parameters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<JsonObject>,
    /// The liveaction behind this execution (a different id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveaction: Option<LiveAction>,
    /// Parameters as given (secrets masked as `********`).
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub parameters: JsonObject,
    /// Context: `user`, `pack`, and whatever the caller put there.
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub context: JsonObject,
    /// The runner's result; shape depends on the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Size of the stored result in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_size: Option<u64>,
    /// When it was requested.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub start_timestamp: Option<OffsetDateTime>,
    /// When it reached a completed status.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub end_timestamp: Option<OffsetDateTime>,
    /// Seconds between start and end, once ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_seconds: Option<f64>,
    /// Parent execution id, for workflow tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Child execution ids, for workflows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// Status history, one entry per change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<LogEntry>,
    /// Link into st2web.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    /// Requested delay in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<u64>,
    /// Everything else st2 sent (trigger, rule, workflow_execution, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Execution {
    /// The action ref, from the embedded action or the liveaction.
    pub fn action_ref(&self) -> Option<&str> {
        self.action
            .as_ref()
            .and_then(|a| a.r#ref.as_deref())
            .or_else(|| self.liveaction.as_ref().and_then(|l| l.action.as_deref()))
    }

    /// The context value at a dotted path, e.g. `trace_context.trace_tag`.
    pub fn context_at(&self, dotted: &str) -> Option<&Value> {
        let mut parts = dotted.split('.');
        let mut node = self.context.get(parts.next()?)?;
        for part in parts {
            node = node.as_object()?.get(part)?;
        }
        Some(node)
    }
}

/// One entry of an execution's status history.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct LogEntry {
    /// When the status was entered.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The status entered.
    pub status: ExecutionStatus,
}

/// A liveaction (`definitions/LiveAction`), embedded in executions and sent on the stream.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct LiveAction {
    /// Liveaction id (not the execution id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Action ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Status, present on stream events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ExecutionStatus>,
    /// Whether the action is a workflow.
    #[serde(default)]
    pub action_is_workflow: bool,
    /// Parameters as given.
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub parameters: JsonObject,
    /// Result. On the stream st2 sends it as a JSON-encoded string; [`LiveAction::result_value`] decodes either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Everything else (callback, runner_info, context, timestamps).
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl LiveAction {
    /// The result as JSON, decoding the string form st2 uses on the stream.
    pub fn result_value(&self) -> Option<Value> {
        match &self.result {
            Some(Value::String(s)) => serde_json::from_str(s)
                .ok()
                .or(Some(Value::String(s.clone()))),
            other => other.clone(),
        }
    }
}

/// An action (`definitions/Action`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Action {
    /// Database id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `pack.name`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// `action:<pack>:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Name inside the pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Pack ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Disabled actions cannot be run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Runner type name, e.g. `local-shell-cmd`, `orquesta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_type: Option<String>,
    /// The action's own parameter schema (without runner parameters).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// Everything else (entry_point, output_schema, tags, notify, metadata_file).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One parameter's schema: JSON-Schema draft 4 plus st2's `required`, `secret`, `immutable`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ParameterSpec {
    /// A JSON-Schema type name, or a list of them; absent for pins like `{immutable: true}`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Value>,
    /// Must be given unless it has a default (st2 puts `required` on the property).
    #[serde(default)]
    pub required: bool,
    /// Default value; may be a Jinja template evaluated by st2. `Some(Null)` is an explicit
    /// `default: null`, which st2 treats differently from no default (null becomes allowed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    /// Overriding it is refused by st2.
    #[serde(default)]
    pub immutable: bool,
    /// Masked in st2's output; must be masked in ours.
    #[serde(default)]
    pub secret: bool,
    /// Allowed values.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Everything else (position, minimum, pattern, items, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Keeps an explicit JSON `null` as `Some(Value::Null)`; absence stays `None` via `default`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// `GET /actions/views/parameters/{ref}`: runner and action parameters merged, action winning.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ActionParameters {
    /// Parameter name → schema.
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, ParameterSpec>,
}

/// An installed pack. st2 stores no license for packs; reviews record it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Pack {
    /// Database id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Pack ref, e.g. `core`.
    #[serde(rename = "ref")]
    pub r#ref: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Installed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Author e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Everything else (uid, keywords, files, path, dependencies, system, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// A trace: everything st2 linked under one trace tag.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Trace {
    /// Trace id.
    pub id: String,
    /// The tag given at creation (`context.trace_context.trace_tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_tag: Option<String>,
    /// Executions in this trace.
    #[serde(default)]
    pub action_executions: Vec<TraceComponent>,
    /// Rules in this trace.
    #[serde(default)]
    pub rules: Vec<TraceComponent>,
    /// Trigger instances in this trace.
    #[serde(default)]
    pub trigger_instances: Vec<TraceComponent>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One object linked from a trace.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TraceComponent {
    /// The object's id (an execution id for `action_executions`).
    pub object_id: String,
    /// The object's ref, when st2 recorded one.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// Everything else (updated_at, caused_by).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// `POST /auth/v1/tokens` answer.
#[derive(Clone, Deserialize)]
pub struct Token {
    /// The user the token belongs to.
    pub user: String,
    /// The token itself.
    pub token: String,
    /// When it stops working.
    #[serde(with = "time::serde::rfc3339")]
    pub expiry: OffsetDateTime,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("user", &self.user)
            .field("token", &crate::governance::secrets::REDACTED)
            .field("expiry", &self.expiry)
            .finish()
    }
}

/// st2's error body: `{"faultstring": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Fault {
    /// st2's message.
    pub faultstring: String,
}

/// Which output stream `GET /executions/{id}/output` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutputType {
    /// stdout and stderr interleaved.
    #[default]
    All,
    /// stdout only.
    Stdout,
    /// stderr only.
    Stderr,
}

impl OutputType {
    /// The query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}
