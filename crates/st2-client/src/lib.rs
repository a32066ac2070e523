//! A typed client for StackStorm (st2): models, API areas, authentication, transport, the
//! event stream and an execution watcher.
//!
//! [`St2Client`] is built once from a [`St2Config`]. Every call goes through one tower stack
//! (retry, concurrency limit, timeout), authenticates with an API key or a renewed token, and
//! fails with an [`St2Error`] that keeps st2's `faultstring`. The API areas ([`api`]) hang
//! off the client; [`models`] holds what st2 sends; [`stream`] follows executions live.
//!
//! The README's example runs an action and follows it.
#![doc = include_str!("../README.md")]

pub mod api;
mod auth;
mod client;
pub mod config;
pub mod error;
pub mod models;
pub mod secret;
pub mod stream;
mod transport;

pub use api::executions::{
    CancelOutcome, ExecutionRequest, Executions, GetExecution, ListExecutions, RerunRequest,
    SortOrder,
};
pub use api::{List, Page};
pub use client::St2Client;
pub use config::{RetryConfig, St2Config, St2Endpoints, TlsConfig};
pub use error::{Call, St2Error};
pub use models::{Execution, ExecutionStatus};
pub use secret::{REDACTED, Secret, SecretError, SecretSource};
pub use st2_basics::{BackoffConfig, FieldError, retry_after};
