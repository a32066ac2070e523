//! HTTP sink: each event POSTed alone in CloudEvents structured mode
//! (`content-type: application/cloudevents+json`, body = the whole event), as Portarium's
//! own webhook publisher sends them.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use tokio::task::JoinHandle;

use super::{Attempt, SinkHandle, spawn};
use crate::events::EventsError;
use crate::events::cloudevent::{CloudEvent, STRUCTURED_CONTENT_TYPE};
use crate::events::config::HttpSinkConfig;
use st2_client::retry_after;

/// Starts the HTTP sink's worker.
pub fn start(config: &HttpSinkConfig) -> Result<(SinkHandle, JoinHandle<()>), EventsError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let bad = |why: String| EventsError::Config {
            field: format!("events.http.headers.{name}"),
            reason: why,
        };
        let name = HeaderName::try_from(name.as_str()).map_err(|e| bad(e.to_string()))?;
        let value = HeaderValue::from_str(value.expose()).map_err(|e| bad(e.to_string()))?;
        headers.insert(name, value);
    }
    if let Some(token) = &config.bearer_token {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|e| {
                EventsError::Config {
                    field: "events.http.bearer_token".into(),
                    reason: e.to_string(),
                }
            })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(STRUCTURED_CONTENT_TYPE),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.request_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| EventsError::Client(e.to_string()))?;
    let url = config.url.clone();
    let deliver = move |event: Arc<CloudEvent>| {
        let request = client
            .post(url.clone())
            .headers(headers.clone())
            .body(serde_json::to_vec(&*event).unwrap_or_default());
        async move {
            let response = request.send().await.map_err(|e| Attempt::Retry {
                reason: format!("POST failed: {e}"),
                after: None,
            })?;
            classify(response.status(), response.headers())
        }
    };
    Ok(spawn("http", &config.delivery, deliver))
}

/// 2xx delivers; 408, 425, 429 and 5xx are worth another try; any other answer refuses the
/// event for good.
fn classify(status: StatusCode, headers: &HeaderMap) -> Result<(), Attempt> {
    if status.is_success() {
        return Ok(());
    }
    let transient = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
    if transient {
        Err(Attempt::Retry {
            reason: format!("receiver answered {status}"),
            after: retry_after(headers),
        })
    } else {
        Err(Attempt::Reject(format!("receiver answered {status}")))
    }
}
