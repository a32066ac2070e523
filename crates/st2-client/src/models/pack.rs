//! Installed packs (`PackAPI`).

use serde::{Deserialize, Serialize};

use super::JsonObject;

/// An installed pack. st2 stores no license for packs; reviews record it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Pack {
    /// Database id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Pack ref, e.g. `core`.
    #[serde(rename = "ref")]
    pub r#ref: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Installed version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Author e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Search keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Packs this one needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Everything else (uid, files, path, stackstorm_version, python_versions, system, ...).
    #[serde(flatten)]
    pub extra: JsonObject,
}
