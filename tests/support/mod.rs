//! Shared test helpers: a NATS server, and reading st2's recorded responses.
#![allow(dead_code)] // each test binary uses its own subset

pub mod nats;

use std::path::PathBuf;

use serde_json::Value;

/// `shared/reference/st2`, beside the project.
pub fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/st2")
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
    let path = reference().join("captures").join(name);
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
    std::fs::read_to_string(reference().join(rel)).unwrap()
}
