//! `POST /v1/dispatch` body decoding, the flowRef check and W3C trace-context parsing on
//! arbitrary bytes: nothing may panic, and what decodes must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::core::dispatch::validate::ActionRef;
use portarium_st2::core::portarium::{DispatchRequest, TraceContext};

fn check_ref(flow_ref: &str) {
    if let Ok(r) = ActionRef::parse(flow_ref) {
        // A ref that passes is exactly pack.name again: nothing is dropped or normalised away.
        assert_eq!(r.to_string(), flow_ref);
        assert!(!r.pack.is_empty() && !r.name.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_ref(text);
        let (tp, ts) = text.split_once('\n').unwrap_or((text, ""));
        if let Some(ctx) = TraceContext::parse(tp, Some(ts)) {
            assert_eq!(ctx.trace_id().len(), 32);
        }
    }
    if let Ok(req) = serde_json::from_slice::<DispatchRequest>(data) {
        check_ref(&req.flow_ref);
        let again: DispatchRequest =
            serde_json::from_str(&serde_json::to_string(&req).expect("serialises"))
                .expect("what we serialise decodes");
        assert_eq!(again, req);
    }
});
