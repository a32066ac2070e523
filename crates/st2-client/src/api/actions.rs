//! `/api/v1/actions`: an action and the parameter schema st2 validates a run against.

use crate::client::{ApiRequest, St2Client};
use crate::error::St2Error;
use crate::models::{Action, ActionParameters};

/// The actions API area; get it from [`St2Client::actions`].
pub struct Actions<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Actions: get one, read its merged parameter schema.
    pub fn actions(&self) -> Actions<'_> {
        Actions { client: self }
    }

    /// Shortcut for `actions().parameters(ref_or_id)`, the schema every dispatch checks.
    pub async fn action_parameters(&self, ref_or_id: &str) -> Result<ActionParameters, St2Error> {
        self.actions().parameters(ref_or_id).await
    }
}

impl Actions<'_> {
    /// An action by ref (`pack.name`) or id; 404 when st2 has no such action.
    pub async fn get(&self, ref_or_id: &str) -> Result<Action, St2Error> {
        self.client
            .send(ApiRequest::get(["actions", ref_or_id]))
            .await?
            .json()
    }

    /// The runner's and the action's parameters merged, the action winning key by key
    /// (`GET /actions/views/parameters/{ref}`).
    pub async fn parameters(&self, ref_or_id: &str) -> Result<ActionParameters, St2Error> {
        self.client
            .send(ApiRequest::get([
                "actions",
                "views",
                "parameters",
                ref_or_id,
            ]))
            .await?
            .json()
    }
}
