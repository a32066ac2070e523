//! The adapter's integration tests, one module per area, in one binary: each test binary links
//! the whole dependency tree, so one binary builds and links once instead of once per area.

mod support;

mod attack_limits;
mod audit_integrity;
mod cli;
mod compose;
mod config_reference;
mod conventions;
mod dispatch;
mod dispatch_cost;
mod events;
mod events_durability;
mod events_sinks;
mod fault_injection;
mod follow;
mod fuzz_regressions;
mod governance;
mod kubernetes;
mod layering;
mod memory_bounds;
mod otlp_env;
mod peers;
mod portarium_clients;
mod release;
mod resilience;
mod secret_leaks;
mod security;
mod server_dispatch;
mod smaller_defects;
mod spans;
mod st2_cli_habits;
mod st2_defects;
mod stream;
mod stream_snapshots;
mod telemetry;
mod telemetry_cli;
mod telemetry_mapping;
mod tenant_isolation;
mod troubleshooting;
