//! `/api/v1/webhooks`: fire triggers through st2's system webhook or a rule's custom one.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::client::{ApiRequest, St2Client};
use crate::error::St2Error;

/// Header st2 reads a webhook's trace tag from.
const TRACE_TAG_HEADER: HeaderName = HeaderName::from_static("st2-trace-tag");

/// The webhooks API area; get it from [`St2Client::webhooks`].
pub struct Webhooks<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Webhooks: the system `st2` hook and custom hooks registered by rules.
    pub fn webhooks(&self) -> Webhooks<'_> {
        Webhooks { client: self }
    }
}

impl Webhooks<'_> {
    /// Fires `trigger` (a trigger type ref) with `payload` through `POST /webhooks/st2`; st2
    /// validates the payload against the trigger type and answers 202. Executions started by
    /// rules join the trace `trace_tag` names. Never retried automatically.
    pub async fn trigger(
        &self,
        trigger: &str,
        payload: &Value,
        trace_tag: Option<&str>,
    ) -> Result<(), St2Error> {
        let body = json!({ "trigger": trigger, "payload": payload });
        self.send(&["st2"], body, trace_tag).await
    }

    /// Posts `body` to the custom webhook `url` (a rule on `core.st2.webhook` with
    /// `parameters.url`); 404 when no rule registered it. Never retried automatically.
    pub async fn post(
        &self,
        url: &str,
        body: &Value,
        trace_tag: Option<&str>,
    ) -> Result<(), St2Error> {
        let segments: Vec<&str> = url.trim_matches('/').split('/').collect();
        self.send(&segments, body.clone(), trace_tag).await
    }

    async fn send(
        &self,
        hook: &[&str],
        body: Value,
        trace_tag: Option<&str>,
    ) -> Result<(), St2Error> {
        let segments = std::iter::once("webhooks").chain(hook.iter().copied());
        let mut req = ApiRequest::new(Method::POST, segments).json(body);
        if let Some(tag) = trace_tag {
            req = match HeaderValue::from_str(tag) {
                Ok(value) => req.header(TRACE_TAG_HEADER, value),
                Err(_) => req.refuse(format!(
                    "trace tag {tag:?} has characters an HTTP header cannot carry"
                )),
            };
        }
        self.client.send(req).await.map(drop)
    }
}
