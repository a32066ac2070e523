//! The Prometheus text path (parse, then the rejected-line accounting) on arbitrary text: no
//! panic, and every input line is either used or rejected with a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::telemetry::parse::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let page = parse(text);
    let lines = text.lines().count();
    assert!(page.rejected.len() <= lines, "more rejections than lines");
});
