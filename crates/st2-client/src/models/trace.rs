//! Traces: what st2 linked under one trace tag.

use serde::{Deserialize, Serialize};

use super::JsonObject;

/// A trace (`GET /traces`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Trace {
    /// Trace id.
    pub id: String,
    /// The tag given at creation (`context.trace_context.trace_tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_tag: Option<String>,
    /// Executions in this trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action_executions: Vec<TraceComponent>,
    /// Rules in this trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<TraceComponent>,
    /// Trigger instances in this trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trigger_instances: Vec<TraceComponent>,
    /// Everything else (start_timestamp, uid).
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Trace {
    /// Ids of the executions in this trace.
    pub fn execution_ids(&self) -> impl Iterator<Item = &str> {
        self.action_executions.iter().map(|c| c.object_id.as_str())
    }
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
