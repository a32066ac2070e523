//! The JSON-Schema subset an event class may declare for its `data`: `type`, `required`,
//! `properties`, `additionalProperties: false`, `enum`, `items`. st2's parameter checker in
//! `dispatch::validate` follows st2's own rules (draft-3 `required`, string casting), which
//! is not what a Portarium payload schema means, so this is a separate, plain checker.

use serde_json::Value;

const KEYWORDS: &[&str] = &[
    "type",
    "required",
    "properties",
    "additionalProperties",
    "enum",
    "items",
    "description",
    "title",
    "$schema",
];
const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Refuses a schema using keywords this checker would silently ignore.
pub fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err("a schema must be an object".into());
    };
    if let Some(k) = obj.keys().find(|k| !KEYWORDS.contains(&k.as_str())) {
        return Err(format!(
            "keyword {k:?} is not supported; use only {}",
            KEYWORDS.join(", ")
        ));
    }
    if let Some(t) = obj.get("type") {
        let names: Vec<&Value> = match t {
            Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        if let Some(bad) = names
            .iter()
            .find(|n| !n.as_str().is_some_and(|s| TYPES.contains(&s)))
        {
            return Err(format!("type {bad} is not one of {}", TYPES.join(", ")));
        }
    }
    if let Some(props) = obj.get("properties") {
        let Some(props) = props.as_object() else {
            return Err("properties must be an object".into());
        };
        for (name, sub) in props {
            check_schema(sub).map_err(|e| format!("properties.{name}: {e}"))?;
        }
    }
    if let Some(items) = obj.get("items") {
        check_schema(items).map_err(|e| format!("items: {e}"))?;
    }
    if obj
        .get("required")
        .is_some_and(|r| !r.as_array().is_some_and(|a| a.iter().all(Value::is_string)))
    {
        return Err("required must be a list of property names".into());
    }
    Ok(())
}

/// Every way `value` breaks `schema`, each naming where (`data.a.b`); empty when it fits.
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, "data", &mut out);
    out
}

fn walk(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            one => one.as_str().into_iter().collect(),
        };
        if !allowed.iter().any(|t| is_type(t, value)) {
            out.push(format!(
                "{at} must be {}, got {}",
                allowed.join(" or "),
                kind(value)
            ));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        out.push(format!(
            "{at} must be one of {}",
            Value::Array(options.clone())
        ));
    }
    if let Some(obj) = value.as_object() {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(name) {
                out.push(format!("{at}.{name} is required"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(sub) => walk(sub, v, &format!("{at}.{name}"), out),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    out.push(format!("{at}.{name} is not allowed"));
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            walk(items, v, &format!("{at}[{i}]"), out);
        }
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match t {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        other => kind(v) == other,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_violation_with_its_path() {
        let schema = json!({"type": "object", "required": ["host", "severity"],
            "additionalProperties": false,
            "properties": {"host": {"type": "string"},
                "severity": {"enum": ["low", "high"]},
                "tags": {"type": "array", "items": {"type": "string"}}}});
        check_schema(&schema).expect("supported");
        assert!(violations(&schema, &json!({"host": "h", "severity": "low"})).is_empty());
        let v = violations(
            &schema,
            &json!({"host": 3, "severity": "mid", "tags": ["a", 1], "x": 1}),
        );
        assert_eq!(
            v,
            [
                "data.host must be string, got number",
                "data.severity must be one of [\"low\",\"high\"]",
                "data.tags[1] must be string, got number",
                "data.x is not allowed",
            ]
        );
        assert_eq!(
            violations(&schema, &json!({})),
            ["data.host is required", "data.severity is required"]
        );
    }

    #[test]
    fn refuses_keywords_it_cannot_check() {
        let err =
            check_schema(&json!({"properties": {"a": {"pattern": "x"}}})).expect_err("pattern");
        assert!(
            err.contains("properties.a") && err.contains("pattern"),
            "{err}"
        );
    }
}
