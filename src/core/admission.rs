//! The one way into the core for a dispatch: [`dispatch`] admits the request for its tenant,
//! runs it (or only checks it, or only starts it), scrubs secrets from what it answers and
//! writes the decision and its outcome to the audit log. Every route calls it; each maps the
//! `Result` to its own wire contract.

use std::time::Duration;

use serde_json::{Value, json};
use st2_client::models::JsonObject;
use st2_client::{Execution, ExecutionRequest, St2Error};

use super::Tenant;
use super::dispatch::{CONTEXT_KEY, kind_of};
use super::governance::audit::{Decision, RerunOf};
use super::governance::redact::{redact_value, scrub_text};
use super::portarium::{DispatchRequest, DispatchResult, ErrorKind, Hint};

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
pub async fn dispatch(
    tenant: &Tenant,
    req: DispatchRequest,
    mode: Mode,
) -> Result<Dispatched, DispatchError> {
    let outcome = match admit(tenant, &req).await {
        Err(refusal) => Err(refusal),
        Ok(()) => run(tenant, &req, mode).await,
    };
    conclude(tenant, &req, outcome, mode).await
}

async fn run(
    tenant: &Tenant,
    req: &DispatchRequest,
    mode: Mode,
) -> Result<Dispatched, DispatchError> {
    let dispatcher = &tenant.dispatcher;
    match mode {
        Mode::Wait(wait) => dispatcher.dispatch(req, wait).await,
        Mode::DryRun => dispatcher.dry_run(req).await,
        Mode::Start => dispatcher
            .submit(req)
            .await
            .map(|(execution, _)| Dispatched {
                output: json!({"executionId": execution.id, "status": execution.status}),
                execution: Some(execution),
            }),
    }
}

/// The checks made before st2 is asked to run anything.
async fn admit(tenant: &Tenant, req: &DispatchRequest) -> Result<(), DispatchError> {
    if req.tenant_id != tenant.id {
        return Err(DispatchError::refused(
            ErrorKind::Unauthorized,
            format!(
                "the bearer token does not belong to tenant {}",
                req.tenant_id
            ),
        ));
    }
    tenant.may_run(req.flow_ref.trim()).await
}

/// Scrubs a failure's message of the request's secret values, and writes the decision
/// (refused before st2 was asked, or not) and its outcome to the audit log.
async fn conclude(
    tenant: &Tenant,
    req: &DispatchRequest,
    mut outcome: Result<Dispatched, DispatchError>,
    mode: Mode,
) -> Result<Dispatched, DispatchError> {
    if let Err(e) = &mut outcome {
        let mut policy = tenant.redaction.clone();
        // A refusal never reached st2 and quotes no payload; only st2's words need the schema.
        if !e.refused
            && !req.payload.is_empty()
            && let Ok(schema) = tenant.dispatcher.parameters(req.flow_ref.trim()).await
        {
            policy = policy.with_secret_parameters(&schema);
        }
        e.message = scrub_text(&e.message, &policy.secret_values(&req.payload));
    }
    if let Some(log) = &tenant.audit {
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
        let decision = Decision {
            request: req,
            tenant: &tenant.id,
            refused,
            result: &result,
            mode,
            rerun: None,
        };
        if let Err(e) = log.record(&decision).await {
            tracing::error!("{e}");
        }
    }
    outcome
}

/// How st2 shows a secret parameter's value.
const MASKED: &str = "********";

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
    let ids = original.context.get(CONTEXT_KEY);
    let id = |key: &str| {
        ids.and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let req = DispatchRequest {
        action_id: id("action_id"),
        idempotency_key: None,
        tenant_id: tenant.id.clone(),
        run_id: id("run_id"),
        // A re-run of an execution that predates carrying the ids correlates to what it re-ran.
        correlation_id: Some(id("correlation_id"))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| original.id.clone()),
        flow_ref: action.clone(),
        payload: overrides,
        trace: None,
    };
    let rerun = if let Err(refusal) = tenant.may_run(&action).await {
        Rerun::Refused(refusal)
    } else if !masked.is_empty() {
        Rerun::Incomplete(format!(
            "re-run of {} needs the secret parameters {} in `parameters`: st2 shows them masked \
             to this adapter's st2 user (not an admin), and the re-run is a new execution that \
             carries the Portarium context",
            original.id,
            masked.join(", ")
        ))
    } else {
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
        match tenant.dispatcher.st2().executions().create(&request).await {
            Ok(created) => Rerun::Started(Box::new(created)),
            Err(e) => Rerun::Failed(e),
        }
    };
    audit_rerun(tenant, &req, &original.id, &rerun).await;
    rerun
}

/// Writes a re-run's decision and outcome, its overrides with secret values redacted.
async fn audit_rerun(tenant: &Tenant, req: &DispatchRequest, of: &str, rerun: &Rerun) {
    let Some(log) = &tenant.audit else { return };
    let mut policy = tenant.redaction.clone();
    if let Ok(schema) = tenant.dispatcher.parameters(&req.flow_ref).await {
        policy = policy.with_secret_parameters(&schema);
    }
    let overrides = redact_value(&Value::Object(req.payload.clone()), &policy);
    let result = match rerun {
        Rerun::Started(e) => DispatchResult::Ok {
            output: json!({"executionId": e.id}),
        },
        Rerun::Refused(e) => DispatchResult::err(e.kind, e.message.clone()),
        Rerun::Incomplete(m) => DispatchResult::err(ErrorKind::RemoteError, m.clone()),
        Rerun::Failed(e) => DispatchResult::err(kind_of(e), e.to_string()),
    };
    let decision = Decision {
        request: req,
        tenant: &tenant.id,
        refused: match rerun {
            Rerun::Refused(e) => Some(e.message.as_str()),
            _ => None,
        },
        result: &result,
        mode: Mode::Start,
        rerun: Some(RerunOf { of, overrides }),
    };
    if let Err(e) = log.record(&decision).await {
        tracing::error!("{e}");
    }
}
