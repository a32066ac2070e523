//! The packs policy (`governance.packs_policy`) on arbitrary YAML: never a panic, every
//! problem rendered, and an accepted policy answers a verdict for any pack and version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::core::governance::packs::PacksPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PacksPolicy::from_yaml(text) {
        Ok(policy) => {
            for installed in [None, Some("1.0.1"), Some("3.10dev"), Some(text)] {
                let _ = policy.verdict("core", installed).label();
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(problems.iter().all(|p| !p.is_empty()));
        }
    }
});
