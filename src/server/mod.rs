//! The adapter's own HTTP API: Portarium's routes, execution control, health, readiness and metrics.

pub mod answer;
pub mod auth;
pub mod dispatch;
pub mod events;
pub mod executions;
pub mod health;
pub mod invoke;
pub mod openclaw;
pub mod output;
pub mod tls;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use answer::Contract;
pub use auth::{AuthedTenant, Guard};
pub use dispatch::DispatchState;

/// The OpenAPI document of every route this server answers (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");
pub use health::{Probe, Readiness};

/// Builds the router with every route the adapter serves.
pub fn router(readiness: Readiness, dispatch: DispatchState, max_body_bytes: usize) -> Router {
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::telemetry::own::prometheus_route))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    OPENAPI,
                )
            }),
        )
        .with_state(readiness);
    let native = Router::new()
        .route("/v1/dispatch", post(dispatch::dispatch))
        .route(
            "/api/v1/flows/{flow_ref}/run",
            post(dispatch::activepieces_run),
        )
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/output", get(output::output))
        .route("/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/v1/executions/{id}/pause", post(executions::pause))
        .route("/v1/executions/{id}/resume", post(executions::resume))
        .route("/v1/executions/{id}/rerun", post(executions::rerun));
    let openclaw = Router::new().route("/tools/invoke", post(openclaw::invoke));
    let machine = Router::new()
        .route("/v1/invoke", post(invoke::invoke))
        .route("/v1/invoke/{id}/status", get(invoke::status))
        .route("/v1/invoke/{id}/stream", get(invoke::stream));
    // Each contract's routes sit behind the one authentication layer, which refuses in that
    // contract's shape before any body or path is looked at (outermost: no extractor answers
    // 413 or 422 before the caller is known).
    let guarded = |routes: Router<DispatchState>, contract: Contract| {
        let guard = Guard {
            tenants: dispatch.clone(),
            contract,
        };
        routes.route_layer(axum::middleware::from_fn_with_state(
            guard,
            auth::require_bearer,
        ))
    };
    let api = guarded(native, Contract::Native)
        .merge(guarded(openclaw, Contract::OpenClaw))
        .merge(guarded(machine, Contract::Machine))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(dispatch);
    health.merge(api)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
