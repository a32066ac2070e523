//! A typed client for StackStorm (st2): models, API areas, authentication, transport, the
//! event stream and an execution watcher.
//!
//! [`St2Client`] is built once from a [`St2Config`]. Every call goes through one tower stack
//! (retry, concurrency limit, timeout), authenticates with an API key or a renewed token, and
//! fails with an [`St2Error`] that keeps st2's `faultstring`. The API areas ([`api`]) hang
//! off the client; [`models`] holds what st2 sends; [`stream`] follows executions live.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use st2_client::{ExecutionRequest, St2Client, St2Config, Secret};
//! use st2_client::stream::ExecutionWatcher;
//!
//! let config = St2Config::with_api_key("https://st2.example.com".parse()?, Secret::resolve("env:ST2_API_KEY")?);
//! let client = St2Client::from_config(&config)?;
//! let watcher = ExecutionWatcher::start(client.clone(), config.stream.clone());
//! let mut request = ExecutionRequest::new("core.local");
//! request.parameters.insert("cmd".into(), "date".into());
//! let created = client.executions().create(&request).await?;
//! let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
//! let done = watcher.wait_for(&created, deadline).await?;
//! println!("{} {:?}", done.id, done.status);
//! # Ok(()) }
//! ```

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
