//! Authentication, once per request: [`require_bearer`] finds the tenant whose bearer token
//! the request carries before any body or path is read, and hands it to the handler as
//! [`AuthedTenant`]. A request without one is answered 401 in the shape of the route's own
//! wire contract; one with two `Authorization` headers, 400.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::DispatchState;
use super::answer::{Contract, Failure};
use crate::core::portarium::ErrorKind;
use crate::core::{DispatchError, Tenant};

/// What a caller without a valid token is told.
pub(crate) const UNAUTHENTICATED: &str =
    "missing or unknown bearer token; send Authorization: Bearer <the tenant's api_token>";

/// What a caller sending more than one `Authorization` header is told.
pub(crate) const AMBIGUOUS: &str = "more than one Authorization header; send exactly one: Authorization: Bearer <the tenant's api_token>";

/// The tenant the request's bearer token belongs to.
#[derive(Clone)]
pub struct AuthedTenant(pub Arc<Tenant>);

impl std::ops::Deref for AuthedTenant {
    type Target = Tenant;

    fn deref(&self) -> &Tenant {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthedTenant {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        // Only a route behind `require_bearer` can ask for it; without the layer, refuse.
        parts
            .extensions
            .get::<AuthedTenant>()
            .cloned()
            .ok_or_else(|| unauthenticated(Contract::Native))
    }
}

/// Layer state: the tenants, and the contract whose shape a refusal takes.
#[derive(Clone)]
pub struct Guard {
    /// The tenants and their tokens.
    pub tenants: DispatchState,
    /// How the routes behind this guard answer.
    pub contract: Contract,
}

/// Middleware on every tenant route: authenticates the bearer token, then hands the tenant on.
pub async fn require_bearer(
    State(guard): State<Guard>,
    mut request: Request,
    next: Next,
) -> Response {
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        // Proxies and servers disagree on which of two wins; refusing leaves nothing to choose.
        let failure = Failure::bad_request(AMBIGUOUS);
        return guard.contract.refuse(failure, None);
    }
    match guard.tenants.authenticate(request.headers()) {
        Some(tenant) => {
            request.extensions_mut().insert(AuthedTenant(tenant));
            next.run(request).await
        }
        None => unauthenticated(guard.contract),
    }
}

fn unauthenticated(contract: Contract) -> Response {
    let failure = Failure {
        status: StatusCode::UNAUTHORIZED,
        error: DispatchError::refused(ErrorKind::Unauthorized, UNAUTHENTICATED),
    };
    contract.refuse(failure, None).into_response()
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
