//! RFC 8785 (JCS) canonical JSON, the form Portarium hashes evidence entries in.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A value JCS cannot represent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("JSON number {0} has no canonical form (RFC 8785 allows finite numbers only)")]
pub struct NotCanonical(pub String);

/// The RFC 8785 canonical text of `value`: object members sorted by the UTF-16 code units of
/// their names, no insignificant whitespace, numbers as ECMAScript prints them.
pub fn canonical_json(value: &Value) -> Result<String, NotCanonical> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out)
}

/// SHA-256, lower-case hex, of the canonical text of `value`.
pub fn sha256_hex(value: &Value) -> Result<String, NotCanonical> {
    let digest = Sha256::digest(canonical_json(value)?.as_bytes());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

fn write(value: &Value, out: &mut String) -> Result<(), NotCanonical> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let f = n
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| NotCanonical(n.to_string()))?;
            out.push_str(&es_number(f));
        }
        // serde_json escapes exactly what JSON.stringify does: `"`, `\`, the short forms
        // \b \f \n \r \t and other controls as lower-case \u00xx; all else stays literal.
        Value::String(s) => out.push_str(&serde_json::to_string(s).expect("strings serialise")),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(Vec<u16>, &String, &Value)> = map
                .iter()
                .map(|(k, v)| (k.encode_utf16().collect(), k, v))
                .collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (_, k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).expect("strings serialise"));
                out.push(':');
                write(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// ECMAScript `Number.prototype.toString` for a finite double (ECMA-262 Number::toString).
fn es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".into(); // also -0
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // Rust's `{:e}` gives the shortest digits that round-trip, as ECMAScript requires.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let k = digits.len() as i32;
    let n = exp + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let e_sign = if e < 0 { '-' } else { '+' };
        let rest = if k > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        format!("{}{rest}e{e_sign}{}", &digits[..1], e.abs())
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_as_ecmascript_does() {
        // Values from RFC 8785 appendix B and ECMAScript's Number::toString rules.
        let cases: [(f64, &str); 12] = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (123.456, "123.456"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (9007199254740992.0, "9007199254740992"),
        ];
        for (f, want) in cases {
            assert_eq!(es_number(f), want, "{f:e}");
        }
        assert_eq!(es_number(333333333.3333333), "333333333.3333333");
        assert_eq!(es_number(1e23), "1e+23");
    }

    #[test]
    fn members_sort_by_utf16_code_units_and_strings_escape_like_json_stringify() {
        // U+1F600 (surrogates D83D..) sorts before U+FB33 in UTF-16 but after it in UTF-8.
        let v = json!({"\u{fb33}": 1, "\u{1f600}": 2, "b": [true, null], "a": "\u{7}\n\u{e9}"});
        assert_eq!(
            canonical_json(&v).unwrap(),
            "{\"a\":\"\\u0007\\n\u{e9}\",\"b\":[true,null],\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn hash_is_over_the_canonical_form_not_the_input_order() {
        let a = sha256_hex(&json!({"x": 1, "y": {"b": 2, "a": 1}})).unwrap();
        let b = sha256_hex(&json!({"y": {"a": 1, "b": 2}, "x": 1.0})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(
            sha256_hex(&json!({})).unwrap(),
            // SHA-256 of the two bytes `{}`.
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
