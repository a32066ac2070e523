//! Datastore key-value pairs (`/api/v1/keys`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::JsonObject;

/// A key-value pair as st2 answers it (`KeyValuePairAPI`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct KeyValuePair {
    /// Database id.
    pub id: String,
    /// Key name (without the user prefix of user-scoped keys).
    pub name: String,
    /// `st2kv.system` or `st2kv.user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The value: always a string in st2; for a secret, its encrypted form unless decrypted.
    pub value: String,
    /// Stored encrypted.
    #[serde(default)]
    pub secret: bool,
    /// `value` is the encrypted form.
    #[serde(default)]
    pub encrypted: bool,
    /// When st2 removes it (set when it was put with a `ttl`). st2's MongoDB sweeps expired
    /// keys about once a minute, so a key can still be read somewhat after this time.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expire_timestamp: Option<OffsetDateTime>,
    /// Everything else (uid, user, description).
    #[serde(flatten)]
    pub extra: JsonObject,
}
