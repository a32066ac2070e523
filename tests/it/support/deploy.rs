//! Reading the repository's deployment files (compose, Kubernetes, st2 configs) and the
//! adapter's `config check` summary, for the tests that check them without running them.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of the repository, by its path from the root.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// A minimal INI reader for st2's config files: section → key → value.
pub fn ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key = value: {line}"));
        out.entry(section.clone())
            .or_default()
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    out
}

/// `key:   value` from a `config check` summary.
pub fn summary_field<'a>(summary: &'a str, key: &str) -> &'a str {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(key).map(str::trim))
        .unwrap_or_else(|| panic!("no {key} in {summary}"))
}
