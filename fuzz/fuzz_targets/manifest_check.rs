//! `manifest check` on arbitrary input: the manifest YAML a user gives it. It must finish
//! (the per-input -timeout and -rss_limit_mb of scripts/fuzz.sh catch the old endless error
//! loop), never panic, and every violation must say where and what.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portarium_st2::core::governance::manifest::check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A base that does not exist: a relative x-st2.packsPolicy must not read the fuzzer's files.
    if let Err(violations) = check(text, Path::new("/nonexistent/portarium-st2-fuzz")) {
        assert!(!violations.is_empty());
        for v in violations {
            assert!(!v.path.is_empty() && !v.message.is_empty(), "{v:?}");
        }
    }
});
