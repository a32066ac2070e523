//! `GET /v1/executions/{id}/output`: an execution's output as server-sent events, scoped to
//! the caller's tenant like the other execution routes.
//!
//! Each chunk is `event: output` with the chunk as JSON; the last event is `event: end` with
//! the status. The response ends when the execution ends, or after `dispatch.max_wait_ms`
//! (then `end` carries a status that is not terminal).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;
use tokio::time::Instant;

use super::auth::AuthedTenant;
use super::dispatch::DispatchState;
use super::executions::owned;
use st2_client::stream::OutputStream;

/// Comment lines sent while the execution is quiet, so proxies keep the response open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Handles `GET /v1/executions/{id}/output`.
pub async fn output(
    State(state): State<DispatchState>,
    tenant: AuthedTenant,
    Path(id): Path<String>,
) -> Response {
    if let Err(answer) = owned(&tenant, &id).await {
        return answer;
    }
    let dispatcher = tenant.dispatcher.clone();
    let chunks = match dispatcher.watcher() {
        Some(w) => w.output(&id),
        None => OutputStream::new(dispatcher.st2().clone(), None, &id),
    };
    let until = Instant::now() + Duration::from_millis(state.settings().max_wait_ms);
    let lines = chunks
        .take_until(tokio::time::sleep_until(until))
        .map(|chunk| Ok(sse_event("output", &chunk)));
    let end = futures_util::stream::once(async move {
        let status = dispatcher
            .st2()
            .executions()
            .get(&id)
            .include(&["id", "status"])
            .send()
            .await
            .ok()
            .and_then(|e| e.status);
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
