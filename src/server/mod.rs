//! The adapter's own HTTP API: Portarium's routes, execution control, health, readiness and metrics.

pub mod answer;
pub mod auth;
pub mod conn;
pub mod dispatch;
pub mod drain;
pub mod events;
pub mod executions;
pub mod health;
pub mod invoke;
pub mod limits;
pub mod openclaw;
pub mod origin;
pub mod output;
pub mod tls;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

pub use answer::Contract;
pub use auth::{AuthedTenant, Guard};
pub use dispatch::DispatchState;
pub use drain::Drain;
pub use limits::Limits;

/// The OpenAPI document of every route this server answers (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");
pub use health::{Probe, Readiness};

/// Builds the router with every route the adapter serves, under `limits` (a body limit alone
/// leaves the others at their defaults).
pub fn router(readiness: Readiness, dispatch: DispatchState, limits: impl Into<Limits>) -> Router {
    let limits = limits.into();
    let max_wait = std::time::Duration::from_millis(dispatch.settings().max_wait_ms);
    let timeout = limits.request_timeout(max_wait);
    let deadline = |contract: Contract| {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(
                move |_: tower::BoxError| async move { limits::timed_out(contract) },
            ))
            .timeout(timeout)
    };
    // Streams last as long as their execution: exempt from the deadline, capped in number
    // (one cap shared by every streaming route).
    let streams = limits::Streams::new(limits.max_streams);
    let drain = readiness.drain().clone();
    let stream_cap = |contract: Contract| {
        axum::middleware::from_fn_with_state(streams.answering(contract), limits::limit_streams)
    };
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
        .with_state(readiness)
        .route_layer(deadline(Contract::Native));
    let native = Router::new()
        .route("/v1/dispatch", post(dispatch::dispatch))
        .route(
            "/api/v1/flows/{flow_ref}/run",
            post(dispatch::activepieces_run),
        )
        .route(
            "/api/v1/flows/{machine}/{flow_ref}/run",
            post(dispatch::activepieces_run),
        )
        .route("/v1/executions/{id}", get(executions::get))
        .route("/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/v1/executions/{id}/pause", post(executions::pause))
        .route("/v1/executions/{id}/resume", post(executions::resume))
        .route("/v1/executions/{id}/rerun", post(executions::rerun))
        .route_layer(deadline(Contract::Native))
        .merge(
            Router::new()
                .route("/v1/executions/{id}/output", get(output::output))
                .route_layer(stream_cap(Contract::Native)),
        );
    let openclaw = Router::new()
        .route("/tools/invoke", post(openclaw::invoke))
        .route_layer(deadline(Contract::OpenClaw));
    let machine = Router::new()
        .route("/v1/invoke", post(invoke::invoke))
        .route("/v1/invoke/{id}/status", get(invoke::status))
        .route_layer(deadline(Contract::Machine))
        .merge(
            Router::new()
                .route("/v1/invoke/{id}/stream", get(invoke::stream))
                .route_layer(stream_cap(Contract::Machine)),
        );
    // Each contract's routes sit behind the one authentication layer, which refuses in that
    // contract's shape before any body or path is looked at (outermost: no extractor answers
    // 413 or 422 before the caller is known).
    let guarded = |routes: Router<DispatchState>, contract: Contract| {
        let guard = Guard {
            tenants: dispatch.clone(),
            contract,
        };
        routes
            .route_layer(axum::middleware::from_fn_with_state(
                contract,
                limits::json_errors,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                guard,
                auth::require_bearer,
            ))
    };
    let api = guarded(native, Contract::Native)
        .merge(guarded(openclaw, Contract::OpenClaw))
        .merge(guarded(machine, Contract::Machine))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::Extension(limits.origin.clone()))
        // Counted for the drain at shutdown; health probes are not, so polling cannot hold it.
        .layer(axum::middleware::from_fn_with_state(drain, Drain::track))
        .with_state(dispatch);
    health
        .merge(api)
        .fallback(limits::no_route)
        .method_not_allowed_fallback(limits::wrong_method)
        .layer(limits::trace_layer())
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains open requests, under
/// the default connection limits (`conn::serve_connections` takes configured ones).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve_connections(
        listener,
        router,
        None,
        conn::ConnectionLimits::default(),
        shutdown,
    )
    .await
}
