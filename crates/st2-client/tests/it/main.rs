//! The st2 client's integration tests: against the st2 emulator over real HTTP (`client`) and
//! against the answers recorded from a real st2 (`captures`), in one binary.

mod support;

mod captures;
mod client;
