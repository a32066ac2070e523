//! `/api/v1/triggertypes`: the trigger types rules and the `st2` webhook can use.

use reqwest::Method;
use serde_json::json;

use crate::client::{ApiRequest, St2Client};
use crate::error::St2Error;

/// The trigger types API area; get it from [`St2Client::trigger_types`].
pub struct TriggerTypes<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Trigger types: look up and create.
    pub fn trigger_types(&self) -> TriggerTypes<'_> {
        TriggerTypes { client: self }
    }
}

impl TriggerTypes<'_> {
    /// Whether the trigger type `reference` (`pack.name`) exists.
    pub async fn exists(&self, reference: &str) -> Result<bool, St2Error> {
        match self
            .client
            .send(ApiRequest::get(["triggertypes", reference]))
            .await
        {
            Ok(_) => Ok(true),
            Err(St2Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates `reference` (`pack.name`) taking any object as payload, unless it exists: a
    /// 409 (created meanwhile by someone else) counts as done. st2's RBAC grants no permission
    /// on trigger types, so with RBAC on creating one takes an admin.
    pub async fn ensure(&self, reference: &str, description: &str) -> Result<(), St2Error> {
        if self.exists(reference).await? {
            return Ok(());
        }
        let (pack, name) = reference.split_once('.').unwrap_or(("", reference));
        let body = json!({
            "pack": pack,
            "name": name,
            "description": description,
            "payload_schema": {"type": "object"},
        });
        match self
            .client
            .send(ApiRequest::new(Method::POST, ["triggertypes"]).json(body))
            .await
        {
            Ok(_) | Err(St2Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
