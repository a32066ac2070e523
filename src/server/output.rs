//! `GET /v1/executions/{id}/output`: an execution's output as server-sent events, scoped to
//! the caller's tenant like the other execution routes.
//!
//! Each chunk is `event: output` with the chunk as JSON; the last event is `event: end` with
//! the status. The response ends when the execution ends, or after `dispatch.max_wait_ms`
//! (then `end` carries a status that is not terminal).

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use super::auth::AuthedTenant;
use super::dispatch::DispatchState;
use super::executions::{owned, secrets_of};
use crate::core::governance::redact::scrub_field;
use st2_client::stream::ExecutionEvent;

/// Comment lines sent while the execution is quiet, so proxies keep the response open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Handles `GET /v1/executions/{id}/output`.
pub async fn output(
    State(state): State<DispatchState>,
    tenant: AuthedTenant,
    Path(id): Path<String>,
) -> Response {
    let execution = match owned(&tenant, &id).await {
        Ok(e) => e,
        Err(answer) => return answer,
    };
    let secrets = secrets_of(&tenant, &execution).await;
    let dispatcher = tenant.dispatcher.clone();
    let until = Instant::now() + Duration::from_millis(state.settings().max_wait_ms);
    // Statuses are not sent as events: the last one seen goes into `end`.
    let status = Arc::new(Mutex::new(None));
    let seen = status.clone();
    let lines = dispatcher
        .watcher()
        .follow(&id)
        .take_until(tokio::time::sleep_until(until))
        .filter_map(move |event| {
            let line = match event {
                ExecutionEvent::Output(mut chunk) => {
                    chunk.data = scrub_field(&chunk.data, &secrets);
                    Some(Ok(sse_event("output", &chunk)))
                }
                ExecutionEvent::Status(e) => {
                    *seen.lock().unwrap_or_else(PoisonError::into_inner) = e.status.clone();
                    None
                }
                ExecutionEvent::Gone | ExecutionEvent::Failed(_) => None,
            };
            std::future::ready(line)
        });
    let end = futures_util::stream::once(async move {
        let status = status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok::<_, Infallible>(sse_event(
            "end",
            &json!({"executionId": id, "status": status}),
        ))
    });
    Sse::new(lines.chain(end))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

fn sse_event(name: &str, body: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(body)
        .expect("output chunks and statuses serialize to JSON")
}
