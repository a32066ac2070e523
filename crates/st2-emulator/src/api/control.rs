//! `/_emulator/*`: out-of-process control (faults, restart, token revocation, request log),
//! authenticated with the emulator's API key and never subject to faults.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::parse_body;
use super::{ApiError, Params, json_response};
use crate::state::Shared;

/// What the control routes can ask of the server.
#[derive(Clone)]
pub(crate) struct Control {
    /// Restart the listener (called after the answer is on its way).
    pub restart: Arc<dyn Fn() + Send + Sync>,
}

fn check_key(sh: &Shared, headers: &HeaderMap, params: &Params) -> Result<(), ApiError> {
    let given = headers
        .get("st2-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| params.get("st2-api-key"));
    match given {
        Some(k) if k == sh.config.api_key => Ok(()),
        Some(_) => Err(ApiError::unauthorized(Some(
            "API key is not valid for the emulator control routes.",
        ))),
        None => Err(ApiError::unauthorized(Some(
            "One of Token or API key required.",
        ))),
    }
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn status_of(v: &Value) -> Result<u16, ApiError> {
    v.get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| {
            ApiError::bad_request("fault needs \"status\": an HTTP status code between 100 and 599")
        })
}

fn count_of(v: &Value) -> usize {
    v.as_u64()
        .or_else(|| v.get("count").and_then(Value::as_u64))
        .unwrap_or(1) as usize
}

fn ratio_of(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.get("ratio").and_then(Value::as_f64))
        .unwrap_or(0.0)
}

/// `POST /_emulator/faults`.
pub(super) async fn faults(
    State(sh): State<Arc<Shared>>,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_key(&sh, &headers, &params)?;
    let body = parse_body(&body)?;
    let f = &sh.faults;
    if field(&body, "clear").and_then(Value::as_bool) == Some(true) {
        f.clear();
    }
    if let Some(v) = field(&body, "fail_next") {
        f.fail_next(
            status_of(v)?,
            v.get("count").and_then(Value::as_u64).unwrap_or(1) as usize,
        );
    }
    if let Some(v) = field(&body, "fail_next_on") {
        let method = v.get("method").and_then(Value::as_str).unwrap_or("GET");
        let prefix = v.get("path_prefix").and_then(Value::as_str).unwrap_or("/");
        f.fail_next_on(
            method,
            prefix,
            status_of(v)?,
            v.get("count").and_then(Value::as_u64).unwrap_or(1) as usize,
        );
    }
    if let Some(v) = field(&body, "fail_ratio") {
        f.fail_ratio(status_of(v)?, ratio_of(v));
    }
    if let Some(v) = field(&body, "drop_next") {
        f.drop_next(count_of(v));
    }
    if let Some(v) = field(&body, "drop_ratio") {
        f.drop_ratio(ratio_of(v));
    }
    if let Some(v) = field(&body, "lose_answer_ratio") {
        f.lose_answer_ratio(ratio_of(v));
    }
    if let Some(ms) = field(&body, "delay_ms").and_then(Value::as_u64) {
        f.delay(Duration::from_millis(ms));
    }
    if field(&body, "cut_streams").and_then(Value::as_bool) == Some(true) {
        f.cut_streams();
    }
    if let Some(on) = field(&body, "silence_streams").and_then(Value::as_bool) {
        f.silence_streams(on);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /_emulator/restart`.
pub(super) async fn restart(
    State(sh): State<Arc<Shared>>,
    Extension(ctl): Extension<Control>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_key(&sh, &headers, &params)?;
    (ctl.restart)();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /_emulator/revoke_tokens`.
pub(super) async fn revoke_tokens(
    State(sh): State<Arc<Shared>>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_key(&sh, &headers, &params)?;
    sh.store().tokens.clear();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /_emulator/requests`.
pub(super) async fn requests(
    State(sh): State<Arc<Shared>>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_key(&sh, &headers, &params)?;
    let log: Vec<Value> = sh
        .request_log()
        .into_iter()
        .map(|r| json!({"method": r.method, "path": r.path, "query": r.query, "status": r.status}))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(log)))
}
