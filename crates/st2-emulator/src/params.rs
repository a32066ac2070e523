//! Action parameter casting and validation the way st2 does it on `POST /executions`
//! (`render_live_params` casting, then jsonschema validation of the merged runner+action schema,
//! then the immutable check), with st2's (Python) error texts.

use serde_json::{Map, Value};

use crate::util::{py_repr, py_str, py_str_repr, py_type_name};

/// A parameter problem, with the HTTP status st2 answers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// 400: the request is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 500: st2 fails with an unexpected (TypeError) error.
    #[error("{0}")]
    Internal(String),
}

/// Cast the caller's parameters by their schema type, as st2's `_cast_params_from` does.
/// `schemas` is `[action parameters, runner parameters]`; the last schema naming a parameter wins.
pub fn cast_params(
    params: &Map<String, Value>,
    schemas: [&Map<String, Value>; 2],
) -> Result<Map<String, Value>, ParamError> {
    let mut out = Map::new();
    for (name, value) in params {
        let schema = schemas.iter().rev().find_map(|s| s.get(name));
        let ty = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
        let cast = match (ty, value) {
            (_, Value::Null) | (None, _) => value.clone(),
            (Some(t), v) => cast_value(t, v)?,
        };
        out.insert(name.clone(), cast);
    }
    Ok(out)
}

fn cast_value(ty: &str, v: &Value) -> Result<Value, ParamError> {
    match ty {
        "string" => match v {
            Value::String(_) => Ok(v.clone()),
            other => Err(ParamError::Invalid(format!(
                "Value \"{}\" must either be a string or None. Got \"{}\".",
                py_str(other),
                py_type_name(other)
            ))),
        },
        "integer" => match v {
            Value::String(s) => {
                let cleaned = s.trim().replace('_', "");
                cleaned.parse::<i64>().map(Value::from).map_err(|_| {
                    ParamError::Invalid(format!(
                        "invalid literal for int() with base 10: {}",
                        py_str_repr(s)
                    ))
                })
            }
            Value::Number(n) if n.is_f64() => {
                Ok(Value::from(n.as_f64().unwrap_or_default().trunc() as i64))
            }
            Value::Number(_) => Ok(v.clone()),
            Value::Bool(b) => Ok(Value::from(i64::from(*b))),
            other => Err(ParamError::Internal(format!(
                "int() argument must be a string, a bytes-like object or a real number, not '{}'",
                py_type_name(other)
            ))),
        },
        "number" => match v {
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| {
                    ParamError::Invalid(format!(
                        "could not convert string to float: {}",
                        py_str_repr(s)
                    ))
                }),
            Value::Number(n) => Ok(n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map_or(v.clone(), Value::Number)),
            Value::Bool(b) => Ok(Value::from(if *b { 1.0 } else { 0.0 })),
            other => Err(ParamError::Internal(format!(
                "float() argument must be a string or a real number, not '{}'",
                py_type_name(other)
            ))),
        },
        "boolean" => match v {
            Value::String(s) => match capitalize(s).as_str() {
                "True" => Ok(Value::Bool(true)),
                "False" => Ok(Value::Bool(false)),
                "None" => Ok(Value::Null),
                other => other.parse::<i64>().map(Value::from).map_err(|_| {
                    ParamError::Invalid(
                        "malformed node or string on line 1: <ast.Name object>".into(),
                    )
                }),
            },
            _ => Ok(v.clone()),
        },
        "object" | "array" => match v {
            Value::String(s) => serde_json::from_str(s).map_err(|_| {
                ParamError::Invalid("malformed node or string on line 1: <ast.Name object>".into())
            }),
            _ => Ok(v.clone()),
        },
        _ => Ok(v.clone()),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + &c.as_str().to_lowercase(),
        None => String::new(),
    }
}

/// Validate cast parameters against the merged parameter schema (jsonschema with st2's draft-3
/// style `required`, defaults applied, `null` allowed when the default is null), then reject
/// overridden immutable parameters.
pub fn validate(
    params: &Map<String, Value>,
    merged: &Map<String, Value>,
) -> Result<(), ParamError> {
    if merged.is_empty() {
        // st2 builds an empty schema for parameterless actions, which accepts anything.
        return Ok(());
    }
    let extra: Vec<&String> = params.keys().filter(|k| !merged.contains_key(*k)).collect();
    if !extra.is_empty() {
        let names = extra
            .iter()
            .map(|k| py_str_repr(k))
            .collect::<Vec<_>>()
            .join(", ");
        let verb = if extra.len() == 1 { "was" } else { "were" };
        return Err(ParamError::Invalid(format!(
            "Additional properties are not allowed ({names} {verb} unexpected)"
        )));
    }
    for (name, schema) in merged {
        let value = params.get(name).or_else(|| schema.get("default"));
        let required = schema
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let Some(value) = value else {
            if required {
                return Err(ParamError::Invalid(format!(
                    "{} is a required property",
                    py_str_repr(name)
                )));
            }
            continue;
        };
        let default_is_null = schema.get("default").is_some_and(Value::is_null);
        if value.is_null() && !required && default_is_null {
            continue;
        }
        check_value(value, schema)?;
    }
    let immutable: Vec<Value> = params
        .keys()
        .filter(|k| {
            merged
                .get(*k)
                .and_then(|s| s.get("immutable"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .map(|k| Value::String(k.clone()))
        .collect();
    if !immutable.is_empty() {
        return Err(ParamError::Invalid(format!(
            "Override of immutable parameter(s) {} is unsupported.",
            py_repr(&Value::Array(immutable))
        )));
    }
    Ok(())
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn check_value(value: &Value, schema: &Value) -> Result<(), ParamError> {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() && !types.iter().any(|t| type_matches(t, value)) {
        let names = types
            .iter()
            .map(|t| py_str_repr(t))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ParamError::Invalid(format!(
            "{} is not of type {names}",
            py_repr(value)
        )));
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        return Err(ParamError::Invalid(format!(
            "{} is not one of {}",
            py_repr(value),
            py_repr(&Value::Array(options.clone()))
        )));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Err(ParamError::Invalid(format!(
            "{} is less than the minimum of {}",
            py_repr(value),
            py_repr(&schema["minimum"])
        )));
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n > max
    {
        return Err(ParamError::Invalid(format!(
            "{} is greater than the maximum of {}",
            py_repr(value),
            py_repr(&schema["maximum"])
        )));
    }
    Ok(())
}

/// The parameters an action runs with: the caller's values over the schema defaults.
pub fn effective(params: &Map<String, Value>, merged: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = merged
        .iter()
        .filter_map(|(k, s)| s.get("default").map(|d| (k.clone(), d.clone())))
        .collect();
    for (k, v) in params {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// Names of parameters marked `secret: true`.
pub fn secret_names(merged: &Map<String, Value>) -> Vec<String> {
    merged
        .iter()
        .filter(|(_, s)| s.get("secret").and_then(Value::as_bool).unwrap_or(false))
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().expect("object").clone()
    }

    #[test]
    fn casting_reports_python_messages() {
        let schema = obj(json!({"timeout": {"type": "integer"}, "cmd": {"type": "string"}}));
        let empty = Map::new();
        let err =
            cast_params(&obj(json!({"timeout": "abc"})), [&empty, &schema]).expect_err("bad int");
        assert_eq!(
            err,
            ParamError::Invalid("invalid literal for int() with base 10: 'abc'".into())
        );
        let ok = cast_params(&obj(json!({"timeout": "30"})), [&empty, &schema]).expect("casts");
        assert_eq!(ok["timeout"], json!(30));
        let err = cast_params(&obj(json!({"cmd": 5})), [&empty, &schema]).expect_err("bad string");
        assert_eq!(
            err.to_string(),
            "Value \"5\" must either be a string or None. Got \"int\"."
        );
    }

    #[test]
    fn validation_follows_st2_rules() {
        let merged = obj(json!({
            "cmd": {"type": "string", "required": true},
            "sudo": {"type": "boolean", "default": false, "immutable": true},
            "sudo_password": {"type": "string", "default": null, "secret": true},
            "name": {"type": "string", "required": true, "default": "Stanley"},
        }));
        assert_eq!(
            validate(&Map::new(), &merged)
                .expect_err("missing cmd")
                .to_string(),
            "'cmd' is a required property"
        );
        assert_eq!(
            validate(&obj(json!({"cmd": "x", "nope": 1})), &merged)
                .expect_err("extra")
                .to_string(),
            "Additional properties are not allowed ('nope' was unexpected)"
        );
        assert_eq!(
            validate(&obj(json!({"cmd": "x", "sudo": true})), &merged)
                .expect_err("immutable")
                .to_string(),
            "Override of immutable parameter(s) ['sudo'] is unsupported."
        );
        validate(&obj(json!({"cmd": "x"})), &merged).expect("defaults satisfy required");
        assert_eq!(secret_names(&merged), vec!["sudo_password".to_string()]);
        assert_eq!(
            effective(&obj(json!({"cmd": "x"})), &merged)["name"],
            json!("Stanley")
        );
        validate(&obj(json!({"anything": 1})), &Map::new()).expect("no schema accepts anything");
    }
}
