//! What makes the audit chain hold against whoever can write its file: an HMAC-SHA256 on
//! every record under a key kept elsewhere, and anchors — the head's sequence and hash,
//! written at an interval somewhere else (a log line, and an anchor file) — that a cut tail
//! or a rewritten log no longer reaches.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest anchor file read (some 80 000 anchors: 55 days at one a minute); rotate it before.
const ANCHOR_FILE_MAX: u64 = 16 << 20;

/// HMAC-SHA256 (RFC 2104) of `message` under `key`, in lower-case hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equality of two MACs whose time does not depend on where they differ.
pub fn same_mac(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The head of the chain at one moment, as written elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Anchor {
    /// Records in the log then (the head's `dispatch.sequence`).
    pub sequence: u64,
    /// The head record's `hashSha256`.
    pub head_hash: String,
    /// When it was taken (RFC 3339).
    #[serde(default)]
    pub at: String,
    /// HMAC-SHA256 of `"<sequence>:<headHash>"` under the audit key, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_sha256: Option<String>,
}

impl Anchor {
    /// What the anchor's HMAC covers.
    fn message(&self) -> String {
        format!("{}:{}", self.sequence, self.head_hash)
    }

    /// This anchor with its HMAC under `key`.
    pub fn signed(mut self, key: Option<&[u8]>) -> Self {
        self.hmac_sha256 = key.map(|k| hmac_sha256_hex(k, self.message().as_bytes()));
        self
    }

    /// Whether the anchor's HMAC holds under `key`.
    pub fn holds_under(&self, key: &[u8]) -> bool {
        let want = hmac_sha256_hex(key, self.message().as_bytes());
        self.hmac_sha256
            .as_deref()
            .is_some_and(|m| same_mac(m, &want))
    }

    /// `SEQ:HASH`, as a log line gives it, back as an anchor.
    pub fn parse(text: &str) -> Option<Self> {
        let (sequence, hash) = text.trim().split_once(':')?;
        let sequence = sequence.parse().ok()?;
        let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| Self {
            sequence,
            head_hash: hash.to_ascii_lowercase(),
            at: String::new(),
            hmac_sha256: None,
        })
    }

    /// The last anchor of an anchor file (one JSON anchor per line); lines that are not an
    /// anchor (a torn last write) are skipped.
    pub fn last_in(path: &Path) -> std::io::Result<Option<Self>> {
        let text = st2_basics::files::read_text(path, ANCHOR_FILE_MAX)?;
        Ok(text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Self>(l).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test cases 1 and 6 (a key longer than the block).
        assert_eq!(
            hmac_sha256_hex(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hmac_sha256_hex(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn anchors_are_signed_and_read_back() {
        let hash = "ab".repeat(32);
        let a = Anchor::parse(&format!("7:{hash}"))
            .unwrap()
            .signed(Some(b"k"));
        assert!(a.holds_under(b"k"));
        assert!(!a.holds_under(b"other"));
        assert_eq!(Anchor::parse("7:nothex"), None);
    }
}
