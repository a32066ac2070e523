//! Executions (`definitions/Execution`), the liveactions inside them, output chunks and
//! notification settings.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::{Action, ExecutionStatus, JsonObject};

/// An action execution; its `id` is the execution id (not the liveaction id).
///
/// Read by hand (see the `Deserialize` impl below) rather than derived: with the flattened
/// `extra`, serde's derive first buffers the whole document into an intermediate tree, and
/// executions are what the adapter reads most (every stream event, every create).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Execution {
    /// Execution id, the one `/executions/{id}` takes.
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

    /// Whether the status is one st2 never leaves (see [`ExecutionStatus::is_terminal`]).
    pub fn is_terminal(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(ExecutionStatus::is_terminal)
    }
}

/// `Option<OffsetDateTime>` in st2's RFC 3339 form, as one map value.
struct Rfc3339Opt(Option<OffsetDateTime>);

impl<'de> Deserialize<'de> for Rfc3339Opt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        time::serde::rfc3339::option::deserialize(d).map(Self)
    }
}

impl<'de> Deserialize<'de> for Execution {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ExecutionVisitor(Depth::Whole))
    }
}

/// Only the head of an execution: `id`, `status`, `start_timestamp`, `end_timestamp`,
/// `elapsed_seconds`, `log`, `result` and `result_size`; every other field is checked as
/// JSON and skipped without being built, and is empty in the [`Execution`] it holds.
///
/// For snapshots read only to follow a status to its outcome (st2's stream events), where
/// building the whole document (its `action` and `runner` above all) is most of the cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionHead(pub Execution);

impl<'de> Deserialize<'de> for ExecutionHead {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ExecutionVisitor(Depth::Head)).map(Self)
    }
}

/// An execution as st2 answers a create, without the `action` and `runner` documents it
/// embeds (the action's metadata and its runner type with every runner parameter): those are
/// `None`, the rest is whole. The action ref stays in `liveaction.action`
/// ([`Execution::action_ref`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreatedExecution(pub Execution);

impl<'de> Deserialize<'de> for CreatedExecution {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ExecutionVisitor(Depth::Created))
            .map(Self)
    }
}

/// How much of an execution a read builds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Depth {
    Whole,
    /// Without `action` and `runner`.
    Created,
    /// Only what following a status to its outcome needs.
    Head,
}

impl Depth {
    /// Whether a field is built at this depth (unknown fields count as `extra`).
    fn builds(self, key: &str) -> bool {
        match self {
            Self::Whole => true,
            Self::Created => !matches!(key, "action" | "runner"),
            Self::Head => matches!(
                key,
                "id" | "status"
                    | "start_timestamp"
                    | "end_timestamp"
                    | "elapsed_seconds"
                    | "log"
                    | "result"
                    | "result_size"
            ),
        }
    }
}

/// Reads an execution field by field in one pass; fields it does not know go to `extra`,
/// fields its depth leaves out are skipped.
struct ExecutionVisitor(Depth);

impl<'de> serde::de::Visitor<'de> for ExecutionVisitor {
    type Value = Execution;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an st2 execution object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Execution, A::Error> {
        let mut id = None;
        let mut e = Execution {
            id: String::new(),
            status: None,
            action: None,
            runner: None,
            liveaction: None,
            parameters: JsonObject::new(),
            context: JsonObject::new(),
            result: None,
            result_size: None,
            start_timestamp: None,
            end_timestamp: None,
            elapsed_seconds: None,
            parent: None,
            children: Vec::new(),
            log: Vec::new(),
            web_url: None,
            delay: None,
            extra: JsonObject::new(),
        };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !self.0.builds(&key) {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            match key.as_ref() {
                "id" => id = Some(map.next_value()?),
                "status" => e.status = map.next_value()?,
                "action" => e.action = map.next_value()?,
                "runner" => e.runner = map.next_value()?,
                "liveaction" => e.liveaction = map.next_value()?,
                "parameters" => e.parameters = map.next_value()?,
                "context" => e.context = map.next_value()?,
                "result" => e.result = map.next_value()?,
                "result_size" => e.result_size = map.next_value()?,
                "start_timestamp" => e.start_timestamp = map.next_value::<Rfc3339Opt>()?.0,
                "end_timestamp" => e.end_timestamp = map.next_value::<Rfc3339Opt>()?.0,
                "elapsed_seconds" => e.elapsed_seconds = map.next_value()?,
                "parent" => e.parent = map.next_value()?,
                "children" => e.children = map.next_value()?,
                "log" => e.log = map.next_value()?,
                "web_url" => e.web_url = map.next_value()?,
                "delay" => e.delay = map.next_value()?,
                other => {
                    let value = map.next_value()?;
                    e.extra.insert(other.to_string(), value);
                }
            }
        }
        e.id = id.ok_or_else(|| serde::de::Error::missing_field("id"))?;
        Ok(e)
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
    /// Notification settings given at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
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

/// Notifications st2 sends when an execution ends (`notify` on a run request).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Notify {
    /// Sent whatever the outcome.
    #[serde(
        default,
        rename = "on-complete",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_complete: Option<NotifyTarget>,
    /// Sent when it succeeds.
    #[serde(
        default,
        rename = "on-success",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_success: Option<NotifyTarget>,
    /// Sent when it fails.
    #[serde(
        default,
        rename = "on-failure",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_failure: Option<NotifyTarget>,
}

/// One notification (`definitions/NotificationPropertySubSchema`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct NotifyTarget {
    /// Message text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Data sent with it (may hold Jinja referring to the execution).
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub data: JsonObject,
    /// Routes (chatops channels, notify rules) to send it to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// Everything else (the deprecated `channels`).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One chunk of an execution's output (`st2.execution.output__create` on the stream).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OutputChunk {
    /// The execution that wrote it.
    pub execution_id: String,
    /// `stdout` or `stderr` (runners may add others).
    pub output_type: String,
    /// The text.
    #[serde(default)]
    pub data: String,
    /// When it was written.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<OffsetDateTime>,
    /// Everything else (id, action_ref, runner_ref).
    #[serde(flatten)]
    pub extra: JsonObject,
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
