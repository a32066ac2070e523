//! `audit verify` on arbitrary bytes as the audit log: never a panic, and a break names a
//! record and line that exist in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::core::governance::audit::{VerifyError, verify_lines};

fuzz_target!(|data: &[u8]| {
    match verify_lines(data) {
        Ok(head) => assert_eq!(head.records == 0, head.head_hash.is_none()),
        Err(VerifyError::Broken(b)) => {
            let lines = data.split(|&c| c == b'\n').count();
            assert!(b.line >= 1 && b.line <= lines && b.record <= b.line, "{b:?}");
            assert!(!b.to_string().is_empty());
        }
        Err(VerifyError::Io(e)) => assert!(!e.to_string().is_empty()),
    }
});
