//! The JSON Schema an event class may declare for its `data`, checked by the `jsonschema`
//! crate: every keyword of the schema's draft (2020-12 unless `$schema` names another), with
//! `format` asserted. st2's parameter checker in `dispatch::validate` follows st2's own rules
//! (draft-3 `required`, string casting), which is not what a Portarium payload schema means,
//! so this is a separate checker.
//!
//! Remote and file `$ref`s are not resolved (the crate is built without those features): a
//! schema must be whole in the config, so checking an event never reaches out of the process.

use std::fmt;
use std::sync::Arc;

use jsonschema::paths::LocationSegment;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A declared schema, compiled once when the config is read.
#[derive(Clone)]
pub struct EventSchema {
    source: Value,
    /// The compiled validator, or why the schema cannot be one (reported by config checks).
    compiled: Arc<Result<jsonschema::Validator, String>>,
}

impl EventSchema {
    /// Compiles `schema`; a schema that is not valid under its meta-schema (or has a `$ref`
    /// outside itself) is kept with its problem, for [`Self::problem`] to report.
    pub fn new(schema: Value) -> Self {
        let compiled = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| {
                // Against the meta-schema the schema is the instance: its path says where.
                let at = e.instance_path().to_string();
                let reason = e.masked_with("the value").to_string();
                if at.is_empty() {
                    reason
                } else {
                    format!("{reason} (at {at})")
                }
            });
        Self {
            source: schema,
            compiled: Arc::new(compiled),
        }
    }

    /// Why this schema cannot be used, when it cannot.
    pub fn problem(&self) -> Option<&str> {
        self.compiled.as_ref().as_ref().err().map(String::as_str)
    }

    /// Every way `value` breaks the schema, each naming where (`data.a.b`, `data.tags[1]`);
    /// empty when it fits. Messages never quote the event's values, which may be secret.
    pub fn violations(&self, value: &Value) -> Vec<String> {
        let Ok(validator) = self.compiled.as_ref() else {
            // Config validation refuses such a schema before any event is checked.
            return vec!["the class's schema is invalid".into()];
        };
        validator
            .iter_errors(value)
            .map(|e| {
                let mut at = String::from("data");
                for segment in e.instance_path() {
                    match segment {
                        LocationSegment::Property(p) => {
                            at.push('.');
                            at.push_str(&p);
                        }
                        LocationSegment::Index(i) => at.push_str(&format!("[{i}]")),
                    }
                }
                format!("{at}: {}", e.masked_with("the value"))
            })
            .collect()
    }
}

impl fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

impl<'de> Deserialize<'de> for EventSchema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_violation_with_its_path() {
        let schema = EventSchema::new(json!({"type": "object", "required": ["host", "severity"],
            "additionalProperties": false,
            "properties": {"host": {"type": "string"},
                "severity": {"enum": ["low", "high"]},
                "tags": {"type": "array", "items": {"type": "string"}}}}));
        assert_eq!(schema.problem(), None);
        assert!(
            schema
                .violations(&json!({"host": "h", "severity": "low"}))
                .is_empty()
        );
        let v = schema.violations(&json!({"host": 3, "severity": "mid", "tags": ["a", 1], "x": 1}));
        let text = v.join("\n");
        for want in [
            "data.host: ",
            "data.severity: ",
            "data.tags[1]: ",
            "data: Additional properties are not allowed ('x'",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
        assert_eq!(v.len(), 4, "{v:?}");
        let v = schema.violations(&json!({}));
        assert!(
            v.iter()
                .any(|p| p.contains("\"host\" is a required property"))
                && v.iter().any(|p| p.contains("\"severity\"")),
            "{v:?}"
        );
    }

    #[test]
    fn checks_keywords_beyond_the_old_six() {
        let schema = EventSchema::new(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^run-[0-9]+$", "maxLength": 12},
                "n": {"type": "integer", "minimum": 1, "maximum": 10, "multipleOf": 2},
                "at": {"type": "string", "format": "date-time"},
                "mail": {"format": "email"},
                "kind": {"const": "run"},
                "tags": {"type": "array", "minItems": 1, "uniqueItems": true},
                "target": {"oneOf": [{"required": ["host"]}, {"required": ["group"]}]},
                "ref": {"$ref": "#/$defs/ref"}
            },
            "dependentRequired": {"retry": ["limit"]},
            "if": {"properties": {"kind": {"const": "run"}}, "required": ["kind"]},
            "then": {"required": ["id"]},
            "$defs": {"ref": {"type": "string", "minLength": 3}}
        }));
        assert_eq!(schema.problem(), None);
        let good = json!({"id": "run-1", "n": 4, "at": "2026-12-06T01:02:03Z",
            "mail": "a@example.com", "kind": "run", "tags": ["a"], "target": {"host": "h"},
            "ref": "abc"});
        assert_eq!(schema.violations(&good), Vec::<String>::new());
        let cases = [
            ("id", json!("job-1"), "data.id: "),
            ("n", json!(3), "data.n: "),
            ("n", json!(12), "data.n: "),
            ("at", json!("yesterday"), "data.at: "),
            ("mail", json!("nobody"), "data.mail: "),
            ("tags", json!(["a", "a"]), "data.tags: "),
            (
                "target",
                json!({"host": "h", "group": "g"}),
                "data.target: ",
            ),
            ("ref", json!("ab"), "data.ref: "),
        ];
        for (field, value, want) in cases {
            let mut bad = good.clone();
            bad[field] = value.clone();
            let v = schema.violations(&bad);
            assert!(
                v.len() == 1 && v[0].starts_with(want),
                "{field}={value}: {v:?}"
            );
        }
        let mut bad = good.clone();
        bad.as_object_mut().unwrap().remove("id");
        bad["retry"] = json!(true);
        assert_eq!(schema.violations(&bad).len(), 2, "then + dependentRequired");
    }

    #[test]
    fn messages_do_not_quote_the_event_values() {
        let schema = EventSchema::new(json!({"properties": {"pin": {"type": "integer"}}}));
        let v = schema.violations(&json!({"pin": "hunter2-secret"}));
        assert_eq!(v.len(), 1);
        assert!(!v[0].contains("hunter2"), "{v:?}");
    }

    #[test]
    fn refuses_schemas_that_are_not_valid() {
        for (schema, want) in [
            (json!({"type": "colour"}), "type"),
            (json!({"properties": {"a": {"minLength": -1}}}), "minLength"),
            (json!({"$ref": "https://example.com/s.json"}), "example.com"),
            (json!({"$ref": "file:///etc/passwd"}), "passwd"),
        ] {
            let s = EventSchema::new(schema.clone());
            let err = s.problem().unwrap_or_else(|| panic!("{schema} accepted"));
            assert!(err.contains(want), "{schema}: {err}");
        }
    }
}
