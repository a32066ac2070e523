//! Shared test helpers: the st2 reference data (recorded answers, st2's sources) and the test
//! certificates.

pub mod reference;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

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
/// certificate for 127.0.0.1 it signed, a client CA and client, and a rogue pair. The adapter's tests
/// read them here too: this crate stands alone, the adapter depends on it.
pub fn tls_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/support/tls")
        .join(name)
}

/// A recorded `.http` answer: status, headers (lower-cased names) and body.
pub struct Capture {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Capture {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("capture body is JSON")
    }
}

/// Reads `captures/<name>`.
pub fn capture(name: &str) -> Capture {
    let path = reference_dir().join("captures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{name}: no status line"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Capture {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Reads a file under the reference folder as text.
pub fn reference_text(rel: &str) -> String {
    let path = reference_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
