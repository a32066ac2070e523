//! Portarium's execution-plane contract (`ActionRunnerPort.dispatchAction`), as we serve it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use st2_client::models::JsonObject;

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
    /// The caller's W3C trace context, from its headers or OpenClaw's `metadata`; never
    /// part of the JSON body Portarium writes.
    #[serde(skip)]
    pub trace: Option<TraceContext>,
    /// The machine invocation (`/v1/invoke`) this dispatch stands for: its key is then the
    /// tenant's invocation id, so the status route finds it by that id alone.
    #[serde(skip)]
    pub invocation_id: Option<String>,
}

/// A W3C trace context (`traceparent`, optional `tracestate`) handed on by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower case.
    pub traceparent: String,
    /// Vendor entries, passed on untouched.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context if `traceparent` is well formed (W3C Trace Context level 1); a malformed
    /// one is dropped, as the spec asks, rather than failing the request.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let tp = traceparent.trim();
        // Later versions may append fields, but not without bound.
        super::ids::TRACEPARENT.check(tp).ok()?;
        let parts: Vec<&str> = tp.split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let [version, trace_id, parent_id, flags, rest @ ..] = parts.as_slice() else {
            return None;
        };
        let valid = hex(version, 2)
            && *version != "ff"
            && (rest.is_empty() || *version != "00")
            && hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && hex(parent_id, 16)
            && parent_id.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        valid.then(|| Self {
            traceparent: tp.to_string(),
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    /// The 32-hex-digit trace id.
    pub fn trace_id(&self) -> &str {
        &self.traceparent[3..35]
    }
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
        /// What an HTTP answer says beyond the kind; not part of Portarium's result object.
        hint: Hint,
    },
}

/// What an HTTP answer to a failure says beyond its error kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint {
    /// How long st2 asked callers to wait (its `Retry-After`), passed on to ours.
    pub retry_after: Option<Duration>,
    /// The request cannot succeed as sent (a payload that does not fit the action): 422, since
    /// a 502 would say st2 failed and invite the same request again.
    pub unprocessable: bool,
}

impl DispatchResult {
    /// A failure of `kind`.
    pub fn err(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Err {
            kind,
            message: message.into(),
            hint: Hint::default(),
        }
    }
}

impl Serialize for DispatchResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Ok { output } => json!({"ok": true, "output": output}),
            Self::Err { kind, message, .. } => {
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
    fn trace_context_follows_w3c_level_1() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::parse(tp, Some(" rojo=00f067aa0ba902b7 ")).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
        assert_eq!(TraceContext::parse(tp, Some("")).unwrap().tracestate, None);
        // A later version may append fields; version 00 may not.
        assert!(TraceContext::parse(&format!("cc{}-what", &tp[2..]), None).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad}");
        }
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
