//! The one way into the core for a dispatch: [`dispatch`] admits the request for its tenant,
//! runs it (or only checks it, or only starts it), scrubs secrets from what it answers and
//! writes the decision and its outcome to the audit log. Every route calls it; each maps the
//! `Result` to its own wire contract.

use std::time::Duration;

use serde_json::{Value, json};
use st2_client::Execution;

use super::Tenant;
use super::governance::audit::Decision;
use super::governance::redact::scrub_text;
use super::portarium::{DispatchRequest, DispatchResult, ErrorKind};

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
#[derive(Debug, Clone)]
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
}

impl DispatchError {
    /// A refusal made before st2 was asked to run anything.
    pub fn refused(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            refused: true,
        }
    }

    /// A refusal from an answer already in Portarium's form.
    pub(crate) fn refusal(result: DispatchResult) -> Self {
        Self {
            refused: true,
            ..Self::from_result(result)
        }
    }

    fn from_result(result: DispatchResult) -> Self {
        match result {
            DispatchResult::Err { kind, message } => Self {
                kind,
                message,
                refused: false,
            },
            DispatchResult::Ok { .. } => Self {
                kind: ErrorKind::RemoteError,
                message: "an answer that is not an error was taken for one".into(),
                refused: false,
            },
        }
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
    let result = match mode {
        Mode::Wait(wait) => dispatcher.dispatch(req, wait).await,
        Mode::DryRun => dispatcher.dry_run(req).await,
        Mode::Start => {
            return match dispatcher.submit(req).await {
                Ok((execution, _)) => Ok(Dispatched {
                    output: json!({"executionId": execution.id, "status": execution.status}),
                    execution: Some(execution),
                }),
                Err(failure) => Err(DispatchError::from_result(failure)),
            };
        }
    };
    match result {
        DispatchResult::Ok { output } => Ok(Dispatched {
            output,
            execution: None,
        }),
        failure => Err(DispatchError::from_result(failure)),
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
            && let Ok(schema) = tenant
                .dispatcher
                .st2()
                .action_parameters(req.flow_ref.trim())
                .await
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
        };
        if let Err(e) = log.record(&decision).await {
            tracing::error!("{e}");
        }
    }
    outcome
}
