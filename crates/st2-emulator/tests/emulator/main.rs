//! The emulator over real HTTP (one test binary): REST behaviour, SSE streams, fault switches.

#[path = "../common/fixture.rs"]
mod fixture;
mod http_api;
mod query_costs;
mod rules;
mod st2client_compat;
mod stream_and_faults;
mod support;
