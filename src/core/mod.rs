//! The adapter's core: Portarium's contract types, dispatch (admission, idempotent create,
//! following to an outcome), governance (tenants, the reviewed-packs gate, audit, redaction)
//! and the settings they need. It knows st2 only through `st2_client`, and nothing of HTTP
//! routes, events, telemetry export or config files.
//!
//! [`dispatch`] is the one entry every route uses.

mod admission;
pub mod config;
pub mod dispatch;
pub mod governance;
pub mod ids;
pub mod portarium;
mod tenant;

pub use admission::{DispatchError, Dispatched, Mode, Rerun, cancel, dispatch, rerun};
pub use tenant::{Booked, Tenant};
