//! Typed st2 API objects.
//!
//! st2 leaves every falsy attribute out of its JSON (`{k: v for k, v in ... if v}` in its
//! `*API.from_model`), so nearly every field is optional or defaulted. Fields this crate does
//! not model are kept in `extra`, so nothing st2 sends is lost on a round trip.

mod action;
mod auth;
mod execution;
pub mod keyvalue;
mod pack;
mod status;
mod trace;

pub use action::{Action, ActionParameters, ParameterSpec};
pub use auth::Token;
pub use execution::{
    CreatedExecution, Execution, ExecutionHead, LiveAction, LogEntry, Notify, NotifyTarget,
    OutputChunk, OutputType,
};
pub use keyvalue::KeyValuePair;
pub use pack::Pack;
pub use status::ExecutionStatus;
pub use trace::{Trace, TraceComponent};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object as st2 sends it.
pub type JsonObject = Map<String, Value>;

/// `t` as RFC 3339, the form st2 writes.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("an OffsetDateTime always formats as RFC 3339")
}

/// `t` in UTC with exactly six fraction digits, the form st2's datetime filters take.
///
/// st2 accepts no fraction or 3 to 6 digits only (st2common/util/isotime.py); RFC 3339 drops
/// trailing zeros, so a millisecond time ending in 0 would be refused with a 400.
pub fn st2_time(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(format)
        .expect("a UTC time within st2's years always formats")
}

/// st2's error body: `{"faultstring": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Fault {
    /// st2's message.
    pub faultstring: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn st2_times_carry_six_fraction_digits_in_utc() {
        assert_eq!(
            st2_time(datetime!(2026-12-05 23:45:15.8 UTC)),
            "2026-12-05T23:45:15.800000Z"
        );
        assert_eq!(
            st2_time(datetime!(2026-12-05 23:45:15 UTC)),
            "2026-12-05T23:45:15.000000Z"
        );
        assert_eq!(
            st2_time(datetime!(2026-12-06 01:45:15.123456789 +02:00)),
            "2026-12-05T23:45:15.123456Z"
        );
    }
}
