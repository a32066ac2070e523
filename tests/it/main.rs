//! The adapter's integration tests, one module per area, in one binary: each test binary links
//! the whole dependency tree, so one binary builds and links once instead of once per area.

mod support;

mod cli;
mod compose;
mod config_reference;
mod dispatch;
mod dispatch_cost;
mod events;
mod events_sinks;
mod fault_injection;
mod follow;
mod fuzz_regressions;
mod governance;
mod layering;
mod peers;
mod portarium_clients;
mod release;
mod resilience;
mod security;
mod server_dispatch;
mod smaller_defects;
mod spans;
mod st2_defects;
mod stream;
mod telemetry;
mod telemetry_cli;
mod telemetry_mapping;
mod troubleshooting;
