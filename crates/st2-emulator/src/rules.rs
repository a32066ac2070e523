//! st2's rules engine in small: a trigger instance is matched against the catalogue's rules
//! (trigger type, then criteria), and each match starts the rule's action with parameters
//! rendered from the trigger payload (`{{ trigger.x.y }}`), as st2rulesengine's enforcer does.
//! st2's stream publishes nothing for trigger instances or rules (st2stream listens only to
//! the execution, liveaction, output, announcement and action-alias exchanges), so neither
//! does the emulator.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::params;
use crate::state::{NewExecution, Shared};

/// The trigger a rule listens to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleTrigger {
    /// Trigger type ref, e.g. `portarium.event` or `core.st2.webhook`.
    #[serde(rename = "type")]
    pub trigger_type: String,
    /// Trigger parameters (`url` for `core.st2.webhook`).
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// The action a rule runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleAction {
    /// Action ref.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Parameters; strings may hold `{{ trigger.<path> }}`.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

/// One rule of the catalogue (`definitions/Rule`, st2's `RuleAPI`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Assigned at load, like st2's ObjectId.
    #[serde(skip, default = "crate::util::object_id")]
    pub id: String,
    /// Pack.
    pub pack: String,
    /// Name within the pack.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Disabled rules never match.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// What fires it.
    pub trigger: RuleTrigger,
    /// `{"trigger.<path>": {"type": "equals", "pattern": ...}}`, all must hold.
    #[serde(default)]
    pub criteria: Map<String, Value>,
    /// What it runs.
    pub action: RuleAction,
}

fn enabled() -> bool {
    true
}

impl Rule {
    /// `pack.name`.
    pub fn reference(&self) -> String {
        format!("{}.{}", self.pack, self.name)
    }

    /// The custom webhook url this rule registers, if it listens to `core.st2.webhook`.
    pub fn webhook_url(&self) -> Option<&str> {
        (self.trigger.trigger_type == "core.st2.webhook")
            .then(|| self.trigger.parameters.get("url").and_then(Value::as_str))
            .flatten()
    }

    /// The API form (`RuleAPI`).
    pub fn api(&self) -> Value {
        let reference = self.reference();
        json!({
            "id": self.id,
            "ref": reference,
            "uid": format!("rule:{}:{}", self.pack, self.name),
            "name": self.name,
            "pack": self.pack,
            "description": self.description,
            "enabled": self.enabled,
            "trigger": {"type": self.trigger.trigger_type, "ref": self.trigger.trigger_type,
                        "parameters": self.trigger.parameters},
            "criteria": self.criteria,
            "action": {"ref": self.action.reference, "parameters": self.action.parameters},
            "type": {"ref": "standard", "parameters": {}},
            "tags": [],
            "context": {},
            "metadata_file": format!("rules/{}.yaml", self.name),
        })
    }

    /// Whether every criterion holds for `payload` (st2's filter: `trigger.` paths).
    fn matches(&self, payload: &Value) -> bool {
        self.criteria.iter().all(|(path, criterion)| {
            let value = lookup(payload, path);
            let pattern = &criterion["pattern"];
            match criterion["type"].as_str().unwrap_or("equals") {
                "equals" => value == Some(pattern),
                "nequals" => value != Some(pattern),
                "iequals" => value.and_then(Value::as_str).map(str::to_lowercase)
                    == pattern.as_str().map(str::to_lowercase),
                "contains" => value
                    .and_then(Value::as_str)
                    .zip(pattern.as_str())
                    .is_some_and(|(v, p)| v.contains(p)),
                "exists" => value.is_some(),
                "nexists" => value.is_none(),
                other => {
                    tracing::warn!(rule = %self.reference(), criterion = other, "criterion type not emulated; rule does not match");
                    false
                }
            }
        })
    }
}

/// The value at `trigger.a.b` in `payload`.
fn lookup<'v>(payload: &'v Value, path: &str) -> Option<&'v Value> {
    let rest = path.trim().strip_prefix("trigger")?;
    let mut node = payload;
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        node = node.get(part)?;
    }
    Some(node)
}

/// Renders `{{ trigger.x }}` in a parameter: a string that is one expression takes the
/// value itself, an expression inside text is replaced by the value's text.
fn render(value: &Value, payload: &Value) -> Value {
    let Value::String(s) = value else {
        return value.clone();
    };
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let expr = &rest[start + 2..start + len];
        let found = lookup(payload, expr).cloned().unwrap_or(Value::Null);
        if start == 0 && len + 2 == rest.len() && out.is_empty() {
            return found;
        }
        out.push_str(&rest[..start]);
        out.push_str(&match found {
            Value::String(t) => t,
            Value::Null => String::new(),
            other => other.to_string(),
        });
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    Value::String(out)
}

/// The documents st2 embeds in an execution a rule started.
fn origin(rule: &Rule, instance: &Value) -> Map<String, Value> {
    let trigger_type = &rule.trigger.trigger_type;
    let (pack, name) = trigger_type.split_once('.').unwrap_or(("", trigger_type));
    let mut m = Map::new();
    m.insert("rule".into(), rule.api());
    m.insert("trigger_instance".into(), instance.clone());
    m.insert(
        "trigger".into(),
        json!({"ref": trigger_type, "type": trigger_type, "pack": pack, "name": name,
               "parameters": rule.trigger.parameters}),
    );
    m.insert(
        "trigger_type".into(),
        json!({"ref": trigger_type, "pack": pack, "name": name}),
    );
    m
}

/// Runs every enabled rule `selects` picks whose criteria hold for the trigger instance;
/// returns the ids of the executions started. A rule whose action is missing or whose
/// rendered parameters st2 would refuse starts nothing (st2 records a failed enforcement).
pub(crate) fn enforce(
    shared: &Arc<Shared>,
    instance: &Value,
    trace_id: &str,
    payload: &Value,
    selects: impl Fn(&Rule) -> bool,
) -> Vec<String> {
    let instance_id = instance["id"].as_str().unwrap_or_default();
    let mut started = Vec::new();
    for rule in shared.catalogue.rules() {
        if !rule.enabled || !selects(rule) || !rule.matches(payload) {
            continue;
        }
        let Some(action) = shared.catalogue.action(&rule.action.reference) else {
            tracing::warn!(rule = %rule.reference(), "rule names an unknown action");
            continue;
        };
        let rendered: Map<String, Value> = rule
            .action
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), render(v, payload)))
            .collect();
        let runner = shared.catalogue.runner_of(action);
        let parameters =
            match params::cast_params(&rendered, [&action.parameters, &runner.runner_parameters]) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(rule = %rule.reference(), error = %e, "rule parameters refused");
                    continue;
                }
            };
        let merged = shared.catalogue.merged_parameters(action);
        if let Err(e) = params::validate(&parameters, &merged) {
            tracing::warn!(rule = %rule.reference(), error = %e, "rule parameters refused");
            continue;
        }
        let mut context = Map::new();
        context.insert("user".into(), json!("stanley"));
        context.insert("pack".into(), json!(action.pack));
        context.insert(
            "trigger_instance".into(),
            json!({"id": instance_id, "name": null}),
        );
        context.insert("rule".into(), json!({"id": rule.id, "name": rule.name}));
        context.insert("trace_context".into(), json!({"id_": trace_id}));
        match shared.create_execution(NewExecution {
            action,
            parameters,
            context,
            delay: None,
            notify: None,
            parent: None,
            workflow_execution: None,
            task_execution: None,
            origin: origin(rule, instance),
        }) {
            Ok(e) => started.push(e.id),
            Err(e) => {
                tracing::warn!(rule = %rule.reference(), error = ?e, "rule enforcement failed")
            }
        }
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_whole_values_and_embedded_text() {
        let payload = json!({"data": {"n": 3, "host": "db1"}, "id": "e1"});
        assert_eq!(render(&json!("{{ trigger.data.n }}"), &payload), json!(3));
        assert_eq!(
            render(
                &json!("host {{trigger.data.host}} ({{ trigger.id }})"),
                &payload
            ),
            json!("host db1 (e1)")
        );
        assert_eq!(render(&json!(7), &payload), json!(7));
    }
}
