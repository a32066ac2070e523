//! Where the st2 reference data (st2's OpenAPI spec and the recorded captures) lives, and what a
//! contract test does when it is absent: a fresh clone has no `../shared` beside it, so the tests
//! that need the data skip, and the binary says once how many did. `ST2_REFERENCE_REQUIRED=1`
//! (set by CI) turns absence into a failure instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Names the folder holding st2's sources and captures.
pub const DIR_VAR: &str = "ST2_REFERENCE_DIR";
/// Set to `1` to fail, not skip, when the folder is absent.
pub const REQUIRED_VAR: &str = "ST2_REFERENCE_REQUIRED";

/// The configured reference folder: `$ST2_REFERENCE_DIR` (relative to the workspace root), else
/// `../shared/reference/st2` beside the workspace root. It may not exist.
pub fn reference_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("the crate sits at crates/st2-emulator in the workspace");
        match std::env::var_os(DIR_VAR) {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.parent().unwrap_or(root).join("shared/reference/st2"),
        }
    })
}

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

// libtest captures what tests print and only the process knows when the last test is done, so
// the one skip line is written by an exit handler: after the summary, visible without
// `--nocapture`, with the final count.
unsafe extern "C" {
    safe fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

fn report_at_exit() {
    extern "C" fn report() {
        eprintln!(
            "st2 reference data not found at {} (set {DIR_VAR}): {} contract tests skipped",
            reference_dir().display(),
            SKIPPED.load(Ordering::SeqCst)
        );
    }
    atexit(report);
}
