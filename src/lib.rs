//! portarium-st2: lets Portarium use a StackStorm (st2) cluster as an execution plane.
//!
//! Layers, each importing only those before it (`tests/it/layering.rs` enforces it):
//! `st2_basics` and `st2_client` (their own crates) → [`core`] (dispatch, governance,
//! Portarium's contract) → [`telemetry`] → [`events`] → [`server`] → [`config`] (assembles
//! the components' sections) → [`app`] (builds the running adapter) → [`cli`].

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod events;
pub mod server;
pub mod telemetry;
