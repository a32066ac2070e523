//! Every configuration field the code accepts is in the configuration reference.
//!
//! The field list comes from the code itself: every config struct denies unknown fields, so
//! probing a section with an unknown key makes serde name every field that section has.

use portarium_st2::config::Config;
use serde_json::{Map, Value, json};

const PROBE: &str = "__probe__";

/// A config that passes deserialization up to the probed spot.
fn base() -> Value {
    json!({"st2": {"base_url": "http://127.0.0.1:9101", "api_key": "k"}})
}

/// Sets `value` at `path` in `root`; `[]` steps into a one-element list.
fn set(root: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return;
    };
    if first == "[]" {
        if !root.is_array() {
            *root = json!([{}]);
        }
        return set(&mut root.as_array_mut().unwrap()[0], rest, value);
    }
    if !root.is_object() {
        *root = Value::Object(Map::new());
    }
    let slot = root
        .as_object_mut()
        .unwrap()
        .entry(first.clone())
        .or_insert(Value::Null);
    set(slot, rest, value);
}

/// The error loading `root` gives, if any.
fn error_of(root: &Value) -> Option<String> {
    let yaml = serde_norway::to_string(root).unwrap();
    Config::from_yaml(&yaml, "probe", std::iter::empty())
        .err()
        .map(|e| e.to_string())
}

/// The fields of the struct at `path`, if it is one.
fn fields_at(path: &[String]) -> Option<Vec<String>> {
    let mut root = base();
    set(&mut root, path, json!({PROBE: 1}));
    let err = error_of(&root)?;
    let rest = err.split(&format!("unknown field `{PROBE}`")).nth(1)?;
    let expected = rest.split_once("expected")?.1;
    let line = expected.lines().next().unwrap_or_default();
    let names: Vec<String> = line
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    (!names.is_empty()).then_some(names)
}

fn collect(path: Vec<String>, out: &mut Vec<String>) {
    let Some(fields) = fields_at(&path) else {
        // A list of structs: step into its element.
        let mut element = path.clone();
        element.push("[]".into());
        if fields_at(&element).is_some() && path.last().is_some_and(|l| l != "[]") {
            return collect(element, out);
        }
        out.push(render(&path));
        return;
    };
    for f in fields {
        let mut next = path.clone();
        next.push(f);
        collect(next, out);
    }
}

fn render(path: &[String]) -> String {
    path.join(".").replace(".[]", "[]")
}

#[test]
fn every_config_field_is_in_the_configuration_reference() {
    let mut fields = Vec::new();
    collect(Vec::new(), &mut fields);
    assert!(
        fields.len() > 30 && fields.contains(&"st2.retry.max_retries".to_string()),
        "the probe walks the whole config: {fields:?}"
    );
    assert!(
        fields.contains(&"tenants[].st2.api_key".to_string()),
        "{fields:?}"
    );
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let missing: Vec<&String> = fields
        .iter()
        .filter(|f| !doc.contains(&format!("| `{f}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "fields missing from docs/configuration.md's table: {missing:?}"
    );
}
