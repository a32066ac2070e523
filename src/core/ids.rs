//! The limits every id that comes from outside is held to: a most length in bytes and a set of
//! characters, checked before the id is stored, compared or sent to st2 (`docs/security.md`,
//! "Identifier limits"). One [`IdField`] per kind of id; each check names the field and what
//! to send instead, as a [`FieldError`].

use st2_basics::FieldError;

/// Which characters an id may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Any Unicode text without control characters (no newline, NUL, tab or DEL).
    Text,
    /// Printable ASCII, space included (`0x20`–`0x7E`).
    PrintableAscii,
    /// Printable ASCII without space (`0x21`–`0x7E`).
    VisibleAscii,
    /// ASCII letters and digits, plus the punctuation listed.
    Token(&'static str),
}

impl Charset {
    fn allows(self, c: char) -> bool {
        match self {
            Self::Text => !c.is_control(),
            Self::PrintableAscii => (' '..='~').contains(&c),
            Self::VisibleAscii => ('!'..='~').contains(&c),
            Self::Token(extra) => c.is_ascii_alphanumeric() || extra.contains(c),
        }
    }

    /// The set in words, for error messages and docs.
    pub fn describe(self) -> String {
        match self {
            Self::Text => "text without control characters (no newline, tab or NUL)".into(),
            Self::PrintableAscii => "printable ASCII (0x20-0x7E)".into(),
            Self::VisibleAscii => "printable ASCII without spaces (0x21-0x7E)".into(),
            Self::Token("") => "ASCII letters and digits".into(),
            Self::Token(extra) => format!("ASCII letters, digits and {extra:?}"),
        }
    }
}

/// One kind of id: its name as the caller writes it, its longest length and its characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdField {
    /// The field's name as the caller sends it (`id`, `idempotencyKey`, `traceparent`).
    pub name: &'static str,
    /// Longest accepted value, in bytes (UTF-8).
    pub max_bytes: usize,
    /// Characters accepted.
    pub charset: Charset,
}

impl IdField {
    /// A field named `name`, at most `max_bytes` long, of `charset`.
    pub const fn new(name: &'static str, max_bytes: usize, charset: Charset) -> Self {
        Self {
            name,
            max_bytes,
            charset,
        }
    }

    /// Ok when `value` is non-empty, within the length and of the charset; else what is
    /// wrong with it (quoting no more than its length and the first offending character, so a
    /// hostile value is never echoed whole).
    pub fn check(&self, value: &str) -> Result<(), FieldError> {
        self.check_as(self.name, value)
    }

    /// Like [`IdField::check`], naming the field `field`: for one rule shared by several
    /// fields (runId, actionId…) or a field at a dotted config path.
    pub fn check_as(&self, field: &str, value: &str) -> Result<(), FieldError> {
        let refuse = |what: String| {
            Err(FieldError::new(
                field,
                format!(
                    "{what}; send 1 to {} bytes of {}",
                    self.max_bytes,
                    self.charset.describe()
                ),
            ))
        };
        if value.is_empty() {
            return refuse("is empty".into());
        }
        if value.len() > self.max_bytes {
            return refuse(format!("is {} bytes long", value.len()));
        }
        if let Some((at, c)) = value.char_indices().find(|(_, c)| !self.charset.allows(*c)) {
            return refuse(format!("has {c:?} at byte {at}"));
        }
        Ok(())
    }

    /// Whether `value` keeps to this field's length and charset.
    pub fn admits(&self, value: &str) -> bool {
        self.check(value).is_ok()
    }
}

/// Tenant (workspace) ids, checked at config load: 1–64 of `A-Z a-z 0-9 . _ - :`.
pub const TENANT_ID: IdField = IdField::new("id", 64, Charset::Token("._-:"));
/// Ids a dispatch carries (runId, actionId, correlationId, invocationId, machineId…): 1–256
/// printable ASCII characters without spaces, which holds Portarium's UUIDs, slugs and
/// composed keys such as `ExecuteApprovedAgentAction:<tenant>:<ws>:<id>:<flowRef>`.
pub const DISPATCH_ID: IdField = IdField::new("id", 256, Charset::VisibleAscii);
/// A CloudEvent's `id` (the inbound dedupe key, and part of st2's trace tag).
pub const EVENT_ID: IdField = IdField::new("id", 256, Charset::Text);
/// A dispatch's `idempotencyKey` (or `Idempotency-Key` header).
pub const IDEMPOTENCY_KEY: IdField = IdField::new("idempotencyKey", 512, Charset::Text);
/// W3C `traceparent`: 55 characters in version 00; later versions may append fields.
pub const TRACEPARENT: IdField = IdField::new("traceparent", 256, Charset::VisibleAscii);
/// W3C `tracestate`: up to 32 list members; receivers must pass on at least 512 characters.
pub const TRACESTATE: IdField = IdField::new("tracestate", 512, Charset::PrintableAscii);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_empty_long_and_foreign_characters_naming_the_field() {
        let field = IdField::new("key", 8, Charset::Token("-_"));
        assert!(field.check("ab-c_9").is_ok());
        for (value, says) in [
            ("", "is empty"),
            ("123456789", "is 9 bytes long"),
            ("a b", "' ' at byte 1"),
            ("a:b", "':' at byte 1"),
        ] {
            let err = field.check(value).expect_err(value);
            assert_eq!(err.field, "key");
            assert!(err.reason.contains(says), "{value:?}: {}", err.reason);
            assert!(err.reason.contains("1 to 8 bytes"), "{}", err.reason);
        }
    }

    #[test]
    fn each_charset_draws_its_line() {
        let text = IdField::new("t", 64, Charset::Text);
        assert!(text.check("évènement 42").is_ok());
        for bad in ["a\nb", "a\0b", "a\tb", "a\u{7f}b"] {
            assert!(text.check(bad).is_err(), "{bad:?}");
        }
        let printable = IdField::new("p", 64, Charset::PrintableAscii);
        assert!(printable.check("k=v, k2=v2").is_ok());
        assert!(printable.check("é").is_err());
        let visible = IdField::new("v", 64, Charset::VisibleAscii);
        assert!(visible.check("00-ab").is_ok());
        assert!(visible.check("00 ab").is_err());
    }

    #[test]
    fn length_counts_bytes_not_characters() {
        let field = IdField::new("t", 4, Charset::Text);
        assert!(field.check("éé").is_ok());
        assert!(field.check("ééé").is_err());
    }

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
        let e = DISPATCH_ID.check_as("runId", "a\nb").unwrap_err();
        assert_eq!(e.field, "runId");
        assert!(e.reason.contains("'\\n' at byte 1"), "{e}");
    }
}
