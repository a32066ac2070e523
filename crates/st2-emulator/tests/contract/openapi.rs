//! st2's own OpenAPI 2.0 spec (`st2common/st2common/openapi.yaml`) and a validator for the
//! JSON-Schema subset its response schemas use.
//!
//! Supported: `$ref` to `#/definitions/...`, `type` (one or a list), `x-nullable`, `enum`,
//! `pattern`, `minimum`/`maximum`, `minLength`/`maxLength`, `properties`, `required`,
//! `additionalProperties` (bool or schema), `items`, `uniqueItems`, `allOf`/`anyOf`/`oneOf`.
//! Annotations (`description`, `title`, `default`, `example(s)`, `x-*`) are ignored, and so is
//! `format`: Swagger formats are not assertions in st2 (its `Token.id` says `format: uuid` while
//! st2 really returns an ObjectId, see auth-token-post.http). Any other keyword is reported as a
//! violation, so nothing in the spec is skipped silently.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use regex::Regex;
use serde_json::Value;

use crate::reference::reference_dir;

/// Where st2's rendered spec lives.
fn spec_path() -> PathBuf {
    reference_dir().join("st2common/st2common/openapi.yaml")
}

/// Why st2's spec declares nothing for a response.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// No path template matches.
    #[error(
        "st2's spec has no path matching {path}, so st2 could only answer 404, not {status}; fix the request path"
    )]
    UnknownPath {
        /// Requested path.
        path: String,
        /// Status that was to be checked.
        status: u16,
    },
    /// The path exists but not with this method.
    #[error("st2's spec has no {method} on {templates}; fix the request method")]
    UnknownMethod {
        /// Requested method.
        method: String,
        /// Templates that matched the path.
        templates: String,
    },
    /// Neither the status nor `default` is declared.
    #[error(
        "st2's spec declares no {status} (and no default) for {method} {template}; st2 never answers so"
    )]
    UndeclaredStatus {
        /// Requested method.
        method: String,
        /// Matched template.
        template: String,
        /// Status that was to be checked.
        status: u16,
    },
}

/// One place where a document breaks its declared schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// JSON path in the document.
    pub path: String,
    /// What the schema demands.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The loaded spec.
pub struct Spec {
    doc: Value,
    regexes: Mutex<HashMap<String, Regex>>,
    router_404: Value,
}

/// The spec, parsed once per test binary.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read st2 spec {}: {e}", path.display()));
        let doc: Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("st2 spec {} is not YAML: {e}", path.display()));
        assert_eq!(doc["swagger"], "2.0", "expected st2's Swagger 2.0 spec");
        Spec {
            doc,
            regexes: Mutex::new(HashMap::new()),
            router_404: serde_json::json!({ "$ref": "#/definitions/Error" }),
        }
    })
}

impl Spec {
    /// The spec path templates matching `path` (query stripped), most literal segments first.
    /// `/api/` and `/api/v1` reach st2api's root the way st2's nginx and path transforms route them.
    pub fn templates(&self, path: &str) -> Vec<&str> {
        let path = path.split('?').next().unwrap_or_default();
        let path = match path {
            "/api/" | "/api/v1" => "/api/v1/",
            p => p,
        };
        let segs: Vec<&str> = path.split('/').collect();
        let mut found: Vec<(usize, &str)> = self.doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.keys())
            .filter_map(|t| {
                let tsegs: Vec<&str> = t.split('/').collect();
                if tsegs.len() != segs.len() {
                    return None;
                }
                let mut literal = 0;
                for (ts, s) in tsegs.iter().zip(&segs) {
                    if ts.starts_with('{') && ts.ends_with('}') && !s.is_empty() {
                        continue;
                    }
                    if ts != s {
                        return None;
                    }
                    literal += 1;
                }
                Some((literal, t.as_str()))
            })
            .collect();
        found.sort_by_key(|(literal, _)| std::cmp::Reverse(*literal));
        found.into_iter().map(|(_, t)| t).collect()
    }

    /// The best-matching template for `path`.
    pub fn template(&self, path: &str) -> Option<&str> {
        self.templates(path).into_iter().next()
    }

    /// The response schema st2 declares for method + path + status (`default` when the status
    /// is not listed). `Ok(None)`: the response is declared without a schema. A path the spec
    /// lacks can only get st2's router 404, whose body is the generic `Error`.
    pub fn response_schema(
        &self,
        method: &str,
        path: &str,
        status: u16,
    ) -> Result<Option<&Value>, SpecError> {
        let templates = self.templates(path);
        if templates.is_empty() {
            return if status == 404 {
                Ok(Some(&self.router_404))
            } else {
                Err(SpecError::UnknownPath {
                    path: path.to_string(),
                    status,
                })
            };
        }
        let lower = method.to_ascii_lowercase();
        // Same-looking templates (webhooks/{hook} and webhooks/{url}) differ by method.
        let Some((template, op)) = templates
            .iter()
            .map(|t| (*t, &self.doc["paths"][*t][&lower]))
            .find(|(_, op)| !op.is_null())
        else {
            return Err(SpecError::UnknownMethod {
                method: method.to_string(),
                templates: templates.join(" or "),
            });
        };
        let responses = &op["responses"];
        let response = match &responses[status.to_string()] {
            Value::Null => &responses["default"],
            r => r,
        };
        if response.is_null() {
            return Err(SpecError::UndeclaredStatus {
                method: method.to_string(),
                template: template.to_string(),
                status,
            });
        }
        Ok(response.get("schema"))
    }

    /// Validate a response body against the schema st2 declares for it.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<Vec<Violation>, SpecError> {
        let mut out = Vec::new();
        if let Some(schema) = self.response_schema(method, path, status)? {
            self.validate(schema, body, "$", &mut out);
        }
        Ok(out)
    }

    /// Validate `value` against `schema` (both from or within this spec).
    pub fn validate(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<Violation>) {
        let Some(schema) = schema.as_object() else {
            push(out, at, format!("schema is not an object: {schema}"));
            return;
        };
        if let Some(reference) = schema.get("$ref") {
            match reference
                .as_str()
                .and_then(|r| r.strip_prefix("#/definitions/"))
            {
                Some(name) if self.doc["definitions"].get(name).is_some() => {
                    self.validate(&self.doc["definitions"][name], value, at, out)
                }
                _ => push(out, at, format!("unresolvable $ref {reference}")),
            }
            return;
        }
        if value.is_null() && schema.get("x-nullable") == Some(&Value::Bool(true)) {
            return;
        }
        for (keyword, arg) in schema {
            match keyword.as_str() {
                "type" => {
                    let types: Vec<&str> = match arg {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                        _ => vec![],
                    };
                    if !types.iter().any(|t| type_matches(t, value)) {
                        push(
                            out,
                            at,
                            format!(
                                "expected type {}, got {}",
                                types.join(" or "),
                                json_type(value)
                            ),
                        );
                        return;
                    }
                }
                "enum" => {
                    if !arg.as_array().is_some_and(|vs| vs.contains(value)) {
                        push(out, at, format!("{value} is not one of {arg}"));
                    }
                }
                "pattern" => {
                    if let (Some(p), Some(s)) = (arg.as_str(), value.as_str())
                        && !self.regex(p).is_match(s)
                    {
                        push(out, at, format!("{s:?} does not match pattern {p}"));
                    }
                }
                "minimum" | "maximum" => {
                    if let (Some(bound), Some(n)) = (arg.as_f64(), value.as_f64()) {
                        let ok = if keyword == "minimum" {
                            n >= bound
                        } else {
                            n <= bound
                        };
                        if !ok {
                            push(out, at, format!("{n} violates {keyword} {bound}"));
                        }
                    }
                }
                "minLength" | "maxLength" => {
                    if let (Some(bound), Some(s)) = (arg.as_u64(), value.as_str()) {
                        let n = s.chars().count() as u64;
                        let ok = if keyword == "minLength" {
                            n >= bound
                        } else {
                            n <= bound
                        };
                        if !ok {
                            push(out, at, format!("length {n} violates {keyword} {bound}"));
                        }
                    }
                }
                "required" => {
                    if let (Some(names), Some(obj)) = (arg.as_array(), value.as_object()) {
                        for name in names.iter().filter_map(Value::as_str) {
                            if !obj.contains_key(name) {
                                push(out, at, format!("required property {name:?} is missing"));
                            }
                        }
                    }
                }
                "properties" => {
                    if let (Some(props), Some(obj)) = (arg.as_object(), value.as_object()) {
                        for (name, sub) in props {
                            if let Some(v) = obj.get(name) {
                                self.validate(sub, v, &format!("{at}.{name}"), out);
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    if let Some(obj) = value.as_object() {
                        let declared = schema.get("properties").and_then(Value::as_object);
                        let extra = obj
                            .iter()
                            .filter(|(k, _)| !declared.is_some_and(|d| d.contains_key(*k)));
                        for (k, v) in extra {
                            match arg {
                                Value::Bool(false) => push(
                                    out,
                                    at,
                                    format!(
                                        "property {k:?} is not allowed (additionalProperties: false)"
                                    ),
                                ),
                                Value::Bool(true) => {}
                                sub => self.validate(sub, v, &format!("{at}.{k}"), out),
                            }
                        }
                    }
                }
                "items" => {
                    if let Some(items) = value.as_array() {
                        for (i, item) in items.iter().enumerate() {
                            self.validate(arg, item, &format!("{at}[{i}]"), out);
                        }
                    }
                }
                "uniqueItems" => {
                    if arg == &Value::Bool(true)
                        && let Some(items) = value.as_array()
                        && items
                            .iter()
                            .enumerate()
                            .any(|(i, a)| items[..i].contains(a))
                    {
                        push(out, at, "array items are not unique (uniqueItems)".into());
                    }
                }
                "allOf" => {
                    for sub in arg.as_array().into_iter().flatten() {
                        self.validate(sub, value, at, out);
                    }
                }
                "anyOf" | "oneOf" => {
                    let passing = arg
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|sub| {
                            let mut scratch = Vec::new();
                            self.validate(sub, value, at, &mut scratch);
                            scratch.is_empty()
                        })
                        .count();
                    let ok = if keyword == "anyOf" {
                        passing >= 1
                    } else {
                        passing == 1
                    };
                    if !ok {
                        push(
                            out,
                            at,
                            format!("{passing} of the {keyword} alternatives match"),
                        );
                    }
                }
                "description" | "title" | "default" | "format" | "example" | "examples" => {}
                k if k.starts_with("x-") => {}
                other => push(
                    out,
                    at,
                    format!("schema keyword {other:?} is not supported by this validator"),
                ),
            }
        }
    }

    fn regex(&self, pattern: &str) -> Regex {
        let mut cache = self.regexes.lock().expect("regex cache lock");
        cache
            .entry(pattern.to_string())
            .or_insert_with(|| {
                Regex::new(pattern).unwrap_or_else(|e| panic!("spec pattern {pattern}: {e}"))
            })
            .clone()
    }
}

fn push(out: &mut Vec<Violation>, at: &str, message: String) {
    out.push(Violation {
        path: at.to_string(),
        message,
    });
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn json_type(v: &Value) -> &'static str {
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
