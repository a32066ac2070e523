//! Reading the real st2 responses recorded in `captures/` of the reference folder.
//!
//! `*.http` files hold a status line, CRLF headers, a blank line and the body; `*.sse` files hold
//! raw stream bytes, sometimes preceded by the same HTTP head; `*.json` / `*.txt` / `*.raw` are bare
//! bodies. The request behind each file is implied by its name (see `cases.rs`).

use std::path::PathBuf;

use serde_json::Value;

use crate::reference::reference_dir;

/// Where the recorded st2 responses live.
pub fn captures_dir() -> PathBuf {
    reference_dir().join("captures")
}

/// Why a capture file could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file is missing or unreadable.
    #[error(
        "cannot read capture {file}: {source}; check that captures/ is in the folder ST2_REFERENCE_DIR names"
    )]
    Read {
        /// File name.
        file: String,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The HTTP head is malformed.
    #[error("capture {file} has a malformed HTTP head: {reason}")]
    Head {
        /// File name.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The body is not the JSON its Content-Type promises.
    #[error("capture {file} body is not valid JSON: {source}")]
    Json {
        /// File name.
        file: String,
        /// Parser error.
        source: serde_json::Error,
    },
}

/// A recorded response: status, headers in their recorded order, raw body bytes.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// File name inside the captures folder.
    pub file: String,
    /// Status code, when the file carries an HTTP head.
    pub status: Option<u16>,
    /// Headers as recorded (name, value); empty for bare bodies.
    pub headers: Vec<(String, String)>,
    /// The body bytes exactly as recorded.
    pub body: Vec<u8>,
}

impl Recorded {
    /// Read and split one capture file.
    pub fn load(file: &str) -> Result<Recorded, CaptureError> {
        let bytes =
            std::fs::read(captures_dir().join(file)).map_err(|source| CaptureError::Read {
                file: file.to_string(),
                source,
            })?;
        Recorded::parse(file, &bytes)
    }

    /// Split bytes into head and body; files without `HTTP/1.1 ` at the start are bare bodies.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Recorded, CaptureError> {
        let head_err = |reason: String| CaptureError::Head {
            file: file.to_string(),
            reason,
        };
        if !bytes.starts_with(b"HTTP/1.1 ") {
            return Ok(Recorded {
                file: file.to_string(),
                status: None,
                headers: Vec::new(),
                body: bytes.to_vec(),
            });
        }
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| head_err("no blank CRLF line after the headers".into()))?;
        let head = std::str::from_utf8(&bytes[..split])
            .map_err(|e| head_err(format!("head is not UTF-8: {e}")))?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let (_, code, reason) = (parts.next(), parts.next(), parts.next());
        let status = code
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| head_err(format!("bad status line {status_line:?}")))?;
        if reason.is_none_or(str::is_empty) {
            return Err(head_err(format!(
                "status line {status_line:?} has no reason phrase"
            )));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .ok_or_else(|| head_err(format!("header line {line:?} has no `: `")))?;
            headers.push((name.to_string(), value.to_string()));
        }
        Ok(Recorded {
            file: file.to_string(),
            status: Some(status),
            headers,
            body: bytes[split + 4..].to_vec(),
        })
    }

    /// The value of a header (case-insensitive name), if recorded.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is JSON: by Content-Type when there is a head, by extension otherwise.
    pub fn is_json(&self) -> bool {
        match self.status {
            Some(_) => {
                self.header("Content-Type")
                    .is_some_and(|ct| ct.starts_with("application/json"))
                    && !self.body.is_empty()
            }
            None => self.file.ends_with(".json"),
        }
    }

    /// The body decoded as JSON.
    pub fn json(&self) -> Result<Value, CaptureError> {
        serde_json::from_slice(&self.body).map_err(|source| CaptureError::Json {
            file: self.file.clone(),
            source,
        })
    }
}

/// Every file name in the captures folder, sorted.
pub fn all_files() -> Vec<String> {
    let dir = captures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
