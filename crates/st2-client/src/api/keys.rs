//! `/api/v1/keys`: st2's key-value datastore, system scope. Needs st2 RBAC permissions
//! `key_value_pair_view` (get, list), `key_value_pair_set` (put) and
//! `key_value_pair_delete` (delete) on the keys used.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::List;
use crate::client::{ApiRequest, St2Client};
use crate::error::St2Error;
use crate::models::keyvalue::KeyValuePair;

/// The datastore API area; get it from [`St2Client::keys`].
pub struct Keys<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Datastore keys: read, write with an optional TTL, delete, list.
    pub fn keys(&self) -> Keys<'_> {
        Keys { client: self }
    }
}

impl<'a> Keys<'a> {
    /// The pair `name`, or `None` when st2 has no such key (never set, deleted, expired).
    pub async fn get(&self, name: &str) -> Result<Option<KeyValuePair>, St2Error> {
        match self.client.send(ApiRequest::get(["keys", name])).await {
            Ok(answer) => answer.json().map(Some),
            Err(St2Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets `name` to `value`, creating or replacing it; with `ttl`, st2 removes it that long
    /// after this write (whole seconds, at least one).
    pub async fn put(
        &self,
        name: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<KeyValuePair, St2Error> {
        let mut body = json!({"name": name, "value": value});
        if let Some(ttl) = ttl {
            body["ttl"] = json!(ttl.as_secs().max(1));
        }
        self.client
            .send(ApiRequest::new(Method::PUT, ["keys", name]).json(body))
            .await?
            .json()
    }

    /// Deletes `name`; `false` when st2 had no such key.
    pub async fn delete(&self, name: &str) -> Result<bool, St2Error> {
        match self
            .client
            .send(ApiRequest::new(Method::DELETE, ["keys", name]))
            .await
        {
            Ok(_) => Ok(true),
            Err(St2Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A list of pairs. st2 sends no paging headers for keys, so [`List::all`] walks until a
    /// page comes back empty or `max_pages` were read.
    pub fn list(&self) -> List<'a, KeyValuePair> {
        List::new(self.client, &["keys"])
    }
}

impl List<'_, KeyValuePair> {
    /// Only keys whose name starts with `prefix`.
    pub fn prefix(self, prefix: &str) -> Self {
        self.set("prefix", prefix)
    }
}
