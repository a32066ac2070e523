//! The OpenClaw bridge's `POST /tools/invoke` body decoding on arbitrary bytes: no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::server::openclaw::InvokeRequest;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<InvokeRequest>(data);
});
