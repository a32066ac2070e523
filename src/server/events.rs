//! `POST /v1/events`: a Portarium CloudEvent in, an st2 trigger fired (see `events::inbound`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use super::DispatchState;
use super::answer::Contract;
use super::auth::{AuthedTenant, Guard, require_bearer};
use std::sync::Arc;

use crate::events::Inbound;
use crate::events::inbound::{InboundError, Outcome, Received};
use crate::events::source::TenantClients;

/// What the route needs: tenants (tokens and st2 clients) and the declared classes.
#[derive(Clone)]
pub struct EventsState {
    /// Tenants and their st2 clients.
    pub dispatch: DispatchState,
    /// Declared classes and the dedupe memory.
    pub inbound: Inbound,
}

impl EventsState {
    /// Built from `events.inbound`, sharing `dispatch`'s tenants; also starts the
    /// JetStream consumer when `events.inbound.nats` is set (abort the handle on shutdown).
    pub fn start(
        config: &crate::events::EventsConfig,
        dispatch: DispatchState,
    ) -> (Self, Option<tokio::task::JoinHandle<()>>) {
        let state = Self {
            dispatch,
            inbound: Inbound::new(&config.inbound, &config.lifecycle.source),
        };
        let consumer = config
            .inbound
            .nats
            .clone()
            .map(|nats| state.spawn_nats_consumer(nats));
        (state, consumer)
    }
}

impl EventsState {
    /// Starts the JetStream source (`events.inbound.nats`) for these tenants; abort the handle
    /// to stop it.
    pub fn spawn_nats_consumer(
        &self,
        config: crate::events::config::InboundNatsConfig,
    ) -> tokio::task::JoinHandle<()> {
        let tenants = self.dispatch.clone();
        let clients: TenantClients =
            Arc::new(move |id: &str| tenants.tenant(id).map(|t| t.dispatcher.st2().clone()));
        crate::events::source::nats::spawn(self.inbound.clone(), clients, config)
    }
}

/// The `/v1/events` route, with its body limit; merge it into [`super::router`]'s router.
/// The caller is authenticated before its body is read.
pub fn router(state: EventsState) -> Router {
    let limit = state.inbound.max_body_bytes();
    let guard = Guard {
        tenants: state.dispatch.clone(),
        contract: Contract::Events,
    };
    Router::new()
        .route("/v1/events", post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .route_layer(axum::middleware::from_fn_with_state(guard, require_bearer))
        .with_state(state)
        // Its one st2 call (firing the trigger) is bounded by the st2 client's own deadline; the
        // request span is the same as every other route's.
        .layer(super::limits::trace_layer())
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Handles `POST /v1/events`: 202 when fired, 200 for a redelivery, 4xx naming the problem.
async fn receive(
    State(state): State<EventsState>,
    tenant: AuthedTenant,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return answer(
                e.status(),
                json!({"error": format!("{}; the largest event accepted is {} bytes", e.body_text(), state.inbound.max_body_bytes())}),
            );
        }
    };
    let accepted = async {
        let received = Received::parse(&body)?;
        state
            .inbound
            .accept(&tenant.id, received, tenant.dispatcher.st2())
            .await
    };
    match accepted.await {
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
                InboundError::Reused { .. } => StatusCode::CONFLICT,
                InboundError::Undeclared { .. }
                | InboundError::Schema { .. }
                | InboundError::OwnEvent { .. } => StatusCode::UNPROCESSABLE_ENTITY,
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
