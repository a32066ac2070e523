//! st2's OpenAPI 2.0 spec as a test oracle: the response schema st2 declares for a route,
//! and a validator for the JSON-Schema subset the spec uses.

use serde_json::Value;

/// The loaded spec.
pub struct Spec {
    doc: Value,
}

impl Spec {
    /// Loads `shared/reference/st2/st2common/st2common/openapi.yaml`.
    pub fn load() -> Self {
        let text = super::reference_text("st2common/st2common/openapi.yaml");
        Self {
            doc: serde_norway::from_str(&text).expect("st2's openapi.yaml parses"),
        }
    }

    /// The schema declared for `method path` answering `status` (or the `default` answer),
    /// matching templated segments such as `{id}`. An answer declared without a schema
    /// accepts anything (`{}`); `None` means the route or answer is not in the spec.
    pub fn response_schema(&self, method: &str, path: &str, status: u16) -> Option<Value> {
        let paths = self.doc["paths"].as_object()?;
        let want: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let (_, item) = paths.iter().find(|(template, _)| {
            let parts: Vec<&str> = template.trim_end_matches('/').split('/').collect();
            parts.len() == want.len()
                && parts
                    .iter()
                    .zip(&want)
                    .all(|(t, w)| t == w || (t.starts_with('{') && t.ends_with('}')))
        })?;
        let responses = &item[method.to_ascii_lowercase()]["responses"];
        let answer = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))?;
        Some(
            answer
                .get("schema")
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default())),
        )
    }

    /// Every violation of `schema` by `value`, each with its JSON path.
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check(schema, value, "", &mut out);
        out
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/definitions/").expect("local $ref");
                self.resolve(&self.doc["definitions"][name])
            }
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
        let schema = self.resolve(schema);
        let at = if path.is_empty() { "." } else { path };
        if value.is_null() && schema.get("x-nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.check(s, value, path, out);
            }
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.is_empty() && !types.iter().any(|t| is_type(t, value)) {
                out.push(format!("{at}: expected {}, got {value}", types.join("|")));
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            out.push(format!(
                "{at}: {value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
        if let (Some(p), Some(s)) = (
            schema.get("pattern").and_then(Value::as_str),
            value.as_str(),
        ) && !regex::Regex::new(p)
            .expect("spec pattern compiles")
            .is_match(s)
        {
            out.push(format!("{at}: {s:?} does not match {p}"));
        }
        if let Value::Object(map) = value {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in map {
                let child = format!("{path}.{k}");
                match (
                    props.and_then(|p| p.get(k)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(s), _) => self.check(s, v, &child, out),
                    (None, Some(Value::Bool(false))) => out.push(format!(
                        "{child}: not allowed (additionalProperties: false)"
                    )),
                    (None, Some(extra @ Value::Object(_))) => self.check(extra, v, &child, out),
                    _ => {}
                }
            }
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !map.contains_key(r) {
                        out.push(format!("{path}.{r}: required"));
                    }
                }
            }
        }
        if let (Value::Array(items), Some(s)) = (value, schema.get("items")) {
            for (i, v) in items.iter().enumerate() {
                self.check(s, v, &format!("{path}[{i}]"), out);
            }
        }
    }
}

fn is_type(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}
