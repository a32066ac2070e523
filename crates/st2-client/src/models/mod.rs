//! Typed st2 API objects.
//!
//! st2 leaves every falsy attribute out of its JSON (`{k: v for k, v in ... if v}` in its
//! `*API.from_model`), so nearly every field is optional or defaulted. Fields this crate does
//! not model are kept in `extra`, so nothing st2 sends is lost on a round trip.

mod action;
mod auth;
mod execution;
mod pack;
mod status;
mod trace;

pub use action::{Action, ActionParameters, ParameterSpec};
pub use auth::Token;
pub use execution::{
    Execution, LiveAction, LogEntry, Notify, NotifyTarget, OutputChunk, OutputType,
};
pub use pack::Pack;
pub use status::ExecutionStatus;
pub use trace::{Trace, TraceComponent};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object as st2 sends it.
pub type JsonObject = Map<String, Value>;

/// `t` as RFC 3339, the form st2 writes and its filters take.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("an OffsetDateTime always formats as RFC 3339")
}

/// st2's error body: `{"faultstring": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Fault {
    /// st2's message.
    pub faultstring: String,
}
