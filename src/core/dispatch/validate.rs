//! Checks made before st2 is called: the flowRef is an st2 action ref, and the payload fits
//! the action's parameter schema the way st2 itself would judge it.

use std::fmt;

use serde_json::Value;

use st2_client::models::{ActionParameters, JsonObject, ParameterSpec};

/// Longest action ref accepted (st2 stores refs as strings; anything longer is not a ref).
const MAX_REF_LEN: usize = 255;

/// Why a flowRef is not an st2 action ref.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flowRef {flow_ref:?} is not an st2 action ref (pack.action): {reason}")]
pub struct BadFlowRef {
    /// The flowRef as received (truncated when very long).
    pub flow_ref: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// An st2 action ref, `pack.name`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRef {
    /// The pack, e.g. `core`.
    pub pack: String,
    /// The action inside the pack, e.g. `local`.
    pub name: String,
}

impl fmt::Display for ActionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pack, self.name)
    }
}

impl ActionRef {
    /// Parses `pack.name`: the pack is st2's pack-ref alphabet (`a-z 0-9 _`), the name
    /// letters, digits, `_`, `-` and inner dots. URLs, paths, spaces and empty parts are refused.
    pub fn parse(flow_ref: &str) -> Result<Self, BadFlowRef> {
        let bad = |reason| BadFlowRef {
            flow_ref: flow_ref.chars().take(80).collect(),
            reason,
        };
        if flow_ref.is_empty() {
            return Err(bad("it is empty"));
        }
        if flow_ref.len() > MAX_REF_LEN {
            return Err(bad("it is longer than 255 characters"));
        }
        let (pack, name) = flow_ref
            .split_once('.')
            .ok_or_else(|| bad("it has no '.' between pack and action"))?;
        if pack.is_empty()
            || !pack
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(bad("the pack must be lower-case letters, digits and '_'"));
        }
        let name_ok = !name.is_empty()
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(bad(
                "the action name must be letters, digits, '_', '-' and inner '.'",
            ));
        }
        Ok(Self {
            pack: pack.to_string(),
            name: name.to_string(),
        })
    }
}

/// One parameter the payload gets wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter name.
    pub field: String,
    /// What is wrong, in words a caller can act on; never the value itself (it may be secret).
    pub reason: String,
}

impl fmt::Display for ParamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every problem with `payload` against the merged schema, in parameter-name order; empty when
/// st2 would accept it. Mirrors st2: unknown keys are refused, `required` is satisfied by a
/// default, immutable parameters cannot be set, and strings are accepted where st2 would
/// cast them (`"5"` for an integer).
pub fn check_parameters(schema: &ActionParameters, payload: &JsonObject) -> Vec<ParamProblem> {
    let mut problems = Vec::new();
    let mut push = |field: &str, reason: String| {
        problems.push(ParamProblem {
            field: field.to_string(),
            reason,
        })
    };
    let mut unknown: Vec<&String> = payload
        .keys()
        .filter(|k| !schema.parameters.contains_key(*k))
        .collect();
    unknown.sort();
    for key in unknown {
        push(key, "is not a parameter of this action".into());
    }
    for (name, spec) in &schema.parameters {
        match payload.get(name) {
            None if spec.required && spec.default.is_none() => push(name, "is required".into()),
            None => {}
            Some(_) if spec.immutable => push(name, "is immutable and cannot be set".into()),
            Some(value) => {
                if let Some(reason) = type_problem(spec, value) {
                    push(name, reason);
                } else if let Some(allowed) = &spec.allowed
                    && !allowed.contains(value)
                {
                    push(
                        name,
                        format!("must be one of {}", Value::Array(allowed.clone())),
                    );
                }
            }
        }
    }
    problems
}

fn type_problem(spec: &ParameterSpec, value: &Value) -> Option<String> {
    let types: Vec<&str> = match &spec.kind {
        None => return None,
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        Some(_) => return None,
    };
    if value.is_null() && (spec.default == Some(Value::Null) || types.contains(&"null")) {
        return None;
    }
    if types.iter().any(|t| fits(t, value)) {
        return None;
    }
    Some(format!(
        "must be {}, got {}",
        types.join(" or "),
        json_kind(value)
    ))
}

/// Whether `value` is of JSON-Schema type `t`, or a string st2 casts to it.
fn fits(t: &str, value: &Value) -> bool {
    let cast = value.as_str();
    match t {
        "string" => value.is_string(),
        "integer" => {
            value.is_i64()
                || value.is_u64()
                || cast.is_some_and(|s| s.trim().parse::<i64>().is_ok())
        }
        "number" => value.is_number() || cast.is_some_and(|s| s.trim().parse::<f64>().is_ok()),
        "boolean" => {
            value.is_boolean()
                || cast.is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "true" | "false"))
        }
        "object" => {
            value.is_object()
                || cast
                    .is_some_and(|s| serde_json::from_str::<Value>(s).is_ok_and(|v| v.is_object()))
        }
        "array" => {
            value.is_array()
                || cast
                    .is_some_and(|s| serde_json::from_str::<Value>(s).is_ok_and(|v| v.is_array()))
        }
        "null" => value.is_null(),
        _ => true,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn action_refs_are_pack_dot_name() {
        let r = ActionRef::parse("core.local").unwrap();
        assert_eq!((r.pack.as_str(), r.name.as_str()), ("core", "local"));
        assert_eq!(
            ActionRef::parse("examples.orquesta-sequential")
                .unwrap()
                .to_string(),
            "examples.orquesta-sequential"
        );
        assert_eq!(
            ActionRef::parse("my_pack.sub.action").unwrap().name,
            "sub.action"
        );
        for bad in [
            "",
            "core",
            ".local",
            "core.",
            "https://evil.example/x",
            "../core.local",
            "core/local",
            "core.lo cal",
            "Core.local",
            "core..local",
        ] {
            assert!(ActionRef::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(ActionRef::parse(&format!("a.{}", "x".repeat(300))).is_err());
    }

    /// The merged schema st2 returns for core.local (captures/action-view-parameters.http).
    fn core_local() -> ActionParameters {
        serde_json::from_value(json!({"parameters": {
            "cmd": {"required": true, "type": "string"},
            "sudo": {"default": false, "type": "boolean", "immutable": true},
            "timeout": {"default": 60, "type": "integer"},
            "sudo_password": {"type": "string", "secret": true, "default": null, "required": false},
            "env": {"type": "object"},
            "mode": {"type": "string", "enum": ["fast", "safe"]},
            "retries": {"type": "integer", "required": true, "default": 3}
        }}))
        .unwrap()
    }

    fn fields(problems: &[ParamProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.field.as_str()).collect()
    }

    #[test]
    fn a_payload_st2_accepts_has_no_problems() {
        let p = json!({"cmd": "echo hi", "timeout": "30", "env": {"A": "1"}, "mode": "fast", "sudo_password": null});
        assert_eq!(
            check_parameters(&core_local(), p.as_object().unwrap()),
            vec![]
        );
    }

    #[test]
    fn every_bad_field_is_named_with_its_reason() {
        let p = json!({"timeout": "abc", "sudo": true, "color": "red", "env": [1], "mode": "slow"});
        let problems = check_parameters(&core_local(), p.as_object().unwrap());
        assert_eq!(
            fields(&problems),
            ["color", "cmd", "env", "mode", "sudo", "timeout"]
        );
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"cmd: is required".to_string()));
        assert!(text.contains(&"sudo: is immutable and cannot be set".to_string()));
        assert!(text.contains(&"timeout: must be integer, got a string".to_string()));
        assert!(text.contains(&"env: must be object, got an array".to_string()));
        assert!(text.contains(&"color: is not a parameter of this action".to_string()));
        assert!(text.iter().any(|t| t.starts_with("mode: must be one of")));
    }

    #[test]
    fn problems_never_quote_the_value() {
        let p = json!({"cmd": 12345, "sudo_password": 987654});
        let problems = check_parameters(&core_local(), p.as_object().unwrap());
        assert_eq!(fields(&problems), ["cmd", "sudo_password"]);
        for p in problems {
            assert!(
                !p.reason.contains("12345") && !p.reason.contains("987654"),
                "{p}"
            );
        }
    }
}
