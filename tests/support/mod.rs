//! Shared test helpers: reading st2's recorded responses and comparing JSON shapes.
#![allow(dead_code)] // each test binary uses its own subset

pub mod nats;
pub mod openapi;

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

/// Differences in shape between `want` (st2's) and `got` (ours): keys present on one side
/// only, and values of different JSON types, each with its JSON path. Paths listed in
/// `free` (e.g. `.result`) are data-dependent and not descended into.
pub fn shape_diff(want: &Value, got: &Value, free: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    walk(want, got, String::new(), free, &mut out);
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(want: &Value, got: &Value, path: String, free: &[&str], out: &mut Vec<String>) {
    let shown = if path.is_empty() {
        ".".to_string()
    } else {
        path.clone()
    };
    if free.contains(&shown.as_str()) {
        return;
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => walk(wv, gv, p, free, out),
                    None if free.contains(&p.as_str()) => {}
                    None => out.push(format!("{p}: st2 sends it, we do not")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                let p = format!("{path}.{k}");
                if !free.contains(&p.as_str()) {
                    out.push(format!("{p}: we send it, st2 does not"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            if let (Some(w0), Some(g0)) = (w.first(), g.first()) {
                walk(w0, g0, format!("{path}[]"), free, out);
            }
        }
        (w, g) if kind(w) != kind(g) => {
            out.push(format!("{shown}: st2 has {}, we have {}", kind(w), kind(g)))
        }
        _ => {}
    }
}
