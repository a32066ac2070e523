//! Recursive shape comparison of two JSON documents: same keys (present/absent), same JSON types
//! (integer and float told apart, and strings classed as st2 ObjectId / hex token / st2 timestamp
//! / text), same nesting and array lengths; values only where they are a fixed vocabulary.
//!
//! Paths are written `$.action.parameters.cmd`, `$[0].log[2].status`. Rule patterns use the same
//! form with `[]` for any index, `*` for any one key and `**` for any number of segments.

use std::fmt;

use serde_json::Value;

/// Keys whose values are a fixed vocabulary wherever they appear: statuses, runner names,
/// booleans that carry meaning, the requesting user and pack, and error texts.
const VOCABULARY_KEYS: &[&str] = &[
    "status",
    "runner_type",
    "faultstring",
    "output_type",
    "action_is_workflow",
    "enabled",
    "service",
    "user",
    "pack",
    "failed",
    "succeeded",
    "return_code",
];

/// One path segment of a concrete location.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// One segment of a rule pattern.
#[derive(Debug, Clone, PartialEq)]
enum Pat {
    Key(String),
    AnyKey,
    AnyIndex,
    AnyDepth,
}

/// A concrete location in a document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Path(Vec<Seg>);

impl Path {
    fn key(&self, k: &str) -> Path {
        let mut p = self.0.clone();
        p.push(Seg::Key(k.to_string()));
        Path(p)
    }

    fn index(&self, i: usize) -> Path {
        let mut p = self.0.clone();
        p.push(Seg::Index(i));
        Path(p)
    }

    fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// A parsed rule pattern such as `$[].action.parameters` or `**.status`.
#[derive(Debug, Clone)]
struct Pattern(Vec<Pat>);

impl Pattern {
    fn parse(text: &str) -> Pattern {
        let body = text.strip_prefix('$').unwrap_or(text);
        let body = body.strip_prefix('.').unwrap_or(body);
        let mut pats = Vec::new();
        for part in body.split('.').filter(|p| !p.is_empty()) {
            let (name, mut brackets) = match part.find("[]") {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            match name {
                "" => {}
                "*" => pats.push(Pat::AnyKey),
                "**" => pats.push(Pat::AnyDepth),
                k => pats.push(Pat::Key(k.to_string())),
            }
            while let Some(rest) = brackets.strip_prefix("[]") {
                pats.push(Pat::AnyIndex);
                brackets = rest;
            }
            assert!(brackets.is_empty(), "bad shape rule pattern {text:?}");
        }
        Pattern(pats)
    }

    fn matches(&self, path: &Path) -> bool {
        fn go(p: &[Pat], s: &[Seg]) -> bool {
            match (p.first(), s.first()) {
                (None, None) => true,
                (Some(Pat::AnyDepth), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
                (None, Some(_)) | (Some(_), None) => false,
                (Some(Pat::AnyKey), Some(Seg::Key(_)))
                | (Some(Pat::AnyIndex), Some(Seg::Index(_))) => go(&p[1..], &s[1..]),
                (Some(Pat::Key(k)), Some(Seg::Key(sk))) if k == sk => go(&p[1..], &s[1..]),
                _ => false,
            }
        }
        go(&self.0, &path.0)
    }
}

/// What may legitimately differ between st2's recorded answer and the emulator's.
///
/// Every exemption is added at the call site with a reason, so the test reads as documentation
/// of why that difference is data, not a divergence.
#[derive(Debug, Clone)]
pub struct Rules {
    open: Vec<(Pattern, String)>,
    any: Vec<(Pattern, String)>,
    fixed: Vec<(Pattern, String)>,
    free: Vec<(Pattern, String)>,
    any_length: Vec<(Pattern, String)>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            open: Vec::new(),
            any: Vec::new(),
            fixed: VOCABULARY_KEYS
                .iter()
                .map(|k| (Pattern::parse(&format!("**.{k}")), String::new()))
                .collect(),
            free: Vec::new(),
            any_length: Vec::new(),
        }
    }
}

impl Rules {
    /// The object at `pattern` has data-dependent keys: only "is an object" is compared.
    pub fn open(mut self, pattern: &str, why: &str) -> Rules {
        self.open.push((
            Pattern::parse(pattern),
            format!("{pattern} keys are data: {why}"),
        ));
        self
    }

    /// The value at `pattern` is data of any type (only its key's presence is compared).
    pub fn any(mut self, pattern: &str, why: &str) -> Rules {
        self.any.push((
            Pattern::parse(pattern),
            format!("{pattern} value is data of any type: {why}"),
        ));
        self
    }

    /// The value at `pattern` must be equal, not only of the same shape.
    pub fn fixed(mut self, pattern: &str) -> Rules {
        self.fixed.push((Pattern::parse(pattern), String::new()));
        self
    }

    /// The value at `pattern` is data even though its key is normally a fixed vocabulary.
    pub fn free(mut self, pattern: &str, why: &str) -> Rules {
        self.free.push((
            Pattern::parse(pattern),
            format!("{pattern} value is data: {why}"),
        ));
        self
    }

    /// The array at `pattern` may have another length (its elements are still compared).
    pub fn any_length(mut self, pattern: &str, why: &str) -> Rules {
        self.any_length.push((
            Pattern::parse(pattern),
            format!("{pattern} length is data: {why}"),
        ));
        self
    }

    fn is(list: &[(Pattern, String)], path: &Path) -> bool {
        list.iter().any(|(p, _)| p.matches(path))
    }

    /// The exemptions in force, one line each, for failure reports.
    pub fn exemptions(&self) -> Vec<&str> {
        self.open
            .iter()
            .chain(&self.any)
            .chain(&self.free)
            .chain(&self.any_length)
            .map(|(_, why)| why.as_str())
            .collect()
    }
}

/// One difference, located by its JSON path.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Where it is.
    pub path: String,
    /// Expected (st2) versus got (emulator).
    pub what: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// The type class of a JSON value as a client decoding st2 would see it.
fn class(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(s) => string_class(s),
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// st2's string forms: ObjectId ids, uuid4-hex tokens, microsecond UTC timestamps, other text.
fn string_class(s: &str) -> &'static str {
    let hex = |n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if hex(24) {
        "string(ObjectId)"
    } else if hex(32) {
        "string(hex token)"
    } else if is_st2_timestamp(s) {
        "string(timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ)"
    } else {
        "string"
    }
}

/// `2026-11-25T03:14:17.451370Z`: what st2's `isotime.format(..., usec=True)` writes.
pub fn is_st2_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 27
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..26)
        && b[26] == b'Z'
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(117).collect::<String>())
    } else {
        s
    }
}

/// Compare `actual` (emulator) against `expected` (st2) under `rules`.
pub fn compare(expected: &Value, actual: &Value, rules: &Rules) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(expected, actual, &Path::default(), rules, &mut out);
    out
}

fn walk(expected: &Value, actual: &Value, path: &Path, rules: &Rules, out: &mut Vec<Difference>) {
    if Rules::is(&rules.any, path) {
        return;
    }
    let (ce, ca) = (class(expected), class(actual));
    if ce != ca {
        diff(
            out,
            path,
            format!(
                "type differs: st2 has {ce} {}, emulator has {ca} {}",
                short(expected),
                short(actual)
            ),
        );
        return;
    }
    let vocabulary =
        path.last_key().is_some() && Rules::is(&rules.fixed, path) && !Rules::is(&rules.free, path);
    if vocabulary && expected != actual {
        diff(
            out,
            path,
            format!(
                "value differs: st2 has {}, emulator has {}",
                short(expected),
                short(actual)
            ),
        );
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            if Rules::is(&rules.open, path) {
                return;
            }
            for k in e.keys().filter(|k| !a.contains_key(*k)) {
                diff(
                    out,
                    path,
                    format!("missing key {k:?} (st2 has {})", short(&e[k])),
                );
            }
            for k in a.keys().filter(|k| !e.contains_key(*k)) {
                diff(
                    out,
                    path,
                    format!(
                        "extra key {k:?} that st2 does not send (emulator has {})",
                        short(&a[k])
                    ),
                );
            }
            for (k, ev) in e {
                if let Some(av) = a.get(k) {
                    walk(ev, av, &path.key(k), rules, out);
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() && !Rules::is(&rules.any_length, path) {
                diff(
                    out,
                    path,
                    format!(
                        "array length differs: st2 has {}, emulator has {}",
                        e.len(),
                        a.len()
                    ),
                );
            }
            if e.is_empty() {
                return;
            }
            // Past st2's last element, elements are compared with st2's last one.
            for (i, av) in a.iter().enumerate() {
                walk(&e[i.min(e.len() - 1)], av, &path.index(i), rules, out);
            }
        }
        _ => {}
    }
}

fn diff(out: &mut Vec<Difference>, path: &Path, what: String) {
    out.push(Difference {
        path: path.to_string(),
        what,
    });
}

/// A readable multi-line report of differences, with the exemptions that were in force.
pub fn render(what: &str, diffs: &[Difference], rules: &Rules) -> String {
    let mut s = format!("{what}: {} difference(s) from st2\n", diffs.len());
    for d in diffs {
        s.push_str(&format!("  - {d}\n"));
    }
    for why in rules.exemptions() {
        s.push_str(&format!("  (allowed: {why})\n"));
    }
    s
}
