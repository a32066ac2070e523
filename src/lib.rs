//! portarium-st2: lets Portarium use a StackStorm (st2) cluster as an execution plane.
//!
//! The modules follow the data flow: [`st2`] speaks st2's wire protocol, [`config`] holds
//! the one typed configuration, [`governance`] decides what may run and keeps secrets out
//! of every output.

pub mod config;
pub mod demo;
pub mod dispatch;
pub mod events;
pub mod governance;
pub mod portarium;
pub mod server;
pub mod st2;
pub mod telemetry;
