//! `POST /v1/dispatch`: Portarium's dispatch input in, its result object out.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;

use crate::config::{Config, DispatchConfig};
use crate::dispatch::Dispatcher;
use crate::governance::secrets::Secret;
use crate::portarium::{DispatchRequest, DispatchResult, ErrorKind};
use crate::st2::{St2Client, St2Error};

/// One tenant: the token its caller sends and the dispatcher holding its st2 credentials.
struct Tenant {
    id: String,
    token: Secret,
    dispatcher: Dispatcher,
}

/// What the dispatch route needs, shared by every request.
#[derive(Clone)]
pub struct DispatchState {
    tenants: Arc<Vec<Tenant>>,
    settings: DispatchConfig,
}

impl DispatchState {
    /// Builds one st2 client per distinct credential: the shared one, plus each tenant's own.
    pub fn from_config(config: &Config, shared: &St2Client) -> Result<Self, St2Error> {
        let mut tenants = Vec::new();
        for t in &config.tenants {
            let client = match &t.st2 {
                Some(own) => St2Client::from_config(&config.st2.for_tenant(own))?,
                None => shared.clone(),
            };
            tenants.push(Tenant {
                id: t.id.clone(),
                token: t.api_token.clone(),
                dispatcher: Dispatcher::new(client),
            });
        }
        Ok(Self {
            tenants: Arc::new(tenants),
            settings: config.dispatch.clone(),
        })
    }

    /// Tenants configured; zero means every dispatch is refused.
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// The tenant whose token `presented` is, comparing every token in constant time.
    fn authenticate(&self, presented: &str) -> Option<&Tenant> {
        let mut found = None;
        for t in self.tenants.iter() {
            if constant_time_eq(t.token.expose().as_bytes(), presented.as_bytes()) {
                found = Some(t);
            }
        }
        found
    }
}

/// Query parameters of `POST /v1/dispatch`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchQuery {
    /// How long to wait for st2, capped at `dispatch.max_wait_ms`.
    wait_ms: Option<u64>,
}

/// Handles `POST /v1/dispatch`; the HTTP status follows the result's error kind.
pub async fn dispatch(
    State(state): State<DispatchState>,
    headers: HeaderMap,
    Query(query): Query<DispatchQuery>,
    body: Result<Json<DispatchRequest>, JsonRejection>,
) -> (StatusCode, Json<DispatchResult>) {
    let Some(tenant) = bearer(&headers).and_then(|token| state.authenticate(token)) else {
        return answer(DispatchResult::err(
            ErrorKind::Unauthorized,
            "missing or unknown bearer token; send Authorization: Bearer <the tenant's api_token>",
        ));
    };
    let mut req = match body {
        Ok(Json(req)) => req,
        Err(rejection) => {
            let status = rejection.status();
            let result = DispatchResult::err(
                ErrorKind::RemoteError,
                format!("request body refused: {}", rejection.body_text()),
            );
            return (status, Json(result));
        }
    };
    if req.tenant_id != tenant.id {
        return answer(DispatchResult::err(
            ErrorKind::Unauthorized,
            format!(
                "the bearer token does not belong to tenant {}",
                req.tenant_id
            ),
        ));
    }
    if req.idempotency_key.is_none() {
        req.idempotency_key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    let wait = query
        .wait_ms
        .unwrap_or(state.settings.default_wait_ms)
        .min(state.settings.max_wait_ms);
    answer(
        tenant
            .dispatcher
            .dispatch(&req, Duration::from_millis(wait))
            .await,
    )
}

fn answer(result: DispatchResult) -> (StatusCode, Json<DispatchResult>) {
    let status = match result.error_kind() {
        None => StatusCode::OK,
        Some(kind) => StatusCode::from_u16(kind.http_status()).expect("valid status"),
    };
    (status, Json(result))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(a.len() ^ b.len(), |acc, (x, y)| acc | usize::from(x ^ y));
    diff == 0
}
