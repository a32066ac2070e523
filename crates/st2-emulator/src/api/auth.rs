//! `/auth/v1/tokens` (HTTP Basic → token) and `/auth/v1/tokens/validate`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{ApiError, json_response};
use crate::model::Token;
use crate::state::Shared;
use crate::util::{object_id, py_repr, token_value};

/// Parse a JSON request body as st2's router does (empty means `{}`).
pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Failed to parse request body: {e}")))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// `POST /auth/v1/tokens`.
pub(crate) async fn create_token(
    State(sh): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let Value::Object(request) = &body else {
        return Err(ApiError::bad_request(format!(
            "{} is not of type 'object'",
            py_repr(&body)
        )));
    };
    let ttl = match request.get("ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            let v = n.as_i64().unwrap_or(i64::MAX);
            if v < 1 {
                return Err(ApiError::bad_request(format!(
                    "{v} is less than the minimum of 1"
                )));
            }
            Some(v)
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "{} is not of type 'integer', 'null'",
                py_repr(other)
            )));
        }
    };
    let (user, password) = basic_credentials(&headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "Invalid or missing credentials"))?;
    if !sh
        .config
        .users
        .iter()
        .any(|(u, p)| *u == user && *p == password)
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing credentials",
        ));
    }
    let max = sh.config.token_ttl.as_secs() as i64;
    if let Some(t) = ttl
        && t > max
    {
        return Err(ApiError::bad_request(format!(
            "TTL specified {t} is greater than max allowed {max}."
        )));
    }
    let ttl = ttl.map_or(sh.config.token_ttl, |t| Duration::from_secs(t as u64));
    let token = Token {
        id: object_id(),
        token: token_value(),
        user,
        expiry: crate::util::now() + ttl,
    };
    sh.store().tokens.insert(token.token.clone(), token.clone());
    let mut resp = json_response(StatusCode::CREATED, &token.api());
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    if let Ok(v) = HeaderValue::from_str(&format!("http://{host}/api")) {
        resp.headers_mut().insert("X-Api-Url", v);
    }
    Ok(resp)
}

/// `POST /auth/v1/tokens/validate`.
pub(crate) async fn validate(
    State(sh): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(ApiError::bad_request("Token is not provided."));
    };
    let valid = sh
        .store()
        .tokens
        .get(token)
        .is_some_and(|t| t.expiry > crate::util::now());
    Ok(json_response(StatusCode::OK, &json!({ "valid": valid })).into_response())
}
