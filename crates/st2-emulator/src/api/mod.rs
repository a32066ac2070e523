//! The HTTP surface: `/api/v1`, `/auth/v1` and `/stream/v1` as st2 behind its nginx, plus the
//! `/_emulator` control routes. Shared pieces live here: st2's error shape, query parsing with
//! st2's type checks, and authentication.

mod auth;
mod content;
mod control;
mod executions;
mod keys;
mod stream;
mod triggers;

pub(crate) use keys::Pair as KvPair;
pub(crate) use triggers::system_types as system_trigger_types;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::state::Shared;
use crate::util::{cookie_date, sha512_hex};

/// An error answered in st2's shape: `application/json` `{"faultstring": ...}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// Any status with a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    /// 500.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    /// 401 built like st2's `abort_unauthorized`.
    pub fn unauthorized(detail: Option<&str>) -> ApiError {
        let message = match detail {
            Some(d) => format!("Unauthorized - {d}"),
            None => "Unauthorized".to_string(),
        };
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        fault_response(self.status, &self.message)
    }
}

/// A `{"faultstring": ...}` response.
pub(crate) fn fault_response(status: StatusCode, message: &str) -> Response {
    let body = json!({ "faultstring": message }).to_string();
    (status, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Decode `application/x-www-form-urlencoded` text.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'%'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query parameters read the way st2's router does (last value wins, arrays comma-separated,
/// integers and booleans type-checked with st2's messages).
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parse a raw query string.
    pub fn parse(query: Option<&str>) -> Params {
        Params(
            query
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// The last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value, unless absent or empty (st2 ignores empty filters).
    pub fn nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A comma-separated array parameter.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.nonempty(name)
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("Parameter \"{name}\" is not of type integer"))
            }),
        }
    }

    /// A boolean parameter.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name).map(str::to_ascii_lowercase) {
            None => Ok(false),
            Some(v) if ["true", "1", "yes", "y"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["false", "0", "no", "n"].contains(&v.as_str()) => Ok(false),
            Some(_) => Err(ApiError::bad_request(format!(
                "Parameter \"{name}\" is not of type boolean"
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query()))
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// User name.
    pub user: String,
    /// How the caller authenticated, as st2's router records it for `GET /user`.
    pub auth: AuthInfo,
}

/// st2's `auth_info`: `method` is `API key` or `authentication token`; `location` is the security
/// definition's `in` (a cookie counts as `header`, as its definition says); tokens add expiry.
#[derive(Debug, Clone)]
pub(crate) struct AuthInfo {
    pub method: &'static str,
    pub location: &'static str,
    pub token_expire: Option<time::OffsetDateTime>,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized(Some("One of Token or API key required.")))
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "auth-token")
        .map(|(_, v)| v.to_string())
}

enum Credential {
    Token {
        value: String,
        set_cookie: bool,
        location: &'static str,
    },
    ApiKey {
        value: String,
        location: &'static str,
    },
}

/// st2's router auth: the first credential present (token header, key header, token query, key
/// query, cookie) is validated and decides.
fn authenticate(
    sh: &Shared,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(Caller, Option<String>), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
    };
    let credential = if let Some(t) = header("x-auth-token") {
        Credential::Token {
            value: t.to_string(),
            set_cookie: true,
            location: "header",
        }
    } else if let Some(k) = header("st2-api-key") {
        Credential::ApiKey {
            value: k.to_string(),
            location: "header",
        }
    } else if let Some(t) = params.nonempty("x-auth-token") {
        Credential::Token {
            value: t.to_string(),
            set_cookie: true,
            location: "query",
        }
    } else if let Some(k) = params.nonempty("st2-api-key") {
        Credential::ApiKey {
            value: k.to_string(),
            location: "query",
        }
    } else if let Some(t) = cookie_token(headers).filter(|t| !t.is_empty()) {
        Credential::Token {
            value: t,
            set_cookie: false,
            location: "header",
        }
    } else {
        return Err(ApiError::unauthorized(Some(
            "One of Token or API key required.",
        )));
    };
    match credential {
        Credential::ApiKey {
            value: key,
            location,
        } => {
            if key == sh.config.api_key {
                let auth = AuthInfo {
                    method: "API key",
                    location,
                    token_expire: None,
                };
                Ok((
                    Caller {
                        user: api_key_user(sh),
                        auth,
                    },
                    None,
                ))
            } else {
                let hash = sha512_hex(format!("saltnpepper{key}").as_bytes());
                Err(ApiError::unauthorized(Some(&format!(
                    "ApiKey with key_hash={hash} not found."
                ))))
            }
        }
        Credential::Token {
            value,
            set_cookie,
            location,
        } => {
            let token = sh
                .store()
                .tokens
                .get(&value)
                .cloned()
                .ok_or_else(|| ApiError::unauthorized(None))?;
            let now = crate::util::now();
            if token.expiry <= now {
                return Err(ApiError::unauthorized(Some("Token has expired.")));
            }
            let cookie = set_cookie.then(|| {
                format!(
                    "auth-token={}; Max-Age={}; Path=/; expires={}; secure; HttpOnly; SameSite=lax",
                    token.token,
                    (token.expiry - now).whole_seconds(),
                    cookie_date(token.expiry)
                )
            });
            let auth = AuthInfo {
                method: "authentication token",
                location,
                token_expire: Some(token.expiry),
            };
            Ok((
                Caller {
                    user: token.user,
                    auth,
                },
                cookie,
            ))
        }
    }
}

/// The user the emulator's API key belongs to: `st2admin` when configured, else the first user.
fn api_key_user(sh: &Shared) -> String {
    sh.config
        .users
        .iter()
        .find(|(u, _)| u == "st2admin")
        .or_else(|| sh.config.users.first())
        .map(|(u, _)| u.clone())
        .unwrap_or_else(|| "st2admin".to_string())
}

async fn require_auth(State(sh): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let params = Params::parse(req.uri().query());
    match authenticate(&sh, req.headers(), &params) {
        Ok((caller, cookie)) => {
            req.extensions_mut().insert(caller);
            let mut resp = next.run(req).await;
            // st2 sets the cookie only on answers that succeed (captures: none on 4xx).
            if !resp.status().is_success() {
                return resp;
            }
            if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                resp.headers_mut().append(SET_COOKIE, c);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// st2's answer for a path (or method) no route matches.
pub(crate) async fn no_route() -> Response {
    fault_response(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// The st2 router (API, auth, stream) for one emulator.
pub(crate) fn st2_router(sh: Arc<Shared>) -> Router {
    let protected = Router::new()
        .merge(executions::routes())
        .merge(content::routes())
        .merge(stream::routes())
        .merge(triggers::routes())
        .merge(keys::routes())
        .route("/auth/v1/tokens/validate", post(auth::validate))
        .route_layer(middleware::from_fn_with_state(sh.clone(), require_auth));
    Router::new()
        .merge(protected)
        .route("/auth/v1/tokens", post(auth::create_token))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .with_state(sh)
}

/// The `/_emulator` control router.
pub(crate) fn control_router(sh: Arc<Shared>, ctl: control::Control) -> Router {
    Router::new()
        .route("/_emulator/faults", post(control::faults))
        .route("/_emulator/restart", post(control::restart))
        .route("/_emulator/revoke_tokens", post(control::revoke_tokens))
        .route("/_emulator/requests", get(control::requests))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(axum::Extension(ctl))
        .with_state(sh)
}

pub(crate) use control::Control;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_st2_router_rules() {
        let p = Params::parse(Some("a=1&a=2&list=x%2Cy,z&flag=Yes&sp=a+b%21&bad=q"));
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(p.list("list"), vec!["x", "y", "z"]);
        assert!(p.flag("flag").expect("bool"));
        assert_eq!(p.get("sp"), Some("a b!"));
        assert_eq!(
            p.int("bad").expect_err("not int").message,
            "Parameter \"bad\" is not of type integer"
        );
    }
}
