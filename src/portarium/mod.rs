//! Portarium's execution-plane contract (`ActionRunnerPort.dispatchAction`), as we serve it.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use crate::st2::models::JsonObject;

/// `ActionDispatchInput`, as Portarium writes it (camelCase).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DispatchRequest {
    /// This action step within the run.
    pub action_id: String,
    /// Stable retry key; absent, tenant + run + action stand in for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Tenant (workspace) scope.
    pub tenant_id: String,
    /// The parent run.
    pub run_id: String,
    /// Cross-aggregate correlation token.
    pub correlation_id: String,
    /// The st2 action ref, `pack.action`.
    pub flow_ref: String,
    /// Action parameters.
    #[serde(default)]
    pub payload: JsonObject,
}

/// `ActionDispatchErrorKind`: exactly Portarium's five kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// Credentials refused (by us or by st2).
    Unauthorized,
    /// Too many requests; retry later.
    RateLimited,
    /// No such st2 action, or a flowRef that cannot name one.
    FlowNotFound,
    /// The action or our wait ran out of time.
    Timeout,
    /// Anything else that failed on the execution plane.
    RemoteError,
}

impl ErrorKind {
    /// The HTTP status that makes each Portarium caller's own mapping yield this kind.
    pub fn http_status(self) -> u16 {
        match self {
            Self::Unauthorized => 401,
            Self::RateLimited => 429,
            Self::FlowNotFound => 404,
            Self::Timeout => 504,
            Self::RemoteError => 502,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// `ActionDispatchResult`: `{ok: true, output}` or `{ok: false, errorKind, message}`.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchResult {
    /// The st2 execution succeeded.
    Ok {
        /// `{executionId, status, result}` of the st2 execution.
        output: Value,
    },
    /// It did not; `message` keeps st2's own words where there are any.
    Err {
        /// Portarium's error kind.
        kind: ErrorKind,
        /// What happened and, where useful, what to do.
        message: String,
    },
}

impl DispatchResult {
    /// A failure of `kind`.
    pub fn err(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Err {
            kind,
            message: message.into(),
        }
    }

    /// The error kind, for failures.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Ok { .. } => None,
            Self::Err { kind, .. } => Some(*kind),
        }
    }
}

impl Serialize for DispatchResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Ok { output } => json!({"ok": true, "output": output}),
            Self::Err { kind, message } => {
                json!({"ok": false, "errorKind": kind, "message": message})
            }
        }
        .serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialize_in_portariums_shape() {
        let ok = DispatchResult::Ok {
            output: json!({"executionId": "e1"}),
        };
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"ok": true, "output": {"executionId": "e1"}})
        );
        let err = DispatchResult::err(ErrorKind::FlowNotFound, "no such action");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"ok": false, "errorKind": "FlowNotFound", "message": "no such action"})
        );
    }

    #[test]
    fn requests_are_camel_case_and_strict() {
        let r: DispatchRequest = serde_json::from_value(json!({
            "actionId": "a1", "tenantId": "t1", "runId": "r1", "correlationId": "c1",
            "flowRef": "core.echo", "payload": {"message": "hi"}
        }))
        .unwrap();
        assert_eq!((r.action_id.as_str(), r.idempotency_key), ("a1", None));
        let err = serde_json::from_value::<DispatchRequest>(json!({
            "actionId": "a1", "tenantId": "t1", "runId": "r1", "correlationId": "c1",
            "flowRef": "core.echo", "flowref": "x"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("flowref"), "{err}");
    }

    #[test]
    fn each_kind_has_the_status_callers_map_back_to_it() {
        let statuses: Vec<u16> = [
            ErrorKind::Unauthorized,
            ErrorKind::RateLimited,
            ErrorKind::FlowNotFound,
            ErrorKind::Timeout,
            ErrorKind::RemoteError,
        ]
        .iter()
        .map(|k| k.http_status())
        .collect();
        assert_eq!(statuses, [401, 429, 404, 504, 502]);
    }
}
