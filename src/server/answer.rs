//! How each wire contract answers: one mapping per contract, from the core's
//! `Result<Dispatched, DispatchError>` (or a refusal before the core was asked) to a response.
//!
//! - [`Contract::Native`]: `POST /v1/dispatch` and the execution routes — Portarium's result
//!   object, with the status of its error kind.
//! - [`Contract::Activepieces`]: the executor reads a success's output as the whole body.
//! - [`Contract::OpenClaw`]: the bridge retries 5xx, so a definitive failure st2 reported is
//!   answered 422.
//! - [`Contract::Machine`]: `MachineInvocationResponseV1` (see `invoke.rs`).
//! - [`Contract::Events`]: `{"error": …}` (see `events.rs`).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::core::portarium::{DispatchResult, ErrorKind};
use crate::core::{DispatchError, Dispatched};

/// What a 429 or 503 asks callers to wait when st2 named no wait of its own.
const RETRY_AFTER_DEFAULT: Duration = Duration::from_secs(1);

/// A route's wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// Portarium's native dispatch and the execution routes.
    Native,
    /// The Activepieces executor's `POST /api/v1/flows/{flowRef}/run`.
    Activepieces,
    /// The OpenClaw gateway bridge's `POST /tools/invoke`.
    OpenClaw,
    /// Portarium's machine interface v1, `/v1/invoke`.
    Machine,
    /// `POST /v1/events`.
    Events,
}

/// A failure as a route answers it: the HTTP status and Portarium's kind and message.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in Portarium's terms.
    pub error: DispatchError,
}

impl From<DispatchError> for Failure {
    fn from(error: DispatchError) -> Self {
        let status = if error.hint.unprocessable {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            status_of(error.kind)
        };
        Self { status, error }
    }
}

impl Failure {
    /// A request body that is not the JSON a route takes (400, 413, 415 or 422), refused
    /// before st2 is asked anything.
    pub fn body(rejection: &JsonRejection) -> Self {
        Self {
            status: rejection.status(),
            error: DispatchError::refused(
                ErrorKind::RemoteError,
                format!("request body refused: {}", rejection.body_text()),
            ),
        }
    }

    /// A request that is not what the route takes, refused before st2 is asked anything.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: DispatchError::refused(ErrorKind::RemoteError, message),
        }
    }

    /// A request the route understood but cannot act on as sent (an id outside its
    /// documented alphabet or length): 422, refused before st2 is asked anything.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: DispatchError::refused(ErrorKind::RemoteError, message),
        }
    }

    /// Portarium's result object for this failure.
    pub fn result(&self) -> DispatchResult {
        DispatchResult::err(self.error.kind, self.error.message.clone())
    }
}

/// The HTTP status an error kind maps to.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).expect("error kinds map to valid statuses")
}

impl Contract {
    /// The answer to a dispatch through this contract.
    pub fn answer(self, outcome: Result<Dispatched, Failure>) -> Response {
        match outcome {
            Ok(done) => self.succeed(done),
            Err(failure) => self.refuse(failure, None),
        }
    }

    fn succeed(self, done: Dispatched) -> Response {
        match self {
            Self::Activepieces | Self::OpenClaw => {
                (StatusCode::OK, Json(done.output)).into_response()
            }
            _ => (
                StatusCode::OK,
                Json(DispatchResult::Ok {
                    output: done.output,
                }),
            )
                .into_response(),
        }
    }

    /// The answer to a failure through this contract; `invocation` names the machine
    /// invocation it concerns, when known.
    pub fn refuse(self, failure: Failure, invocation: Option<&str>) -> Response {
        let retry_after = [
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::SERVICE_UNAVAILABLE,
        ]
        .contains(&failure.status)
        .then(|| {
            failure
                .error
                .hint
                .retry_after
                .unwrap_or(RETRY_AFTER_DEFAULT)
        });
        let mut response = self.shape(failure, invocation);
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up: a zero would invite an immediate retry.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }

    fn shape(self, failure: Failure, invocation: Option<&str>) -> Response {
        match self {
            Self::Native | Self::Activepieces => {
                (failure.status, Json(failure.result())).into_response()
            }
            Self::OpenClaw => {
                // The bridge retries every 5xx; a failure st2 reported for the action itself
                // would only be retried into the same answer.
                let status = if failure.error.kind == ErrorKind::RemoteError
                    && failure.status.is_server_error()
                {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    failure.status
                };
                (status, Json(failure.result())).into_response()
            }
            Self::Machine => super::invoke::refusal(failure, invocation),
            Self::Events => (
                failure.status,
                Json(json!({"error": failure.error.message})),
            )
                .into_response(),
        }
    }
}
