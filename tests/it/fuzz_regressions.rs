//! Inputs that `scripts/fuzz.sh` found breaking a property, kept as tests.

use portarium_st2::core::portarium::DispatchRequest;

/// fuzz/dispatch_request: an integer too large for u64 is read as a float; without serde_json's
/// correctly rounded parsing it came out one ULP off, so the payload forwarded to st2 differed
/// from the one serialised back (and a second pass changed it again).
#[test]
fn dispatch_payload_numbers_survive_a_round_trip_exactly() {
    let body = r#"{"actionId":"a1","tenantId":"demo","runId":"r1","correlationId":"c1",
        "flowRef":"core.local","payload":{"list":[
        44444444344444444444444444444444444444444444444444444444444444444444444444,
        4444444444444444444440, 2.5, 0.1, 1.7976931348623157e308, 5e-324]}}"#;
    let req: DispatchRequest = serde_json::from_str(body).expect("decodes");
    let text = serde_json::to_string(&req).expect("serialises");
    let again: DispatchRequest = serde_json::from_str(&text).expect("decodes again");
    assert_eq!(again, req);
    assert_eq!(
        req.payload["list"][0].as_f64(),
        Some(4.4444444344444444e73),
        "the correctly rounded double of the 74-digit integer"
    );
}
