//! The length and alphabet every id from outside must keep to, checked before the id is used
//! in a key, a context, a log line or an st2 call. One [`IdRule`] per kind of id; each check
//! answers a [`FieldError`] naming the field and saying what to send instead.

use st2_basics::FieldError;

/// How an id may look: 1 to `max_len` bytes, each one `allowed`.
#[derive(Debug, Clone, Copy)]
pub struct IdRule {
    /// Longest id, in bytes.
    pub max_len: usize,
    /// Which bytes may appear.
    allowed: fn(u8) -> bool,
    /// The alphabet in words, for error messages and docs.
    alphabet: &'static str,
}

/// Tenant (workspace) ids, checked at config load: 1–64 of `A-Z a-z 0-9 . _ - :`.
pub const TENANT_ID: IdRule = IdRule {
    max_len: 64,
    allowed: |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'),
    alphabet: "letters, digits, '.', '_', '-' and ':'",
};

/// Ids a dispatch carries (runId, actionId, correlationId, invocationId, machineId…): 1–256
/// printable ASCII characters without spaces (0x21–0x7E), which holds Portarium's UUIDs,
/// slugs and composed keys such as `ExecuteApprovedAgentAction:<tenant>:<ws>:<id>:<flowRef>`.
pub const DISPATCH_ID: IdRule = IdRule {
    max_len: 256,
    allowed: |b| b.is_ascii_graphic(),
    alphabet: "printable ASCII without spaces or control characters",
};

impl IdRule {
    /// Whether `value` keeps to this rule.
    pub fn admits(&self, value: &str) -> bool {
        !value.is_empty() && value.len() <= self.max_len && value.bytes().all(self.allowed)
    }

    /// `Ok` if `value` keeps to this rule, else what is wrong with `field`.
    pub fn check(&self, field: &str, value: &str) -> Result<(), FieldError> {
        if self.admits(value) {
            return Ok(());
        }
        Err(FieldError::new(
            field,
            format!(
                "must be 1 to {} characters of {} (got {} bytes{})",
                self.max_len,
                self.alphabet,
                value.len(),
                if value.bytes().all(self.allowed) {
                    ""
                } else {
                    " with other characters"
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_hold_portarium_ids_and_refuse_the_rest() {
        for ok in ["acme", "acme:prod", "ws-1.a_b", &"t".repeat(64)] {
            assert!(TENANT_ID.admits(ok), "{ok}");
        }
        for bad in ["", "a b", "acme/prod", "é", &"t".repeat(65)] {
            assert!(!TENANT_ID.admits(bad), "{bad}");
        }
        for ok in [
            "ExecuteApprovedAgentAction:t1:ws-1:ap-9:core.echo",
            "550e8400-e29b-41d4-a716-446655440000",
            &"r".repeat(256),
        ] {
            assert!(DISPATCH_ID.admits(ok), "{ok}");
        }
        for bad in [
            "",
            "r 1",
            "r\n1",
            "r\u{0}1",
            "r\u{7f}",
            "ré",
            &"r".repeat(257),
        ] {
            assert!(!DISPATCH_ID.admits(bad), "{bad:?}");
        }
        let e = DISPATCH_ID.check("runId", "a\nb").unwrap_err();
        assert_eq!(e.field, "runId");
        assert!(e.reason.contains("other characters"), "{e}");
    }
}
