//! Keeping secret values out of logs, spans, metrics, events and error messages.
//!
//! Three sources make a value secret: its key looks like a credential (Portarium's logger
//! rule, applied everywhere), st2's action schema marks the parameter `secret: true`, or the
//! operator listed the key in `governance.redact_keys`.

use std::collections::BTreeSet;

use serde_json::Value;

use st2_client::REDACTED;
use st2_client::models::{ActionParameters, JsonObject};

/// How st2 shows a secret parameter's value to a caller that may not see it.
pub const MASKED: &str = "********";

/// Fragments of key names Portarium's structured logger redacts, matched case-insensitively:
/// `/(authorization|token|secret|password|api[-_]?key|credential)/i`.
const CREDENTIAL_FRAGMENTS: [&str; 8] = [
    "authorization",
    "token",
    "secret",
    "password",
    "apikey",
    "api_key",
    "api-key",
    "credential",
];

/// Whether `key` looks like it holds a credential, by Portarium's rule.
pub fn is_credential_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    CREDENTIAL_FRAGMENTS.iter().any(|f| key.contains(f))
}

/// Which keys are secret beyond the credential-looking ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionPolicy {
    keys: BTreeSet<String>,
}

impl RedactionPolicy {
    /// A policy redacting credential-looking keys plus `extra` (compared case-insensitively).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(extra: I) -> Self {
        Self {
            keys: extra
                .into_iter()
                .map(|k| k.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// This policy plus every parameter st2's schema for an action marks `secret: true`.
    pub fn with_secret_parameters(mut self, schema: &ActionParameters) -> Self {
        self.keys.extend(
            schema
                .parameters
                .iter()
                .filter(|(_, p)| p.secret)
                .map(|(name, _)| name.to_ascii_lowercase()),
        );
        self
    }

    /// Whether the value under `key` must not be shown.
    pub fn is_secret(&self, key: &str) -> bool {
        is_credential_key(key) || self.keys.contains(&key.to_ascii_lowercase())
    }

    /// The string values in `payload` this policy holds secret (nested objects included), for
    /// scrubbing free text such as st2's stderr that may echo them.
    pub fn secret_values(&self, payload: &JsonObject) -> Vec<String> {
        let mut found = Vec::new();
        collect(self, payload, &mut found);
        // Longest first, so a value containing another is replaced whole.
        found.sort_by_key(|v| std::cmp::Reverse(v.len()));
        found.dedup();
        found
    }
}

fn collect(policy: &RedactionPolicy, object: &JsonObject, found: &mut Vec<String>) {
    for (k, v) in object {
        match v {
            Value::Object(inner) => collect(policy, inner, found),
            _ if policy.is_secret(k) => leaves(v, found),
            _ => {}
        }
    }
}

fn leaves(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(s) if !s.is_empty() => found.push(s.clone()),
        Value::String(_) => {}
        Value::Array(items) => items.iter().for_each(|i| leaves(i, found)),
        Value::Object(map) => map.values().for_each(|i| leaves(i, found)),
        other => found.push(other.to_string()),
    }
}

/// `value` with the value of every secret key, at any depth, replaced by `[REDACTED]`.
/// Use it on anything that leaves the process: log fields, span attributes, events.
pub fn redact_value(value: &Value, policy: &RedactionPolicy) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let shown = if policy.is_secret(k) && !v.is_null() {
                        Value::String(REDACTED.into())
                    } else {
                        redact_value(v, policy)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redact_value(v, policy)).collect())
        }
        other => other.clone(),
    }
}

/// Secret values shorter than this are masked only where they are a whole field (a JSON
/// string equal to the value), never inside free text: a one-letter secret `x` must not turn
/// `examples` into `e[REDACTED]amples`, nor a PIN `12` every `12` of a log.
pub const MIN_SCRUB_LEN: usize = 4;

/// `text` with each of `secrets` at least [`MIN_SCRUB_LEN`] long replaced by `[REDACTED]`
/// where it stands on token boundaries (not inside a longer word); for messages built from
/// st2's own words, which may quote a parameter.
pub fn scrub_text(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| s.len() >= MIN_SCRUB_LEN)
        .fold(text.to_string(), |acc, s| replace_tokens(&acc, s))
}

/// `value` with every string that equals one of `secrets` replaced by `[REDACTED]`, and the
/// rest scrubbed as [`scrub_text`] does; for results and answers that leave the process.
pub fn scrub_value(value: &Value, secrets: &[String]) -> Value {
    if secrets.is_empty() {
        return value.clone();
    }
    match value {
        Value::String(s) => Value::String(scrub_field(s, secrets)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| scrub_value(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), scrub_value(v, secrets)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One field's text: `[REDACTED]` if it is one of `secrets` (whatever its length, surrounding
/// whitespace aside, as a line of output carries its newline), else scrubbed as
/// [`scrub_text`] does.
pub fn scrub_field(text: &str, secrets: &[String]) -> String {
    let bare = text.trim();
    if !bare.is_empty() && secrets.iter().any(|s| s == bare) {
        return text.replace(bare, REDACTED);
    }
    scrub_text(text, secrets)
}

/// Whether `c` continues a word: a match next to one is part of a longer token.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with `secret` replaced where neither neighbour extends it into a longer word (a
/// secret that starts or ends with punctuation is bounded on that side by itself).
fn replace_tokens(text: &str, secret: &str) -> String {
    let (Some(first), Some(last)) = (secret.chars().next(), secret.chars().next_back()) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut from = 0;
    while let Some(at) = text[from..].find(secret).map(|i| i + from) {
        let end = at + secret.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        let bounded = (!is_word(first) || before.is_none_or(|c| !is_word(c)))
            && (!is_word(last) || after.is_none_or(|c| !is_word(c)));
        if bounded {
            out.push_str(&text[rest..at]);
            out.push_str(REDACTED);
            rest = end;
            from = end;
        } else {
            from = at + first.len_utf8();
        }
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credential_looking_keys_match_portariums_logger_rule() {
        for key in [
            "Authorization",
            "x_auth_token",
            "client_secret",
            "PASSWORD",
            "apiKey",
            "api_key",
            "Api-Key",
            "db_credentials",
        ] {
            assert!(is_credential_key(key), "{key}");
        }
        for key in ["message", "user", "key", "api", "cmd", "passage"] {
            assert!(!is_credential_key(key), "{key}");
        }
    }

    #[test]
    fn redact_value_replaces_secret_keys_at_any_depth_and_keeps_the_rest() {
        let schema: ActionParameters = serde_json::from_value(json!({"parameters": {
            "pin": {"type": "string", "secret": true},
            "user": {"type": "string"}
        }}))
        .unwrap();
        let policy = RedactionPolicy::new(["Ssn"]).with_secret_parameters(&schema);
        let got = redact_value(
            &json!({"user": "ann", "pin": "1234", "nested": [{"ssn": "078-05-1120", "password": null,
                    "headers": {"Authorization": "Bearer abc"}}]}),
            &policy,
        );
        assert_eq!(
            got,
            json!({"user": "ann", "pin": REDACTED, "nested": [{"ssn": REDACTED, "password": null,
                    "headers": {"Authorization": REDACTED}}]})
        );
    }

    #[test]
    fn secret_values_are_found_and_scrubbed_from_free_text() {
        let policy = RedactionPolicy::new(["pin"]);
        let payload = json!({"pin": 4321, "user": "ann", "auth": {"token": ["t-1", "t-12"]}});
        let secrets = policy.secret_values(payload.as_object().unwrap());
        assert_eq!(secrets, ["t-12", "4321", "t-1"]);
        assert_eq!(
            scrub_text("login ann with t-12 and 4321 failed", &secrets),
            "login ann with [REDACTED] and [REDACTED] failed"
        );
    }

    #[test]
    fn short_secrets_and_secrets_inside_words_leave_ordinary_text_alone() {
        let secrets: Vec<String> = ["x", "12", "hunter2", "-tok-"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            scrub_text(
                "examples exit 12; hunter2 hunter22 xhunter2 (hunter2) a-tok-b",
                &secrets
            ),
            "examples exit 12; [REDACTED] hunter22 xhunter2 ([REDACTED]) a[REDACTED]b"
        );
        // A short value is masked where it is a whole field, and only there.
        assert_eq!(
            scrub_value(
                &json!({"pin": "12", "out": "12 done", "list": ["x", "examples"]}),
                &secrets
            ),
            json!({"pin": REDACTED, "out": "12 done", "list": [REDACTED, "examples"]})
        );
    }
}
