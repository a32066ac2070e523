//! The payload-against-schema check on arbitrary JSON `[schema, payload]`: no panic, and every
//! problem names a parameter of the schema or a key of the payload with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::core::dispatch::validate::check_parameters;
use st2_client::models::{ActionParameters, JsonObject};

fuzz_target!(|data: &[u8]| {
    let Ok((schema, payload)) = serde_json::from_slice::<(ActionParameters, JsonObject)>(data)
    else {
        return;
    };
    for problem in check_parameters(&schema, &payload) {
        assert!(
            schema.parameters.contains_key(&problem.field)
                || payload.contains_key(&problem.field)
        );
        assert!(!problem.reason.is_empty());
    }
});
