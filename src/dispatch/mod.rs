//! Translation between Portarium's dispatch contract and st2 executions.
//!
//! One dispatch: check the flowRef and payload before st2 is called, find an execution st2
//! already holds for the same idempotency key (so retries and restarts never start a second
//! one), otherwise create it, then follow it to a completed status within a deadline.

mod follow;
pub mod run;
pub mod validate;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::portarium::{DispatchRequest, DispatchResult, ErrorKind};
use crate::st2::models::JsonObject;
use crate::st2::{Execution, ExecutionRequest, ExecutionStatus, St2Client, St2Error};
use validate::{ActionRef, check_parameters};

/// Context key under which our ids ride on every st2 execution.
pub const CONTEXT_KEY: &str = "portarium";

/// Runs Portarium dispatches on one st2 cluster.
#[derive(Clone)]
pub struct Dispatcher {
    st2: St2Client,
}

impl Dispatcher {
    /// A dispatcher using `st2` for every call.
    pub fn new(st2: St2Client) -> Self {
        Self { st2 }
    }

    /// The st2 client this dispatcher uses (with its tenant's credentials).
    pub fn st2(&self) -> &St2Client {
        &self.st2
    }

    /// Dispatches `req` and waits up to `wait` for the execution to complete. When the wait
    /// runs out, the execution keeps running and the answer is `Timeout` naming it; the same
    /// request again attaches to it instead of starting another.
    pub async fn dispatch(&self, req: &DispatchRequest, wait: Duration) -> DispatchResult {
        crate::telemetry::observe_dispatch(req, false, self.dispatch_inner(req, wait)).await
    }

    async fn dispatch_inner(&self, req: &DispatchRequest, wait: Duration) -> DispatchResult {
        let deadline = Instant::now() + wait;
        let action = match ActionRef::parse(req.flow_ref.trim()) {
            Ok(a) => a,
            Err(e) => return DispatchResult::err(ErrorKind::FlowNotFound, e.to_string()),
        };
        let key = dispatch_key(req);
        let execution = match self.existing(&action, &key).await {
            Ok(Some(found)) => found,
            Ok(None) => match self.start(req, &action, &key).await {
                Ok(created) => created,
                Err(result) => return result,
            },
            Err(e) => return from_st2(&e, &action),
        };
        self.follow(execution, &action, deadline).await
    }

    /// Checks `req` exactly as [`Dispatcher::dispatch`] would — flowRef, that st2 has the
    /// action, the payload against its schema — and starts nothing.
    pub async fn dry_run(&self, req: &DispatchRequest) -> DispatchResult {
        crate::telemetry::observe_dispatch(req, true, self.dry_run_inner(req)).await
    }

    async fn dry_run_inner(&self, req: &DispatchRequest) -> DispatchResult {
        let action = match ActionRef::parse(req.flow_ref.trim()) {
            Ok(a) => a,
            Err(e) => return DispatchResult::err(ErrorKind::FlowNotFound, e.to_string()),
        };
        match self.checked_parameters(req, &action).await {
            Ok(()) => DispatchResult::Ok {
                output: json!({"dryRun": true, "actionRef": action.to_string(), "valid": true}),
            },
            Err(failure) => failure,
        }
    }

    /// Reads the action's schema from st2 and checks the payload against it.
    async fn checked_parameters(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
    ) -> Result<(), DispatchResult> {
        let schema = self
            .st2
            .action_parameters(&action.to_string())
            .await
            .map_err(|e| from_st2(&e, action))?;
        let problems = check_parameters(&schema, &req.payload);
        if problems.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Err(DispatchResult::err(
            ErrorKind::RemoteError,
            format!(
                "payload does not fit {action}'s parameters: {}",
                list.join("; ")
            ),
        ))
    }

    /// The execution st2 already holds for this key, if any (newest first), read whole.
    async fn existing(&self, action: &ActionRef, key: &str) -> Result<Option<Execution>, St2Error> {
        let page = self
            .st2
            .executions()
            .list()
            .action(&action.to_string())
            .filter(&format!("context.{CONTEXT_KEY}.dispatch_key"), key)
            .exclude(&["result"])
            .limit(1)
            .send()
            .await?;
        // The list leaves results out (they can be large); the one found is read in full.
        match page.items.into_iter().next() {
            Some(found) => self.st2.executions().get(&found.id).send().await.map(Some),
            None => Ok(None),
        }
    }

    async fn start(
        &self,
        req: &DispatchRequest,
        action: &ActionRef,
        key: &str,
    ) -> Result<Execution, DispatchResult> {
        self.checked_parameters(req, action).await?;
        let mut request = ExecutionRequest::new(action.to_string());
        request.parameters = req.payload.clone();
        request
            .context
            .insert(CONTEXT_KEY.into(), context(req, key));
        request.trace_tag = Some(key.to_string());
        self.st2
            .executions()
            .create(&request)
            .await
            .map_err(|e| from_st2(&e, action))
    }
}

/// The key st2 is searched by: the idempotency key, or tenant + run + action. Percent-encoded,
/// because st2's `filter=` splits on spaces.
pub fn dispatch_key(req: &DispatchRequest) -> String {
    let raw = match &req.idempotency_key {
        Some(k) if !k.trim().is_empty() => format!("idem:{}:{k}", req.tenant_id),
        _ => format!("run:{}:{}:{}", req.tenant_id, req.run_id, req.action_id),
    };
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
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
    if let Some(t) = &req.trace {
        c["traceparent"] = json!(t.traceparent);
        if let Some(state) = &t.tracestate {
            c["tracestate"] = json!(state);
        }
    }
    c
}

/// The Portarium result of a completed execution.
fn outcome(execution: &Execution, status: &ExecutionStatus) -> DispatchResult {
    crate::telemetry::record_execution(&execution.id, status.as_str());
    let result = execution
        .result
        .clone()
        .unwrap_or(Value::Object(JsonObject::new()));
    if *status == ExecutionStatus::Succeeded {
        return DispatchResult::Ok {
            output: json!({"executionId": execution.id, "status": status, "result": result}),
        };
    }
    let kind = match status {
        ExecutionStatus::Timeout => ErrorKind::Timeout,
        _ => ErrorKind::RemoteError,
    };
    DispatchResult::err(
        kind,
        format!(
            "st2 execution {} {status}: {}",
            execution.id,
            failure_text(&result)
        ),
    )
}

/// st2's own words for a failure: stderr, an error, or a message, whichever the runner gave.
fn failure_text(result: &Value) -> String {
    ["stderr", "error", "message", "stdout"]
        .iter()
        .filter_map(|k| result.get(*k))
        .find_map(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::String(_) | Value::Null => None,
            other => Some(other.to_string()),
        })
        .unwrap_or_else(|| "no error text from st2".into())
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
pub fn from_st2(err: &St2Error, action: &ActionRef) -> DispatchResult {
    let kind = kind_of(err);
    let message = match kind {
        ErrorKind::FlowNotFound => format!("st2 has no action {action}: {err}"),
        _ => err.to_string(),
    };
    DispatchResult::err(kind, message)
}
