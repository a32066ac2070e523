//! `/api/v1/packs`: installed packs.

use super::List;
use crate::client::{ApiRequest, St2Client};
use crate::error::St2Error;
use crate::models::Pack;

/// The packs API area; get it from [`St2Client::packs`].
pub struct Packs<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Packs: list and get.
    pub fn packs(&self) -> Packs<'_> {
        Packs { client: self }
    }
}

impl<'a> Packs<'a> {
    /// Starts a `GET /packs` list.
    pub fn list(&self) -> List<'a, Pack> {
        List::new(self.client, &["packs"])
    }

    /// One installed pack by ref or id.
    pub async fn get(&self, ref_or_id: &str) -> Result<Pack, St2Error> {
        self.client
            .send(ApiRequest::get(["packs", ref_or_id]))
            .await?
            .json()
    }
}
