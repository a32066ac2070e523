//! The address the adapter gives callers to come back to (`statusUrl` of `/v1/invoke`).
//!
//! A request's `Host` and `X-Forwarded-Proto` are the caller's to write, so a URL built from
//! them can point anywhere; it is used only when the operator says a trusted proxy sets them
//! (`server.trust_forwarded_headers`). Otherwise the URL comes from `server.public_base_url`,
//! or, with none configured, from the local address the connection was accepted on.

use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use st2_basics::FieldError;
use url::Url;

use super::tls::ListenerConfig;

/// How the public base URL is found, from `server` in the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// `server.public_base_url`, without a trailing `/`.
    public_base_url: Option<String>,
    /// `server.trust_forwarded_headers`.
    trust_forwarded_headers: bool,
}

impl OriginPolicy {
    /// The policy `server` configures.
    pub fn new(server: &ListenerConfig) -> Self {
        Self {
            public_base_url: server
                .public_base_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_string()),
            trust_forwarded_headers: server.trust_forwarded_headers,
        }
    }
}

/// Where a connection was accepted: put on each of its requests by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// The listener's local address for this connection (a concrete one, also when the
    /// listener is bound to `0.0.0.0`).
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The adapter's base URL as the caller should use it (`scheme://host[:port]`), or `None` when
/// it cannot be known (a router served without the accept loop and with nothing configured).
#[derive(Debug, Clone)]
pub struct PublicBase(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for PublicBase {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let policy = parts
            .extensions
            .get::<OriginPolicy>()
            .cloned()
            .unwrap_or_default();
        if let Some(base) = policy.public_base_url {
            return Ok(Self(Some(base)));
        }
        if policy.trust_forwarded_headers {
            return Ok(Self(forwarded(parts)));
        }
        Ok(Self(parts.extensions.get::<Accepted>().map(|a| {
            let scheme = if a.tls { "https" } else { "http" };
            format!("{scheme}://{}", a.local)
        })))
    }
}

/// `Host` and `X-Forwarded-Proto`, as a trusted proxy in front of the adapter sets them.
fn forwarded(parts: &Parts) -> Option<String> {
    let host = parts.headers.get(header::HOST)?.to_str().ok()?;
    let scheme = parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    Some(format!("{scheme}://{host}"))
}

/// Checks `server.public_base_url`: an http(s) URL with nothing after its path.
pub fn validate(url: Option<&Url>, errors: &mut Vec<FieldError>) {
    let Some(url) = url else { return };
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("must be an http:// or https:// URL")
    } else if url.query().is_some() || url.fragment().is_some() {
        Some("must have no query or fragment: `/v1/invoke/...` is appended to it")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must carry no credentials: it is given to every caller")
    } else {
        None
    };
    if let Some(problem) = problem {
        errors.push(FieldError::new(
            "server.public_base_url",
            format!("{url}: {problem}, e.g. https://portarium-st2.example.com"),
        ));
    }
}
