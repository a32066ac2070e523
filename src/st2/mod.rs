//! The st2 wire client: typed models, authentication, transport and API areas.
//!
//! [`St2Client`] is built once from [`crate::config::St2Config`]. Every call goes through one
//! tower stack (retry, concurrency limit, timeout), authenticates with an API key or a renewed
//! token, and fails with an [`St2Error`] that keeps st2's `faultstring`.
//! The API areas ([`api`]) hang off the client; [`models`] holds what st2 sends.

pub mod api;
mod auth;
mod client;
pub mod error;
pub mod models;
pub mod stream;
pub(crate) mod transport;

pub use api::executions::{
    CancelOutcome, ExecutionRequest, Executions, GetExecution, ListExecutions, RerunRequest,
    SortOrder,
};
pub use api::{List, Page};
pub use client::St2Client;
pub use error::{Call, St2Error};
pub use models::{Execution, ExecutionStatus};
pub(crate) use transport::retry_after;
