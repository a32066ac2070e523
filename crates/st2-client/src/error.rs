//! What can go wrong talking to st2, keeping st2's own words.
//!
//! Each variant is one thing a caller can act on, so mapping them to another error vocabulary
//! is one `match`. The message names the call (`METHOD /path`, never credentials or query
//! values), st2's `faultstring` and what to do.

use std::fmt;
use std::time::Duration;

use reqwest::Method;

/// The st2 call that failed: method and path, never credentials or query values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path under the service root, e.g. `/api/v1/executions`.
    pub path: String,
}

impl Call {
    /// Whether repeating this call cannot create a second effect in st2 that matters.
    pub fn is_idempotent(&self) -> bool {
        repeatable(&self.method, &self.path)
    }
}

/// Whether a call can be sent again without risking a second effect that matters. st2's POSTs
/// create executions, re-runs or trigger instances, so they are not; a token request is the
/// exception: a second token only expires unused. PUT here only pauses or resumes and DELETE
/// only cancels, both of which st2 accepts again without change.
pub(crate) fn repeatable(method: &Method, path: &str) -> bool {
    match *method {
        Method::POST => path.ends_with("/tokens"),
        Method::PATCH => false,
        _ => true,
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
        "{call}: st2 refused the credentials (401: {faultstring}); check st2.api_key or st2.username/st2.password"
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
    #[error("{call}: not found in st2 (404: {faultstring}); check the id or ref")]
    NotFound {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
    },
    /// 400: st2 rejected the request (unknown action, bad parameters, wrong state).
    #[error("{call}: st2 rejected the request (400: {faultstring}); fix the request as st2 says")]
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
    #[error("{call}: st2 is rate limiting (429: {faultstring}){}{}", wait_hint(retry_after), outcome(call, *attempts, "slow down"))]
    RateLimited {
        /// The call.
        call: Call,
        /// st2's message.
        faultstring: String,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// 5xx: st2 (or its proxy) failed.
    #[error("{call}: st2 failed ({status}: {faultstring}){}", outcome(call, *attempts, "check the st2 services' logs"))]
    Server {
        /// The call.
        call: Call,
        /// HTTP status.
        status: u16,
        /// st2's message.
        faultstring: String,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// Any other status the call does not expect (3xx are never followed, so they land here).
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
    #[error("{call}: st2 did not answer within {} ms{}", after.as_millis(), outcome(call, *attempts, "raise st2.request_timeout_ms or check st2's load"))]
    Timeout {
        /// The call.
        call: Call,
        /// The deadline of one attempt.
        after: Duration,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// The connection could not be made or broke before a whole answer arrived (not TLS).
    #[error("{call}: cannot reach st2: {message}{}", outcome(call, *attempts, "check st2.base_url, the network and TLS settings"))]
    Connect {
        /// The call.
        call: Call,
        /// The transport's description.
        message: String,
        /// Attempts made, retries included.
        attempts: u32,
    },
    /// The TLS handshake failed: st2's certificate was refused (verification is always on).
    #[error(
        "{call}: st2's TLS certificate was refused: {message}; set st2.tls.ca_file to the CA that signed it, or fix the certificate"
    )]
    Tls {
        /// The call.
        call: Call,
        /// rustls's reason, e.g. `invalid peer certificate: UnknownIssuer`.
        message: String,
    },
    /// The answer was not the JSON st2 documents.
    #[error(
        "{call}: cannot decode st2's answer at {path}: {message}; st2 may be a version this client does not know"
    )]
    Decode {
        /// The call.
        call: Call,
        /// JSON path of the bad value (`.` for the whole body).
        path: String,
        /// The decoder's message.
        message: String,
    },
    /// The request was refused before sending, e.g. an id that would change the URL path.
    #[error("{call}: not sent: {reason}")]
    InvalidRequest {
        /// The call as it would have been.
        call: Call,
        /// What is wrong with it.
        reason: String,
    },
    /// The client could not be built from its configuration.
    #[error("cannot build the st2 client: {0}")]
    Setup(String),
}

fn wait_hint(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!("; st2 asks to wait {} s", d.as_secs()))
        .unwrap_or_default()
}

/// How a transient failure ended: given up after retries, or never retried because the call
/// is not safe to repeat (the caller must check whether it took effect).
fn outcome(call: &Call, attempts: u32, advice: &str) -> String {
    if !call.is_idempotent() {
        format!(
            "; not retried, since repeating {} could act twice: check whether it took effect before sending it again",
            call.method
        )
    } else if attempts > 1 {
        format!(" (gave up after {attempts} attempts); {advice}")
    } else {
        format!("; {advice}")
    }
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
            Self::Timeout { .. }
            | Self::Connect { .. }
            | Self::Tls { .. }
            | Self::Decode { .. }
            | Self::InvalidRequest { .. }
            | Self::Setup(_) => None,
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
            | Self::Tls { call, .. }
            | Self::Decode { call, .. }
            | Self::InvalidRequest { call, .. } => Some(call),
            Self::Setup(_) => None,
        }
    }

    /// How long st2 asked to wait (`Retry-After` on a 429).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
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

    /// The error for a non-success answer.
    pub(crate) fn from_status(
        call: Call,
        status: u16,
        faultstring: String,
        retry_after: Option<Duration>,
        attempts: u32,
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
                attempts,
            },
            500..=599 => Self::Server {
                call,
                status,
                faultstring,
                attempts,
            },
            _ => Self::Unexpected {
                call,
                status,
                faultstring,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: Method) -> Call {
        Call {
            method,
            path: "/api/v1/executions".into(),
        }
    }

    #[test]
    fn messages_say_whether_a_transient_failure_was_retried() {
        let post = St2Error::from_status(
            call(Method::POST),
            503,
            "Service Unavailable".into(),
            None,
            1,
        );
        let text = post.to_string();
        assert!(
            text.starts_with("POST /api/v1/executions: st2 failed (503: Service Unavailable)"),
            "{text}"
        );
        assert!(text.contains("not retried"), "{text}");
        assert!(!post.is_retry_safe() && post.is_transient());

        let get = St2Error::from_status(
            call(Method::GET),
            503,
            "Service Unavailable".into(),
            None,
            4,
        );
        let text = get.to_string();
        assert!(text.contains("gave up after 4 attempts"), "{text}");
        assert!(get.is_retry_safe());

        let limited = St2Error::from_status(
            call(Method::GET),
            429,
            "Too Many Requests".into(),
            Some(Duration::from_secs(30)),
            1,
        );
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
        assert!(
            limited.to_string().contains("st2 asks to wait 30 s"),
            "{limited}"
        );
    }

    #[test]
    fn a_token_request_that_cannot_reach_st2auth_is_retried_and_says_so() {
        let token = Call {
            method: Method::POST,
            path: "/auth/v1/tokens".into(),
        };
        let e = St2Error::Connect {
            call: token,
            message: "connection refused".into(),
            attempts: 3,
        };
        let text = e.to_string();
        assert!(!text.contains("could act twice"), "{text}");
        assert!(text.contains("gave up after 3 attempts"), "{text}");
        assert!(e.is_retry_safe());
    }

    #[test]
    fn statuses_map_to_the_variant_a_caller_acts_on() {
        let of = |status| St2Error::from_status(call(Method::GET), status, "x".into(), None, 1);
        assert!(matches!(of(400), St2Error::BadRequest { .. }));
        assert!(matches!(of(401), St2Error::Unauthorized { .. }));
        assert!(matches!(of(403), St2Error::Forbidden { .. }));
        assert!(matches!(of(404), St2Error::NotFound { .. }));
        assert!(matches!(of(409), St2Error::Conflict { .. }));
        assert!(matches!(of(429), St2Error::RateLimited { .. }));
        assert!(matches!(of(500), St2Error::Server { status: 500, .. }));
        assert!(matches!(of(302), St2Error::Unexpected { status: 302, .. }));
        for status in [400, 401, 403, 404, 409, 429, 500, 503, 302] {
            assert_eq!(of(status).status(), Some(status));
            assert_eq!(of(status).faultstring(), Some("x"));
        }
        let transient: Vec<u16> = [400, 401, 403, 404, 409, 429, 500, 501, 502, 503, 504]
            .into_iter()
            .filter(|s| of(*s).is_transient())
            .collect();
        assert_eq!(transient, [429, 502, 503, 504]);
    }
}
