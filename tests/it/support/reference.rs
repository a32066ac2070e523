//! Where st2's reference data (its sources, OpenAPI spec and recorded answers) is: one definition
//! for the tests and the examples, since a fresh clone has no `../shared` beside it.

use std::path::{Path, PathBuf};

/// Names the reference folder; a relative path is taken from the workspace root.
pub const DIR_VAR: &str = "ST2_REFERENCE_DIR";

/// The configured reference folder: `$ST2_REFERENCE_DIR`, else `../shared/reference/st2` beside
/// the workspace root. It may not exist.
pub fn reference_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os(DIR_VAR) {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.parent().unwrap_or(root).join("shared/reference/st2"),
    }
}
