//! The st2 wire client: typed models, authentication, transport and API areas.
//!
//! [`St2Client`] is built once from [`crate::config::St2Config`]; every call goes through one
//! tower stack ([`transport`]) and fails with an [`St2Error`] that keeps st2's `faultstring`.

pub mod client;
pub mod error;
pub mod executions;
pub mod models;
pub mod resources;
pub mod transport;

pub use client::St2Client;
pub use error::{Call, St2Error};
pub use executions::{CancelOutcome, ExecutionRequest, Page, RerunRequest};
pub use models::{Execution, ExecutionStatus};
