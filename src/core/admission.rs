//! The one way into the core for a dispatch: [`dispatch`] admits the request for its tenant,
//! runs it (or only checks it, or only starts it), scrubs secrets from what it answers and
//! writes the decision and its outcome to the audit log. Every route calls it; each maps the
//! `Result` to its own wire contract.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use st2_client::models::JsonObject;
use st2_client::{CancelOutcome, Execution, ExecutionRequest, St2Error};
use tracing::Instrument;

use super::dispatch::validate::ActionRef;
use super::dispatch::{CONTEXT_KEY, dispatch_key, kind_of, rerun_key};
use super::governance::audit::{Act, Decision};
use super::governance::redact::{MASKED, scrub_text, scrub_value};
use super::ids::DISPATCH_ID;
use super::portarium::{DispatchRequest, DispatchResult, ErrorKind, Hint};
use super::{Booked, Tenant};

/// What a dispatch is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Start (or re-attach to) the execution and wait up to this long for it to complete.
    Wait(Duration),
    /// Start (or re-attach to) the execution and answer at once.
    Start,
    /// Check everything a dispatch would check; start nothing.
    DryRun,
}

/// A dispatch that went through.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatched {
    /// Portarium's `output`: `{executionId, status, result}` once completed, the checks for a
    /// dry run, `{executionId, status}` for a start.
    pub output: Value,
    /// The execution, for [`Mode::Start`].
    pub execution: Option<Execution>,
}

/// A dispatch that did not go through, in Portarium's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchError {
    /// Portarium's `errorKind`.
    pub kind: ErrorKind,
    /// What happened and what to do, with secret values scrubbed.
    pub message: String,
    /// Refused before st2 was asked to run anything (tenant, allowed actions, pack gate).
    pub refused: bool,
    /// What the HTTP answer says beyond the kind.
    pub hint: Hint,
}

impl DispatchError {
    /// A refusal made before st2 was asked to run anything.
    pub fn refused(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            refused: true,
            hint: Hint::default(),
        }
    }

    /// A failure of `kind` met after admission (st2 was or may have been asked).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            refused: false,
            hint: Hint::default(),
        }
    }

    /// This failure with `hint` for its HTTP answer.
    pub fn with_hint(self, hint: Hint) -> Self {
        Self { hint, ..self }
    }

    /// st2's failure of a call made after admission, with its `Retry-After` when it sent one.
    pub fn from_st2(err: &St2Error) -> Self {
        super::dispatch::failure_of(err, err.to_string())
    }
}

impl std::fmt::Display for DispatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl From<Result<Dispatched, DispatchError>> for DispatchResult {
    fn from(result: Result<Dispatched, DispatchError>) -> Self {
        match result {
            Ok(done) => DispatchResult::Ok {
                output: done.output,
            },
            Err(e) => DispatchResult::Err {
                kind: e.kind,
                message: e.message,
                hint: e.hint,
            },
        }
    }
}

/// Runs `req` for `tenant` as `mode` asks: the body's tenant must be the caller's, the tenant
/// may run the action, the pack gate lets its pack run; then st2 runs it. No answer carries a
/// value the redaction policy holds secret, and the decision and its outcome are audited.
/// `tenant` and `req` are shared with the task that runs it (see [`detached`]), not copied.
pub async fn dispatch(
    tenant: &Arc<Tenant>,
    req: Arc<DispatchRequest>,
    mode: Mode,
) -> Result<Dispatched, DispatchError> {
    let action = match admit(tenant, &req).await {
        Ok(action) => action,
        Err(refusal) => return conclude(tenant, &req, Err(refusal), None, None, mode).await,
    };
    let owned = Arc::clone(tenant);
    // Boxed here, once: the whole dispatch's state machine would otherwise be copied at each
    // layer it passes on its way into the task (copies of large futures were about 7 % of
    // the adapter's CPU per dispatch).
    detached(
        tenant,
        Box::pin(async move {
            let tenant = &owned;
            // A dry run starts nothing, so it has no outcome to promise.
            if mode != Mode::DryRun {
                audit(tenant, &req, None, None, mode, Act::Dispatch).await;
            }
            // Hashed once: the booking and st2's lookup use the same key.
            let key = dispatch_key(&req);
            let booked = tenant
                .book_secrets(req.flow_ref.trim(), &key, &req.payload)
                .await;
            let (outcome, execution) = run(tenant, &req, &action, &key, &booked, mode).await;
            conclude(
                tenant,
                &req,
                outcome,
                execution.as_deref(),
                Some(booked),
                mode,
            )
            .await
        }),
    )
    .await
}

/// Runs `work` — everything from the `accepted` audit record to the outcome's — as a task the
/// request does not own: a caller that disconnects drops only its wait for the answer, and the
/// outcome is still recorded. The audit log's promise keeps shutdown waiting for it
/// ([`AuditLog::settle`](super::governance::audit::AuditLog::settle)). The task lives at most
/// as long as the dispatch's own wait (`dispatch.max_wait_ms`).
async fn detached<T, F>(tenant: &Tenant, work: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let promise = tenant.audit.as_ref().map(|log| log.promise());
    let task = tokio::spawn(
        async move {
            let answer = work.await;
            drop(promise);
            answer
        }
        .instrument(tracing::Span::current()),
    );
    match task.await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a detached dispatch task was cancelled: {e}"),
    }
}

/// Appends one record (`result` `None`: the `accepted` one, written before st2 is called);
/// a failure to write is logged, never answered: the caller's request stands.
async fn audit(
    tenant: &Tenant,
    req: &DispatchRequest,
    refused: Option<&str>,
    result: Option<&DispatchResult>,
    mode: Mode,
    act: Act<'_>,
) {
    let Some(log) = &tenant.audit else { return };
    let decision = Decision {
        request: req,
        tenant: &tenant.id,
        refused,
        result,
        mode,
        act,
    };
    if let Err(e) = log.record(&decision).await {
        tracing::error!("{e}");
    }
}

/// What st2 came to, and the execution it is about when there is one.
async fn run(
    tenant: &Tenant,
    req: &DispatchRequest,
    action: &ActionRef,
    key: &str,
    booked: &Booked,
    mode: Mode,
) -> (Result<Dispatched, DispatchError>, Option<String>) {
    let dispatcher = &tenant.dispatcher;
    // The booking has just read the action's schema: one read per dispatch, even when the
    // schema cache keeps nothing.
    let schema = booked.schema();
    match mode {
        Mode::Wait(wait) => {
            dispatcher
                .dispatch_naming(req, action, key, wait, schema)
                .await
        }
        Mode::DryRun => (dispatcher.dry_run(req, action, schema).await, None),
        Mode::Start => match dispatcher.submit(req, action, key, schema).await {
            Ok(execution) => {
                let id = execution.id.clone();
                let started = Dispatched {
                    output: json!({"executionId": execution.id, "status": execution.status}),
                    execution: Some(execution),
                };
                (Ok(started), Some(id))
            }
            Err(refusal) => (Err(refusal), None),
        },
    }
}

/// The checks made before st2 is asked to run anything, once per dispatch; the action ref
/// they admitted.
async fn admit(tenant: &Tenant, req: &DispatchRequest) -> Result<ActionRef, DispatchError> {
    if req.tenant_id != tenant.id {
        return Err(DispatchError::refused(
            ErrorKind::Unauthorized,
            format!(
                "the bearer token does not belong to tenant {}",
                req.tenant_id
            ),
        ));
    }
    check_ids(req)?;
    tenant.may_run(req.flow_ref.trim()).await
}

/// Every id of `req` within its documented limits (`core::ids`): they become st2 context,
/// trace tags and log fields, so a malformed one (a key of 21 kB, a runId with a newline) is
/// the caller's error, answered 422 before st2 sees it. Every problem is named at once.
fn check_ids(req: &DispatchRequest) -> Result<(), DispatchError> {
    use super::ids::{IDEMPOTENCY_KEY, TRACESTATE};
    let key = req
        .idempotency_key
        .as_deref()
        .filter(|k| !k.trim().is_empty());
    let tracestate = req.trace.as_ref().and_then(|t| t.tracestate.as_deref());
    let problems: Vec<String> = [
        ("runId", &req.run_id),
        ("actionId", &req.action_id),
        ("correlationId", &req.correlation_id),
    ]
    .into_iter()
    .map(|(field, value)| DISPATCH_ID.check_as(field, value))
    .chain(key.map(|k| IDEMPOTENCY_KEY.check(k)))
    .chain(tracestate.map(|s| TRACESTATE.check(s)))
    .filter_map(Result::err)
    .map(|e| e.to_string())
    .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let mut refusal = DispatchError::refused(
        ErrorKind::RemoteError,
        format!("request refused: {}", problems.join("; ")),
    );
    refusal.hint.unprocessable = true;
    Err(refusal)
}

/// Scrubs what st2 said (the output, the execution's result, a failure's message) of the
/// secret values of the execution's own request and of this one (see
/// [`Tenant::secrets_of`]), and writes the decision (refused before st2 was asked, or not)
/// and its outcome to the audit log.
async fn conclude(
    tenant: &Tenant,
    req: &DispatchRequest,
    mut outcome: Result<Dispatched, DispatchError>,
    execution: Option<&str>,
    booked: Option<Booked>,
    mode: Mode,
) -> Result<Dispatched, DispatchError> {
    // A refusal never reached st2 and quotes no payload.
    if let Some(booked) = booked.filter(|_| !matches!(&outcome, Err(e) if e.refused)) {
        let secrets = tenant.secrets_of(execution, &booked).await;
        match &mut outcome {
            Ok(done) => {
                done.output = scrub_value(&done.output, &secrets);
                if let Some(e) = &mut done.execution {
                    e.result = e.result.as_ref().map(|r| scrub_value(r, &secrets));
                }
            }
            Err(e) => e.message = scrub_text(&e.message, &secrets),
        }
    }
    let refused = match &outcome {
        Err(e) if e.refused => Some(e.message.as_str()),
        _ => None,
    };
    let result = match &outcome {
        Ok(done) => DispatchResult::Ok {
            output: done.output.clone(),
        },
        Err(e) => DispatchResult::err(e.kind, e.message.clone()),
    };
    audit(tenant, req, refused, Some(&result), mode, Act::Dispatch).await;
    outcome
}

/// What a re-run came to.
#[derive(Debug)]
pub enum Rerun {
    /// st2 created the new execution.
    Started(Box<Execution>),
    /// Refused before st2 was asked (allowed actions, pack gate).
    Refused(DispatchError),
    /// The request cannot be made as it stands; the caller must change it.
    Incomplete(String),
    /// st2 did not create the execution.
    Failed(St2Error),
}

/// Re-runs `original` (which the tenant owns) with `overrides` merged over its parameters.
///
/// st2's own re-run (`POST /executions/{id}/re_run`) takes no context and copies none, so its
/// execution would carry no `context.portarium` and Portarium would never hear of it. The
/// re-run is therefore created as a new execution of the same action, with the original's
/// Portarium ids and `re-run.ref` (as st2 writes it) in its context. It gets no dispatch key:
/// it is a new execution, not a retry of the original's dispatch, so a dispatch retried with
/// the original's key still finds the original. Audited like a start.
pub async fn rerun(tenant: &Tenant, original: &Execution, overrides: JsonObject) -> Rerun {
    let action = original.action_ref().unwrap_or_default().to_string();
    let mut parameters = original.parameters.clone();
    parameters.extend(overrides.clone());
    let masked_in = |parameters: &JsonObject| -> Vec<String> {
        parameters
            .iter()
            .filter(|(_, v)| v.as_str() == Some(MASKED))
            .map(|(k, _)| k.clone())
            .collect()
    };
    // st2 shows secret parameters masked; sending the mask would run with it as the value. An
    // admin may read them unmasked, which keeps a re-run's secrets as st2's own re-run does.
    if !masked_in(&parameters).is_empty()
        && let Ok(unmasked) = tenant
            .dispatcher
            .st2()
            .executions()
            .get(&original.id)
            .include(&["parameters"])
            .show_secrets()
            .send()
            .await
    {
        for (key, value) in unmasked.parameters {
            if parameters.get(&key).and_then(Value::as_str) == Some(MASKED) {
                parameters.insert(key, value);
            }
        }
    }
    let masked = masked_in(&parameters);
    let req = request_of(tenant, original, overrides);
    if let Err(refusal) = tenant.may_run(&action).await {
        let result = DispatchResult::err(refusal.kind, refusal.message.clone());
        let act = Act::Rerun {
            of: &original.id,
            overrides: Value::Null,
        };
        let refused = Some(refusal.message.as_str());
        audit(tenant, &req, refused, Some(&result), Mode::Start, act).await;
        return Rerun::Refused(refusal);
    }
    // Booked before st2 runs it, so its lifecycle events find them (see `secrets_key`); the
    // booking's policy also redacts the overrides in the audit records.
    let booked = tenant
        .book_secrets(&action, &rerun_key(&tenant.id, &original.id), &parameters)
        .await;
    let overrides = booked.redact(&Value::Object(req.payload.clone()));
    if !masked.is_empty() {
        let message = format!(
            "re-run of {} needs the secret parameters {} in `parameters`: st2 shows them masked \
             to this adapter's st2 user (not an admin), and the re-run is a new execution that \
             carries the Portarium context",
            original.id,
            masked.join(", ")
        );
        let result = DispatchResult::err(ErrorKind::RemoteError, message.clone());
        let act = Act::Rerun {
            of: &original.id,
            overrides,
        };
        audit(tenant, &req, None, Some(&result), Mode::Start, act).await;
        return Rerun::Incomplete(message);
    }
    let mut request = ExecutionRequest::new(action);
    request.parameters = parameters;
    request.context.insert(
        CONTEXT_KEY.into(),
        json!({
            "tenant_id": req.tenant_id, "run_id": req.run_id, "action_id": req.action_id,
            "correlation_id": req.correlation_id, "rerun_of": original.id,
        }),
    );
    request
        .context
        .insert("re-run".into(), json!({"ref": original.id}));
    let owned = tenant.clone();
    let of = original.id.clone();
    detached(tenant, async move {
        let tenant = &owned;
        let act = || Act::Rerun {
            of: &of,
            overrides: overrides.clone(),
        };
        audit(tenant, &req, None, None, Mode::Start, act()).await;
        let created = tenant.dispatcher.st2().executions().create(&request).await;
        let result = match &created {
            Ok(e) => DispatchResult::Ok {
                output: json!({"executionId": e.id}),
            },
            Err(e) => DispatchResult::err(kind_of(e), e.to_string()),
        };
        audit(tenant, &req, None, Some(&result), Mode::Start, act()).await;
        match created {
            Ok(created) => Rerun::Started(Box::new(created)),
            Err(e) => Rerun::Failed(e),
        }
    })
    .await
}

/// The Portarium ids `tenant`'s `original` execution carries, as the request a re-run or a
/// cancel of it is recorded under (`payload`: the re-run's overrides).
fn request_of(tenant: &Tenant, original: &Execution, payload: JsonObject) -> DispatchRequest {
    let ids = original.context.get(CONTEXT_KEY);
    let id = |key: &str| {
        ids.and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    DispatchRequest {
        action_id: id("action_id"),
        idempotency_key: None,
        tenant_id: tenant.id.clone(),
        run_id: id("run_id"),
        // An execution that predates carrying the ids correlates to itself.
        correlation_id: Some(id("correlation_id"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| original.id.clone()),
        flow_ref: original.action_ref().unwrap_or_default().to_string(),
        payload,
        trace: None,
        invocation_id: None,
    }
}

/// Cancels `execution` (which the tenant owns), recorded as accepted before st2 is asked and
/// with st2's answer after, whether or not the caller waits for it.
pub async fn cancel(tenant: &Tenant, execution: &Execution) -> Result<CancelOutcome, St2Error> {
    let req = request_of(tenant, execution, JsonObject::new());
    let owned = tenant.clone();
    let of = execution.id.clone();
    detached(tenant, async move {
        let tenant = &owned;
        let act = || Act::Cancel { of: &of };
        audit(tenant, &req, None, None, Mode::Start, act()).await;
        let canceled = tenant.dispatcher.st2().executions().cancel(&of).await;
        let result = match &canceled {
            Ok(CancelOutcome::Canceled(e)) => DispatchResult::Ok {
                output: json!({"executionId": e.id, "status": e.status}),
            },
            Ok(CancelOutcome::AlreadyCompleted { faultstring }) => {
                DispatchResult::err(ErrorKind::RemoteError, faultstring.clone())
            }
            Err(e) => DispatchResult::err(kind_of(e), e.to_string()),
        };
        audit(tenant, &req, None, Some(&result), Mode::Start, act()).await;
        canceled
    })
    .await
}
