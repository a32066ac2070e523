//! The config loader on arbitrary input: YAML, then after a NUL byte `KEY=VALUE` lines used as
//! the environment (so the `PORTARIUM_ST2_*` override path is fuzzed too). Errors are fine,
//! panics are not, and every error must render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portarium_st2::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (yaml, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("PORTARIUM_ST2_{k}"), v.to_string()))
        .collect();
    if let Err(e) = Config::from_yaml(yaml, "fuzz.yaml", env) {
        assert!(!e.to_string().is_empty());
    }
});
