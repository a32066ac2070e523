//! What every layer of portarium-st2 shares, and nothing else: a config problem named by its
//! dotted field path ([`FieldError`]), st2's `Retry-After` reading ([`retry_after`]), durations
//! written as `250ms` or `10s` ([`duration`]), the one backoff schedule ([`backoff`]) and the
//! one retry decision built on it ([`retry`]), and the one bounded map every cache holds its
//! entries in ([`bounded`]); and [`sleep_until_some`], the timer branch of a `select!` that may
//! be off.
//!
//! It depends on no other crate of the workspace, so `st2-client` can stand on it alone.

pub mod backoff;
pub mod bounded;
pub mod duration;
mod field;
pub mod files;
mod http_headers;
pub mod retry;
mod timer;

pub use backoff::{Backoff, BackoffConfig};
pub use bounded::{BoundedMap, Bounds};
pub use field::FieldError;
pub use http_headers::retry_after;
pub use retry::{GiveUp, Retry, RetryPolicy};
pub use timer::sleep_until_some;
