//! `POST /tools/invoke`: the OpenClaw gateway bridge, the execution path wired in Portarium
//! today. The tool name is the st2 action ref, optionally prefixed `<machineId>/`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use st2_client::models::JsonObject;

use super::answer::{Contract, Failure};
use super::auth::AuthedTenant;
use super::dispatch::{DispatchState, run, without_machine};
use crate::core::Mode;
use crate::core::portarium::{DispatchRequest, TraceContext};

/// The bridge's request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeRequest {
    /// `pack.action`, or `<machineId>/pack.action`.
    tool_name: String,
    /// The action's parameters.
    #[serde(default)]
    parameters: JsonObject,
    /// Check everything, start nothing.
    #[serde(default)]
    dry_run: bool,
    /// Portarium's ids; correlation travels here, not in headers.
    metadata: InvokeMetadata,
}

/// `metadata` of the bridge's body. Fields the bridge may add later are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvokeMetadata {
    tenant_id: String,
    run_id: String,
    action_id: String,
    correlation_id: String,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
}

/// Handles `POST /tools/invoke`. The bridge retries timeouts, 429 and 5xx, maps 409 to a
/// policy denial and other 4xx to RemoteError; so a definitive failure answers 422 (no
/// pointless retries), and success answers with the output itself, which the bridge reads.
/// The invoker aborts after 10 s and calls that `Timeout`, so this route waits up to
/// `dispatch.max_wait_ms` and lets that abort decide; the retry with the same key re-attaches.
pub async fn invoke(
    State(state): State<DispatchState>,
    tenant: AuthedTenant,
    headers: HeaderMap,
    body: Result<Json<InvokeRequest>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(rejection) => return Contract::OpenClaw.answer(Err(Failure::body(&rejection))),
    };
    let flow_ref = without_machine(&body.tool_name).to_string();
    let mode = if body.dry_run || body.metadata.dry_run {
        Mode::DryRun
    } else {
        Mode::Wait(Duration::from_millis(state.settings().max_wait_ms))
    };
    let req = DispatchRequest {
        action_id: body.metadata.action_id,
        idempotency_key: body.metadata.idempotency_key,
        tenant_id: body.metadata.tenant_id,
        run_id: body.metadata.run_id,
        correlation_id: body.metadata.correlation_id,
        flow_ref,
        payload: body.parameters,
        trace: body
            .metadata
            .traceparent
            .as_deref()
            .and_then(|tp| TraceContext::parse(tp, body.metadata.tracestate.as_deref())),
        invocation_id: None,
    };
    Contract::OpenClaw.answer(run(&tenant.0, req, &headers, mode).await)
}
