//! Shared test helpers: a NATS server, the st2 reference data, and the test certificates.

pub mod nats;
pub mod reference;
pub mod stack;

use std::sync::atomic::{AtomicUsize, Ordering};

use reference::DIR_VAR;
pub use reference::reference_dir;

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

// libtest captures what tests print and only the process knows when the last test is done, so
// the one skip line is written by an exit handler: after the summary, visible without
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

/// Test-only certificates (made for these tests with openssl): a private CA, a server
/// certificate for 127.0.0.1 it signed, a client CA and client, and a rogue pair. They live with
/// the st2 client's tests, which stand alone; the adapter may read what its dependency holds.
pub fn tls_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/st2-client/tests/it/support/tls")
        .join(name)
}

/// The emulator's built-in catalogue with the `packs` and `actions` of `extra` (a catalogue
/// fragment in YAML) added.
pub fn catalogue_with(extra: &str) -> st2_emulator::Catalogue {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/st2-emulator/src/catalogue.yaml");
    let mut catalogue: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let extra: serde_norway::Value = serde_norway::from_str(extra).unwrap();
    for list in ["packs", "actions"] {
        if let Some(added) = extra[list].as_sequence() {
            let into = catalogue[list].as_sequence_mut().unwrap();
            into.extend(added.iter().cloned());
        }
    }
    st2_emulator::Catalogue::from_yaml(&serde_norway::to_string(&catalogue).unwrap()).unwrap()
}
