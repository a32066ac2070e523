//! Shared test helpers: the st2 reference data (recorded answers, st2's sources) and the test
//! certificates.

#[path = "../../../../../tests/it/support/reference.rs"]
mod reference;
#[path = "../../../../../tests/it/support/tls_server.rs"]
pub mod tls_server;

use serde_json::Value;

pub use reference::{missing, reference_dir};

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
