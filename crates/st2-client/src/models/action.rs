//! Actions (`definitions/Action`) and the merged parameter schema st2 validates runs against.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::JsonObject;

/// An action.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Action {
    /// Database id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `pack.name`.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// `action:<pack>:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Name inside the pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Pack ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Disabled actions cannot be run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Runner type name, e.g. `local-shell-cmd`, `orquesta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_type: Option<String>,
    /// The action's own parameter schema (without runner parameters).
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub parameters: JsonObject,
    /// Everything else (entry_point, output_schema, tags, notify, metadata_file).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One parameter's schema: JSON-Schema draft 4 plus st2's `required`, `secret`, `immutable`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ParameterSpec {
    /// A JSON-Schema type name, or a list of them; absent for pins like `{immutable: true}`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Value>,
    /// Must be given unless it has a default (st2 puts `required` on the property).
    #[serde(default)]
    pub required: bool,
    /// Default value; may be a Jinja template evaluated by st2. `Some(Null)` is an explicit
    /// `default: null`, which st2 treats differently from no default (null becomes allowed).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    /// Overriding it is refused by st2.
    #[serde(default)]
    pub immutable: bool,
    /// Masked in st2's output; must be masked in ours.
    #[serde(default)]
    pub secret: bool,
    /// Allowed values.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Everything else (position, minimum, pattern, items, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Keeps an explicit JSON `null` as `Some(Value::Null)`; absence stays `None` via `default`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// `GET /actions/views/parameters/{ref}`: runner and action parameters merged, action winning.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ActionParameters {
    /// Parameter name → schema.
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterSpec>,
}
