//! `GET /v1/executions/{id}` and `POST /v1/executions/{id}/cancel|pause|resume|rerun`, scoped to
//! the caller's tenant: an execution another tenant started answers exactly like a missing one.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::dispatch::{DispatchState, Tenant};
use crate::core::dispatch::CONTEXT_KEY;
use crate::core::portarium::{DispatchResult, ErrorKind};
use st2_client::models::{JsonObject, rfc3339};
use st2_client::{CancelOutcome, Execution, RerunRequest, St2Error};

type Answer = (StatusCode, Json<Value>);

/// Handles `GET /v1/executions/{id}`.
pub async fn get(
    State(state): State<DispatchState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    match owned(&state, &headers, &id).await {
        Ok((_, execution)) => (StatusCode::OK, Json(summary(&execution))),
        Err(answer) => answer,
    }
}

/// Handles `POST /v1/executions/{id}/cancel`; cancelling a completed execution is 409.
pub async fn cancel(
    State(state): State<DispatchState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let tenant = match owned(&state, &headers, &id).await {
        Ok((tenant, _)) => tenant,
        Err(answer) => return answer,
    };
    match tenant.dispatcher.st2().executions().cancel(&id).await {
        Ok(CancelOutcome::Canceled(e)) => (StatusCode::OK, Json(summary(&e))),
        Ok(CancelOutcome::AlreadyCompleted { faultstring }) => {
            failure(StatusCode::CONFLICT, ErrorKind::RemoteError, faultstring)
        }
        Err(e) => st2_failure(&e),
    }
}

/// Handles `POST /v1/executions/{id}/pause` (workflows only, as in st2).
pub async fn pause(
    State(state): State<DispatchState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    control(&state, &headers, &id, true).await
}

/// Handles `POST /v1/executions/{id}/resume`.
pub async fn resume(
    State(state): State<DispatchState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    control(&state, &headers, &id, false).await
}

async fn control(state: &DispatchState, headers: &HeaderMap, id: &str, pause: bool) -> Answer {
    let tenant = match owned(state, headers, id).await {
        Ok((tenant, _)) => tenant,
        Err(answer) => return answer,
    };
    let executions = tenant.dispatcher.st2().executions();
    let result = if pause {
        executions.pause(id).await
    } else {
        executions.resume(id).await
    };
    match result {
        Ok(e) => (StatusCode::OK, Json(summary(&e))),
        Err(e) => st2_failure(&e),
    }
}

/// The caller's tenant and the execution, if that tenant started it.
pub(super) async fn owned<'a>(
    state: &'a DispatchState,
    headers: &HeaderMap,
    id: &str,
) -> Result<(&'a Tenant, Execution), Answer> {
    let Some(tenant) = state.authenticate_headers(headers) else {
        return Err(failure(
            StatusCode::UNAUTHORIZED,
            ErrorKind::Unauthorized,
            "missing or unknown bearer token".into(),
        ));
    };
    let not_found = || {
        failure(
            StatusCode::NOT_FOUND,
            ErrorKind::FlowNotFound,
            format!("no execution {id} for tenant {}", tenant.id),
        )
    };
    let st2 = tenant.dispatcher.st2();
    let execution = match st2.executions().get(id).send().await {
        Ok(e) => e,
        Err(St2Error::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(st2_failure(&e)),
    };
    // st2's re-run keeps no caller context, only `re-run.ref`: a re-run belongs to whoever
    // owns the execution it re-ran. The chain is followed a bounded number of hops.
    let mut current = execution.clone();
    for _ in 0..MAX_RERUN_HOPS {
        if current.context_at(&format!("{CONTEXT_KEY}.tenant_id")) == Some(&json!(tenant.id)) {
            return Ok((tenant, execution));
        }
        let Some(previous) = current.context_at("re-run.ref").and_then(Value::as_str) else {
            break;
        };
        current = match st2
            .executions()
            .get(previous)
            .exclude(&["result"])
            .send()
            .await
        {
            Ok(e) => e,
            Err(St2Error::NotFound { .. }) => break,
            Err(e) => return Err(st2_failure(&e)),
        };
    }
    Err(not_found())
}

/// Re-runs of re-runs followed when deciding ownership.
const MAX_RERUN_HOPS: usize = 8;

/// Optional body of `POST /v1/executions/{id}/rerun`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// Parameters merged over the original ones by st2.
    #[serde(default)]
    parameters: JsonObject,
}

/// Handles `POST /v1/executions/{id}/rerun`: st2 re-runs it (secrets intact) as a new
/// execution, answered with 201.
pub async fn rerun(
    State(state): State<DispatchState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RerunBody>>,
) -> Answer {
    let (tenant, original) = match owned(&state, &headers, &id).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    // A re-run starts the action again, so it passes the same gates a dispatch does.
    let action = original.action_ref().unwrap_or_default().to_string();
    if let Err(refusal) = tenant.may_run(&action).await {
        return refused(refusal);
    }
    let request = RerunRequest {
        parameters: body.map(|Json(b)| b.parameters).unwrap_or_default(),
        ..RerunRequest::default()
    };
    match tenant
        .dispatcher
        .st2()
        .executions()
        .rerun(&id, &request)
        .await
    {
        Ok(e) => (StatusCode::CREATED, Json(summary(&e))),
        Err(e) => st2_failure(&e),
    }
}

/// The execution as the adapter shows it: ids, status, timing, result, workflow links.
fn summary(e: &Execution) -> Value {
    json!({
        "executionId": e.id,
        "status": e.status,
        "actionRef": e.action_ref(),
        "startedAt": e.start_timestamp.map(rfc3339),
        "endedAt": e.end_timestamp.map(rfc3339),
        "result": e.result,
        "parent": e.parent,
        "children": e.children,
    })
}

fn failure(status: StatusCode, kind: ErrorKind, message: String) -> Answer {
    let body = serde_json::to_value(DispatchResult::err(kind, message)).expect("serializable");
    (status, Json(body))
}

/// st2's refusal of a request (wrong runner, wrong state) is the caller's 400, with st2's words;
/// everything else maps as dispatch failures do.
fn st2_failure(e: &St2Error) -> Answer {
    if let St2Error::BadRequest { faultstring, .. } = e {
        return failure(
            StatusCode::BAD_REQUEST,
            ErrorKind::RemoteError,
            faultstring.clone(),
        );
    }
    refused(DispatchResult::err(
        crate::core::dispatch::kind_of(e),
        e.to_string(),
    ))
}

/// A failed result with the HTTP status its error kind maps to, as every dispatch route answers.
fn refused(result: DispatchResult) -> Answer {
    let (status, result) = super::dispatch::with_status(result);
    (
        status,
        Json(serde_json::to_value(result).expect("serializable")),
    )
}
