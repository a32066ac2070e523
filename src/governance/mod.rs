//! Governance: what may run, with whose credentials, and what must never leak.

pub mod secrets;
