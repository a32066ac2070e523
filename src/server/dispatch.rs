//! `POST /v1/dispatch` and the Activepieces executor's `POST /api/v1/flows/{flowRef}/run`:
//! Portarium's dispatch input in, its result out; and [`DispatchState`], the tenants every
//! route serves.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use st2_client::stream::ExecutionWatcher;
use st2_client::{St2Client, St2Config, St2Error};

use super::answer::{Contract, Failure};
use super::auth::{AuthedTenant, bearer};
use crate::core::config::{DispatchConfig, TenantConfig};
use crate::core::dispatch::Dispatcher;
use crate::core::governance::Governance;
use crate::core::governance::tenants::AllowedActions;
use crate::core::portarium::{DispatchRequest, TraceContext};
use crate::core::{self as core_layer, Dispatched, Mode, Tenant};

/// The tenants every route serves, and how long dispatches wait.
#[derive(Clone)]
pub struct DispatchState {
    tenants: Arc<Vec<Arc<Tenant>>>,
    settings: DispatchConfig,
}

impl DispatchState {
    /// Builds one st2 client and one execution watcher per distinct credential — the shared
    /// one, plus each tenant's own (needs a Tokio runtime).
    pub fn new(
        st2: &St2Config,
        tenant_configs: &[TenantConfig],
        settings: &DispatchConfig,
        shared: &St2Client,
    ) -> Result<Self, St2Error> {
        let mut tenants = Vec::new();
        // One watcher per credential (one stream connection, or with the stream off one poll
        // loop): tenants on the shared credential share its watcher.
        let watch =
            |client: &St2Client| ExecutionWatcher::start(client.clone(), st2.stream.clone());
        let shared_watcher = tenant_configs
            .iter()
            .any(|t| t.st2.is_none())
            .then(|| watch(shared));
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
                None => (
                    shared.clone(),
                    shared_watcher
                        .clone()
                        .expect("made when a tenant uses the shared credential"),
                ),
            };
            let dispatcher = Dispatcher::new(client)
                .with_watcher(watcher)
                .cancel_on_deadline(settings.cancel_on_deadline)
                .with_schema_cache(settings.schema_cache.clone());
            tenants.push(Arc::new(Tenant::new(
                t.id.clone(),
                t.api_token.clone(),
                dispatcher,
                AllowedActions::new(t.allowed_actions.clone()),
            )));
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
            .map(|t| Arc::new((**t).clone().governed(governance)))
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

    /// Default and longest dispatch waits.
    pub(crate) fn settings(&self) -> &DispatchConfig {
        &self.settings
    }

    /// Every distinct stream watcher the tenants' dispatchers follow executions through.
    pub fn watchers(&self) -> Vec<ExecutionWatcher> {
        let mut all: Vec<ExecutionWatcher> = Vec::new();
        for w in self.tenants.iter().map(|t| t.dispatcher.watcher()) {
            if !all.iter().any(|seen| seen.same_as(w)) {
                all.push(w.clone());
            }
        }
        all
    }

    /// The tenant with this id (for events that arrive without a token, e.g. over NATS).
    pub(crate) fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| t.id == id).map(|t| &**t)
    }

    /// The tenant whose bearer token the request carries; every token is compared, each in
    /// constant time, so the answer's timing says nothing about which tenant came close.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Option<Arc<Tenant>> {
        let presented = bearer(headers)?;
        let mut found = None;
        for t in self.tenants.iter() {
            if t.token_matches(presented) {
                found = Some(t.clone());
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
    tenant: AuthedTenant,
    headers: HeaderMap,
    Query(query): Query<DispatchQuery>,
    body: Result<Json<DispatchRequest>, JsonRejection>,
) -> Response {
    let wait = query
        .wait_ms
        .unwrap_or(state.settings.default_wait_ms)
        .min(state.settings.max_wait_ms);
    let outcome = match body {
        Ok(Json(req)) => {
            run(
                &tenant.0,
                req,
                &headers,
                Mode::Wait(Duration::from_millis(wait)),
            )
            .await
        }
        Err(rejection) => Err(Failure::body(&rejection)),
    };
    Contract::Native.answer(outcome)
}

/// Handles `POST /api/v1/flows/{flowRef}/run`, the Activepieces executor's call: its headers
/// `tenantId`, `runId`, `correlationId` must match the body, and a success answers with the
/// output itself, which that executor reads as `output`. It cannot map any status to
/// `Timeout` — only its own abort (10 s by default) — so this route waits up to
/// `dispatch.max_wait_ms` and lets the caller's abort decide; a retry re-attaches.
/// The flowRef may be `<machineId>/pack.action`, in the path as one segment or two.
pub async fn activepieces_run(
    State(state): State<DispatchState>,
    tenant: AuthedTenant,
    Path(segments): Path<Vec<String>>,
    headers: HeaderMap,
    body: Result<Json<DispatchRequest>, JsonRejection>,
) -> Response {
    let mut req = match body {
        Ok(Json(req)) => req,
        Err(rejection) => return Contract::Activepieces.answer(Err(Failure::body(&rejection))),
    };
    let flow_ref = segments.join("/");
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
    let outcome = match mismatch {
        Some(reason) => Err(Failure::bad_request(format!("request refused: {reason}"))),
        None => {
            req.flow_ref = without_machine(&req.flow_ref).to_string();
            let wait = Duration::from_millis(state.settings.max_wait_ms);
            run(&tenant.0, req, &headers, Mode::Wait(wait)).await
        }
    };
    Contract::Activepieces.answer(outcome)
}

/// Runs `req` for `tenant` through the core, inside its dispatch span. The request is first
/// completed from the headers every route honours: `Idempotency-Key` stands in for a missing
/// key, `traceparent`/`tracestate` for a trace context the body did not carry.
pub(crate) async fn run(
    tenant: &Arc<Tenant>,
    mut req: DispatchRequest,
    headers: &HeaderMap,
    mode: Mode,
) -> Result<Dispatched, Failure> {
    if req.idempotency_key.is_none() {
        req.idempotency_key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    if req.trace.is_none() {
        req.trace = trace_context(headers);
    }
    let req = Arc::new(req);
    // Boxed: the dispatch's future is kilobytes, and every layer it passed through unboxed
    // (this function, the telemetry wrapper, the handler) copied it once more.
    let dispatch = Box::pin(core_layer::dispatch(tenant, req.clone(), mode));
    let versions = |pack: &str| tenant.dispatcher.pack_version(pack);
    crate::telemetry::observe_dispatch(&req, mode, dispatch, versions)
        .await
        .map_err(Failure::from)
}

/// The action ref of a flowRef or tool name that may carry a `<machineId>/` prefix. The
/// adapter fronts one st2 cluster and keeps no machine id of its own (Portarium's manifest
/// registers it), so any prefix names this cluster.
pub(crate) fn without_machine(flow_ref: &str) -> &str {
    flow_ref
        .split_once('/')
        .map_or(flow_ref, |(_, action)| action)
}

/// The W3C trace context in the request's `traceparent`/`tracestate` headers, if well formed.
pub(crate) fn trace_context(headers: &HeaderMap) -> Option<TraceContext> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::parse(text("traceparent")?, text("tracestate"))
}
