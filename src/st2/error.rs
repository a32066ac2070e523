//! What can go wrong talking to st2, keeping st2's own words.

use std::fmt;
use std::time::Duration;

/// The st2 call that failed: method and path, never credentials or query values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path under the service root, e.g. `/api/v1/executions`.
    pub path: String,
}

impl Call {
    /// Whether repeating this call cannot create a second effect in st2.
    pub fn is_idempotent(&self) -> bool {
        !matches!(self.method, reqwest::Method::POST | reqwest::Method::PATCH)
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// An st2 call that did not produce the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum St2Error {
    /// 401: the API key or token was refused.
    #[error(
        "{call}: st2 refused the credentials (401: {faultstring}); check st2.api_key or st2.username/password"
    )]
    Unauthorized {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
    },
    /// 403: authenticated but not allowed (RBAC, or a list limit above st2's max page size).
    #[error(
        "{call}: st2 denied access (403: {faultstring}); grant the st2 user the permission or lower the request"
    )]
    Forbidden {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
    },
    /// 404: the object (or route) does not exist.
    #[error("{call}: not found in st2 (404: {faultstring})")]
    NotFound {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
    },
    /// 400: st2 rejected the request (unknown action, bad parameters, wrong state).
    #[error("{call}: st2 rejected the request (400: {faultstring})")]
    BadRequest {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
    },
    /// 409: a conflicting object exists.
    #[error("{call}: conflict in st2 (409: {faultstring})")]
    Conflict {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
    },
    /// 429 from st2 or a proxy in front of it.
    #[error("{call}: st2 is rate limiting (429: {faultstring}){}", retry_after.map(|d| format!("; retry after {} s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// 5xx: st2 (or its proxy) failed.
    #[error("{call}: st2 failed ({status}: {faultstring}); check the st2 services' logs")]
    Server {
        /// The call.
        call: Call,
        /// HTTP status.
        status: u16,
        /// st2's message.
        faultstring: String,
    },
    /// Any other status the call does not expect.
    #[error("{call}: unexpected HTTP {status} from st2: {faultstring}")]
    Unexpected {
        /// The call.
        call: Call,
        /// HTTP status.
        status: u16,
        /// st2's message, or the start of the body.
        faultstring: String,
    },
    /// No answer within the request deadline.
    #[error("{call}: st2 did not answer within {} ms; raise st2.request_timeout_ms or check st2's load", after.as_millis())]
    Timeout {
        /// The call.
        call: Call,
        /// The deadline.
        after: Duration,
    },
    /// The connection could not be made or broke before an answer.
    #[error("{call}: cannot reach st2: {message}; check st2.base_url and the network")]
    Connect {
        /// The call.
        call: Call,
        /// The transport's description.
        message: String,
    },
    /// The answer was not the JSON st2 documents.
    #[error("{call}: cannot decode st2's answer at {path}: {message}")]
    Decode {
        /// The call.
        call: Call,
        /// JSON path of the bad value (`.` for the whole body).
        path: String,
        /// The decoder's message.
        message: String,
    },
    /// The client could not be built from its configuration.
    #[error("cannot build the st2 client: {0}")]
    Setup(String),
}

impl St2Error {
    /// The HTTP status st2 answered with, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::BadRequest { .. } => Some(400),
            Self::Conflict { .. } => Some(409),
            Self::RateLimited { .. } => Some(429),
            Self::Server { status, .. } | Self::Unexpected { status, .. } => Some(*status),
            Self::Timeout { .. } | Self::Connect { .. } | Self::Decode { .. } | Self::Setup(_) => {
                None
            }
        }
    }

    /// st2's `faultstring`, when it sent one.
    pub fn faultstring(&self) -> Option<&str> {
        match self {
            Self::Unauthorized { faultstring, .. }
            | Self::Forbidden { faultstring, .. }
            | Self::NotFound { faultstring, .. }
            | Self::BadRequest { faultstring, .. }
            | Self::Conflict { faultstring, .. }
            | Self::RateLimited { faultstring, .. }
            | Self::Server { faultstring, .. }
            | Self::Unexpected { faultstring, .. } => Some(faultstring),
            _ => None,
        }
    }

    /// The call that failed.
    pub fn call(&self) -> Option<&Call> {
        match self {
            Self::Unauthorized { call, .. }
            | Self::Forbidden { call, .. }
            | Self::NotFound { call, .. }
            | Self::BadRequest { call, .. }
            | Self::Conflict { call, .. }
            | Self::RateLimited { call, .. }
            | Self::Server { call, .. }
            | Self::Unexpected { call, .. }
            | Self::Timeout { call, .. }
            | Self::Connect { call, .. }
            | Self::Decode { call, .. } => Some(call),
            Self::Setup(_) => None,
        }
    }

    /// Whether the failure is likely to pass (overload, outage, lost connection).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout { .. } | Self::Connect { .. } => true,
            Self::Server { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Whether repeating the same call is safe: the failure is transient and the call
    /// cannot create a second effect. A timed-out create is not: it may have succeeded.
    pub fn is_retry_safe(&self) -> bool {
        self.is_transient() && self.call().is_some_and(Call::is_idempotent)
    }

    /// Builds the error for a non-success answer.
    pub(crate) fn from_status(
        call: Call,
        status: u16,
        faultstring: String,
        retry_after: Option<Duration>,
    ) -> Self {
        match status {
            400 => Self::BadRequest { call, faultstring },
            401 => Self::Unauthorized { call, faultstring },
            403 => Self::Forbidden { call, faultstring },
            404 => Self::NotFound { call, faultstring },
            409 => Self::Conflict { call, faultstring },
            429 => Self::RateLimited {
                call,
                faultstring,
                retry_after,
            },
            500..=599 => Self::Server {
                call,
                status,
                faultstring,
            },
            _ => Self::Unexpected {
                call,
                status,
                faultstring,
            },
        }
    }
}
