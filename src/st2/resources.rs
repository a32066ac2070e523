//! Actions, packs, traces and webhooks: the st2 objects around executions.

use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::{Value, json};

use super::client::{Request, Service, St2Client};
use super::error::St2Error;
use super::executions::seg;
use super::models::{Action, ActionParameters, Pack, Trace};

/// Header st2 reads a webhook's trace tag from.
const TRACE_TAG_HEADER: &str = "st2-trace-tag";

impl St2Client {
    /// An action by ref (`pack.name`) or id.
    pub async fn action(&self, ref_or_id: &str) -> Result<Action, St2Error> {
        self.get_json(format!("/actions/{}", seg(ref_or_id)), Vec::new())
            .await
    }

    /// The merged runner + action parameter schema st2 validates a run against.
    pub async fn action_parameters(&self, ref_or_id: &str) -> Result<ActionParameters, St2Error> {
        self.get_json(
            format!("/actions/views/parameters/{}", seg(ref_or_id)),
            Vec::new(),
        )
        .await
    }

    /// Installed packs.
    pub async fn packs(&self) -> Result<Vec<Pack>, St2Error> {
        self.get_json("/packs".into(), Vec::new()).await
    }

    /// One installed pack by ref or id.
    pub async fn pack(&self, ref_or_id: &str) -> Result<Pack, St2Error> {
        self.get_json(format!("/packs/{}", seg(ref_or_id)), Vec::new())
            .await
    }

    /// Traces carrying `trace_tag` (st2 does not keep tags unique, so there may be several).
    pub async fn traces_by_tag(&self, trace_tag: &str) -> Result<Vec<Trace>, St2Error> {
        self.get_json(
            "/traces".into(),
            vec![("trace_tag".into(), trace_tag.to_string())],
        )
        .await
    }

    /// Fires `trigger` (a trigger type ref) through st2's system webhook; st2 answers 202.
    pub async fn post_trigger(
        &self,
        trigger: &str,
        payload: &Value,
        trace_tag: Option<&str>,
    ) -> Result<(), St2Error> {
        self.post_webhook(
            "st2",
            &json!({ "trigger": trigger, "payload": payload }),
            trace_tag,
        )
        .await
    }

    /// Posts `body` to a custom webhook registered by a rule (`core.st2.webhook`).
    pub async fn post_webhook(
        &self,
        hook: &str,
        body: &Value,
        trace_tag: Option<&str>,
    ) -> Result<(), St2Error> {
        let mut req = Request::new(
            Service::Api,
            Method::POST,
            format!("/webhooks/{}", seg(hook)),
        );
        req.json = Some(body.clone());
        if let Some(tag) = trace_tag {
            req.headers
                .push((HeaderName::from_static(TRACE_TAG_HEADER), tag.to_string()));
        }
        self.send(req).await.map(drop)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        query: Vec<(String, String)>,
    ) -> Result<T, St2Error> {
        let mut req = Request::new(Service::Api, Method::GET, path);
        req.query = query;
        self.send(req).await?.json()
    }
}
