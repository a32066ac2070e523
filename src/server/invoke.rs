//! Portarium's machine interface v1, for executions that outlive a synchronous call:
//! `POST /v1/invoke` starts (or re-attaches to) an st2 execution and answers at once,
//! `GET /v1/invoke/{invocationId}/status` reads it, and `GET /v1/invoke/{invocationId}/stream`
//! sends `MachineInvocationProgressEventV1` events as SSE until it completes.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::answer::{Contract, Failure};
use super::auth::AuthedTenant;
use super::dispatch::run;
use super::executions::secrets_of;
use super::origin::PublicBase;
use crate::core::dispatch::{invocation_key, outcome};
use crate::core::governance::redact::{scrub_field, scrub_value};
use crate::core::ids::DISPATCH_ID;
use crate::core::portarium::{DispatchRequest, ErrorKind};
use crate::core::{DispatchError, Dispatched, Mode, Tenant};
use st2_client::models::JsonObject;
use st2_client::stream::{ExecutionEvent, Follow};
use st2_client::{Execution, ExecutionStatus, St2Error};

/// `MachineInvocationRequestV1`, as Portarium writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRequest {
    schema_version: u32,
    invocation_id: String,
    machine_id: String,
    workspace_id: String,
    #[serde(default)]
    run_id: Option<String>,
    /// The st2 action ref, optionally prefixed `<machineId>/`.
    action: String,
    #[serde(default)]
    input: JsonObject,
    /// Accepted for compatibility; progress is read from `statusUrl` or the stream instead.
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `MachineInvocationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvocationStatus {
    /// st2 holds it but has not started running it.
    Accepted,
    /// Running, paused, or on its way to either.
    Running,
    /// Succeeded.
    Completed,
    /// Failed, timed out, abandoned or canceled.
    Failed,
}

impl InvocationStatus {
    /// Where an st2 status falls among the four.
    pub fn of(status: &ExecutionStatus) -> Self {
        match status {
            ExecutionStatus::Requested | ExecutionStatus::Scheduled | ExecutionStatus::Delayed => {
                Self::Accepted
            }
            ExecutionStatus::Succeeded => Self::Completed,
            s if s.is_terminal() => Self::Failed,
            _ => Self::Running,
        }
    }
}

/// Longest the progress stream stays open; the execution itself is not affected.
const STREAM_MAX: Duration = Duration::from_secs(3600);

/// Handles `POST /v1/invoke`: 202 while st2 runs it, 200 when it has already completed (a
/// retry of a finished invocation), the error kind's status when refused.
pub async fn invoke(
    tenant: AuthedTenant,
    PublicBase(base): PublicBase,
    headers: HeaderMap,
    body: Result<Json<InvocationRequest>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(b)) => b,
        Err(rejection) => return Contract::Machine.refuse(Failure::body(&rejection), None),
    };
    let invocation_id = body.invocation_id.clone();
    let req = match translate(body, &headers) {
        Ok(req) => req,
        Err(failure) => return Contract::Machine.refuse(failure, Some(&invocation_id)),
    };
    match run(&tenant.0, req, &headers, Mode::Start).await {
        Ok(Dispatched {
            execution: Some(execution),
            ..
        }) => {
            let answer = describe(&invocation_id, &execution, base.as_deref());
            let status = match answer.status {
                InvocationStatus::Accepted | InvocationStatus::Running => StatusCode::ACCEPTED,
                _ => StatusCode::OK,
            };
            (status, Json(answer)).into_response()
        }
        Ok(_) => unreachable!("a start always names its execution"),
        Err(failure) => Contract::Machine.refuse(failure, Some(&invocation_id)),
    }
}

/// Handles `GET /v1/invoke/{invocationId}/status`.
pub async fn status(
    tenant: AuthedTenant,
    PublicBase(base): PublicBase,
    Path(invocation_id): Path<String>,
) -> Response {
    match located(&tenant, &invocation_id).await {
        Ok(mut execution) => {
            let secrets = secrets_of(&tenant, &execution).await;
            execution.result = execution.result.map(|r| scrub_value(&r, &secrets));
            Json(describe(&invocation_id, &execution, base.as_deref())).into_response()
        }
        Err(answer) => answer,
    }
}

/// Handles `GET /v1/invoke/{invocationId}/stream`: one progress event per status change and
/// per new piece of output, then a last event with the completed status, then the end.
pub async fn stream(tenant: AuthedTenant, Path(invocation_id): Path<String>) -> Response {
    match located(&tenant, &invocation_id).await {
        Ok(execution) => {
            let secrets = secrets_of(&tenant, &execution).await;
            let follow = tenant.dispatcher.watcher().follow(&execution.id);
            let progress = Progress {
                invocation_id,
                execution_id: execution.id,
                status: None,
                done: false,
                secrets,
            };
            Sse::new(progress.events(follow, Instant::now() + STREAM_MAX))
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Err(answer) => answer,
    }
}

/// The dispatch input a machine invocation stands for. The invocation id is the action id
/// and, absent an idempotency key, the key: a retried invocation re-attaches.
fn translate(body: InvocationRequest, headers: &HeaderMap) -> Result<DispatchRequest, Failure> {
    if body.schema_version != 1 {
        return Err(Failure::bad_request(format!(
            "schemaVersion {} is not supported; send 1",
            body.schema_version
        )));
    }
    let problems: Vec<String> = [
        ("invocationId", &body.invocation_id),
        ("machineId", &body.machine_id),
        ("workspaceId", &body.workspace_id),
    ]
    .into_iter()
    .chain(body.run_id.as_ref().map(|r| ("runId", r)))
    .filter_map(|(field, value)| DISPATCH_ID.check_as(field, value).err())
    .map(|e| e.to_string())
    .collect();
    if !problems.is_empty() {
        return Err(Failure::unprocessable(format!(
            "request refused: {}",
            problems.join("; ")
        )));
    }
    if body.callback_url.is_some() {
        tracing::debug!(
            invocation = %body.invocation_id,
            "callbackUrl is not called; progress is served at statusUrl and the stream"
        );
    }
    let flow_ref = match body.action.split_once('/') {
        Some((machine, tool)) if machine == body.machine_id => tool.to_string(),
        _ => body.action,
    };
    let correlation = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(DispatchRequest {
        action_id: body.invocation_id.clone(),
        idempotency_key: body
            .idempotency_key
            .or_else(|| Some(body.invocation_id.clone())),
        tenant_id: body.workspace_id,
        run_id: body.run_id.unwrap_or_else(|| body.invocation_id.clone()),
        correlation_id: correlation.unwrap_or_else(|| body.invocation_id.clone()),
        flow_ref,
        payload: body.input,
        trace: None,
        invocation_id: Some(body.invocation_id),
    })
}

/// `MachineInvocationResponseV1`, plus the st2 execution it names and, once completed, its
/// output (Portarium's parser keeps the fields it knows).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationAnswer {
    schema_version: u32,
    invocation_id: String,
    status: InvocationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<ErrorKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    st2_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
}

fn describe(invocation_id: &str, execution: &Execution, base: Option<&str>) -> InvocationAnswer {
    let st2_status = execution
        .status
        .clone()
        .unwrap_or(ExecutionStatus::Requested);
    let status = InvocationStatus::of(&st2_status);
    let (output, error, error_kind) = if st2_status.is_terminal() {
        match outcome(execution, &st2_status) {
            Ok(done) => (Some(done.output), None, None),
            Err(e) => (None, Some(e.message), Some(e.kind)),
        }
    } else {
        (None, None, None)
    };
    InvocationAnswer {
        schema_version: 1,
        invocation_id: invocation_id.to_string(),
        status,
        status_url: base.map(|base| status_url(base, invocation_id)),
        error,
        error_kind,
        execution_id: Some(execution.id.clone()),
        st2_status: Some(st2_status.to_string()),
        output,
    }
}

/// The absolute status URL Portarium's parser requires, under the adapter's public base URL
/// (`super::origin`: never the caller's `Host` unless configured to trust it).
fn status_url(base: &str, invocation_id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(invocation_id.as_bytes()).collect();
    format!("{base}/v1/invoke/{id}/status")
}

/// The execution the caller's invocation started, found by the tenant's invocation key
/// through st2's trace index; an invocation of another tenant answers exactly like a missing
/// one, and a dispatch whose actionId equals the invocation id is not it.
async fn located(tenant: &Tenant, invocation_id: &str) -> Result<Execution, Response> {
    let not_found = || {
        let failure = Failure::from(DispatchError::refused(
            ErrorKind::FlowNotFound,
            format!("no invocation {invocation_id} for this tenant"),
        ));
        Contract::Machine.refuse(failure, Some(invocation_id))
    };
    if !DISPATCH_ID.admits(invocation_id) {
        return Err(not_found());
    }
    let key = invocation_key(&tenant.id, invocation_id);
    match tenant.dispatcher.find(&key, &tenant.id).await {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(not_found()),
        Err(e) => Err(st2_refusal(invocation_id, &e)),
    }
}

/// A refusal in the invocation answer's shape (`MachineInvocationResponseV1` with status
/// `failed`), the machine interface's one response mapping for failures.
pub(super) fn refusal(failure: Failure, invocation_id: Option<&str>) -> Response {
    let body = json!({
        "schemaVersion": 1,
        "invocationId": invocation_id,
        "status": InvocationStatus::Failed,
        "error": failure.error.message,
        "errorKind": failure.error.kind,
    });
    (failure.status, Json(body)).into_response()
}

fn st2_refusal(invocation_id: &str, err: &St2Error) -> Response {
    Contract::Machine.refuse(DispatchError::from_st2(err).into(), Some(invocation_id))
}

/// `MachineInvocationProgressEventV1`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgressEvent<'a> {
    schema_version: u32,
    invocation_id: &'a str,
    status: InvocationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    diagnostics: Option<String>,
}

/// Maps one execution's follow to progress events.
struct Progress {
    invocation_id: String,
    execution_id: String,
    status: Option<ExecutionStatus>,
    done: bool,
    /// Secret values no event may carry.
    secrets: Vec<String>,
}

impl Progress {
    /// One progress event per status and per output chunk until the execution completes,
    /// or a closing note at `until`.
    fn events(
        self,
        follow: Follow,
        until: Instant,
    ) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold((self, follow), move |(mut p, mut follow)| async move {
            while !p.done {
                let event = match tokio::time::timeout_at(until, follow.next()).await {
                    Ok(Some(event)) => p.progress(event),
                    Ok(None) | Err(_) => Some(p.closed()),
                };
                if let Some(event) = event {
                    return Some((Ok(event), (p, follow)));
                }
            }
            None
        })
    }

    fn progress(&mut self, event: ExecutionEvent) -> Option<Event> {
        match event {
            ExecutionEvent::Status(execution) => {
                let status = execution.status.clone()?;
                let terminal = status.is_terminal();
                let diagnostics = terminal.then(|| match outcome(&execution, &status) {
                    Ok(_) => {
                        format!("st2 execution {} succeeded", execution.id)
                    }
                    Err(e) => e.message,
                });
                let ratio = if terminal { 1.0 } else { 0.0 };
                self.done = terminal;
                self.status = Some(status.clone());
                Some(self.event(
                    InvocationStatus::of(&status),
                    Some(status.to_string()),
                    Some(ratio),
                    diagnostics,
                ))
            }
            // Output means it runs, even when no running status was seen (it had ended).
            ExecutionEvent::Output(chunk) => Some(
                self.event(
                    self.status
                        .as_ref()
                        .map_or(InvocationStatus::Running, InvocationStatus::of),
                    Some("output".into()),
                    None,
                    Some(chunk.data),
                ),
            ),
            ExecutionEvent::Gone => {
                let note = format!(
                    "st2 execution {} disappeared while it was followed",
                    self.execution_id
                );
                Some(self.failed(note))
            }
            ExecutionEvent::Failed(e) => Some(self.failed(e.to_string())),
        }
    }

    fn failed(&mut self, diagnostics: String) -> Event {
        self.done = true;
        self.event(
            InvocationStatus::Failed,
            Some("st2-error".into()),
            None,
            Some(diagnostics),
        )
    }

    /// The last event when the stream closes before the execution completes.
    fn closed(&mut self) -> Event {
        self.done = true;
        let current = self
            .status
            .as_ref()
            .map_or(InvocationStatus::Accepted, InvocationStatus::of);
        let note = "progress stream closed after its longest duration; the execution continues — read statusUrl";
        self.event(
            current,
            Some("stream-closed".into()),
            None,
            Some(note.into()),
        )
    }

    fn event(
        &self,
        status: InvocationStatus,
        step: Option<String>,
        progress_ratio: Option<f64>,
        diagnostics: Option<String>,
    ) -> Event {
        let event = ProgressEvent {
            schema_version: 1,
            invocation_id: &self.invocation_id,
            status,
            step,
            progress_ratio,
            diagnostics: diagnostics.map(|d| scrub_field(&d, &self.secrets)),
        };
        let data = serde_json::to_string(&event).expect("a progress event serializes");
        Event::default().event("progress").data(data)
    }
}
