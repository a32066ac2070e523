//! st2's event stream framing on arbitrary bytes: no panic, and the events do not depend on
//! how the bytes were split into chunks (the first byte picks the split points).
#![no_main]

use libfuzzer_sys::fuzz_target;
use st2_client::stream::SseParser;

const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let whole = SseParser::new(LIMIT).push(body);
    let mut split = SseParser::new(LIMIT);
    let mut events = Vec::new();
    let mut failed = None;
    for chunk in body.chunks(usize::from(step).max(1)) {
        match split.push(chunk) {
            Ok(mut e) => events.append(&mut e),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    match (whole, failed) {
        (Ok(all), None) => assert_eq!(all, events, "chunking changed the events"),
        // An event over the limit is refused however it arrives.
        (Err(_), Some(_)) => {}
        (a, b) => panic!("one reading failed and the other did not: {a:?} vs {b:?}"),
    }
});
