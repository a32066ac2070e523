//! `GET /v1/executions/{id}` and `POST /v1/executions/{id}/cancel|pause|resume|rerun`, scoped to
//! the caller's tenant: an execution another tenant started answers exactly like a missing one.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use st2_client::models::{JsonObject, rfc3339};
use st2_client::{CancelOutcome, Execution, St2Error};

use super::answer::{Contract, Failure};
use super::auth::AuthedTenant;
use crate::core::dispatch::{belongs_to, secrets_key};
use crate::core::governance::redact::scrub_value;
use crate::core::portarium::ErrorKind;
use crate::core::{DispatchError, Rerun, Tenant};

type Answer = Response;

/// Handles `GET /v1/executions/{id}`.
pub async fn get(tenant: AuthedTenant, Path(id): Path<String>) -> Answer {
    match owned(&tenant, &id).await {
        Ok(execution) => ok(&tenant, StatusCode::OK, execution).await,
        Err(answer) => answer,
    }
}

/// Handles `POST /v1/executions/{id}/cancel`; cancelling a completed execution is 409.
pub async fn cancel(tenant: AuthedTenant, Path(id): Path<String>) -> Answer {
    let execution = match owned(&tenant, &id).await {
        Ok(e) => e,
        Err(answer) => return answer,
    };
    match crate::core::cancel(&tenant, &execution).await {
        Ok(CancelOutcome::Canceled(e)) => ok(&tenant, StatusCode::OK, *e).await,
        Ok(CancelOutcome::AlreadyCompleted { faultstring }) => {
            failure(StatusCode::CONFLICT, ErrorKind::RemoteError, faultstring)
        }
        Err(e) => st2_failure(&e),
    }
}

/// Handles `POST /v1/executions/{id}/pause` (workflows only, as in st2).
pub async fn pause(tenant: AuthedTenant, Path(id): Path<String>) -> Answer {
    control(&tenant, &id, true).await
}

/// Handles `POST /v1/executions/{id}/resume`.
pub async fn resume(tenant: AuthedTenant, Path(id): Path<String>) -> Answer {
    control(&tenant, &id, false).await
}

async fn control(tenant: &Tenant, id: &str, pause: bool) -> Answer {
    if let Err(answer) = owned(tenant, id).await {
        return answer;
    }
    let executions = tenant.dispatcher.st2().executions();
    let result = if pause {
        executions.pause(id).await
    } else {
        executions.resume(id).await
    };
    match result {
        Ok(e) => ok(tenant, StatusCode::OK, e).await,
        Err(e) => st2_failure(&e),
    }
}

/// The execution, if the caller's tenant started it (or re-ran one it started).
pub(super) async fn owned(tenant: &Tenant, id: &str) -> Result<Execution, Answer> {
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
    // The execution itself is only borrowed: its result may be large.
    let mut hop: Option<Execution> = None;
    for _ in 0..MAX_RERUN_HOPS {
        let current = hop.as_ref().unwrap_or(&execution);
        if belongs_to(current, &tenant.id) {
            return Ok(execution);
        }
        let Some(previous) = current.context_at("re-run.ref").and_then(Value::as_str) else {
            break;
        };
        let previous = match st2
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
        hop = Some(previous);
    }
    Err(not_found())
}

/// Re-runs of re-runs followed when deciding ownership.
const MAX_RERUN_HOPS: usize = 8;

/// Optional body of `POST /v1/executions/{id}/rerun`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RerunBody {
    /// Parameters merged over the original ones.
    #[serde(default)]
    parameters: JsonObject,
}

/// Handles `POST /v1/executions/{id}/rerun`: a new execution of the same action carrying the
/// Portarium context (see [`crate::core::rerun`]), answered with 201.
pub async fn rerun(tenant: AuthedTenant, Path(id): Path<String>, body: Bytes) -> Answer {
    // No body, or an empty one, re-runs with the original parameters.
    let body: RerunBody = if body.iter().all(u8::is_ascii_whitespace) {
        RerunBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                let failure = Failure::bad_request(format!(
                    "request body refused: {e}; send {{\"parameters\": {{...}}}} or nothing"
                ));
                return Contract::Native.refuse(failure, None);
            }
        }
    };
    let original = match owned(&tenant, &id).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match crate::core::rerun(&tenant, &original, body.parameters).await {
        Rerun::Started(e) => ok(&tenant, StatusCode::CREATED, *e).await,
        Rerun::Refused(refusal) => Contract::Native.refuse(refusal.into(), None),
        Rerun::Incomplete(message) => Contract::Native.refuse(Failure::bad_request(message), None),
        Rerun::Failed(e) => st2_failure(&e),
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

/// A success: the execution's summary, its result scrubbed of its request's secrets.
async fn ok(tenant: &Tenant, status: StatusCode, mut e: Execution) -> Answer {
    let secrets = secrets_of(tenant, &e).await;
    e.result = e.result.map(|r| scrub_value(&r, &secrets));
    (status, Json(summary(&e))).into_response()
}

/// The secret values of the request that started `e` (and of any other booked under its
/// key), as st2 or this process knows them.
pub(super) async fn secrets_of(tenant: &Tenant, e: &Execution) -> Vec<String> {
    let action = e.action_ref().unwrap_or_default();
    let booked = tenant
        .book_secrets(action, &secrets_key(e), &JsonObject::new())
        .await;
    tenant.secrets_of(Some(&e.id), &booked).await
}

fn failure(status: StatusCode, kind: ErrorKind, message: String) -> Answer {
    let error = DispatchError::new(kind, message);
    Contract::Native.refuse(Failure { status, error }, None)
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
    Contract::Native.refuse(DispatchError::from_st2(e).into(), None)
}
