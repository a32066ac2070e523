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

impl EventsState {
    /// Built from `events.inbound`, sharing `dispatch`'s tenants; also starts the
    /// JetStream consumer when `events.inbound.nats` is set (abort the handle on shutdown).
    pub fn start(
        config: &crate::events::EventsConfig,
        dispatch: DispatchState,
    ) -> (Self, Option<tokio::task::JoinHandle<()>>) {
        let state = Self {
            dispatch,
            inbound: Inbound::new(&config.inbound),
        };
        let consumer = config
            .inbound
            .nats
            .clone()
            .map(|nats| spawn_nats_consumer(state.clone(), nats));
        (state, consumer)
    }
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

/// Takes Portarium's events from JetStream (`events.inbound.nats`) through a durable pull
/// consumer and runs each through the same checks as `POST /v1/events`, the tenant being the
/// event's `tenantid` (it must be a configured tenant). An event is acknowledged once st2 took
/// its trigger or it was refused for good (logged); when st2 fails it is redelivered after
/// `backoff.max`. Connection failures are retried with the shared backoff, forever:
/// the task ends only when aborted.
pub fn spawn_nats_consumer(
    state: EventsState,
    config: crate::events::config::InboundNatsConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = st2_basics::Backoff::new(config.backoff.clone());
        loop {
            match consume(&state, &config, &mut backoff).await {
                Ok(()) => tracing::warn!("Portarium event stream ended; reconnecting"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot consume Portarium events from NATS; retrying")
                }
            }
            backoff.wait().await;
        }
    })
}

/// One consumer session; `backoff` restarts from `initial` once a message arrives.
async fn consume(
    state: &EventsState,
    config: &crate::events::config::InboundNatsConfig,
    backoff: &mut st2_basics::Backoff,
) -> Result<(), String> {
    use async_nats::jetstream::{self, AckKind, consumer};
    use futures_util::StreamExt;
    let client = async_nats::connect(config.url.as_str())
        .await
        .map_err(|e| format!("{}: {e}", config.url))?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| format!("stream {}: {e}", config.stream))?;
    let pull: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &config.durable,
            consumer::pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject: config.filter_subject.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {e}", config.durable))?;
    let mut messages = pull.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        backoff.reset();
        let ack = match handle(state, &message.payload).await {
            Ok(()) => AckKind::Ack,
            Err(InboundError::St2 { .. }) => AckKind::Nak(Some(config.backoff.max)),
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "Portarium event refused");
                AckKind::Term
            }
        };
        message.ack_with(ack).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn handle(state: &EventsState, payload: &[u8]) -> Result<(), InboundError> {
    let tenant_id = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["tenantid"].as_str().map(str::to_string))
        .ok_or_else(|| InboundError::Malformed("no tenantid".into()))?;
    let Some(tenant) = state.dispatch.tenant(&tenant_id) else {
        return Err(InboundError::WrongTenant {
            event: tenant_id,
            caller: "any configured tenant".into(),
        });
    };
    match state
        .inbound
        .accept(&tenant.id, payload, tenant.dispatcher.st2())
        .await
    {
        Ok((event, Outcome::Fired { target })) => {
            tracing::info!(id = %event.id, %target, "Portarium event fired an st2 trigger");
            Ok(())
        }
        Ok((event, Outcome::Duplicate)) => {
            tracing::debug!(id = %event.id, "Portarium event redelivered; ignored");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
