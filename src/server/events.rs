//! `POST /v1/events`: a Portarium CloudEvent in, an st2 trigger fired (see `events::inbound`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::DispatchState;
use crate::events::Inbound;
use crate::events::inbound::{InboundError, Outcome};

/// What the route needs: tenants (tokens and st2 clients) and the declared classes.
#[derive(Clone)]
pub struct EventsState {
    /// Tenants and their st2 clients.
    pub dispatch: DispatchState,
    /// Declared classes and the dedupe memory.
    pub inbound: Inbound,
}

/// The `/v1/events` route, with its body limit; merge it into [`super::router`]'s router.
pub fn router(state: EventsState) -> Router {
    let limit = state.inbound.max_body_bytes();
    Router::new()
        .route("/v1/events", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Handles `POST /v1/events`: 202 when fired, 200 for a redelivery, 4xx naming the problem.
async fn receive(
    State(state): State<EventsState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(tenant) = state.dispatch.authenticate_headers(&headers) else {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or unknown bearer token; send Authorization: Bearer <the tenant's api_token>"}),
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return answer(
                e.status(),
                json!({"error": format!("{}; the largest event accepted is {} bytes", e.body_text(), state.inbound.max_body_bytes())}),
            );
        }
    };
    match state
        .inbound
        .accept(&tenant.id, &body, tenant.dispatcher.st2())
        .await
    {
        Ok((event, Outcome::Fired { target })) => answer(
            StatusCode::ACCEPTED,
            json!({"id": event.id, "type": event.event_type, "status": "fired", "target": target}),
        ),
        Ok((event, Outcome::Duplicate)) => answer(
            StatusCode::OK,
            json!({"id": event.id, "type": event.event_type, "status": "duplicate"}),
        ),
        Err(e) => {
            let status = match &e {
                InboundError::Malformed(_) | InboundError::Invalid(_) => StatusCode::BAD_REQUEST,
                InboundError::WrongTenant { .. } => StatusCode::FORBIDDEN,
                InboundError::Undeclared { .. } | InboundError::Schema { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                InboundError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                InboundError::St2 { .. } => StatusCode::BAD_GATEWAY,
            };
            let mut body = json!({"error": e.to_string()});
            if let InboundError::Undeclared { declared, .. } = &e {
                body["declared"] = json!(declared);
            }
            answer(status, body)
        }
    }
}
