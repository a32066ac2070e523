//! Where st2's reference data (its sources, OpenAPI spec and recorded answers) is, and what a test
//! that reads it does when it is absent. One file for every test binary and the examples: each
//! includes it with `#[path]`, since a fresh clone has no `../shared` beside it and all must agree
//! on where to look.

use std::path::{Path, PathBuf};

/// Names the reference folder; a relative path is taken from the workspace root.
pub const DIR_VAR: &str = "ST2_REFERENCE_DIR";

/// The configured reference folder: `$ST2_REFERENCE_DIR`, else `../shared/reference/st2` beside
/// the workspace root. It may not exist.
pub fn reference_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os(DIR_VAR) {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.parent().unwrap_or(root).join("shared/reference/st2"),
    }
}

// Each including crate has its own manifest folder (the root or crates/<name>), so the workspace
// root is found by its lock file rather than a fixed number of levels up.
fn workspace_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or(manifest)
}

// The examples include this file for `reference_dir` alone; the skip bookkeeping below is only
// compiled into test binaries, where every test that reads the data calls `missing`.
#[cfg(test)]
pub use skip::missing;

#[cfg(test)]
mod skip {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{DIR_VAR, reference_dir};

    /// Set to `1` to fail, not skip, when the reference folder is absent (CI sets it).
    const REQUIRED_VAR: &str = "ST2_REFERENCE_REQUIRED";

    static SKIPPED: AtomicUsize = AtomicUsize::new(0);

    /// True when the calling test must return early because the reference data is absent; panics
    /// instead when `ST2_REFERENCE_REQUIRED=1`.
    pub fn missing() -> bool {
        let dir = reference_dir();
        if dir.is_dir() {
            return false;
        }
        assert!(
            std::env::var(REQUIRED_VAR).as_deref() != Ok("1"),
            "st2 reference data not found at {} and {REQUIRED_VAR}=1: set {DIR_VAR} to the folder \
             holding st2common/ and captures/",
            dir.display()
        );
        if SKIPPED.fetch_add(1, Ordering::SeqCst) == 0 {
            report_at_exit();
        }
        true
    }

    // libtest captures what tests print and only the process knows when the last test is done,
    // so the one skip line is written by an exit handler: after the summary, visible without
    // `--nocapture`, with the final count.
    unsafe extern "C" {
        safe fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    }

    fn report_at_exit() {
        extern "C" fn report() {
            eprintln!(
                "st2 reference data not found at {} (set {DIR_VAR}): {} tests that read it skipped",
                reference_dir().display(),
                SKIPPED.load(Ordering::SeqCst)
            );
        }
        atexit(report);
    }
}
