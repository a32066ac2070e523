//! Small helpers shared by the emulator: st2-style ids, timestamps, Python-style value
//! rendering (st2 error messages are built with Python's `%r`/`%s`) and SHA-512.

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

static OBJECT_ID_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The 5 random bytes of this process's ObjectIds: like a MongoDB driver, one value per
/// process, so ids made by one st2api sort in the order they were made.
static OBJECT_ID_PROCESS: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| fastrand::u64(..) & 0xff_ffff_ffff);

/// A MongoDB-style ObjectId (24 hex digits: seconds, 5 per-process random bytes, counter), as
/// st2 uses for every id.
pub fn object_id() -> String {
    let secs = OffsetDateTime::now_utc().unix_timestamp() as u32;
    let counter = OBJECT_ID_COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    let random = *OBJECT_ID_PROCESS;
    format!("{secs:08x}{random:010x}{counter:06x}")
}

/// True when `s` has the shape of an ObjectId (st2 answers 404 for anything else).
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A random version-4 UUID, hyphenated (st2's X-Request-Id).
pub fn uuid4() -> String {
    let mut b = [0u8; 16];
    for byte in &mut b {
        *byte = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random 32-hex-digit token value (st2 uses `uuid4().hex`).
pub fn token_value() -> String {
    uuid4().replace('-', "")
}

const ISO: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The current time at the precision MongoDB stores (milliseconds), so stored and shown times
/// agree and one time in ten ends in a 0, as st2's do (`…15.800000Z`).
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t)
}

/// ISO-8601 UTC with microseconds and a `Z`, as st2's `isotime.format(offset=False)`.
pub fn iso(t: OffsetDateTime) -> String {
    t.format(ISO).unwrap_or_default()
}

/// Parse the timestamp forms st2 accepts in query filters (`T` or space, 3-6 fraction digits,
/// `Z`/`+00`/`+0000`/`+00:00`).
pub fn parse_iso(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let (body, _) = ["Z", "+00:00", "+0000", "+00"]
        .iter()
        .find_map(|suffix| s.strip_suffix(suffix).map(|b| (b, *suffix)))?;
    let body = body.replacen(' ', "T", 1);
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) if (3..=6).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            (m.to_string(), f.to_string())
        }
        Some(_) => return None,
        None => (body.clone(), String::new()),
    };
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let dt = time::PrimitiveDateTime::parse(&main, fmt).ok()?;
    let micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    Some(dt.assume_utc() + time::Duration::microseconds(micros))
}

/// HTTP-date for cookie `expires` in the form st2 (webob) writes: `Thu, 26-Nov-2026 03:14:15 GMT`.
pub fn cookie_date(t: OffsetDateTime) -> String {
    let fmt = format_description!(
        "[weekday repr:short], [day]-[month repr:short]-[year] [hour]:[minute]:[second] GMT"
    );
    t.format(fmt).unwrap_or_default()
}

/// Python truthiness of a JSON value (st2 drops falsy attributes with `{k: v for .. if v}`).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python `repr()` of a JSON value, used where st2 messages embed `%r` or `str(list)`.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str_repr(s),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_str_repr(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python `str()` of a JSON value (strings bare, everything else as `repr`).
pub fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

/// Python `repr()` of a string: single quotes unless the text holds a single quote only.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python type name of a JSON value, for st2's `Got "int"`-style messages.
pub fn py_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// JSON type name as st2's `get_json_type_for_python_value` reports it.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Merge `over` into `base` one level deep per key (st2's `deep_update` of parameter schemas).
pub fn merge_param_schemas(
    base: &Map<String, Value>,
    over: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = base.clone();
    for (name, schema) in over {
        match (out.get_mut(name), schema) {
            (Some(Value::Object(existing)), Value::Object(add)) => {
                for (k, v) in add {
                    existing.insert(k.clone(), v.clone());
                }
            }
            _ => {
                out.insert(name.clone(), schema.clone());
            }
        }
    }
    out
}

/// Look up a dotted path (`a.b.c`) in a JSON value.
pub fn lookup_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Object(o) => o.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// SHA-512 hex digest; st2 names unknown API keys by `sha512("saltnpepper" + key)`.
pub fn sha512_hex(data: &[u8]) -> String {
    const K: [u64; 80] = [
        0x428a2f98d728ae22,
        0x7137449123ef65cd,
        0xb5c0fbcfec4d3b2f,
        0xe9b5dba58189dbbc,
        0x3956c25bf348b538,
        0x59f111f1b605d019,
        0x923f82a4af194f9b,
        0xab1c5ed5da6d8118,
        0xd807aa98a3030242,
        0x12835b0145706fbe,
        0x243185be4ee4b28c,
        0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f,
        0x80deb1fe3b1696b1,
        0x9bdc06a725c71235,
        0xc19bf174cf692694,
        0xe49b69c19ef14ad2,
        0xefbe4786384f25e3,
        0x0fc19dc68b8cd5b5,
        0x240ca1cc77ac9c65,
        0x2de92c6f592b0275,
        0x4a7484aa6ea6e483,
        0x5cb0a9dcbd41fbd4,
        0x76f988da831153b5,
        0x983e5152ee66dfab,
        0xa831c66d2db43210,
        0xb00327c898fb213f,
        0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2,
        0xd5a79147930aa725,
        0x06ca6351e003826f,
        0x142929670a0e6e70,
        0x27b70a8546d22ffc,
        0x2e1b21385c26c926,
        0x4d2c6dfc5ac42aed,
        0x53380d139d95b3df,
        0x650a73548baf63de,
        0x766a0abb3c77b2a8,
        0x81c2c92e47edaee6,
        0x92722c851482353b,
        0xa2bfe8a14cf10364,
        0xa81a664bbc423001,
        0xc24b8b70d0f89791,
        0xc76c51a30654be30,
        0xd192e819d6ef5218,
        0xd69906245565a910,
        0xf40e35855771202a,
        0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8,
        0x1e376c085141ab53,
        0x2748774cdf8eeb99,
        0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63,
        0x4ed8aa4ae3418acb,
        0x5b9cca4f7763e373,
        0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc,
        0x78a5636f43172f60,
        0x84c87814a1f0ab72,
        0x8cc702081a6439ec,
        0x90befffa23631e28,
        0xa4506cebde82bde9,
        0xbef9a3f7b2c67915,
        0xc67178f2e372532b,
        0xca273eceea26619c,
        0xd186b8c721c0c207,
        0xeada7dd6cde0eb1e,
        0xf57d4f7fee6ed178,
        0x06f067aa72176fba,
        0x0a637dc5a2c898a6,
        0x113f9804bef90dae,
        0x1b710b35131c471b,
        0x28db77f523047d84,
        0x32caab7b40c72493,
        0x3c9ebe0a15c9bebc,
        0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6,
        0x597f299cfc657e2a,
        0x5fcb6fab3ad6faec,
        0x6c44198c4a475817,
    ];
    let mut h: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u128) * 8;
    msg.push(0x80);
    while msg.len() % 128 != 112 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(128) {
        let mut w = [0u64; 80];
        for (i, word) in block.chunks(8).enumerate() {
            w[i] = u64::from_be_bytes(word.try_into().expect("8-byte chunk"));
        }
        for i in 16..80 {
            let s0 = w[i - 15].rotate_right(1) ^ w[i - 15].rotate_right(8) ^ (w[i - 15] >> 7);
            let s1 = w[i - 2].rotate_right(19) ^ w[i - 2].rotate_right(61) ^ (w[i - 2] >> 6);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..80 {
            let s1 = v[4].rotate_right(14) ^ v[4].rotate_right(18) ^ v[4].rotate_right(41);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(28) ^ v[0].rotate_right(34) ^ v[0].rotate_right(39);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:016x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_ids_are_unique_and_well_formed() {
        let a = object_id();
        let b = object_id();
        assert!(is_object_id(&a) && is_object_id(&b));
        assert_ne!(a, b);
        assert!(a < b, "ids of one process sort in the order they were made");
        assert!(!is_object_id("notanid"));
    }

    #[test]
    fn iso_round_trips_with_microseconds() {
        let t = parse_iso("2026-11-25T03:14:17.451370Z").expect("parses");
        assert_eq!(iso(t), "2026-11-25T03:14:17.451370Z");
        let t = parse_iso("2026-11-25 03:14:17.451+00:00").expect("parses");
        assert_eq!(iso(t), "2026-11-25T03:14:17.451000Z");
        assert!(parse_iso("2026-11-25T03:14:17").is_none());
        // st2's pattern: no fraction or 3 to 6 digits.
        assert!(parse_iso("2026-11-25T03:14:17Z").is_some());
        assert!(parse_iso("2026-11-25T03:14:17.8Z").is_none());
        assert!(parse_iso("2026-11-25T03:14:17.1234567Z").is_none());
    }

    #[test]
    fn now_keeps_milliseconds_like_mongodb() {
        assert_eq!(now().nanosecond() % 1_000_000, 0);
    }

    #[test]
    fn python_repr_matches_python() {
        assert_eq!(py_repr(&json!(["sudo"])), "['sudo']");
        assert_eq!(
            py_repr(&json!({"a": true, "b": null})),
            "{'a': True, 'b': None}"
        );
        assert_eq!(py_str_repr("it's"), "\"it's\"");
    }

    #[test]
    fn sha512_matches_known_vectors() {
        // Digests computed with Python's hashlib.
        assert_eq!(
            sha512_hex(b"abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(sha512_hex(b"").len(), 128);
        assert!(sha512_hex(b"").starts_with("cf83e1357eefb8bd"));
    }

    #[test]
    fn truthiness_follows_python() {
        for v in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&v), "{v} should be falsy");
        }
        for v in [
            json!(true),
            json!(1),
            json!("x"),
            json!([0]),
            json!({"a": 0}),
        ] {
            assert!(truthy(&v), "{v} should be truthy");
        }
    }
}
