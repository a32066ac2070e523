//! `/api/v1/traces`: what st2 linked under a trace tag.

use super::List;
use crate::client::St2Client;
use crate::models::Trace;

/// The traces API area; get it from [`St2Client::traces`].
pub struct Traces<'a> {
    client: &'a St2Client,
}

impl St2Client {
    /// Traces: list, by tag or by execution.
    pub fn traces(&self) -> Traces<'_> {
        Traces { client: self }
    }
}

impl<'a> Traces<'a> {
    /// Starts a `GET /traces` list.
    pub fn list(&self) -> List<'a, Trace> {
        List::new(self.client, &["traces"])
    }
}

impl List<'_, Trace> {
    /// Only traces with this tag. st2 does not keep tags unique: two runs with the same tag
    /// make two traces.
    pub fn trace_tag(self, tag: &str) -> Self {
        self.set("trace_tag", tag)
    }

    /// Only the trace holding this execution.
    pub fn execution(self, id: &str) -> Self {
        self.set("execution", id)
    }
}
