//! `POST /v1/dispatch`: Portarium's dispatch input in, its result object out.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::core::config::{DispatchConfig, TenantConfig};
use crate::core::dispatch::Dispatcher;
use crate::core::governance::Governance;
use crate::core::governance::audit::{AuditLog, Decision};
use crate::core::governance::redact::{RedactionPolicy, scrub_text};
use crate::core::governance::tenants::AllowedActions;
use crate::core::portarium::{DispatchRequest, DispatchResult, ErrorKind, TraceContext};
use st2_client::St2Config;
use st2_client::secret::Secret;
use st2_client::stream::ExecutionWatcher;
use st2_client::{St2Client, St2Error};

/// One tenant: the token its caller sends, the dispatcher holding its st2 credentials, and
/// the governance applied to its dispatches.
#[derive(Clone)]
pub(crate) struct Tenant {
    pub(crate) id: String,
    token: Secret,
    pub(crate) dispatcher: Dispatcher,
    allowed: AllowedActions,
    audit: Option<Arc<AuditLog>>,
    redaction: RedactionPolicy,
}

impl Tenant {
    /// Whether this tenant may start `action`: its `allowed_actions`, then the pack gate.
    pub(crate) async fn may_run(&self, action: &str) -> Result<(), DispatchResult> {
        if !self.allowed.permits(action) {
            return Err(DispatchResult::err(
                ErrorKind::Unauthorized,
                format!(
                    "tenant {} may not run {action}: it is not in the tenant's allowed_actions",
                    self.id
                ),
            ));
        }
        self.dispatcher.admit(action).await.map(drop)
    }
}

/// What the dispatch route needs, shared by every request.
#[derive(Clone)]
pub struct DispatchState {
    tenants: Arc<Vec<Tenant>>,
    settings: DispatchConfig,
}

impl DispatchState {
    /// Builds one st2 client per distinct credential — the shared one, plus each tenant's
    /// own — and, with `st2.stream.enabled`, one stream watcher per client (needs a Tokio
    /// runtime).
    pub fn new(
        st2: &St2Config,
        tenant_configs: &[TenantConfig],
        settings: &DispatchConfig,
        shared: &St2Client,
    ) -> Result<Self, St2Error> {
        let mut tenants = Vec::new();
        // One stream connection per credential: tenants on the shared one share its watcher.
        let stream = &st2.stream;
        let watch = |client: &St2Client| {
            stream
                .enabled
                .then(|| ExecutionWatcher::start(client.clone(), stream.clone()))
        };
        let shared_watcher = if tenant_configs.iter().any(|t| t.st2.is_none()) {
            watch(shared)
        } else {
            None
        };
        for t in tenant_configs {
            let (client, watcher) = match &t.st2 {
                Some(own) => {
                    let client = St2Client::from_config(&st2.with_credentials(
                        own.api_key.clone(),
                        own.username.clone(),
                        own.password.clone(),
                    ))?;
                    let watcher = watch(&client);
                    (client, watcher)
                }
                None => (shared.clone(), shared_watcher.clone()),
            };
            let dispatcher =
                Dispatcher::new(client).cancel_on_deadline(settings.cancel_on_deadline);
            tenants.push(Tenant {
                id: t.id.clone(),
                token: t.api_token.clone(),
                dispatcher: match watcher {
                    Some(w) => dispatcher.with_watcher(w),
                    None => dispatcher,
                },
                allowed: AllowedActions::new(t.allowed_actions.clone()),
                audit: None,
                redaction: RedactionPolicy::default(),
            });
        }
        Ok(Self {
            tenants: Arc::new(tenants),
            settings: settings.clone(),
        })
    }

    /// This state with `governance` applied to every tenant's dispatches.
    pub fn with_governance(self, governance: &Governance) -> Self {
        let tenants = self
            .tenants
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if let Some(gate) = &governance.gate {
                    t.dispatcher = t.dispatcher.with_gate(gate.clone());
                }
                t.audit = governance.audit.clone();
                t.redaction = governance.redaction.clone();
                t
            })
            .collect();
        Self {
            tenants: Arc::new(tenants),
            ..self
        }
    }

    /// Tenants configured; zero means every dispatch is refused.
    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// The tenant named by the request's bearer token, or the 401 answer.
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
    ) -> Result<&Tenant, (StatusCode, DispatchResult)> {
        self.authenticate_headers(headers).ok_or_else(|| {
            with_status(DispatchResult::err(
                ErrorKind::Unauthorized,
                "missing or unknown bearer token; send Authorization: Bearer <the tenant's api_token>",
            ))
        })
    }

    /// Default and longest dispatch waits.
    pub(crate) fn settings(&self) -> &DispatchConfig {
        &self.settings
    }

    /// The tenant with this id (for events that arrive without a token, e.g. over NATS).
    /// Every distinct stream watcher the tenants' dispatchers follow executions through.
    pub fn watchers(&self) -> Vec<ExecutionWatcher> {
        let mut all: Vec<ExecutionWatcher> = Vec::new();
        for w in self.tenants.iter().filter_map(|t| t.dispatcher.watcher()) {
            if !all.iter().any(|seen| seen.same_as(w)) {
                all.push(w.clone());
            }
        }
        all
    }

    pub(crate) fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id)
    }

    /// The tenant named by the request's bearer token.
    pub(crate) fn authenticate_headers(&self, headers: &HeaderMap) -> Option<&Tenant> {
        bearer(headers).and_then(|token| self.authenticate(token))
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

/// Middleware on every API route: a request without a known tenant's bearer token is
/// answered 401 before its body or path is looked at.
pub async fn require_bearer(
    State(state): State<DispatchState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match state.authorize(request.headers()) {
        Ok(_) => next.run(request).await,
        Err((status, refusal)) => (status, Json(refusal)).into_response(),
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
    let wait = query
        .wait_ms
        .unwrap_or(state.settings.default_wait_ms)
        .min(state.settings.max_wait_ms);
    let (status, result) = accept(&state, &headers, body, wait).await;
    (status, Json(result))
}

/// Handles `POST /api/v1/flows/{flowRef}/run`, the Activepieces executor's call: its headers
/// `tenantId`, `runId`, `correlationId` must match the body, and a success answers with the
/// output itself, which that executor reads as `output`. It cannot map any status to
/// `Timeout` — only its own abort (10 s by default) — so this route waits up to
/// `dispatch.max_wait_ms` and lets the caller's abort decide; a retry re-attaches.
pub async fn activepieces_run(
    State(state): State<DispatchState>,
    Path(flow_ref): Path<String>,
    headers: HeaderMap,
    body: Result<Json<DispatchRequest>, JsonRejection>,
) -> Response {
    if let Ok(Json(req)) = &body {
        let mismatch = [
            ("tenantId", req.tenant_id.as_str()),
            ("runId", req.run_id.as_str()),
            ("correlationId", req.correlation_id.as_str()),
        ]
        .into_iter()
        .find(|(name, want)| {
            // Every copy must agree: a duplicate with another value is as wrong as a mismatch.
            let mut values = headers.get_all(*name).iter().peekable();
            values.peek().is_none() || values.any(|v| v.to_str().ok() != Some(*want))
        })
        .map(|(name, _)| format!("header {name} is missing or differs from the body"))
        .or_else(|| {
            (req.flow_ref.trim() != flow_ref.trim())
                .then(|| "the flowRef in the path differs from the body's".to_string())
        });
        if let Some(reason) = mismatch {
            let result =
                DispatchResult::err(ErrorKind::RemoteError, format!("request refused: {reason}"));
            return (StatusCode::BAD_REQUEST, Json(result)).into_response();
        }
    }
    match accept(&state, &headers, body, state.settings.max_wait_ms).await {
        (_, DispatchResult::Ok { output }) => (StatusCode::OK, Json(output)).into_response(),
        (status, failure) => (status, Json(failure)).into_response(),
    }
}

/// Authenticates the caller, checks the body, and runs the dispatch for its tenant; the
/// status is the error kind's, or the body rejection's (400, 413, 415, 422).
async fn accept(
    state: &DispatchState,
    headers: &HeaderMap,
    body: Result<Json<DispatchRequest>, JsonRejection>,
    wait_ms: u64,
) -> (StatusCode, DispatchResult) {
    let tenant = match state.authorize(headers) {
        Ok(t) => t,
        Err(refusal) => return refusal,
    };
    match body {
        Ok(Json(req)) => execute(tenant, req, headers, wait_ms, false).await,
        Err(rejection) => refuse_body(&rejection),
    }
}

/// The answer to a body that is not the JSON a route takes.
pub(crate) fn refuse_body(rejection: &JsonRejection) -> (StatusCode, DispatchResult) {
    let result = DispatchResult::err(
        ErrorKind::RemoteError,
        format!("request body refused: {}", rejection.body_text()),
    );
    (rejection.status(), result)
}

/// Runs `req` for `tenant` (or only checks it, for a dry run). Every decision and outcome
/// goes to the audit log, and no error message carries a value the redaction policy holds
/// secret.
pub(crate) async fn execute(
    tenant: &Tenant,
    mut req: DispatchRequest,
    headers: &HeaderMap,
    wait_ms: u64,
    dry_run: bool,
) -> (StatusCode, DispatchResult) {
    if let Err(refusal) = admit(tenant, &mut req, headers).await {
        return with_status(conclude(tenant, &req, true, refusal, dry_run).await);
    }
    let run = async {
        if dry_run {
            tenant.dispatcher.dry_run(&req).await
        } else {
            tenant
                .dispatcher
                .dispatch(&req, Duration::from_millis(wait_ms))
                .await
        }
    };
    let result = crate::telemetry::observe_dispatch(&req, dry_run, run).await;
    with_status(conclude(tenant, &req, false, result, dry_run).await)
}

/// The checks every route makes before st2 is asked to run anything — the body's tenant is
/// the token's, the tenant may run the action, the pack gate lets its pack run — and the
/// request completed from the headers every route honours: `Idempotency-Key` stands in for a
/// missing key, `traceparent`/`tracestate` for a trace context the body did not carry.
pub(crate) async fn admit(
    tenant: &Tenant,
    req: &mut DispatchRequest,
    headers: &HeaderMap,
) -> Result<(), DispatchResult> {
    if req.tenant_id != tenant.id {
        return Err(DispatchResult::err(
            ErrorKind::Unauthorized,
            format!(
                "the bearer token does not belong to tenant {}",
                req.tenant_id
            ),
        ));
    }
    tenant.may_run(req.flow_ref.trim()).await?;
    if req.idempotency_key.is_none() {
        req.idempotency_key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    if req.trace.is_none() {
        req.trace = trace_context(headers);
    }
    Ok(())
}

/// The answer to `req` as the caller gets it: secret values scrubbed from any error message,
/// and the decision (`refused` before st2 was asked to run anything, or not) and its outcome
/// written to the audit log.
pub(crate) async fn conclude(
    tenant: &Tenant,
    req: &DispatchRequest,
    refused: bool,
    mut result: DispatchResult,
    dry_run: bool,
) -> DispatchResult {
    if let DispatchResult::Err { message, .. } = &mut result {
        let mut policy = tenant.redaction.clone();
        // A refusal never reached st2 and quotes no payload; only st2's words need the schema.
        if !refused
            && !req.payload.is_empty()
            && let Ok(schema) = tenant
                .dispatcher
                .st2()
                .action_parameters(req.flow_ref.trim())
                .await
        {
            policy = policy.with_secret_parameters(&schema);
        }
        *message = scrub_text(message, &policy.secret_values(&req.payload));
    }
    if let Some(log) = &tenant.audit {
        let reason = match &result {
            DispatchResult::Err { message, .. } if refused => Some(message.as_str()),
            _ => None,
        };
        let decision = Decision {
            request: req,
            tenant: &tenant.id,
            refused: reason,
            result: &result,
            dry_run,
        };
        if let Err(e) = log.record(&decision).await {
            tracing::error!("{e}");
        }
    }
    result
}

/// Pairs a result with the HTTP status its error kind maps to (200 for success).
pub(crate) fn with_status(result: DispatchResult) -> (StatusCode, DispatchResult) {
    let status = match result.error_kind() {
        None => StatusCode::OK,
        Some(kind) => StatusCode::from_u16(kind.http_status()).expect("valid status"),
    };
    (status, result)
}

/// The W3C trace context in the request's `traceparent`/`tracestate` headers, if well formed.
pub(crate) fn trace_context(headers: &HeaderMap) -> Option<TraceContext> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::parse(text("traceparent")?, text("tracestate"))
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
